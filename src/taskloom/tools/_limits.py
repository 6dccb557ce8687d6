"""What a call may use (isolation limits, cluster resources), and how a worker finds it."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from taskloom._text import short_repr
from taskloom.errors import ToolDefinitionError

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_MAX_PROCESSES",
    "ProcessLimits",
    "Resources",
    "function_target",
]

DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024
"""An isolated call's output, pickled, when the tool sets no `max_output_bytes`."""
DEFAULT_MAX_PROCESSES = 64
"""Processes and threads an isolated call may start when the tool sets no `max_processes`."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProcessLimits:
    """The limits the operating system applies to each call of an isolated tool.

    They are resource limits (setrlimit, a pids cgroup), not a security sandbox:
    the call runs as the same user, with the same files and network.
    """

    max_memory_mb: float | None = None
    """Address space one call may add to its worker (RLIMIT_AS); None: no limit."""
    max_cpu_s: float | None = None
    """CPU seconds one call may use (RLIMIT_CPU, whole seconds, rounded up); None: no limit."""
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    """Bytes of output (the pickled result, a command's stdout) read back at most."""
    max_processes: int = DEFAULT_MAX_PROCESSES
    """Processes and threads the call may start (pids cgroup, else RLIMIT_NPROC)."""

    def __post_init__(self) -> None:
        for option in ("max_memory_mb", "max_cpu_s"):
            value = getattr(self, option)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ToolDefinitionError(f"{option} must be a number, got {short_repr(value)}")
            if not math.isfinite(value) or value <= 0:
                raise ToolDefinitionError(f"{option} must be a finite number > 0, got {value}")
        for option in ("max_output_bytes", "max_processes"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ToolDefinitionError(
                    f"{option} must be a whole number >= 1, got {short_repr(value)}"
                )


FunctionTarget = tuple[str, str, str | None]
"""How a worker finds a function: (module name, qualified name, the module's file or None)."""


def function_target(fn: Callable[..., Any], tool_name: str) -> FunctionTarget:
    """Where a worker process finds `fn` again: by module and qualified name.

    A worker is a separate interpreter; it imports the module (or loads the
    file the module came from, for tools loaded from a path) and unwraps the
    Tool that the module attribute holds.

    Returns:
        (module, qualified name, file or None).

    Raises:
        ToolDefinitionError: for a function a worker cannot import: one in
            `__main__`, a closure or lambda, or one with no module.

    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    why = _unshippable(module, qualname)
    if why is not None:
        raise ToolDefinitionError(
            f"isolated tool {tool_name}: {why}; a worker process imports the function by "
            "module and name, so define it at the top level of a module (a .py file given "
            "to --tools counts)"
        )
    assert isinstance(module, str) and isinstance(qualname, str)
    try:
        file: str | None = str(Path(inspect.getfile(fn)).resolve())
    except (TypeError, OSError):
        file = None
    return (module, qualname, file)


def _unshippable(module: object, qualname: object) -> str | None:
    if not isinstance(module, str) or not isinstance(qualname, str):
        return "its function has no module or name"
    if module == "__main__":
        return "it is defined in __main__ (the script being run), which cannot be imported again"
    if "<locals>" in qualname:
        return f"{qualname} is defined inside a function"
    if "<lambda>" in qualname:
        return "it is a lambda"
    return None


_RESOURCE_FIELDS = ("num_cpus", "num_gpus", "memory")


@dataclass(frozen=True, kw_only=True, slots=True)
class Resources:
    """What one call of a tool needs from the cluster that runs it (`taskloom.ray`).

    Inline, in this process, they change nothing. On Ray each call asks for
    them as its task's (or actor's) resources, so a GPU tool lands on a
    node with a GPU and a tool that needs a custom resource (`{"db": 1}`)
    on a node that offers it.
    """

    num_cpus: float | None = None
    """CPUs one call holds; None: Ray's default (1 for a sync tool's task)."""
    num_gpus: float | None = None
    """GPUs one call holds (fractions share one)."""
    memory: int | None = None
    """Bytes of memory one call reserves."""
    custom: Mapping[str, float] = field(default_factory=dict)
    """Custom resources by name (`{"gpu_node": 1}`), as the cluster's nodes declare them."""

    def __post_init__(self) -> None:
        for option in _RESOURCE_FIELDS:
            _check_amount(option, getattr(self, option))
        if not isinstance(self.custom, Mapping):
            raise ToolDefinitionError(
                f"custom resources must be a mapping of name to amount, got "
                f"{short_repr(self.custom)}"
            )
        for name, amount in self.custom.items():
            if not isinstance(name, str) or not name or name in _RESOURCE_FIELDS:
                raise ToolDefinitionError(
                    f"a custom resource needs a name other than {', '.join(_RESOURCE_FIELDS)}, "
                    f"got {short_repr(name)}"
                )
            _check_amount(f"resource {name!r}", amount)
        object.__setattr__(self, "custom", MappingProxyType(dict(self.custom)))

    @classmethod
    def of(cls, given: Resources | Mapping[str, float]) -> Resources:
        """Resources from themselves or from a mapping: known names are fields, others custom.

        Returns:
            The Resources.

        Raises:
            ToolDefinitionError: for something else, or a bad amount.

        """
        if isinstance(given, Resources):
            return given
        if not isinstance(given, Mapping):
            raise ToolDefinitionError(
                f"resources must be a Resources or a mapping, got {short_repr(given)}"
            )
        known: dict[str, Any] = {k: v for k, v in given.items() if k in _RESOURCE_FIELDS}
        custom = {k: v for k, v in given.items() if k not in _RESOURCE_FIELDS}
        return cls(**known, custom=custom)

    def ray_options(self) -> dict[str, Any]:
        """These resources as Ray's `.options()` keywords (only those set)."""
        options: dict[str, Any] = {
            k: getattr(self, k) for k in _RESOURCE_FIELDS if getattr(self, k) is not None
        }
        if self.custom:
            options["resources"] = dict(self.custom)
        return options


def _check_amount(option: str, value: object) -> None:
    """A resource amount is a finite number >= 0, or None.

    Raises:
        ToolDefinitionError: for anything else.

    """
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ToolDefinitionError(f"{option} must be a finite number >= 0, got {short_repr(value)}")
