"""Run store overhead per task: the 10,000-task fan-out with and without a SQLite store.

Three modes run side by side in one process, their repetitions interleaved
(the order rotates every repetition), each on a fresh store file:

- no store: `execute()` alone, the baseline;
- store, idempotent: a journal records the run, no task waits for the disk;
- store, non-idempotent: every task waits until its start is committed
  before its tool is called (a commit barrier per task).

Stored runs are timed from `Store.journal()` to `execute()` returning and to
`Store.close()` returning (everything committed, writer thread stopped);
opening the file is a fixed cost, reported apart. After every stored run the
file is read back with sqlite3: every task must be there with status done.

    .venv/bin/python bench/store.py                # 10,000 tasks, writes docs/benchmarks.md
    .venv/bin/python bench/store.py --tasks 1000   # quick run, no file
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import taskloom
from taskloom import Plan, Ref, Task, TaskId, Tool

sys.path.insert(0, str(Path(__file__).parent))

from report import write_section  # noqa: E402
from shapes import fan_out  # noqa: E402

TARGET_US = 100.0
"""Store overhead allowed per task, in microseconds, all writes committed."""
DEFAULT_TASKS = 10_000
MODES = ("no store", "store, idempotent", "store, non-idempotent")


async def _noop(inputs: list[Any]) -> None:
    """Do nothing; the inputs only carry the dependencies."""


TOOLS = {
    "no store": Tool(_noop, name="noop"),
    "store, idempotent": taskloom.tool(name="noop", idempotent=True)(_noop),
    "store, non-idempotent": Tool(_noop, name="noop"),
}
"""The tool each mode runs: a `Tool` is not idempotent unless declared so."""


@dataclass(frozen=True, kw_only=True)
class Timing:
    """One repetition of one mode."""

    returned: float
    """Seconds until `execute()` returned."""
    committed: float
    """Seconds until everything was committed and the store closed."""
    opened: float = 0.0
    """Seconds `Store.open()` took (not included above)."""


def make_plan(width: int) -> Plan:
    """The fan-out/fan-in of `width` parallel tasks, as a plan of no-op calls.

    Args:
        width: tasks between the source and the sink.

    Returns:
        The plan (width + 2 tasks).

    """
    return Plan(
        [
            Task(id=TaskId(str(n)), tool="noop", args=([Ref(TaskId(str(d))) for d in deps],))
            for n, deps in fan_out(width)
        ]
    )


def run_bare(plan: Plan) -> Timing:
    """Run the plan without a store.

    Returns:
        The timing; both figures are the same.

    """

    async def main() -> float:
        began = time.perf_counter()
        result = await taskloom.execute(plan, tools=[TOOLS["no store"]])
        took = time.perf_counter() - began
        assert all(t.status == "done" for t in result.tasks.values())
        return took

    took = anyio.run(main)
    return Timing(returned=took, committed=took)


def run_stored(plan: Plan, mode: str, folder: Path, rep: int) -> Timing:
    """Run the plan into a fresh store in `folder`, then check what was written.

    Returns:
        The timing of the run.

    Raises:
        AssertionError: if the run or the store does not hold every task done.

    """
    tool = TOOLS[mode]
    assert tool.policy.idempotent == (mode == "store, idempotent")
    path = folder / f"{mode.replace(', ', '-')}-{rep}.sqlite3"

    async def main() -> tuple[Timing, str]:
        began = time.perf_counter()
        store = taskloom.Store.open(path)
        opened = time.perf_counter()
        journal = store.journal(request="bench/store.py", plan=plan)
        result = await taskloom.execute(plan, tools=[tool], journal=journal)
        returned = time.perf_counter()
        store.close()  # joins the writer thread; nothing else runs on this loop now
        committed = time.perf_counter()
        assert all(t.status == "done" for t in result.tasks.values())
        timing = Timing(
            returned=returned - opened, committed=committed - opened, opened=opened - began
        )
        return timing, journal.run_id

    timing, run_id = anyio.run(main)
    check_store(path, run_id, len(plan.in_dependency_order()))
    path.unlink()
    for wal in path.parent.glob(path.name + "-*"):
        wal.unlink()
    return timing


def check_store(path: Path, run_id: str, tasks: int) -> None:
    """Read the store back: the run completed and every task row is done.

    Raises:
        AssertionError: if anything is missing.

    """
    conn = sqlite3.connect(path)
    try:
        (status,) = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        rows = dict(
            conn.execute(
                "SELECT status, count(*) FROM tasks WHERE run_id = ? GROUP BY status", (run_id,)
            ).fetchall()
        )
    finally:
        conn.close()
    assert status == "completed", f"run {run_id} is {status!r}"
    assert rows == {"done": tasks}, f"expected {tasks} done task rows, found {rows}"


def run_mode(mode: str, plan: Plan, folder: Path, rep: int) -> Timing:
    """One repetition of `mode`, after a collection so no run pays for another's garbage.

    Returns:
        Its timing.

    """
    gc.collect()
    if mode == "no store":
        return run_bare(plan)
    return run_stored(plan, mode, folder, rep)


def measure(plan: Plan, repeat: int, warmup: int) -> dict[str, list[Timing]]:
    """Run every mode `warmup` times untimed, then `repeat` times interleaved.

    Returns:
        The timings of each mode, in order.

    """
    timings: dict[str, list[Timing]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-store-") as tmp:
        folder = Path(tmp)
        for rep in range(warmup):
            for mode in MODES:
                run_mode(mode, plan, folder, -1 - rep)
        for rep in range(repeat):
            shift = rep % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                timing = run_mode(mode, plan, folder, rep)
                timings[mode].append(timing)
                print(
                    f"rep {rep + 1}  {mode:<22} returned {timing.returned * 1e3:8.1f} ms"
                    f"  committed {timing.committed * 1e3:8.1f} ms",
                    flush=True,
                )
    return timings


def table(timings: dict[str, list[Timing]], tasks: int) -> tuple[list[list[str]], bool]:
    """Rows of the report, and whether every stored mode meets the target.

    Returns:
        (rows, met).

    """
    per_task = 1e6 / tasks
    base_returned = statistics.median(t.returned for t in timings["no store"]) * per_task
    base_committed = statistics.median(t.committed for t in timings["no store"]) * per_task
    rows, met = [], True
    for mode in MODES:
        runs = timings[mode]
        returned = statistics.median(t.returned for t in runs) * per_task
        committed = statistics.median(t.committed for t in runs) * per_task
        spread = f"{min(t.committed for t in runs) * per_task:.1f}-" + (
            f"{max(t.committed for t in runs) * per_task:.1f}"
        )
        if mode == "no store":
            over_returned = over_committed = verdict = opened = "-"
        else:
            extra = committed - base_committed
            ok = extra <= TARGET_US
            met = met and ok
            over_returned = f"{returned - base_returned:+.1f}"
            over_committed = f"{extra:+.1f}"
            verdict = "PASS" if ok else "FAIL"
            opened = f"{statistics.median(t.opened for t in runs) * 1e3:.1f}"
        rows.append(
            [
                mode,
                f"{returned:.1f}",
                f"{committed:.1f}",
                spread,
                over_returned,
                over_committed,
                verdict,
                f"{statistics.median(t.committed for t in runs) * 1e3:.1f}",
                opened,
            ]
        )
    return rows, met


HEADER = [
    "mode",
    "µs / task, execute() returned",
    "µs / task, all committed",
    "all committed, min-max",
    "overhead µs / task, returned",
    "overhead µs / task, committed",
    f"target ≤ {TARGET_US:.0f} µs",
    "run ms, all committed",
    "Store.open() ms",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="fan-out width")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions per mode")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per mode first")
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write docs/benchmarks.md (default: only at the default size)",
    )
    args = parser.parse_args()
    plan = make_plan(args.tasks)
    tasks = len(plan.in_dependency_order())
    timings = measure(plan, args.repeat, args.warmup)
    rows, met = table(timings, tasks)
    print(" | ".join(HEADER))
    for row in rows:
        print(" | ".join(row))
    print(f"target: store overhead ≤ {TARGET_US:.0f} µs / task — {'met' if met else 'NOT met'}")
    write = args.write if args.write is not None else args.tasks == DEFAULT_TASKS
    if not write:
        return
    command = "python bench/store.py" + "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("tasks", args.tasks, DEFAULT_TASKS),
            ("repeat", args.repeat, 5),
            ("warmup", args.warmup, 1),
        )
        if value != default
    )
    write_section(
        "store",
        title=f"Run store overhead (fan-out {args.tasks:,}, no-op tools)",
        command=command,
        header=HEADER,
        rows=rows,
        notes=[
            f"fan-out/fan-in of {args.tasks:,} no-op async tools ({tasks:,} tasks). Median "
            f"of {args.repeat} repetitions per mode, interleaved in one process (the order "
            f"rotates each repetition) after {args.warmup} untimed run(s) of each; min-max "
            "is the spread of the all-committed figure.",
            "Stored runs use a fresh store file in a temporary folder each time. They are "
            "timed from `Store.journal(plan=...)` (which encodes the plan) to `execute()` "
            "returning, and to `Store.close()` returning (writer thread stopped, file "
            "closed); `Store.open()` (creating the file and its tables) is a fixed cost "
            "shown apart. Overhead = stored mode − no store, per task.",
            "non-idempotent: every task's start is committed before its tool is called "
            "(the scheduler awaits a commit barrier). idempotent: no task waits for the "
            "disk. After each stored run the file is read back with sqlite3: the run is "
            f"completed and all {tasks:,} task rows are done.",
            "Where the overhead goes (measured at 10,000 tasks): the writer thread commits "
            "about 7 rows per task (the task's insert, start and finish, and 4 event rows), "
            "most of it in one or a few large batches once the loop has raced ahead; the "
            "journal's event handler runs on the loop. Both share the GIL with the loop, so "
            "their CPU time adds to the run almost in full even with 2 cores.",
            f"Target: store overhead ≤ {TARGET_US:.0f} µs per task, all committed — "
            + ("met." if met else "not met."),
        ],
    )


if __name__ == "__main__":
    main()
