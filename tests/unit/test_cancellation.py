"""A caller's cancellation, arriving at every await of a run's life, stops the run.

Modelled on anyio's tests/test_taskgroups.py: each case cancels the caller's
scope at one precise await (before the first task, inside the block, in the
final wait, while the journal closes) and checks what anyio promises for its
own task groups: the cancellation reaches every running tool, each tool's own
cleanup has finished when the run returns, nothing is left running, and the
cancellation is seen by the caller's scope. On top of that, taskloom's own
promise: the tasks are settled `cancelled` and the run is recorded so.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import taskloom
import taskloom.agent
from taskloom import Plan, Task, TaskId, execute, open_run, tool
from taskloom.engine import events as ev
from taskloom.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio

CHAIN = '1. stubborn("a")\n2. stubborn($1)\n3. stubborn($2)\n'
"""A chain: only task 1 can be running when the caller is cancelled."""


class Tools:
    """Tools that report their start and finish their own cleanup before they stop."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.thread_started = threading.Event()
        self.release = threading.Event()
        self.cleaned: list[str] = []
        self.on_start: Callable[[], None] = lambda: None

        @tool
        async def stubborn(name: str) -> str:
            """Runs until cancelled, then takes a moment to clean up."""
            self.started.set()
            self.on_start()
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.01)  # its own cleanup time
                self.cleaned.append(name)
            return name

        @tool
        def blocking(name: str) -> str:
            """A sync tool that blocks its thread until the test ends."""
            self.thread_started.set()
            self.release.wait(30)
            return name

        @tool
        async def quick(name: str) -> str:
            """Returns at once."""
            return name

        self.all = [stubborn, blocking, quick]


@pytest.fixture
def tools() -> Iterator[Tools]:
    made = Tools()
    yield made
    made.release.set()  # let abandoned threads end


@pytest.fixture
def store(tmp_path: Path) -> Iterator[taskloom.Store]:
    with taskloom.Store.open(tmp_path / "runs.sqlite3") as opened:
        yield opened


@contextmanager
def nothing_left_running() -> Iterator[None]:
    """Every asyncio task started inside the block has ended when it exits."""
    before = asyncio.all_tasks()
    yield
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert not left, left


class Recorder:
    """Keeps the run's events (without a store, they say how it ended)."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)

    def statuses(self) -> dict[str, str]:
        settled = {}
        for event in self.events:
            if isinstance(event, ev.TaskFinished | ev.TaskFailed | ev.TaskCancelledEvent):
                settled[event.task_id] = event.kind.removeprefix("task_")
        return settled

    @property
    def run_status(self) -> str:
        (end,) = [e for e in self.events if isinstance(e, ev.RunFinished)]
        return end.status


def journal_for(store: taskloom.Store | None, plan: Plan | None = None) -> Any:
    return None if store is None else store.journal(request="test", plan=plan)


def assert_recorded_cancelled(store: taskloom.Store | None, journal: Any, tasks: int) -> None:
    if store is None:
        return
    record = store.load(journal.run_id)
    assert record.status == "cancelled"
    assert [t.status for t in record.tasks] == ["cancelled"] * tasks


# -- open_run ------------------------------------------------------------------


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
async def test_open_run_cancelled_before_its_first_task(
    tools: Tools, store: taskloom.Store, with_store: bool
) -> None:
    db = store if with_store else None
    journal, events = journal_for(db), Recorder()
    entered = False
    with nothing_left_running(), anyio.CancelScope() as caller:
        caller.cancel()
        async with open_run(tools=tools.all, journal=journal, on_event=events) as run:
            entered = True
            run.add_all(Plan.parse(CHAIN))
    assert caller.cancelled_caught
    assert not entered  # a cancelled caller's block does not run: no tool is called
    assert not tools.started.is_set()
    assert events.run_status == "cancelled"
    assert_recorded_cancelled(db, journal, 0)


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
async def test_open_run_cancelled_inside_its_block(
    tools: Tools, store: taskloom.Store, with_store: bool
) -> None:
    db = store if with_store else None
    journal = journal_for(db)
    with nothing_left_running(), anyio.CancelScope() as caller:
        async with open_run(tools=tools.all, journal=journal) as run:
            run.add_all(Plan.parse(CHAIN))
            await tools.started.wait()
            caller.cancel()
            await anyio.sleep_forever()
    assert caller.cancelled_caught
    assert tools.cleaned == ["a"]  # its cleanup finished before the run returned
    assert {t.status for t in run.result().tasks.values()} == {"cancelled"}
    assert run.result().status == "cancelled"
    assert_recorded_cancelled(db, journal, 3)


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
async def test_open_run_cancelled_in_its_final_wait(
    tools: Tools, store: taskloom.Store, with_store: bool
) -> None:
    db = store if with_store else None
    journal = journal_for(db)
    with nothing_left_running(), anyio.CancelScope() as caller:
        tools.on_start = caller.cancel  # arrives while open_run waits for the tasks
        async with open_run(tools=tools.all, journal=journal) as run:
            run.add_all(Plan.parse(CHAIN))
    assert caller.cancelled_caught
    assert tools.cleaned == ["a"]
    assert {t.status for t in run.result().tasks.values()} == {"cancelled"}
    assert run.result().status == "cancelled"
    assert_recorded_cancelled(db, journal, 3)


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
async def test_open_run_cancelled_while_a_sync_tool_runs(
    tools: Tools, store: taskloom.Store, with_store: bool
) -> None:
    db = store if with_store else None
    journal = journal_for(db)
    with nothing_left_running(), anyio.CancelScope() as caller:
        async with open_run(tools=tools.all, journal=journal) as run:
            run.add_all(Plan.parse('1. blocking("a")\n2. quick($1)\n'))
            await anyio.to_thread.run_sync(tools.thread_started.wait)
            caller.cancel()
    assert caller.cancelled_caught
    error = run.result().tasks["1"].error
    assert isinstance(error, taskloom.TaskCancelled) and error.thread_abandoned
    assert {t.status for t in run.result().tasks.values()} == {"cancelled"}
    assert_recorded_cancelled(db, journal, 2)


class SlowToClose:
    """A store journal whose close is where the caller's cancellation arrives."""

    def __init__(self, inner: Any, on_close: Callable[[], None]) -> None:
        self.inner = inner
        self.run_id = inner.run_id
        self.on_close = on_close
        self.closed = False

    def attach(self, run: taskloom.Run) -> None:
        self.inner.attach(run)

    async def before_call(self, task_id: TaskId) -> None:
        await self.inner.before_call(task_id)

    async def close(self, result: taskloom.RunResult) -> None:
        self.on_close()
        await anyio.lowlevel.checkpoint()  # the cancellation is pending here; the close is shielded
        await self.inner.close(result)
        self.closed = True


