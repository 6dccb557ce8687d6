"""The call cache: a cacheable tool answers a repeated call without running again.

Results are keyed by (tool name, tool version, canonical arguments). Three
layers answer, fastest first:

1. calls in flight: an identical call already running (in this run or in
   another run of a batch) is joined, not started again (single-flight);
2. memory: results seen by this process, bounded, least recently used out;
3. the store, when one is given: results of earlier runs, across processes,
   until their time to live runs out.

A call that fails is remembered too, in memory only, for `failure_ttl`
(a minute by default; a batch keeps failures for its whole length): requests
that repeat a bad lookup run it once, and a failure never outlives the process.

Only tools declared `cacheable=True` go through it; nothing else changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from taskloom.engine._node import is_storable
from taskloom.errors import CallInterrupted, CallTimedOut, ExecutorLost
from taskloom.tools import Tool
from taskloom.tools._tool import CallTimes

if TYPE_CHECKING:
    from taskloom.engine._executor import Executor
    from taskloom.store._store import Store

__all__ = ["CacheStats", "CallCache", "cache_key"]

_MEMORY_ENTRIES = 10_000


def cache_key(tool: Tool, arguments: dict[str, Any]) -> str:
    """The key of one call: sha256 over name, version and canonical JSON arguments."""
    canonical = json.dumps(
        arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(f"{tool.name}\x1f{tool.version}\x1f{canonical}".encode()).hexdigest()


@dataclass(kw_only=True, slots=True)
class CacheStats:
    """What the cache saved: calls asked for, and how each was answered."""

    requested: int = 0
    """Calls of cacheable tools asked for."""
    executed: int = 0
    """Calls that ran the tool to an end (an output or an error)."""
    cancelled: int = 0
    """Calls of the tool cancelled or timed out before they ended (a waiting twin then runs it)."""
    memory_hits: int = 0
    """Answered from this process's memory."""
    store_hits: int = 0
    """Answered from the store (an earlier run)."""
    joined: int = 0
    """Answered by joining an identical call in flight."""
    distinct: int = 0
    """Different calls (by key) asked for: with a warm-enough cache, `executed` equals it."""


_UNSETTLED = (CallTimedOut, CallInterrupted, ExecutorLost)
"""A call that ended without an answer of the tool's own: never remembered, a twin leads again."""


class _Cached(Tool):
    """A cacheable tool that answers through a CallCache.

    It keeps the tool's own kind (sync or async): the tool's own `call` gets
    the timeout and the times, so a sync tool's count from when it has a
    worker thread, not from the waits for the cache, the store or a thread.
    """

    def __init__(self, tool: Tool, cache: CallCache) -> None:
        """Answer `tool`'s calls through `cache`."""
        self.__dict__.update(tool.__dict__)  # its name, schema and policy, as read already
        self.__dict__.pop("call_through", None)  # a latency's: ours runs first, then it
        self._original = tool
        self._cache = cache

        async def cached(**arguments: Any) -> Any:
            return await cache.call(tool, arguments)

        # The scheduler calls an async tool's `fn` itself when it has no policy to apply.
        self.fn = cached

    async def call(
        self,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (see Tool.call)
    ) -> Any:
        """Call the tool through the cache (see `CallCache.call`).

        Returns:
            The tool's output.

        Raises:
            CallTimedOut: the call ran past `timeout`.
            Exception: whatever the tool raised.

        """
        try:
            return await self._cache.call(
                self._original, dict(arguments), times=times, timeout=timeout
            )
        finally:
            if times is not None and times.started_at is None:
                times.started_at = time.monotonic()  # answered without calling the tool

    async def call_through(
        self,
        executor: Executor,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (see Tool.call)
    ) -> Any:
        """Answer from the cache here; run the tool, when it must run, through `executor`.

        Returns:
            The tool's output.

        """
        try:
            return await self._cache.call(
                self._original, dict(arguments), times=times, timeout=timeout, executor=executor
            )
        finally:
            if times is not None and times.started_at is None:
                times.started_at = time.monotonic()


class _Flight:
    """One call in progress that identical calls wait for."""

    __slots__ = ("done", "error", "output", "settled")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.settled = False
        """False if the leading call was cancelled: a waiter must lead instead."""
        self.output: Any = None
        self.error: BaseException | None = None


