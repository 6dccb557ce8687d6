"""Isolated tools: calls that run in worker processes, under limits the OS applies.

`@taskloom.tool(isolated=True, max_memory_mb=..., max_cpu_s=...,
max_output_bytes=..., max_processes=...)` runs each call of a function in a
worker process from a warm pool: a call costs about a millisecond, not an
interpreter start. A segfault, `os._exit`, a memory, CPU or processes limit,
or a timeout ends that call only, with the cause in its error
(`WorkerCrashed`, `LimitExceeded`, `OutputTooLarge`, `ToolTimedOut`); the
pool replaces the worker. On a timeout or a caller's cancellation the
worker's whole process group is killed. CPU-bound Python tools run in
parallel this way (each worker has its own GIL).

`command_tool()` runs a command line (an argv list, never a shell string)
under the same limits; `python_tool()` is a code tool, off unless asked for.

These are resource limits, not a security sandbox: a call runs as the same
user as taskloom, sees the same files and the same network, and can undo
its own soft limits. Run untrusted code in a container or a VM.

How a worker finds the function: by module and qualified name (a tool
loaded from a .py file path, as `--tools` does, by that file). A function
defined in `__main__`, in another function or as a lambda cannot be found
again in a fresh process, and is refused when the tool is made.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Mapping, Sequence
from typing import Any

from taskloom._text import quoted, short_repr
from taskloom.errors import ToolDefinitionError
from taskloom.tools._limits import DEFAULT_MAX_PROCESSES, ProcessLimits
from taskloom.tools._pool import POOL
from taskloom.tools._tool import CallPolicy, Tool

__all__ = ["ProcessLimits", "close_workers", "command_tool", "python_tool", "set_max_workers"]


def command_tool(
    name: str,
    argv: Sequence[str],
    *,
    description: str | None = None,
    timeout: float | None = None,
    max_memory_mb: float | None = None,
    max_cpu_s: float | None = None,
    max_output_bytes: int | None = None,
    max_processes: int | None = None,
    idempotent: bool = False,
    max_concurrency: int | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Tool:
    """A tool that runs a command line and returns what it printed.

    Each `{placeholder}` in `argv` is a string parameter of the tool, filled
    in as one argument: `command_tool("lines", ["wc", "-l", "{path}"])` is
    called as `lines("notes.txt")` and runs `wc -l notes.txt`. No shell reads
    the line, so a value is never split, globbed or run.

    The command runs from a worker process of the pool, under the limits
    given (counted for the command itself), in the worker's process group.

    Args:
        name: the tool's name.
        argv: the program and its arguments, with `{placeholder}`s.
        description: shown to planners; defaults to the command line.
        timeout: seconds per call; on timeout the command's group is killed.
        max_memory_mb: the command's address space (RLIMIT_AS).
        max_cpu_s: the command's CPU seconds (RLIMIT_CPU).
        max_output_bytes: bytes of stdout read at most; more fails the call.
        max_processes: processes and threads the command may start.
        idempotent: running it twice is harmless (then it may be retried).
        max_concurrency: calls running at once, per scheduler.
        cwd: the folder the command runs in; defaults to taskloom's.
        env: the command's whole environment; defaults to taskloom's.

    Returns:
        A Tool whose output is the command's stdout, decoded as UTF-8.
        A non-zero exit fails the call with `CommandFailed` (the status and
        the end of stderr).

    Raises:
        ToolDefinitionError: for an empty argv, a part that is not a string,
            or a placeholder that is not a plain name.

    """
    if isinstance(argv, str) or not argv or not all(isinstance(p, str) for p in argv):
        raise ToolDefinitionError(
            f"command tool {name}: argv must be a non-empty list of strings "
            f"(never one shell string), got {short_repr(argv)}"
        )
    parameters = _placeholders(name, argv)
    run = _command_function(name, parameters)
    options = {"cwd": cwd, "env": None if env is None else dict(env)}
    run.isolated_target = ("command", list(argv), options)
    limits = _limits(max_memory_mb, max_cpu_s, max_output_bytes, max_processes)
    policy = CallPolicy(
        idempotent=idempotent, timeout=timeout, max_concurrency=max_concurrency, isolation=limits
    )
    shown = description or f"Runs the command: {' '.join(argv)}"
    return Tool(run, name=name, description=shown, policy=policy)


def _placeholders(name: str, argv: Sequence[str]) -> list[str]:
    """The `{name}`s in argv, in order of first use.

    Raises:
        ToolDefinitionError: for `{}`, `{0}`, `{a.b}`, or a format spec or conversion.

    """
    found: list[str] = []
    for part in argv:
        try:
            fields = list(string.Formatter().parse(part))
        except ValueError as exc:
            raise ToolDefinitionError(f"command tool {name}: {quoted(part)}: {exc}") from None
        for _, field, spec, conversion in fields:
            if field is None:
                continue
            if not field.isidentifier() or spec or conversion:
                raise ToolDefinitionError(
                    f"command tool {name}: placeholder {{{field}}} in {quoted(part)} must be a "
                    "plain name like {path} (write {{ and }} for literal braces)"
                )
            if field not in found:
                found.append(field)
    return found


def _command_function(name: str, parameters: list[str]) -> Any:
    """A function with one str parameter per placeholder: the Tool reads its signature."""

    def run(**arguments: str) -> str:
        raise ToolDefinitionError(f"command tool {name} runs only in a worker process")

    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, annotation=str) for p in parameters],
        return_annotation=str,
    )
    run.__annotations__ = {p: str for p in parameters} | {"return": str}
    run.__name__ = name
    return run


def python(code: str) -> Any:
    """Run Python code in a separate process.

    Returns the value of the code's last expression, else what it printed.
    """
    raise ToolDefinitionError("the python tool runs only in a worker process")


python.isolated_target = ("python",)  # type: ignore[attr-defined]


def python_tool(
    *,
    name: str = "python",
    timeout: float = 30.0,
    max_memory_mb: float = 512,
    max_cpu_s: float = 30,
    max_output_bytes: int = 1024 * 1024,
    max_processes: int = DEFAULT_MAX_PROCESSES,
) -> Tool:
    """A code tool: runs the Python source a plan gives it, in a worker process.

    It is not part of any tool set unless added (`tools=[..., python_tool()]`,
    or `--enable-python-tool` on the command line). Each call runs in a
    fresh worker, which is not reused, under the limits given.

    The limits are not a security sandbox: the code runs as the same user as
    taskloom, with its files and network. Enable it only for code you would
    run yourself.

    Returns:
        A Tool `python(code: str)`; its output is the value of the code's last
        expression when it has one (and it is not None), else what it printed.

    Raises:
        ToolDefinitionError: for a bad limit.

    """
    limits = _limits(max_memory_mb, max_cpu_s, max_output_bytes, max_processes)
    policy = CallPolicy(timeout=timeout, isolation=limits)
    return Tool(python, name=name, policy=policy)


def _limits(
    memory: float | None, cpu: float | None, output: int | None, processes: int | None
) -> ProcessLimits:
    given: dict[str, Any] = {"max_memory_mb": memory, "max_cpu_s": cpu}
    if output is not None:
        given["max_output_bytes"] = output
    if processes is not None:
        given["max_processes"] = processes
    return ProcessLimits(**given)


def set_max_workers(count: int) -> None:
    """At most `count` isolated calls run at once in this process (default: one per CPU).

    Raises:
        ToolDefinitionError: if `count` is not a whole number >= 1.

    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        got = short_repr(count)
        raise ToolDefinitionError(f"max workers must be a whole number >= 1, got {got}")
    POOL.max_workers = count


def close_workers() -> None:
    """End every worker process now (they are also ended when the process exits).

    Calls still running are killed; the next isolated call starts a new worker.
    """
    POOL.close()
