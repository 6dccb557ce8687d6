"""The tools bench/isolated.py runs: worker processes import them from this module by name."""

from __future__ import annotations

import taskloom


def count(n: int) -> int:
    """Pure-Python CPU work: the sum of the first n squares, by a loop (it holds the GIL)."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def nothing() -> None:
    """Do nothing: what is left of a call is its overhead."""


async def nothing_async() -> None:
    """Do nothing, inline on the event loop."""


inline_noop = taskloom.tool(name="noop")(nothing_async)
thread_noop = taskloom.tool(name="noop")(nothing)
isolated_noop = taskloom.tool(name="noop", isolated=True)(nothing)
thread_count = taskloom.tool(name="count")(count)
isolated_count = taskloom.tool(name="count", isolated=True)(count)
