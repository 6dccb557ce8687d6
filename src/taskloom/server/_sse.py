"""A run's events as Server-Sent Events: the store's log first, then live, each once.

Gap-free and without repeats: the stream subscribes to the live run first,
waits until everything logged so far is committed, replays the log from the
store after the client's last sequence number, then sends the live records
it has not sent yet (by sequence number). A run that is not going on here is
the replay alone. The stream ends with an `end` event carrying the status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread

from taskloom._cli_io import json_text
from taskloom.server._runs import RunService
from taskloom.server._views import task_fields
from taskloom.store import EventRecord, RunRecord

__all__ = ["KEEP_ALIVE_S", "event_stream", "format_event"]

KEEP_ALIVE_S = 15.0
"""Seconds of silence after which a comment line keeps proxies from closing the stream."""


def format_event(record: EventRecord, started: float) -> str:
    """One SSE message: `id` the sequence number, `event` the kind, `data` the JSON.

    The JSON is the record as the store keeps it (`seq`, `kind`, `task_id`,
    `data`) with `at` in unix seconds, and the fields of `data` repeated at
    its top level.
    """
    data = record.data or {}
    body: dict[str, Any] = {
        **data,
        "seq": record.seq,
        "kind": record.kind,
        "at": started + record.at,
        "task_id": record.task_id,
        "data": record.data,
    }
    return f"id: {record.seq}\nevent: {record.kind}\ndata: {json_text(body, indent=None)}\n\n"


def _end(status: str) -> str:
    return f"event: end\ndata: {json_text({'status': status}, indent=None)}\n\n"


def _replayed(record: EventRecord, run: RunRecord) -> EventRecord:
    """A task_added record from the log, with the task's call beside it as sent live."""
    if record.kind != "task_added" or record.task_id not in run.task_index:
        return record
    fields = task_fields(run.task_index[record.task_id].task)
    return EventRecord(
        seq=record.seq, kind=record.kind, task_id=record.task_id, at=record.at, data=fields
    )


async def event_stream(service: RunService, run_id: str, after: int) -> AsyncIterator[str]:
    """The SSE text of run `run_id`'s events numbered after `after`, until the run is over.

    Yields:
        SSE messages, and comments while the run is quiet.

    """
    store = service.store
    sub, unsubscribe = service.subscribe(run_id)
    try:
        if sub is not None:
            await store.writer.sync()  # what was logged before subscribing is in the store
        run = await anyio.to_thread.run_sync(store.load, run_id)
        last = after
        logged = await anyio.to_thread.run_sync(lambda: store.events(run_id, after=after))
        if logged:
            yield "".join(format_event(_replayed(r, run), run.started) for r in logged)
            last = logged[-1].seq
        status = run.status
        if sub is not None:
            while True:
                batch: list[EventRecord] | None = None
                with anyio.move_on_after(KEEP_ALIVE_S):
                    batch = await sub.next()
                if batch is None:
                    yield ": keep-alive\n\n"
                    continue
                if not batch:
                    break
                fresh = [r for r in batch if r.seq > last]  # dropped: sent from the log already
                if fresh:
                    yield "".join(format_event(r, run.started) for r in fresh)
                    last = fresh[-1].seq
            status = sub.status
        yield _end(status)
    finally:
        unsubscribe()
