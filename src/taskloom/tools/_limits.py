"""What an isolated tool's call may use, and how a worker process finds the function to call."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskloom._text import short_repr
from taskloom.errors import ToolDefinitionError

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "DEFAULT_MAX_PROCESSES", "ProcessLimits", "function_target"]

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
