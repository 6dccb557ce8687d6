"""A roomier young generation for the cyclic garbage collector while runs are active.

A run keeps a record, events and a task per tool call alive until it ends, so
with CPython's default threshold (700 allocations) the collector walks the
same long-lived records again and again: on a 10,000-task fan-out that was a
third of the scheduler's time (see bench/overhead.py). While at least one run
is active, the young-generation threshold is raised to `_YOUNG`; when the last
run ends it is put back, unless someone else changed it in between. Cyclic
garbage is still collected, only in larger batches. Set `TASKLOOM_TUNE_GC=0`
to leave the collector alone.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["roomy_gc"]

_YOUNG = 50_000
_active = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def roomy_gc() -> Iterator[None]:
    """Raise the young-generation threshold for as long as any run is inside this block."""
    global _active, _saved
    if os.environ.get("TASKLOOM_TUNE_GC", "1") == "0":
        yield
        return
    if _active == 0:
        current = gc.get_threshold()
        if current[0] < _YOUNG:
            _saved = current
            gc.set_threshold(_YOUNG, current[1], current[2])
    _active += 1
    try:
        yield
    finally:
        _active -= 1
        if _active == 0 and _saved is not None:
            if gc.get_threshold()[0] == _YOUNG:
                gc.set_threshold(*_saved)
            _saved = None
