"""Sync tools run on taskloom's own daemon worker threads.

anyio's worker threads are not daemon threads, and the interpreter joins
every such thread at exit. A sync tool abandoned on a timeout or a
cancellation keeps running on its thread, so with anyio's threads a process
whose command was done waited for it, forever if the tool never returns.
These threads are daemon threads: an abandoned call runs on to its end (a
thread cannot be killed), its result is dropped, and the process does not
wait for it.

How many calls run at once is still anyio's default thread limiter (40
unless changed with `anyio.to_thread.current_default_thread_limiter()`), per
event loop; an abandoned call gives its slot back at once. Threads are made
when no idle one exists and end after `_IDLE_S` without work.

Each call records, on its thread, when the thread picked it up and when the
function returned: task times then exclude the wait for a free thread and
for the event loop to read the result.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread

__all__ = ["ThreadCall", "run_in_thread"]

T = TypeVar("T")

_IDLE_S = 10.0
"""A worker thread with no work for this long ends."""


class ThreadCall(Generic[T]):
    """One function call handed to a worker thread, and when it really ran."""

    __slots__ = ("context", "fn", "future", "loop", "started_at", "finished_at", "timed_out")

    def __init__(self, fn: Callable[[], T], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        # Context variables (tracing spans, say) follow the call into its thread.
        self.context = contextvars.copy_context()
        self.started_at: float | None = None
        """When a thread picked the call up (monotonic seconds), written on that thread."""
        self.finished_at: float | None = None
        """When the function returned or raised, written on its thread."""
        self.timed_out = False
        """The call ran past its timeout and was abandoned (set on the loop)."""

    def run(self) -> None:
        """Call the function on this (worker) thread and hand the outcome to the loop."""
        if self.future.cancelled():
            return  # abandoned before a thread took it: never called
        self.started_at = time.monotonic()
        try:
            result = self.context.run(self.fn)
        except BaseException as exc:  # handed to the awaiting task, which decides
            self.finished_at = time.monotonic()
            self._deliver(_set_exception, exc)
        else:
            self.finished_at = time.monotonic()
            self._deliver(_set_result, result)

    def _deliver(self, setter: Callable[[asyncio.Future[Any], Any], None], value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(setter, self.future, value)
        except RuntimeError:
            pass  # the loop has closed: nobody waits for this result any more


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # done: cancelled, the call was abandoned
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class _Worker(threading.Thread):
    def __init__(self, pool: _Pool) -> None:
        super().__init__(name="taskloom-worker", daemon=True)
        self.pool = pool
        self.calls: queue.SimpleQueue[ThreadCall[Any]] = queue.SimpleQueue()

    def run(self) -> None:
        pool, calls = self.pool, self.calls
        while True:
            try:
                call = calls.get(timeout=_IDLE_S)
            except queue.Empty:
                if pool.retire(self):
                    return
                continue  # taken for a call just now: its call is on the way
            call.run()
            del call  # do not keep the last result alive while idle
            pool.idle(self)


class _Pool:
    """Worker threads shared by every event loop of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def submit(self, call: ThreadCall[Any]) -> None:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self)
            worker.start()
        worker.calls.put(call)

    def idle(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def retire(self, worker: _Worker) -> bool:
        """Whether an idle worker may end (False: it was just given a call)."""
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False

    def forget(self) -> None:
        """After a fork: the parent's threads do not exist in the child."""
        self._lock = threading.Lock()
        self._idle = []


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)


async def run_in_thread(
    call: ThreadCall[T],
    *,
    # A caller's own deadline would count the wait for a slot: see the docstring.
    timeout: float | None = None,  # noqa: ASYNC109
) -> T:
    """Run `call` on a worker thread once the loop's thread limiter has a slot.

    Cancelling the awaiting task abandons the call: the slot is given back at
    once; the thread runs on and its result is dropped. A timeout does the
    same, and counts only from when the call holds a slot: calls queued
    behind busy threads do not spend their time waiting.

    Args:
        call: the call to run.
        timeout: seconds the call may run once it has a slot; None for no limit.

    Returns:
        What the function returned.

    Raises:
        TimeoutError: the call ran past `timeout` and was abandoned; then
            `call.timed_out` is set (a TimeoutError of the function's own
            leaves it False).
        BaseException: whatever the function raised.

    """
    limiter = anyio.to_thread.current_default_thread_limiter()
    try:
        limiter.acquire_on_behalf_of_nowait(call)
    except anyio.WouldBlock:
        await limiter.acquire_on_behalf_of(call)
    try:
        _POOL.submit(call)
        if timeout is None:
            return await call.future
        # Only from here: the wait for a slot above is not the call's time.
        with anyio.move_on_after(timeout):
            return await call.future
        call.timed_out = True
        raise TimeoutError(f"the call did not finish within {timeout:g}s")
    finally:
        limiter.release_on_behalf_of(call)
