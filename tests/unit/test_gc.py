import gc

import anyio
import pytest

from taskloom import Plan, Ref, Task, TaskId, execute, open_run, tool
from taskloom.engine import _gc

pytestmark = pytest.mark.anyio


@tool
async def echo(value: int = 0) -> int:
    """Return the value."""
    return value


async def test_collector_is_tuned_during_a_run_and_put_back_after() -> None:
    before_threshold, before_frozen = gc.get_threshold(), gc.get_freeze_count()
    seen: list[tuple[int, int]] = []

    @tool
    async def look() -> None:
        """Record the collector's state from inside a run."""
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))

    await execute(Plan.parse("1. look()\n"), tools=[look])
    assert seen[0][0] >= _gc._YOUNG and seen[0][1] > before_frozen
    assert gc.get_threshold() == before_threshold
    assert gc.get_freeze_count() == before_frozen


async def test_a_large_burst_of_starts_raises_the_young_threshold_for_the_run() -> None:
    size = _gc._BURST * 10
    opened = anyio.Event()

    @tool
    async def gate() -> int:
        """Wait until the whole plan is in."""
        await opened.wait()
        return 0

    plan = Plan(
        [Task(id=TaskId("0"), tool="gate")]
        # Every other task reads task 0, so all of them start in the turn it finishes.
        + [
            Task(id=TaskId(str(n)), tool="echo", kwargs={"value": Ref(TaskId("0"))})
            for n in range(1, size + 1)
        ]
    )
    seen: list[int] = []

    @tool
    async def look(after: int) -> None:
        """Record the young threshold once the burst has run."""
        seen.append(gc.get_threshold()[0])

    plan.add(Task(id=TaskId("last"), tool="look", args=(Ref(TaskId(str(size))),)))
    async with open_run(tools=[gate, echo, look]) as run:
        await run.add_plan(plan)
        assert gc.get_threshold()[0] < _gc._PER_TASK * size
        opened.set()
    assert seen[0] >= _gc._PER_TASK * size > _gc._YOUNG
    assert gc.get_threshold()[0] < _gc._YOUNG  # put back when the run ended


async def test_objects_the_process_froze_itself_are_left_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gc, "get_freeze_count", lambda: 5)
    unfrozen: list[bool] = []
    monkeypatch.setattr(gc, "unfreeze", lambda: unfrozen.append(True))
    monkeypatch.setattr(gc, "freeze", lambda: pytest.fail("froze over the process's own freeze"))
    await execute(Plan.parse("1. echo(1)\n"), tools=[echo])
    assert unfrozen == []


async def test_tuning_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_TUNE_GC", "0")
    before = gc.get_threshold()
    seen: list[int] = []

    @tool
    async def look() -> None:
        """Record the threshold from inside a run."""
        seen.append(gc.get_threshold()[0])

    await execute(Plan.parse("1. look()\n"), tools=[look])
    assert seen == [before[0]]
