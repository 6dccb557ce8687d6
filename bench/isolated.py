"""Isolated tools: per-call overhead on the warm pool, and a CPU-bound fan-out against threads.

Overhead: sequential `Tool.call`s of a no-op tool, inline (async), on a
worker thread (sync) and in a worker process of the warm pool (isolated);
the median of `--repeat` rounds. Fan-out: one plan of 8 independent
pure-Python tasks (a loop that holds the GIL), run with the tool on threads
and isolated; the pool is warmed first, so worker start-up is not counted.
Targets: isolated overhead <= 2 ms per call; fan-out >= 1.7x faster isolated
than on threads, on 2 cores. The fan-out needs both cores free: on a machine
that other work keeps busy, the speed-up shrinks towards 1x.

    .venv/bin/python bench/isolated.py            # writes docs/benchmarks.md
    .venv/bin/python bench/isolated.py --quick    # fewer calls, no file
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))

import isolated_tools as bench_tools  # noqa: E402
import taskloom  # noqa: E402
from report import write_section  # noqa: E402
from taskloom.tools.process import set_max_workers  # noqa: E402

FAN_OUT = 8
OVERHEAD_TARGET_MS = 2.0
SPEEDUP_TARGET = 1.7


async def per_call(tool: taskloom.Tool, calls: int) -> float:
    """Seconds per call of `tool`, over `calls` sequential calls."""
    began = time.perf_counter()
    for _ in range(calls):
        await tool.call({})
    return (time.perf_counter() - began) / calls


async def fan_out(tool: taskloom.Tool, n: int) -> float:
    """Seconds for a plan of FAN_OUT independent `count(n)` calls."""
    plan = taskloom.Plan.parse("".join(f"{i}. count({n})\n" for i in range(1, FAN_OUT + 1)))
    began = time.perf_counter()
    result = await taskloom.execute(plan, tools=[tool])
    took = time.perf_counter() - began
    assert all(t.status == "done" for t in result.tasks.values()), result.tasks
    return took


async def measure(calls: int, repeat: int, n: int, fan_rounds: int) -> dict[str, Any]:
    await per_call(bench_tools.isolated_noop, 20)  # start the workers and import the tools
    await fan_out(bench_tools.isolated_count, 1000)
    overhead = {
        name: statistics.median([await per_call(tool, calls) for _ in range(repeat)])
        for name, tool in (
            ("inline (async)", bench_tools.inline_noop),
            ("thread (sync)", bench_tools.thread_noop),
            ("isolated (warm pool)", bench_tools.isolated_noop),
        )
    }
    # Interleaved, best of each: the machine is shared, and its load comes and goes.
    serial, threads, isolated = [], [], []
    for _ in range(fan_rounds):
        began = time.perf_counter()
        for _ in range(FAN_OUT):
            bench_tools.count(n)
        serial.append(time.perf_counter() - began)
        threads.append(await fan_out(bench_tools.thread_count, n))
        isolated.append(await fan_out(bench_tools.isolated_count, n))
    return {
        "overhead": overhead,
        "serial": min(serial),
        "threads": min(threads),
        "isolated": min(isolated),
    }


def machine_scaling(n: int, rounds: int) -> float:
    """How much faster two CPUs do two loops than one does: the fan-out's ceiling here.

    Two bare interpreters run `count(n)`'s loop at once, against one running it
    alone (twice the work in the time of one would be 2x); best of `rounds`.
    """
    code = f"s = 0\nfor i in range({n}):\n    s += i * i\n"

    def wall(processes: int) -> float:
        began = time.perf_counter()
        running = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(processes)]
        for process in running:
            process.wait()
        return time.perf_counter() - began

    ratios = [2 * wall(1) / wall(2) for _ in range(rounds)]
    return max(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per overhead round")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=int, default=3_000_000, help="loop length of one task")
    parser.add_argument("--fan-rounds", type=int, default=5, help="fan-out plans of each kind")
    parser.add_argument("--workers", type=int, default=None, help="pool size (default: CPUs)")
    parser.add_argument("--quick", action="store_true", help="fewer calls, no report")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.repeat, args.work, args.fan_rounds = 300, 1, 1_000_000, 1
    if args.workers:
        set_max_workers(args.workers)
    load = os.getloadavg()[0]
    found = anyio.run(measure, args.calls, args.repeat, args.work, args.fan_rounds)
    ceiling = machine_scaling(args.work * FAN_OUT // 2, args.fan_rounds)
    rows = [[name, f"{s * 1e3:.3f} ms", ""] for name, s in found["overhead"].items()]
    isolated_ms = found["overhead"]["isolated (warm pool)"] * 1e3
    rows[-1][2] = "met" if isolated_ms <= OVERHEAD_TARGET_MS else "missed"
    speedup = found["threads"] / found["isolated"]
    rows += [
        [f"{FAN_OUT} CPU tasks one after another, no engine", f"{found['serial']:.3f} s", ""],
        [f"fan-out of {FAN_OUT} CPU tasks, threads", f"{found['threads']:.3f} s", ""],
        [
            f"fan-out of {FAN_OUT} CPU tasks, isolated",
            f"{found['isolated']:.3f} s ({speedup:.2f}x)",
            "met" if speedup >= SPEEDUP_TARGET else "missed",
        ],
        ["the machine: two loops on two CPUs against one", f"{ceiling:.2f}x", "(ceiling)"],
    ]
    header = ["measure", "result", "target"]
    width = max(len(r[0]) for r in rows)
    print(f"{header[0]:<{width}}  {header[1]:>22}  {header[2]}")
    for row in rows:
        print(f"{row[0]:<{width}}  {row[1]:>22}  {row[2]}")
    if args.quick:
        return
    write_section(
        "isolated",
        title="Isolated tools: per-call overhead and CPU-bound fan-out",
        command="python bench/isolated.py",
        header=header,
        rows=rows,
        notes=[
            f"Overhead: median of {args.repeat} rounds of {args.calls} sequential calls of a "
            f"no-op tool; target <= {OVERHEAD_TARGET_MS:g} ms per isolated call.",
            f"Fan-out: best of {args.fan_rounds} plans (threads and isolated in turn) of "
            f"{FAN_OUT} independent loops of "
            f"{args.work:,} steps (pure Python, holding the GIL), on the warm pool with one "
            f"worker per CPU; target >= {SPEEDUP_TARGET:g}x against threads.",
            "Threads do not beat one after another (the GIL), and pay for handing it "
            "between eight threads; the target compares the isolated plan with them.",
            f"The machine is shared: its load average was {load:.2f} when this run began "
            "(2 would mean both cores already busy); the fan-out's speed-up needs free cores.",
        ],
    )


if __name__ == "__main__":
    main()
