"""The seam between the scheduler and the place where a tool call runs.

The scheduler decides what starts when; an `Executor` runs one call. With
none (the default) calls run inline, as `Tool.call` runs them: an async tool
on the run's event loop, a sync one on a worker thread, an isolated one in a
worker process, an MCP tool on its server. Another executor (`taskloom.ray`)
runs them elsewhere; the engine imports nothing of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from taskloom._held import Held, held_problem
from taskloom.errors import BadArguments
from taskloom.tools import Tool
from taskloom.tools._tool import CallTimes

__all__ = ["Executor", "Held", "InlineExecutor", "Relayed", "held_arguments"]


@runtime_checkable
class Executor(Protocol):
    """Runs one tool call somewhere and gives back its output."""

    async def call(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the tool's own: see Tool.call)
    ) -> Any:
        """Run a call of `tool` with validated arguments, as `Tool.call` does inline.

        Cancelling the awaiting task must stop the call (or abandon it, and
        say so), as a timeout does.

        Args:
            tool: the tool to call.
            arguments: its validated arguments, by parameter name.
            times: where to record when the call began and ended (monotonic
                seconds of this process), as `Tool.call` does.
            timeout: seconds the call may take; None for no limit.

        Returns:
            What the tool returned.

        Raises:
            CallTimedOut: the call ran past `timeout` and was stopped (its
                `stopped` says how).
            CallInterrupted: the worker running the call died; the scheduler
                retries an idempotent tool under its policy and records any
                other as interrupted.
            ExecutorLost: no call can run any more; the run ends with it.
            BaseException: whatever the tool raised.

        """
        ...


class InlineExecutor:
    """Runs every call in this process, as taskloom does by default (`Tool.call`).

    Passing it is the same as passing no executor: the scheduler then keeps
    its fast path (an async tool's function awaited with no wrapper at all).
    """

    async def call(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the tool's own: see Tool.call)
    ) -> Any:
        """Call the tool here (see `Executor.call`).

        Returns:
            What the tool returned.

        """
        return await tool.call(arguments, times=times, timeout=timeout)

    def __repr__(self) -> str:
        return "InlineExecutor()"


@runtime_checkable
class Relayed(Protocol):
    """A tool that wraps another one (a call cache): its own logic runs where the run is.

    An executor that runs calls elsewhere calls `call_through` on such a
    tool, and the wrapper hands each call of the tool it wraps back to the
    executor, so a cache is kept on the driver while the tool runs remotely.
    """

    async def call_through(
        self,
        executor: Executor,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the tool's own: see Tool.call)
    ) -> Any:
        """Call the wrapped tool through `executor`, doing the wrapper's own work here.

        Returns:
            The wrapped tool's output (or the wrapper's answer for it).

        """
        ...


def held_arguments(
    task_id: str, tool: Tool, bound: dict[str, Any], problem: ValueError
) -> dict[str, Any] | BadArguments:
    """Arguments that did not validate because some are outputs held elsewhere (`Held`).

    A whole output held by the executor (`$N`) goes on to the tool's call as
    it is, for the executor to send as a reference; it is checked by its
    type only (an empty value of its type stands in for it), since its
    contents are not here. Called only once validation has failed, so runs
    without held outputs pay nothing for it.

    Returns:
        The validated arguments with the held ones in place, or the task's
        BadArguments (the first `problem`, or what the check of types found).

    """
    held = {k: v for k, v in bound.items() if isinstance(v, Held)}
    nested = next((h for k, v in bound.items() if k not in held and (h := held_problem(v))), None)
    if nested is not None:
        return BadArguments(
            task_id,
            tool.name,
            f"an output {nested} is inside an argument; an output held there can only be "
            "passed whole ($N) as an argument of a tool that runs there",
        )
    if not held:
        return BadArguments(task_id, tool.name, str(problem))
    standing = dict(bound)
    for name, value in held.items():
        empty = value.stand_in()
        if empty is None:  # a type with no empty value known: left unchecked
            standing.pop(name)
        else:
            standing[name] = empty
    try:
        checked = dict(tool.validate(standing))
    except ValueError as exc:
        kinds = ", ".join(f"{k} is a {v.kind} of {v.size:,} bytes" for k, v in held.items())
        return BadArguments(
            task_id, tool.name, f"{exc} ({kinds}, held in {next(iter(held.values())).where})"
        )
    return checked | held
