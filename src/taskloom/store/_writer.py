"""One thread that owns the store's write connection and commits in batches.

The event loop never touches SQLite for writing: it puts operations on a
queue (a few hundred nanoseconds) and goes on. The writer takes everything
queued so far, applies it in one transaction and commits. Under load the
batches grow by themselves, which is what keeps the per-task cost low.

A *barrier* is a marker in the queue: it is released once everything queued
before it is committed. A task with side effects waits on one before its
tool is called, so its start is on disk first.
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
            StoreError: if a write failed; nothing after it was written.

        """
        if self.failure is not None:
            raise self.failure
        barrier = _Barrier(asyncio.get_running_loop())
        self._queue.put(barrier)
        await barrier.future

    def close(self) -> None:
        """Commit what is queued, stop the thread and close the connection."""
        if self._thread.is_alive():
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
                stop = self._apply(batch)
                if stop:
                    return
        finally:
            self._conn.close()

    def _apply(self, batch: list[Any]) -> bool:
        groups: dict[int, dict[str, list[tuple[Any, ...]]]] = {}
        barriers: list[_Barrier] = []
        stop = False
        for item in batch:
            if type(item) is tuple:
                rank, sql, params = item
                groups.setdefault(rank, {}).setdefault(sql, []).append(params)
            elif item is _STOP:
                stop = True
            else:
                barriers.append(item)
        if groups and self.failure is None:
            self._commit(groups)
        for barrier in barriers:
            try:
                barrier.loop.call_soon_threadsafe(_release, barrier.future, self.failure)
            except RuntimeError:  # its loop has closed: nobody is waiting any more
                pass
        return stop

    def _commit(self, groups: dict[int, dict[str, list[tuple[Any, ...]]]]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for rank in sorted(groups):
                for sql, rows in groups[rank].items():
                    conn.executemany(sql, [_encode(r) for r in rows])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolls back by itself when the connection closes
            self.failure = StoreError(self._path, explain("write", exc) + "; recording stopped")
            for ref in self._on_failure:
                callback = ref()
                if callback is not None:
                    callback(self.failure)


def _release(future: asyncio.Future[None], failure: StoreError | None) -> None:
    if future.done():
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(failure)
