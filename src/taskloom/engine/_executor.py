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

from taskloom.tools import Tool
from taskloom.tools._tool import CallTimes

__all__ = ["Executor", "InlineExecutor", "Relayed"]


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
