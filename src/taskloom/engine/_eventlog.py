"""A run's events, each built as an object only when somebody reads it.

A 10,000-task run has 40,000 events. When no listener takes them as they
happen (no store, no telemetry, no `on_event`), most are never read: the log
keeps each as its kind, number, time and fields, and builds the event the
first time it is read (then keeps that). An event that a listener received is
kept as the object it received. Either way every event has its number and
time from the moment it happened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from taskloom._ids import RunId
from taskloom.engine.events import Event

__all__ = ["EventLog", "build"]

Record = tuple[type[Event], int, float, dict[str, Any]]
"""An event not built yet: its kind, sequence number, time and other fields."""


_new = object.__new__
_FIELDS: dict[type[Event], int] = {}
"""How many fields each kind of event has, counted when it is first built."""


def build(kind: type[Event], seq: int, at: float, run_id: RunId, fields: dict[str, Any]) -> Event:
    """The event `kind(seq=seq, at=at, run_id=run_id, **fields)`, built in half the time.

    Its fields are set one by one (events are slotted: a name that is not a
    field raises AttributeError), and a missing one raises TypeError, as the
    dataclass's own `__init__` would.

    Raises:
        TypeError: if `fields` lacks one of the kind's fields.
        AttributeError: if `fields` names one it does not have.

    """
    count = _FIELDS.get(kind)
    if count is None:
        count = _FIELDS[kind] = len(dataclasses.fields(kind))
    if len(fields) + 3 != count:
        return kind(seq=seq, at=at, run_id=run_id, **fields)  # raises the dataclass's TypeError
    event = _new(kind)
    event.seq, event.at, event.run_id = seq, at, run_id
    for name, value in fields.items():
        setattr(event, name, value)
    return event


class EventLog(Sequence[Event]):
    """The events of one run, in sequence order (a read-only sequence)."""

    __slots__ = ("_items", "_run_id", "put")

    def __init__(self, run_id: RunId, items: list[Event | Record] | None = None) -> None:
        self._run_id = run_id
        self._items: list[Event | Record] = [] if items is None else items
        self.put: Callable[[Event | Record], None] = self._items.append
        """Keep an event: built already, or a `Record` (kind, seq, at, fields) built when read."""

    def snapshot(self) -> EventLog:
        """The events so far, in a log that later events do not join."""
        return EventLog(self._run_id, self._items[:])

    def _built(self, index: int) -> Event:
        item = self._items[index]
        if type(item) is tuple:
            kind, seq, at, fields = item
            item = self._items[index] = build(kind, seq, at, self._run_id, fields)
        return item  # type: ignore[return-value]

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Event, ...]: ...

    def __getitem__(self, index: int | slice) -> Event | tuple[Event, ...]:
        """The event at `index`, or a tuple of the events in a slice.

        Raises:
            IndexError: if there is no such event.

        """
        if isinstance(index, slice):
            return tuple(self._built(i) for i in range(*index.indices(len(self._items))))
        if index < 0:
            index += len(self._items)
        if not 0 <= index < len(self._items):
            raise IndexError("event index out of range")
        return self._built(index)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Event]:
        index = 0
        while index < len(self._items):  # like a list's: events added meanwhile come too
            yield self._built(index)
            index += 1

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventLog):
            return tuple(self) == tuple(other)
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(tuple(self))
