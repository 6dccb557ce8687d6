"""An executor for tests: runs calls here, records them, and fails the ones it is told to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taskloom.engine._executor import InlineExecutor
from taskloom.tools import Tool
from taskloom.tools._tool import CallTimes

__all__ = ["RecordingExecutor"]


class RecordingExecutor(InlineExecutor):
    """Runs every call in this process, as `InlineExecutor` does, and records it.

    `fail` maps a tool name to what its calls raise instead of running: a
    `CallInterrupted` plays a worker that died, an `ExecutorLost` a cluster
    that went away. A callable there is called with how many calls of that
    tool it has been asked for so far, this one included, and returns the
    exception to raise, or None to run the call.

        executor = RecordingExecutor(fail={"send": CallInterrupted("send", "the node died")})
        result = await taskloom.execute(plan, tools=tools, executor=executor)
    """

    def __init__(
        self,
        fail: Mapping[str, BaseException | Callable[[int], BaseException | None]] | None = None,
    ) -> None:
        """Make an executor that fails the calls of the tools named in `fail`."""
        self.fail = dict(fail or {})
        self.calls: list[tuple[str, dict[str, Any]]] = []
        """Every call asked of it, in order: (tool name, arguments)."""

    async def call(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the tool's own: see Tool.call)
    ) -> Any:
        """Record the call; raise what `fail` says for its tool, else run it here.

        Returns:
            What the tool returned.

        Raises:
            BaseException: what `fail` gives for the tool, or what the tool raised.

        """
        self.calls.append((tool.name, dict(arguments)))
        planned = self.fail.get(tool.name)
        if callable(planned) and not isinstance(planned, BaseException):
            attempt = sum(1 for name, _ in self.calls if name == tool.name)
            planned = planned(attempt)
        if planned is not None:
            raise planned
        return await super().call(tool, arguments, times=times, timeout=timeout)

    def __repr__(self) -> str:
        return f"RecordingExecutor(fail={sorted(self.fail)})"
