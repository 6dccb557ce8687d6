"""The cyclic garbage collector, made to leave older objects alone while runs are active.

A run keeps a record, events and an asyncio task per tool call alive until
it ends, and starting many tasks at once (a 10,000-task fan-out) allocates
about 20 tracked objects per task in one burst. A collection in the middle of
that burst walks every one of them, alive: 25-60 ms in the middle of the
spawn, which delays the last dependents' start by as much. With CPython's
default threshold (700 allocations) the collector also walks the same
long-lived records again and again; that was a third of the scheduler's time
on a 10,000-task fan-out (see bench/overhead.py).

So while at least one run is active:

- the young-generation threshold is raised to `_YOUNG`, so collections come
  in larger batches, and before a burst of n starts to `_PER_TASK` × n if
  that is more, so the burst triggers none;
- what exists when a run begins, and again just before a burst of at least
  `_BURST` starts (`before_burst`), is frozen (`gc.freeze()`, which is O(1)
  and resets the young count): collections skip those objects.

When a run ends, the frozen objects are unfrozen (so garbage among them is
collected as before, only later; a process whose runs always overlap keeps
nothing frozen for longer than one run). The objects made since the last
freeze go to the oldest generation with them: most of them are the run's
records, alive until its result is dropped, and a young collection right
after the run (the threshold is back to 700) would walk every one of them,
about 10 ms for a 10,000-task run; a full collection finds any garbage
among them later. And when the last run ends the
threshold is put back unless someone else changed it. Nothing is frozen if
the process had frozen objects itself. Set `TASKLOOM_TUNE_GC=0` to leave the
collector alone.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["before_burst", "roomy_gc"]

_YOUNG = 200_000
"""The young threshold while runs are active; bursts raise it further (`before_burst`)."""

_PER_TASK = 30
"""Tracked objects a started task allocates, with room: a coroutine per frame, its
asyncio task, events, argument dicts, the timer of a sleep (about 21 measured)."""

_BURST = 1_000
"""Tasks started in one turn from which the objects already alive are frozen first."""

_active = 0
_saved: tuple[int, int, int] | None = None
"""The thresholds before the first run, to put back."""
_raised_to = 0
"""The young threshold we set, or 0."""
_froze = False


@contextmanager
def roomy_gc() -> Iterator[None]:
    """Tune the collector for as long as any run is inside this block."""
    global _active, _saved, _raised_to
    if os.environ.get("TASKLOOM_TUNE_GC", "1") == "0":
        yield
        return
    if _active == 0:
        _saved = gc.get_threshold()
        _raise_young(_YOUNG)
    _active += 1
    _freeze()
    try:
        yield
    finally:
        _active -= 1
        _unfreeze()
        if _active == 0:
            if _saved is not None and gc.get_threshold()[0] == _raised_to:
                gc.set_threshold(*_saved)
            _saved, _raised_to = None, 0


def before_burst(size: int) -> None:
    """Say that `size` tasks are about to start at once; large bursts get the collector ready."""
    if _active and size >= _BURST:
        _freeze()
        _raise_young(_PER_TASK * size)


def _raise_young(threshold: int) -> None:
    global _raised_to
    current = gc.get_threshold()
    if current[0] < threshold:
        gc.set_threshold(threshold, current[1], current[2])
        _raised_to = threshold


def _freeze() -> None:
    global _froze
    if _froze or gc.get_freeze_count() == 0:  # never touch what the process froze itself
        gc.freeze()
        _froze = True


def _unfreeze() -> None:
    global _froze
    if _froze:
        # Freezing first takes the young objects along (what the run made and
        # still holds, its result): all go to the oldest generation together,
        # so no young collection walks the whole run's records at once.
        gc.freeze()
        gc.unfreeze()
        _froze = False
