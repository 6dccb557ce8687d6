"""CPU time per task of the engine itself: a 10,000-task fan-out and a 10,000-item map.

Wall-clock figures on a shared, loaded machine vary by 1.5x from run to run;
the process's CPU time (`time.process_time()`) of the same run varies less.
This runs, in one process and on both event loops, the 10,000-task fan-out of
bench/overhead.py, the map of bench/map.py (no-op tools) and a bare
asyncio.gather of as many no-op coroutines (the floor), and prints the least
CPU µs per task of `--repeat` runs each. It writes no file: compare two trees
by running it with PYTHONPATH at each, alternately, several times.

    PYTHONPATH=src .venv/bin/python bench/cpu.py
    PYTHONPATH=src .venv/bin/python bench/cpu.py --repeat 5
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from shapes import fan_out  # noqa: E402

SIZE = 10_000


def measure(repeat: int) -> dict[str, dict[str, float]]:
    """The least CPU µs per task of `repeat` runs, per loop and workload."""
    import anyio
    import uvloop

    import taskloom
    from taskloom import Ref, Task, TaskId

    @taskloom.tool
    async def noop(inputs: list[Any]) -> None:
        """Do nothing."""

    @taskloom.tool
    async def source(n: int) -> list[int]:
        """The list to map over."""
        return list(range(n))

    @taskloom.tool
    async def work(item: int) -> int:
        """One element's call."""
        return item

    @taskloom.tool
    async def reduce(items: list[int]) -> int:
        """Gather every element's output."""
        return len(items)

    shape = fan_out(SIZE)
    fan = taskloom.Plan(
        [
            Task(id=TaskId(str(n)), tool="noop", args=([Ref(TaskId(str(d))) for d in deps],))
            for n, deps in shape
        ]
    )
    mapped = taskloom.Plan.parse(f"1. source({SIZE})\n2. work($1[*])\n3. reduce($2)\n")

    async def run_fan() -> float:
        began = time.process_time()
        await taskloom.execute(fan, tools=[noop])
        return (time.process_time() - began) / len(shape) * 1e6

    async def run_map() -> float:
        began = time.process_time()
        result = await taskloom.execute(mapped, tools=[source, work, reduce])
        took = time.process_time() - began
        assert result.tasks[TaskId("3")].output == SIZE
        return took / SIZE * 1e6

    async def gather() -> float:
        async def nothing(inputs: list[int]) -> None:
            return None

        began = time.process_time()
        await nothing([])
        await asyncio.gather(*(nothing([0]) for _ in range(SIZE)))
        await nothing(list(range(SIZE)))
        return (time.process_time() - began) / (SIZE + 2) * 1e6

    figures: dict[str, dict[str, float]] = {}
    for name, use_uvloop in (("asyncio", False), ("uvloop", True)):
        options = {"use_uvloop": use_uvloop}
        runs: dict[str, list[float]] = {"fan-out": [], "map": [], "gather floor": []}
        for _ in range(repeat):
            runs["fan-out"].append(anyio.run(run_fan, backend_options=options))
            runs["map"].append(anyio.run(run_map, backend_options=options))
            floor = uvloop.run(gather()) if use_uvloop else asyncio.run(gather())
            runs["gather floor"].append(floor)
        figures[name] = {k: round(min(v), 2) for k, v in runs.items()}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.repeat)))


if __name__ == "__main__":
    main()
