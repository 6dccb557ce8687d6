"""Executors for tests: one records calls and fails those it is told to; one holds outputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taskloom._held import Held
from taskloom.engine._executor import InlineExecutor
from taskloom.tools import Tool
from taskloom.tools._tool import CallTimes

__all__ = ["HoldingExecutor", "RecordingExecutor"]


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


class _Kept(Held):
    """An output a HoldingExecutor keeps (in its own dict, standing in for an object store)."""

    __slots__ = ("key", "owner")

    def __init__(self, owner: HoldingExecutor, key: int, value: str) -> None:
        super().__init__(size=len(value), kind=type(value).__name__, where="a test's store")
        self.owner = owner
        self.key = key

    async def fetch(self) -> Any:
        """The value, counted as fetched.

        Returns:
            The output.

        """
        self.owner.fetched += 1
        return self.owner.kept[self.key]


class HoldingExecutor(RecordingExecutor):
    """Runs calls here, and keeps a text output longer than `hold_over` as a `Held`.

    It plays an executor with an object store (`taskloom.ray.RayExecutor`):
    the run sees the `Held`, and a later call that takes it whole gets the
    value from this executor, never from the run. `calls` records what each
    call was given (Held arguments as they came); `fetched` counts the held
    outputs anyone brought back with `fetch()`.
    """

    def __init__(self, hold_over: int) -> None:
        """Keep text outputs longer than `hold_over` characters."""
        super().__init__()
        self.hold_over = hold_over
        self.kept: dict[int, str] = {}
        """The held outputs, by key."""
        self.fetched = 0
        """Held outputs brought back with `fetch()`."""

    async def call(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the tool's own: see Tool.call)
    ) -> Any:
        """Call the tool with its held arguments' values; keep a long text output.

        Returns:
            The output, or a `Held` for a text longer than `hold_over`.

        """
        self.calls.append((tool.name, dict(arguments)))
        given = {
            k: self.kept[v.key] if isinstance(v, _Kept) and v.owner is self else v
            for k, v in arguments.items()
        }
        output = await InlineExecutor.call(self, tool, given, times=times, timeout=timeout)
        if isinstance(output, str) and len(output) > self.hold_over:
            key = len(self.kept)
            self.kept[key] = output
            return _Kept(self, key, output)
        return output

    def __repr__(self) -> str:
        return f"HoldingExecutor(hold_over={self.hold_over})"
