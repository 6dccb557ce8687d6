"""One Runtime under many runs: fair share, limits across runs, and what sharing costs per task.

Three measurements, each with its peers in the same process and the same run:

1. Fair share: a 3-task run started while a 10,000-task run holds every slot
   (a global limit of 8; tools sleep 5 ms). Its makespan against the same
   run alone on the runtime; beside it, the same two runs without a runtime,
   sharing the limit through one FIFO `anyio.CapacityLimiter` in the tool.
2. Limits across runs: 10 concurrent runs of 100 calls of a tool with
   `max_concurrency=2` (and a runtime limit of 4 over two tools): the most
   calls in flight that the tools saw, with and without a runtime.
3. Overhead: a 10,000-task fan-out of no-op tools, per task: plain
   `execute()`, a run on a runtime with nothing to share (the fast path),
   one with a global limit that never binds (every slot handed out by the
   runtime), and 10 concurrent runs of 1,000 on one runtime.

    PYTHONPATH=src .venv/bin/python bench/runtime.py              # writes docs/benchmarks.md
    PYTHONPATH=src .venv/bin/python bench/runtime.py --no-report  # prints only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import taskloom
from taskloom import Runtime, Task, tool

sys.path.insert(0, str(Path(__file__).parent))

from report import write_section  # noqa: E402

SLOTS = 8
CALL_S = 0.005
BIG = 10_000
SMALL = 3
FAN_OUT = 10_000


def tasks(tool_name: str, count: int, tag: str = "") -> list[Task]:
    return [Task(id=str(i), tool=tool_name, args=(tag,)) for i in range(1, count + 1)]


# -- 1. fair share ---------------------------------------------------------------


@tool
async def sleepy(tag: str) -> str:
    """A call that takes CALL_S."""
    await anyio.sleep(CALL_S)
    return tag


async def small_behind_big(
    run: Callable[[list[Task]], Awaitable[Any]], repeats: int, *, big: bool
) -> list[float]:
    """Makespans of the small run, each started while the big one holds every slot (if `big`)."""
    took: list[float] = []
    async with anyio.create_task_group() as tg:
        if big:
            tg.start_soon(run, tasks("sleepy", BIG, "big"))
            await anyio.sleep(0.1)  # every slot is held, thousands of tasks queued
        for _ in range(repeats):
            began = time.perf_counter()
            await run(tasks("sleepy", SMALL, "small"))
            took.append(time.perf_counter() - began)
        tg.cancel_scope.cancel()
    return took


async def fair_share(repeats: int) -> list[list[str]]:
    runtime = Runtime(tools=[sleepy], max_concurrency=SLOTS)
    alone = statistics.median(await small_behind_big(runtime.execute, repeats, big=False))
    shared = statistics.median(await small_behind_big(runtime.execute, repeats, big=True))

    limiter = anyio.CapacityLimiter(SLOTS)

    @tool(name="sleepy")
    async def limited(tag: str) -> str:
        """The same call, behind one FIFO limiter that runs without a runtime share."""
        async with limiter:
            await anyio.sleep(CALL_S)
        return tag

    async def plain(plan: list[Task]) -> Any:
        return await taskloom.execute(plan, tools=[limited])

    fifo_alone = statistics.median(await small_behind_big(plain, repeats, big=False))
    fifo = statistics.median(await small_behind_big(plain, 1, big=True))
    return [
        [
            "one Runtime (max_concurrency=8)",
            f"{alone * 1e3:.1f}",
            f"{shared * 1e3:.1f}",
            f"{shared / alone:.2f}x",
        ],
        [
            "no runtime, one FIFO limiter of 8",
            f"{fifo_alone * 1e3:.1f}",
            f"{fifo * 1e3:.1f}",
            f"{fifo / fifo_alone:.0f}x",
        ],
    ]


# -- 2. limits across runs ----------------------------------------------------------


async def limits() -> list[list[str]]:
    seen = {"now": 0, "peak": 0}

    async def call(tag: str) -> str:
        seen["now"] += 1
        seen["peak"] = max(seen["peak"], seen["now"])
        await anyio.sleep(0.0005)
        seen["now"] -= 1
        return tag

    @tool(max_concurrency=2)
    async def api(tag: str) -> str:
        """A limited API."""
        return await call(tag)

    @tool
    async def other(tag: str) -> str:
        """Another tool."""
        return await call(tag)

    async def ten(run: Callable[[list[Task]], Awaitable[Any]], plan: list[Task]) -> int:
        seen["peak"] = 0
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(run, plan)
        return seen["peak"]

    mixed = tasks("api", 50) + [Task(id=str(i), tool="other", args=("",)) for i in range(51, 101)]
    rows = []
    runtime = Runtime(tools=[api])
    shared = await ten(runtime.execute, tasks("api", 100))
    alone = await ten(lambda p: taskloom.execute(p, tools=[api]), tasks("api", 100))
    rows.append(["10 runs × 100 calls, tool max_concurrency=2", "2", str(shared), str(alone)])
    runtime = Runtime(tools=[api, other], max_concurrency=4)
    shared = await ten(runtime.execute, mixed)
    alone = await ten(lambda p: taskloom.execute(p, tools=[api, other], max_concurrency=4), mixed)
    name = "10 runs × 100 calls of two tools, Runtime max_concurrency=4"
    rows.append([name, "4", str(shared), str(alone)])
    return rows


# -- 3. overhead ----------------------------------------------------------------------


@tool
async def noop(tag: str) -> None:
    """Do nothing."""


async def per_task(go: Callable[[], Awaitable[None]], count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        await go()
        best = min(best, time.perf_counter() - began)
    return best / count * 1e6


async def overhead(repeats: int) -> list[tuple[str, float]]:
    plan = tasks("noop", FAN_OUT)
    tenth = tasks("noop", FAN_OUT // 10)
    free = Runtime(tools=[noop])
    bounded = Runtime(tools=[noop], max_concurrency=FAN_OUT)

    async def plain() -> None:
        await taskloom.execute(plan, tools=[noop])

    async def nothing_shared() -> None:
        await free.execute(plan)

    async def handed_out() -> None:
        await bounded.execute(plan)

    async def ten_plain() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(lambda: taskloom.execute(tenth, tools=[noop]))

    async def ten_shared() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(bounded.execute, tenth)

    async def plain_limited() -> None:
        await taskloom.execute(plan, tools=[noop], max_concurrency=FAN_OUT)

    cases = [
        ("plain execute()", plain),
        ("plain execute() with a limit that never binds", plain_limited),
        ("Runtime, nothing to share (fast path)", nothing_shared),
        ("Runtime with a global limit (slots handed out)", handed_out),
        ("10 plain runs of 1,000 at once", ten_plain),
        ("10 runs of 1,000 on one Runtime with a global limit", ten_shared),
    ]
    return [(name, await per_task(go, FAN_OUT, repeats)) for name, go in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-report", action="store_true", help="leave docs/benchmarks.md alone")
    args = parser.parse_args()
    rows: list[list[str]] = []
    for loop, options in (("asyncio", {}), ("uvloop", {"use_uvloop": True})):
        fair = anyio.run(fair_share, args.repeat, backend_options=options)
        for name, alone, shared, ratio in fair:
            rows.append([loop, "fair share", name, f"{alone} ms alone", f"{shared} ms", ratio])
            print(" | ".join(rows[-1]), flush=True)
        for name, limit, shared, alone in anyio.run(limits, backend_options=options):
            rows.append(
                [loop, "limit", name, f"limit {limit}", f"{shared} in flight", f"alone: {alone}"]
            )
            print(" | ".join(rows[-1]), flush=True)
        costs = anyio.run(overhead, args.repeat, backend_options=options)
        base = costs[0][1]
        for name, us in costs:
            rows.append([loop, "overhead", name, "", f"{us:.1f} µs / task", f"{us / base:.2f}x"])
            print(" | ".join(rows[-1]), flush=True)
    if args.no_report:
        return
    write_section(
        "runtime",
        title="One Runtime for many runs: fair share, shared limits, overhead",
        command="PYTHONPATH=src .venv/bin/python bench/runtime.py",
        header=["loop", "what", "case", "baseline", "measured", "ratio"],
        rows=rows,
        notes=[
            f"Fair share: a {SMALL}-task run started while a {BIG:,}-task run holds every "
            f"slot (limit {SLOTS}, tools sleep {CALL_S * 1e3:.0f} ms); its makespan (median "
            f"of {args.repeat}) against the same run alone. Target: at most 2x. Without a "
            "runtime, a FIFO limiter makes it wait behind much of the big run's queue.",
            "Limits: the most calls in flight measured inside the tools, 10 concurrent "
            "runs; 'alone' is the same runs without a runtime (each with the whole limit).",
            f"Overhead: a 10,000-task fan-out of no-op tools, best of {args.repeat}, per task; the "
            "ratio is against plain execute() on the same loop. A runtime with nothing to "
            "share keeps execute()'s fast path; with a limit to share, every slot is "
            "handed out by the runtime. On a machine shared with other jobs, wall-clock "
            "rows differ by up to ±50% between runs: compare rows of one run.",
        ],
    )


if __name__ == "__main__":
    main()
