"""On random runs sharing one Runtime: limits always hold, and every run ends as it should.

Several random DAGs run at once on one runtime, with a random global limit,
a limited tool, random weights and own limits, and some runs cancelled by
their callers part way. Whatever the mix: no limit is ever exceeded (counted
inside the tools), every task of a run that was not cancelled runs exactly
once and after its inputs, and the runtime ends with no slot held and no
run waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskloom import Plan, Ref, Runtime, Task, TaskId, tool


@dataclass
class RunCase:
    tasks: list[Task]
    weight: float
    limit: int | None
    cancel_after: int | None
    """Cancel the run's caller once this many of its calls have started; None: never."""


@st.composite
def run_cases(draw: st.DrawFn, number: int) -> RunCase:
    size = draw(st.integers(min_value=1, max_value=25))
    tasks = []
    for i in range(1, size + 1):
        deps = sorted(draw(st.sets(st.integers(1, i - 1), max_size=3))) if i > 1 else []
        name = draw(st.sampled_from(["narrow", "wide"]))
        turns = draw(st.integers(min_value=0, max_value=3))
        refs = [Ref(TaskId(str(d))) for d in deps]
        tasks.append(Task(id=TaskId(str(i)), tool=name, args=(f"{number}:{i}", turns, refs)))
    return RunCase(
        tasks=tasks,
        weight=draw(st.sampled_from([0.5, 1.0, 1.0, 3.0])),
        limit=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=3))),
        cancel_after=draw(st.one_of(st.none(), st.none(), st.integers(0, 5))),
    )


@st.composite
def mixes(draw: st.DrawFn) -> tuple[list[RunCase], int | None, int]:
    count = draw(st.integers(min_value=1, max_value=5))
    runs = [draw(run_cases(n)) for n in range(count)]
    global_limit = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=4)))
    narrow_limit = draw(st.integers(min_value=1, max_value=2))
    return runs, global_limit, narrow_limit


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixes())
def test_limits_hold_and_runs_end_whatever_the_mix(
    mix: tuple[list[RunCase], int | None, int],
) -> None:
    cases, global_limit, narrow_limit = mix
    now = {"all": 0, "narrow": 0}
    peak = {"all": 0, "narrow": 0}
    per_run_now: dict[int, int] = {}
    per_run_peak: dict[int, int] = {}
    started: dict[int, list[str]] = {n: [] for n in range(len(cases))}
    finished: set[str] = set()
    scopes: list[anyio.CancelScope] = []  # made on the loop, in main()

    async def call(kind: str, key: str, turns: int, inputs: list[Any]) -> str:
        number, task = key.split(":")
        run = int(number)
        deps = next(t for t in cases[run].tasks if t.id == task).args[2]
        assert {f"{number}:{d.task}" for d in deps} <= finished, key
        assert inputs == [f"{number}:{d.task}" for d in deps]
        started[run].append(key)
        if cases[run].cancel_after is not None and len(started[run]) > cases[run].cancel_after:
            scopes[run].cancel()
        now["all"] += 1
        per_run_now[run] = per_run_now.get(run, 0) + 1
        now[kind] = now.get(kind, 0) + 1
        for name in ("all", kind):
            peak[name] = max(peak.get(name, 0), now[name])
        per_run_peak[run] = max(per_run_peak.get(run, 0), per_run_now[run])
        try:
            for _ in range(turns):
                await anyio.lowlevel.checkpoint()
        finally:
            now["all"] -= 1
            now[kind] -= 1
            per_run_now[run] -= 1
        finished.add(key)
        return key

    @tool(max_concurrency=narrow_limit)
    async def narrow(key: str, turns: int, inputs: list[Any]) -> str:
        """A limited tool."""
        return await call("narrow", key, turns, inputs)

    @tool
    async def wide(key: str, turns: int, inputs: list[Any]) -> str:
        """A tool without a limit of its own."""
        return await call("wide", key, turns, inputs)

    runtime = Runtime(tools=[narrow, wide], max_concurrency=global_limit)
    statuses: dict[int, str] = {}

    async def one(number: int) -> None:
        case = cases[number]
        with scopes[number]:
            result = await runtime.execute(
                Plan(case.tasks), weight=case.weight, max_concurrency=case.limit
            )
            statuses[number] = str(result.status)
            assert all(str(t.status) == "done" for t in result.tasks.values())

    async def main() -> None:
        scopes.extend(anyio.CancelScope() for _ in cases)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for number in range(len(cases)):
                    tg.start_soon(one, number)

    anyio.run(main)
    assert peak["narrow"] <= narrow_limit
    if global_limit is not None:
        assert peak["all"] <= global_limit
    for number, case in enumerate(cases):
        if case.limit is not None:
            assert per_run_peak.get(number, 0) <= case.limit
        if not scopes[number].cancel_called:
            assert statuses[number] == "completed"
            assert sorted(started[number]) == sorted(f"{number}:{t.id}" for t in case.tasks)
        assert len(started[number]) == len(set(started[number]))  # no task ran twice
    assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (0, 0, 0)
    assert runtime.in_flight_of("narrow") == runtime.in_flight_of("wide") == 0