async def test_open_run_cancelled_while_its_journal_closes(
    tools: Tools, store: taskloom.Store
) -> None:
    with nothing_left_running(), anyio.CancelScope() as caller:
        journal = SlowToClose(store.journal(request="test"), caller.cancel)
        async with open_run(tools=tools.all, journal=journal) as run:
            run.add_all(Plan.parse('1. quick("a")\n2. quick($1)\n'))
    assert journal.closed  # the close ran to its end despite the cancellation
    assert caller.cancelled_caught  # and the caller still sees the cancellation
    assert run.result().status == "completed"  # it had ended before: recorded as it ended
    record = store.load(journal.run_id)
    assert record.status == "completed"
    assert [t.status for t in record.tasks] == ["done", "done"]


# -- execute -------------------------------------------------------------------


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
async def test_execute_cancelled_before_its_first_task(
    tools: Tools, store: taskloom.Store, with_store: bool
) -> None:
    db = store if with_store else None
    plan = Plan.parse(CHAIN)
    journal, events = journal_for(db, plan), Recorder()
    with nothing_left_running(), anyio.CancelScope() as caller:
        caller.cancel()
        await execute(plan, tools=tools.all, journal=journal, on_event=events)
    assert caller.cancelled_caught
    assert not tools.started.is_set()
    assert events.statuses() == {}  # nothing was added, nothing ran
    assert events.run_status == "cancelled"
    assert_recorded_cancelled(db, journal, 0)


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
async def test_execute_cancelled_while_its_plan_streams_in(
    tools: Tools, store: taskloom.Store, with_store: bool
) -> None:
    db = store if with_store else None
    journal, events = journal_for(db), Recorder()

    with nothing_left_running(), anyio.CancelScope() as caller:

        async def stream() -> AsyncIterator[Task]:
            for task in Plan.parse(CHAIN):
                yield task
            await tools.started.wait()
            caller.cancel()
            await anyio.sleep_forever()  # the plan is still being written

        await execute(stream(), tools=tools.all, journal=journal, on_event=events)
    assert caller.cancelled_caught
    assert tools.cleaned == ["a"]
    assert events.statuses() == dict.fromkeys("123", "cancelled")
    assert events.run_status == "cancelled"
    assert_recorded_cancelled(db, journal, 3)


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
@pytest.mark.parametrize("how", ["scope", "deadline"])
async def test_execute_cancelled_while_its_tools_run(
    tools: Tools, store: taskloom.Store, with_store: bool, how: str
) -> None:
    db = store if with_store else None
    plan = Plan.parse(CHAIN)
    journal, events = journal_for(db, plan), Recorder()
    with nothing_left_running():
        if how == "scope":
            with anyio.CancelScope() as caller:
                tools.on_start = caller.cancel
                await execute(plan, tools=tools.all, journal=journal, on_event=events)
        else:
            with anyio.move_on_after(0.2) as caller:  # the tool runs until cancelled
                await execute(plan, tools=tools.all, journal=journal, on_event=events)
    assert caller.cancelled_caught
    assert tools.cleaned == ["a"]
    assert events.statuses() == dict.fromkeys("123", "cancelled")
    assert events.run_status == "cancelled"
    assert_recorded_cancelled(db, journal, 3)