class CallCache:
    """Memoises cacheable tools and shares identical calls in flight.

    One cache may serve many runs at once (a batch); pass `wrap(tools)` to
    each run instead of the tools themselves.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        ttl: float | None = None,
        failure_ttl: float | None = 60.0,
    ) -> None:
        """Make a cache.

        Args:
            store: where results outlive the process; None keeps them in memory.
            ttl: seconds a stored result stays valid; None for no expiry.
            failure_ttl: seconds a failed call is answered with its error
                again instead of running; 0 to always run again; None for as
                long as this cache lives (one batch, say).

        """
        self._store = store
        self._ttl = ttl
        self._failures: dict[str, tuple[float, Exception]] = {}
        self._failure_ttl_s = math.inf if failure_ttl is None else failure_ttl
        self._memory: OrderedDict[str, tuple[float | None, Any]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._seen: set[str] = set()
        self.stats = CacheStats()
        """Counts of requested and executed calls, and of each kind of hit."""

    def wrap(self, tools: Iterable[Tool]) -> list[Tool]:
        """The tools, with every cacheable one answering through this cache.

        A tool that answers through a cache already is kept as it is: wrapped
        twice, a call would wait for itself in flight.
        """
        return [
            self._wrap(t) if t.policy.cacheable and not isinstance(t, _Cached) else t for t in tools
        ]

    def _wrap(self, tool: Tool) -> Tool:
        return _Cached(tool, self)

    async def call(
        self,
        tool: Tool,
        arguments: dict[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the tool's own: see Tool.call)
        executor: Executor | None = None,
    ) -> Any:
        """Call `tool`, or answer from a call in flight, memory or the store.

        Args:
            tool: the cacheable tool.
            arguments: its validated arguments.
            times: passed to `Tool.call` when the tool runs.
            timeout: passed to `Tool.call` when the tool runs: the waits for
                the store and for an identical call in flight do not count.
            executor: where the tool runs when it must (`Executor.call`); None: here.

        Returns:
            The tool's output.

        Raises:
            CallTimedOut: the call ran past `timeout` (not remembered: the
                next identical call runs again, a waiting twin leads one).
            Exception: whatever the tool raised (waiters of a shared call get
                the same exception).

        """
        key = cache_key(tool, arguments)
        self.stats.requested += 1
        if key not in self._seen:
            self._seen.add(key)
            self.stats.distinct += 1
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.settled:
                self.stats.joined += 1
                if flight.error is not None:
                    raise flight.error
                return flight.output
            # The leader was cancelled: loop, and lead the call ourselves.
        found, output = self._remembered(key)
        if found:
            self.stats.memory_hits += 1
            return output
        failed = self._failures.get(key)
        if failed is not None and failed[0] > time.monotonic():
            self.stats.memory_hits += 1
            raise failed[1]
        flight = self._flights[key] = _Flight()
        try:
            output = await self._lookup_or_run(tool, arguments, key, times, timeout, executor)
        except _UNSETTLED:
            raise  # like a cancellation: not settled, so a waiter leads instead
        except Exception as exc:
            flight.error, flight.settled = exc, True
            if self._failure_ttl_s > 0:
                now = time.monotonic()
                if len(self._failures) >= _MEMORY_ENTRIES:  # keep it bounded
                    self._failures = {k: v for k, v in self._failures.items() if v[0] > now}
                    while len(self._failures) >= _MEMORY_ENTRIES:
                        del self._failures[next(iter(self._failures))]
                self._failures[key] = (now + self._failure_ttl_s, exc)
            raise
        else:
            flight.output, flight.settled = output, True
            return output
        finally:
            del self._flights[key]
            flight.done.set()

    async def _lookup_or_run(
        self,
        tool: Tool,
        arguments: dict[str, Any],
        key: str,
        times: CallTimes | None,
        timeout: float | None,  # noqa: ASYNC109  (the tool's own: see Tool.call)
        executor: Executor | None = None,
    ) -> Any:
        if self._store is not None:
            found, output = await anyio.to_thread.run_sync(self._store.cached, key)
            if found:
                self.stats.store_hits += 1
                self._remember(key, output)
                return output
        try:
            if executor is None:
                output = await tool.call(arguments, times=times, timeout=timeout)
            else:
                output = await executor.call(tool, arguments, times=times, timeout=timeout)
        except (anyio.get_cancelled_exc_class(), *_UNSETTLED):
            self.stats.cancelled += 1
            raise
        except BaseException:  # SystemExit too: the run makes it this task's failure
            self.stats.executed += 1
            raise
        self.stats.executed += 1
        if is_storable(output):  # else the run fails the task with BadOutput: keep nothing
            self._remember(key, output)
            if self._store is not None:
                self._store.remember(key, tool.name, output, ttl=self._ttl)
        return output

    def _remembered(self, key: str) -> tuple[bool, Any]:
        entry = self._memory.get(key)
        if entry is None:
            return False, None
        expires, output = entry
        if expires is not None and expires <= time.time():
            del self._memory[key]
            return False, None
        self._memory.move_to_end(key)
        return True, output

    def _remember(self, key: str, output: Any) -> None:
        expires = None if self._ttl is None else time.time() + self._ttl
        self._memory[key] = (expires, output)
        self._memory.move_to_end(key)
        if len(self._memory) > _MEMORY_ENTRIES:
            self._memory.popitem(last=False)
