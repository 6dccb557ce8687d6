"""The tools bench/ray_exec.py runs: Ray workers import them from this module by name."""

from __future__ import annotations

import asyncio
from typing import Any

import taskloom


def nothing() -> None:
    """Do nothing: what is left of a call is its overhead."""


async def nothing_async() -> None:
    """Do nothing, awaited."""


def count(n: int) -> int:
    """Pure-Python CPU work: the sum of the first n squares, by a loop (it holds the GIL)."""
    total = 0
    for i in range(n):
        total += i * i
    return total


async def wait(ms: int, inputs: list[Any]) -> int:
    """Wait `ms` milliseconds (a remote call's latency), then pass the duration on."""
    await asyncio.sleep(ms / 1000)
    return ms


class Echo:
    """Ray's own async actor (bench/ray_exec.py makes it one), with a no-op async method."""

    async def noop(self) -> None:
        """Do nothing, awaited on the actor."""


noop = taskloom.tool(name="noop")(nothing)
noop_async = taskloom.tool(name="noop_async")(nothing_async)
count_tool = taskloom.tool(name="count")(count)
wait_tool = taskloom.tool(name="wait")(wait)


def big(megabytes: int) -> str:
    """A large output: a text of that many million characters."""
    return "x" * (megabytes * 1_000_000)


def size(data: str) -> int:
    """The length of a text (a dependent of a large output)."""
    return len(data)


big_tool = taskloom.tool(name="big")(big)
size_tool = taskloom.tool(name="size")(size)