async def test_execute_cancelled_while_its_journal_closes(
    tools: Tools, store: taskloom.Store
) -> None:
    plan = Plan.parse('1. quick("a")\n2. quick($1)\n')
    with nothing_left_running(), anyio.CancelScope() as caller:
        journal = SlowToClose(store.journal(request="test", plan=plan), caller.cancel)
        await execute(plan, tools=tools.all, journal=journal)
    assert journal.closed and caller.cancelled_caught
    assert store.load(journal.run_id).status == "completed"


async def test_a_crashed_run_stops_its_other_tools_and_is_recorded_cancelled(
    tools: Tools, store: taskloom.Store
) -> None:
    def picky(event: ev.Event) -> None:
        if isinstance(event, ev.TaskFinished):
            raise LookupError("listener broke")

    plan = Plan.parse('1. stubborn("a")\n2. quick("b")\n')
    journal = store.journal(request="test", plan=plan)
    with nothing_left_running(), anyio.fail_after(10), pytest.raises(LookupError):
        await execute(plan, tools=tools.all, journal=journal, on_event=picky)
    assert tools.cleaned == ["a"]  # not left running until it ends on its own
    assert store.load(journal.run_id).status == "cancelled"


# -- the agent -----------------------------------------------------------------

PLAN = '1. stubborn("a")\n2. quick("b")\n3. join()<END_OF_PLAN>'


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
async def test_agent_cancelled_while_it_plans(
    tools: Tools, store: taskloom.Store, with_store: bool
) -> None:
    planning = anyio.Event()

    async def planner(messages: Any, options: Any) -> str:
        planning.set()
        await anyio.sleep_forever()
        return ""

    agent = taskloom.agent.Agent(
        tools=tools.all, model=FunctionModel(planner), store=store if with_store else None
    )
    with nothing_left_running(), anyio.CancelScope() as caller:
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.run, "question?")
            await planning.wait()
            caller.cancel()
    assert caller.cancelled_caught
    if with_store:
        (summary,) = store.runs(5)
        assert summary.status == "cancelled"


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
async def test_agent_cancelled_while_its_tools_run(
    tools: Tools, store: taskloom.Store, with_store: bool
) -> None:
    model = ScriptedModel([PLAN, "Action: Finish(b)"])
    agent = taskloom.agent.Agent(
        tools=tools.all, model=model, grammar=False, store=store if with_store else None
    )
    with nothing_left_running(), anyio.CancelScope() as caller:
        tools.on_start = caller.cancel
        await agent.run("question?")
    assert caller.cancelled_caught
    assert tools.cleaned == ["a"]
    if with_store:
        (summary,) = store.runs(5)
        assert summary.status == "cancelled"
        record = store.load(summary.id)
        assert {t.id: t.status for t in record.tasks}["1"] == "cancelled"


async def test_agent_cancelled_while_it_joins(tools: Tools, store: taskloom.Store) -> None:
    joining = anyio.Event()
    replies = iter([PLAN.replace("stubborn", "quick")])

    async def model(messages: Any, options: Any) -> str:
        reply = next(replies, None)
        if reply is not None:
            return reply
        joining.set()
        await anyio.sleep_forever()
        return ""

    agent = taskloom.agent.Agent(
        tools=tools.all, model=FunctionModel(model), grammar=False, store=store
    )
    with nothing_left_running(), anyio.CancelScope() as caller:
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.run, "question?")
            await joining.wait()
            caller.cancel()
    assert caller.cancelled_caught
    (summary,) = store.runs(5)
    assert summary.status == "cancelled"
    assert [t.status for t in store.load(summary.id).tasks] == ["done", "done"]
