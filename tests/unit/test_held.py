"""Outputs an executor keeps elsewhere (`taskloom.Held`): passed on whole, recorded by size."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import pytest

import taskloom
from taskloom import Held, TaskId, TaskStatus
from taskloom.engine import events as ev
from taskloom.store import Store
from taskloom.testing import HoldingExecutor

pytestmark = pytest.mark.anyio


@taskloom.tool
def text(n: int) -> str:
    """A text of n characters."""
    return "x" * n


@taskloom.tool
async def size(data: str) -> int:
    """The length of a text."""
    return len(data)


@taskloom.tool
def items(values: list[int]) -> int:
    """How many values (a list: a text is the wrong type)."""
    return len(values)


@taskloom.tool
def first(record: dict[str, int], both: str) -> int:
    """Takes a record and a text."""
    return len(both)


TOOLS = [text, size, items, first]


async def test_a_held_output_reaches_its_dependent_whole_and_never_comes_back() -> None:
    executor = HoldingExecutor(hold_over=100)
    plan = taskloom.Plan.parse("1. text(1000)\n2. size($1)\n3. text(5)\n4. size($3)")
    result = await taskloom.execute(plan, tools=TOOLS, executor=executor)
    held = result.tasks[TaskId("1")].output
    assert isinstance(held, Held)
    assert str(held) == "<str of 1,000 bytes, held in a test's store>"
    assert result.tasks[TaskId("2")].output == 1000
    assert result.tasks[TaskId("3")].output == "xxxxx"  # small: itself
    assert result.tasks[TaskId("4")].output == 5
    given = [args["data"] for name, args in executor.calls if name == "size"]
    assert held in given  # the executor was given the Held as it made it
    assert executor.fetched == 0
    assert await held.fetch() == "x" * 1000


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("items($1)", "values is a str of 1,000 bytes, held in a test's store"),
        ("size($1.name)", "can take it whole ($1), not a part of it"),
        ('size("see $1")', "an output written into text is a <str of 1,000 bytes"),
        ("items([$1])", "an output <str of 1,000 bytes, held in a test's store> is inside"),
        ("first($1, 'a')", "record is a str of 1,000 bytes"),
    ],
)
async def test_a_held_output_used_as_it_cannot_be_is_a_clear_bad_argument(
    line: str, says: str
) -> None:
    executor = HoldingExecutor(hold_over=100)
    plan = taskloom.Plan.parse(f"1. text(1000)\n2. {line}")
    result = await taskloom.execute(plan, tools=TOOLS, executor=executor)
    task = result.tasks[TaskId("2")]
    assert task.status is TaskStatus.FAILED
    assert type(task.error).__name__ == "BadArguments"
    assert says in str(task.error)
    assert [name for name, _ in executor.calls] == ["text"]  # never called


async def test_a_plain_bad_argument_is_reported_as_before() -> None:
    executor = HoldingExecutor(hold_over=100)
    plan = taskloom.Plan.parse("1. text(5)\n2. items($1)")
    result = await taskloom.execute(plan, tools=TOOLS, executor=executor)
    error = str(result.tasks[TaskId("2")].error)
    assert "bad arguments for items" in error and "held" not in error


async def test_the_store_records_the_placeholder_not_the_value(tmp_path: Path) -> None:
    executor = HoldingExecutor(hold_over=100)
    plan = taskloom.Plan.parse("1. text(1000)\n2. size($1)")
    with Store.open(f"{tmp_path}/s.sqlite3") as store:
        journal = store.journal(request="held", config={}, plan=plan)
        await taskloom.execute(plan, tools=TOOLS, executor=executor, journal=journal)
        recorded = {str(t.id): t.output for t in store.load(journal.run_id).tasks}
    assert recorded == {"1": "<str of 1,000 bytes, held in a test's store>", "2": 1000}


def producers(calls: list[str], *, hang: bool) -> list[taskloom.Tool]:
    """`make` (idempotent) and `mint` (a side effect) give long texts; `use` takes one."""

    @taskloom.tool(idempotent=True, name="make")
    def make(n: int) -> str:
        """A long text, idempotent."""
        calls.append("make")
        return "m" * n

    @taskloom.tool(name="mint")
    def mint(n: int) -> str:
        """A long text, with a side effect."""
        calls.append("mint")
        return "n" * n

    @taskloom.tool(idempotent=True, name="gate")
    async def gate() -> int:
        """Never returns while `hang`."""
        calls.append("gate")
        if hang:
            await anyio.sleep_forever()
        return 0

    @taskloom.tool(name="use")
    def use(data: str, after: int) -> int:
        """The text's length."""
        calls.append("use")
        return len(data) + after

    return [make, mint, gate, use]


async def test_resume_makes_again_a_held_output_that_is_gone_or_fails_its_task(
    tmp_path: Path,
) -> None:
    plan = taskloom.Plan.parse(
        "1. make(500)\n2. mint(500)\n3. gate()\n4. use($1, $3)\n5. use($2, $3)"
    )
    path, crashed = tmp_path / "s.sqlite3", tmp_path / "crashed.sqlite3"
    calls: list[str] = []
    done: set[str] = set()
    ready = anyio.Event()  # both producers done, the gate called

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.TaskFinished):
            done.add(event.task_id)
        if done >= {"1", "2"} and "gate" in calls:
            ready.set()

    with Store.open(path) as store:
        journal = store.journal(request="held", plan=plan)
        with anyio.fail_after(10):
            async with taskloom.open_run(
                tools=producers(calls, hang=True),
                journal=journal,
                executor=HoldingExecutor(100),
                on_event=on_event,
            ) as run:
                await run.add_plan(plan)
                await ready.wait()
                await journal.flush()
                with (
                    closing(sqlite3.connect(path)) as source,
                    closing(sqlite3.connect(crashed)) as target,
                ):
                    source.backup(target)  # the file a crash now would leave
                run.cancel()

    calls.clear()
    with Store.open(crashed) as store:
        before = {t.id: (t.status, t.output) for t in store.load(journal.run_id).tasks}
        assert before["1"] == ("done", "<str of 500 bytes, held in a test's store>")
        result = await taskloom.resume(
            journal.run_id,
            store=store,
            tools=producers(calls, hang=False),
            executor=HoldingExecutor(100),
        )
    # The idempotent producer ran again, its dependent got the value; the other did not.
    assert sorted(calls) == ["gate", "make", "use"]
    assert result.tasks[TaskId("4")].output == 500
    lost = result.tasks[TaskId("2")]
    assert lost.status is TaskStatus.FAILED
    assert "was kept by the process that ran it, which has ended" in str(lost.error)
    assert result.tasks[TaskId("5")].status is TaskStatus.SKIPPED


async def test_a_map_over_a_held_output_fails_saying_its_items_are_not_here() -> None:
    plan = taskloom.Plan.parse("1. text(1000)\n2. size($1[*])")
    result = await taskloom.execute(plan, tools=TOOLS, executor=HoldingExecutor(hold_over=100))
    task = result.tasks[TaskId("2")]
    assert task.status is TaskStatus.FAILED
    assert "<str of 1,000 bytes, held in a test's store> (a map needs its items here)" in str(
        task.error
    )


async def test_a_condition_on_a_held_output_fails_saying_its_value_is_not_here() -> None:
    plan = taskloom.Plan.parse('1. text(1000)\n2. size("a") if $1 != "x"')
    result = await taskloom.execute(plan, tools=TOOLS, executor=HoldingExecutor(hold_over=100))
    task = result.tasks[TaskId("2")]
    assert task.status is TaskStatus.FAILED
    assert "a condition needs the value here" in str(task.error)
