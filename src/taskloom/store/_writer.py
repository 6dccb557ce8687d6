"""One thread that owns the store's write connection and commits in batches.

The event loop never touches SQLite for writing: it puts operations on a
queue (a few hundred nanoseconds) and goes on. The writer takes everything
queued so far, applies it in one transaction and commits. Under load the
batches grow by themselves, which is what keeps the per-task cost low.

A *barrier* is a marker in the queue: it is released once everything queued
before it is committed. A task with side effects waits on one before its
tool is called, so its start is on disk first.

The thread never dies before it is told to stop. A write that fails, for
any reason (SQLite's errors, a value that cannot be encoded, a bug), becomes
the writer's `failure`, a StoreError: every barrier waiting then and later is
released with it, nothing more is written, and `sync()` raises it at once.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any

from taskloom._text import clip, escape_surrogates
from taskloom.errors import StoreError

__all__ = ["Json", "Writer", "explain"]


def explain(doing: str, exc: sqlite3.Error) -> str:
    """SQLite's error in words that say what went wrong and what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"cannot {doing}: the file is locked by another process ({text})"
    if "not a database" in text or "malformed" in text:
        return f"cannot {doing}: the file is corrupted or is not a taskloom store ({text})"
    if "full" in text or "disk I/O" in text:
        return f"cannot {doing}: the disk is full or the file cannot grow ({text})"
    return f"cannot {doing}: {text}"


class Json:
    """A parameter to be written as JSON; encoded on the writer thread, not the loop."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Barrier:
    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def release(self, failure: StoreError | None) -> None:
        try:
            self.loop.call_soon_threadsafe(_release, self.future, failure)
        except RuntimeError:  # its loop has closed: nobody is waiting any more
            pass


class _BlockingBarrier:
    """A barrier a thread waits on, outside any event loop."""

    __slots__ = ("event", "failure")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.failure: StoreError | None = None

    def release(self, failure: StoreError | None) -> None:
        self.failure = failure
        self.event.set()


_STOP = object()

Op = tuple[int, str, tuple[Any, ...]]
"""(rank, SQL, parameters). Within a batch statements run grouped by rank, lowest
first, each group in queue order: rank orders inserts before the updates of
the same rows, grouping lets one `executemany` cover many rows."""


_to_json = json.JSONEncoder(ensure_ascii=False, default=str).encode
"""One encoder for every row: `json.dumps` with options builds a new one per call."""


def _encode(params: tuple[Any, ...]) -> tuple[Any, ...]:
    if not any(type(p) is Json for p in params):
        return params
    return tuple(_to_json(p.value) if type(p) is Json else p for p in params)


def _encode_escaped(params: tuple[Any, ...]) -> tuple[Any, ...]:
    """`_encode`, with every lone surrogate (which UTF-8 cannot hold) written as its escape.

    In JSON text the escape is JSON's own, so the value reads back exactly.
    """
    return tuple(escape_surrogates(p) if type(p) is str else p for p in _encode(params))


class Writer:
    """Applies queued writes on its own thread, committing each batch at once."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: str,
    ) -> None:
        """Start the thread; it owns `conn` from now on."""
        self._conn = conn
        self._path = path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._on_failure: list[weakref.WeakMethod[Callable[[StoreError], None]]] = []
        self.failure: StoreError | None = None
        """The first write that failed; after it nothing more is written."""
        self._stopping = threading.Lock()  # no barrier may follow the stop marker
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="taskloom-store", daemon=True)
        self._thread.start()

    def on_failure(self, callback: Callable[[StoreError], None]) -> None:
        """Call the bound method `callback` (on the writer thread) when a write fails.

        Only a weak reference is kept: a journal that is done is not kept alive.
        """
        self._on_failure = [ref for ref in self._on_failure if ref() is not None]
        self._on_failure.append(weakref.WeakMethod(callback))

    def put(self, rank: int, sql: str, params: tuple[Any, ...]) -> None:
        """Queue one statement; it is committed with the next batch."""
        self._queue.put((rank, sql, params))

    async def sync(self) -> None:
        """Return once everything queued before this call is committed.

        Raises:
            StoreError: if a write failed (nothing after it was written), or
                the store was closed.

        """
        barrier = _Barrier(asyncio.get_running_loop())
        self._enqueue(barrier)
        await barrier.future

    def wait(self) -> None:
        """Block until everything queued before this call is committed (no event loop).

        Raises:
            StoreError: if a write failed, or the store was closed.

        """
        barrier = _BlockingBarrier()
        self._enqueue(barrier)
        barrier.event.wait()
        if barrier.failure is not None:
            raise barrier.failure

    def _enqueue(self, barrier: _Barrier | _BlockingBarrier) -> None:
        if self.failure is not None:
            raise self.failure
        with self._stopping:
            if self._stopped:
                raise StoreError(self._path, "the store is closed; nothing more can be written")
            self._queue.put(barrier)

    def close(self) -> None:
        """Commit what is queued, stop the thread and close the connection."""
        with self._stopping:
            if not self._stopped:
                self._stopped = True
                self._queue.put(_STOP)
        self._thread.join()

    # -- the writer thread ----------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                batch = [self._queue.get()]
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if self._apply(batch):
                    return
        finally:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass  # closing cannot lose committed data; there is nobody to tell

    def _apply(self, batch: list[Any]) -> bool:
        """Commit one batch, then release its barriers; True if told to stop."""
        barriers: list[_Barrier | _BlockingBarrier] = []
        rows: list[Op] = []
        stop = False
        for item in batch:
            if type(item) is tuple:
                rows.append(item)
            elif item is _STOP:
                stop = True
            else:
                barriers.append(item)
        if rows and self.failure is None:
            try:
                self._commit(_grouped(rows))
            except BaseException as exc:  # whatever it was, the thread goes on to release
                self._fail(exc)
        for barrier in barriers:
            barrier.release(self.failure)
        return stop

    def _commit(self, groups: dict[int, dict[str, list[tuple[Any, ...]]]]) -> None:
        try:
            self._write(groups, _encode)
        except UnicodeEncodeError:
            # A lone surrogate (a file name's undecodable byte, a \ud800 escape in a
            # plan) somewhere in the batch: rare, so only then is every text checked.
            self._write(groups, _encode_escaped)

    def _write(
        self,
        groups: dict[int, dict[str, list[tuple[Any, ...]]]],
        encode: Callable[[tuple[Any, ...]], tuple[Any, ...]],
    ) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for rank in sorted(groups):
                for sql, rows in groups[rank].items():
                    conn.executemany(sql, [encode(r) for r in rows])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolls back by itself when the connection closes
            raise

    def _fail(self, exc: BaseException) -> None:
        """Stop recording: keep the failure for every waiter, and tell the journals."""
        if isinstance(exc, sqlite3.Error):
            problem = explain("write", exc)
        else:  # a value that cannot be encoded or bound, or a bug of ours
            problem = f"cannot write: {type(exc).__name__}: {clip(str(exc), 200)}"
        self.failure = StoreError(self._path, problem + "; recording stopped")
        for ref in self._on_failure:
            callback = ref()
            if callback is not None:
                try:
                    callback(self.failure)
                except Exception:  # one journal's trouble must not keep the others running
                    pass


def _grouped(rows: list[Op]) -> dict[int, dict[str, list[tuple[Any, ...]]]]:
    """Statements by rank, then by SQL, each group in queue order."""
    groups: dict[int, dict[str, list[tuple[Any, ...]]]] = {}
    for rank, sql, params in rows:
        groups.setdefault(rank, {}).setdefault(sql, []).append(params)
    return groups


def _release(future: asyncio.Future[None], failure: StoreError | None) -> None:
    if future.done():
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(failure)
