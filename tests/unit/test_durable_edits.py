"""Live edits are durable: a resumed run uses the plan as it was edited.

`Run.add`, `Run.rewrite` and `Run.cancel` are events (`task_added`,
`task_rewritten`, `task_cancelled`); the journal records them like any other,
and resuming rebuilds the edited plan from the store. A crash is simulated as
in test_store.py: the store file is copied as it is committed at that
instant, and the run is resumed from the copy.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

import taskloom
from taskloom import (
    Plan,
    RecordedFailure,
    Ref,
    Store,
    Task,
    TaskId,
    Tool,
    open_run,
    tool,
)
from taskloom._console import LiveProgress
from taskloom.agent import Agent
from taskloom.engine import events as ev
from taskloom.llm import GenerationOptions, Message
from taskloom.store import restore_tasks
from taskloom.testing import FunctionModel

pytestmark = pytest.mark.anyio


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the file through a connection of its own, as another process would."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql, params).fetchall()


def snapshot(path: Path, to: Path) -> None:
    """Copy what is committed in `path` right now: the file a crash at this instant leaves."""
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(to)) as target:
        source.backup(target)


def logged_seqs(path: Path, run_id: str) -> list[int]:
    rows = query(path, "SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
    return [seq for (seq,) in rows]


def edit_tools(
    calls: list[tuple[str, int]], *, hang: Callable[[], Any] | None = None
) -> list[Tool]:
    """hold (idempotent; with `hang`, it never returns), fetch (idempotent) and send
    (a side effect); each records its calls."""

    @tool(idempotent=True, name="hold")
    async def hold(x: int) -> int:
        """x * 10, once the test lets it."""
        calls.append(("hold", x))
        if hang is not None:
            hang()
            await anyio.sleep_forever()
        return x * 10

    @tool(idempotent=True, name="fetch")
    async def fetch(x: int) -> int:
        """x * 10."""
        calls.append(("fetch", x))
        return x * 10

    @tool(name="send")
    async def send(x: int) -> int:
        """x + 100, with a side effect."""
        calls.append(("send", x))
        return x + 100

    return [hold, fetch, send]


def task(task_id: str, tool_name: str, *args: Any) -> Task:
    return Task(id=TaskId(task_id), tool=tool_name, args=args)


def ref(task_id: str) -> Ref:
    return Ref(TaskId(task_id))


# -- the events ---------------------------------------------------------------


async def test_a_rewrite_is_an_event_numbered_with_the_others() -> None:
    seen: list[ev.Event] = []
    calls: list[tuple[str, int]] = []
    inside = anyio.Event()
    async with open_run(tools=edit_tools(calls, hang=inside.set), on_event=seen.append) as run:
        run.add_all(Plan.parse("1. hold(1)\n2. send($1)\n"))
        await inside.wait()
        new = run.rewrite("2", tool="fetch", args=(7,))
        run.cancel()
    (rewritten,) = [e for e in seen if isinstance(e, ev.TaskRewritten)]
    assert (rewritten.task_id, rewritten.tool, rewritten.task) == ("2", "fetch", new)
    assert rewritten.dependencies == ()
    after = [(e.kind, getattr(e, "task_id", None)) for e in seen[seen.index(rewritten) :]]
    # With no dependency left, the new version is ready at once.
    assert after[:2] == [("task_rewritten", "2"), ("task_ready", "2")]
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))


async def test_the_live_view_shows_a_rewritten_task_with_its_new_tool() -> None:
    view = Console(file=io.StringIO(), width=120)
    progress = LiveProgress(view)
    inside = anyio.Event()
    async with open_run(tools=edit_tools([], hang=inside.set), on_event=progress.on_event) as run:
        run.add_all(Plan.parse("1. hold(1)\n2. send($1)\n"))
        await inside.wait()
        run.rewrite("2", tool="fetch")
        view.print(progress._render())
        run.cancel()
    out = view.file
    assert isinstance(out, io.StringIO)
    (row,) = [line for line in out.getvalue().splitlines() if line.lstrip().startswith("2 ")]
    assert "fetch" in row and "send" not in row and "pending" in row


# -- recorded, then resumed -----------------------------------------------------


async def edit_then_crash(path: Path, crashed: Path) -> tuple[str, list[tuple[str, int]]]:
    """Run a plan, edit it live while task 1 hangs, and copy the store as a crash leaves it.

    The plan as begun:           the plan as edited:
      1. hold(1)                   1. hold(1)         running at the crash
      2. send($1)                  2. fetch($5)       rewritten twice, pending
      3. send($1)                  3. send($1)        cancelled before it started
      4. send($3)                  4. send($3)        cancelled with 3
                                   5. send($1)        added, pending
                                   6. send($3)        added after 3 was cancelled: skipped
                                   7. send(70)        added, done before the crash
    """
    calls: list[tuple[str, int]] = []
    inside, sent = anyio.Event(), anyio.Event()

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.TaskFinished) and event.task_id == "7":
            sent.set()

    plan = Plan.parse("1. hold(1)\n2. send($1)\n3. send($1)\n4. send($3)\n")
    tools = edit_tools(calls, hang=inside.set)
    with Store.open(path) as store:
        journal = store.journal(request="edited", plan=plan)
        with anyio.fail_after(10):
            async with open_run(tools=tools, journal=journal, on_event=on_event) as run:
                await run.add_plan(plan)
                await inside.wait()
                run.rewrite("2", tool="fetch", args=(ref("1"),))
                run.add(task("5", "send", ref("1")))
                run.rewrite("2", args=(ref("5"),))  # now uses a task added after it
                run.cancel("3")
                run.add(task("6", "send", ref("3")))
                run.add(task("7", "send", 70))
                await sent.wait()
                await journal.flush()
                snapshot(path, crashed)
                run.cancel()
    return journal.run_id, calls


async def test_a_resumed_run_uses_the_plan_as_it_was_edited(tmp_path: Path) -> None:
    crashed = tmp_path / "crashed.sqlite3"
    run_id, first = await edit_then_crash(tmp_path / "s.sqlite3", crashed)
    assert first == [("hold", 1), ("send", 70)]

    with Store.open(crashed) as store:
        before = store.load(run_id)
        assert {t.id: t.status for t in before.tasks} == {
            "1": "running",
            "2": "pending",
            "3": "cancelled",
            "4": "cancelled",
            "5": "pending",
            "6": "skipped",
            "7": "done",
        }
        assert str(before.task_index[TaskId("2")].task) == "2. fetch($5)"
        calls: list[tuple[str, int]] = []
        result = await taskloom.resume(run_id, store=store, tools=edit_tools(calls))
        after = store.load(run_id)

    # The added task runs, the rewritten one runs as rewritten, the cancelled
    # ones are not called, and the side effect done before the crash is not repeated.
    assert calls == [("hold", 1), ("send", 10), ("fetch", 110)]
    assert result.status == "completed"
    assert {i: str(t.status) for i, t in result.tasks.items()} == {
        "1": "done",
        "2": "done",
        "3": "cancelled",
        "4": "cancelled",
        "5": "done",
        "6": "skipped",
        "7": "done",
    }
    assert result.outputs == {"1": 10, "2": 1100, "5": 110, "7": 170}
    cancelled = result.tasks[TaskId("3")].error
    assert isinstance(cancelled, RecordedFailure) and cancelled.kind == "TaskCancelled"
    assert result.tasks[TaskId("2")].tool == "fetch"
    assert not any(isinstance(e, ev.TaskStarted) and e.task_id in "3467" for e in result.events)

    # One gapless sequence across both processes, the edits in it.
    assert [e.seq for e in result.events] == list(
        range(before.last_seq + 1, before.last_seq + 1 + len(result.events))
    )
    assert logged_seqs(crashed, run_id) == list(range(1, after.last_seq + 1))
    assert after.last_seq == result.events[-1].seq
    edits = query(
        crashed,
        "SELECT kind, task_id, data FROM events WHERE run_id = ?"
        " AND kind IN ('task_rewritten', 'task_cancelled') AND seq <= ? ORDER BY seq",
        (run_id, before.last_seq),
    )
    assert [(kind, task_id) for kind, task_id, _ in edits[:4]] == [
        ("task_rewritten", "2"),
        ("task_rewritten", "2"),
        ("task_cancelled", "3"),
        ("task_cancelled", "4"),
    ]
    assert json.loads(edits[1][2])["tool"] == "fetch"
    assert after.status == "completed"
    assert {t.id: t.status for t in after.tasks}["2"] == "done"
    assert after.task_index[TaskId("2")].task.tool == "fetch"


async def test_an_edit_and_the_add_it_edits_in_one_batch_keep_their_order(
    tmp_path: Path,
) -> None:
    """Rows are written by rank (inserts, then rewrites): whatever the batches, the
    row of a task added and rewritten at once holds its last version."""
    path = tmp_path / "s.sqlite3"
    inside = anyio.Event()
    with Store.open(path) as store:
        journal = store.journal(request="batch")
        async with open_run(tools=edit_tools([], hang=inside.set), journal=journal) as run:
            run.add(task("1", "hold", 1))
            run.add(task("2", "send", ref("1")))
            await inside.wait()
            await journal.flush()
            # No await between these: they are queued together.
            run.rewrite("2", args=(ref("1"),), tool="fetch")
            run.add(task("3", "send", ref("1")))
            run.rewrite("3", tool="fetch")
            run.rewrite("3", args=(ref("2"),))
            await journal.flush()
            record = store.load(journal.run_id)
            run.cancel()
    assert [str(t.task) for t in record.tasks] == ["1. hold(1)", "2. fetch($1)", "3. fetch($2)"]
    rows = query(path, "SELECT task_id, tool FROM tasks ORDER BY position")
    assert rows == [("1", "hold"), ("2", "fetch"), ("3", "fetch")]


async def test_a_task_added_after_an_earlier_resume_survives_the_next(tmp_path: Path) -> None:
    """A run resumed, edited and crashed again resumes as edited the second time too."""
    crashed, again = tmp_path / "crashed.sqlite3", tmp_path / "again.sqlite3"
    run_id, _ = await edit_then_crash(tmp_path / "s.sqlite3", crashed)
    inside = anyio.Event()
    calls: list[tuple[str, int]] = []
    tools = edit_tools(calls, hang=inside.set)
    with Store.open(crashed) as store:
        record = store.load(run_id)
        journal = store.resume_journal(record)
        with anyio.fail_after(10):
            async with open_run(
                tools=tools, run_id=run_id, journal=journal, first_seq=record.last_seq
            ) as run:
                restore_tasks(run, record.tasks, {t.name: t for t in tools})
                await inside.wait()
                run.add(task("8", "send", ref("2")))
                run.rewrite("5", tool="fetch")
                await journal.flush()
                snapshot(crashed, again)
                run.cancel()
    assert calls == [("hold", 1)]

    calls.clear()
    with Store.open(again) as store:
        result = await taskloom.resume(run_id, store=store, tools=edit_tools(calls))
        seqs = logged_seqs(again, run_id)
    assert calls == [("hold", 1), ("fetch", 10), ("fetch", 100), ("send", 1000)]
    assert result.outputs == {"1": 10, "2": 1000, "5": 100, "7": 170, "8": 1100}
    assert seqs == list(range(1, result.events[-1].seq + 1))


async def test_an_agent_resumes_a_repaired_plan_as_repaired(tmp_path: Path) -> None:
    """A repair that changes a call not yet started rewrites its task; after a crash the
    resumed request calls the repaired version, not the one first written."""
    path, crashed = tmp_path / "s.sqlite3", tmp_path / "crashed.sqlite3"
    inside = anyio.Event()
    calls: list[str] = []

    def tools(*, hang: bool) -> list[Tool]:
        @tool(name="gate", idempotent=True)
        async def gate() -> str:
            """Open; in the process that crashes, it never returns."""
            if hang:
                inside.set()
                await anyio.sleep_forever()
            return "open"

        @tool(name="echo")
        async def echo(text: str, after: str = "") -> str:
            """Says its text (a side effect: it counts its calls)."""
            calls.append(text)
            return text

        return [gate, echo]

    attempts = 0

    async def planner(
        messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            yield '1. gate()\n2. echo("old", $1)\n3. ech("x")\n4. join()'
        else:
            yield '1. gate()\n2. echo("new", $1)\n3. join()'

    repaired = anyio.Event()

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.PlanAttempted) and event.valid:
            repaired.set()

    with Store.open(path) as store:
        agent = Agent(
            tools=tools(hang=True),
            model=FunctionModel(planner),
            grammar=False,
            store=store,
            on_event=on_event,
        )
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(agent.run, "?")
                await inside.wait()
                await repaired.wait()
                await anyio.to_thread.run_sync(store.flush)
                snapshot(path, crashed)
                tg.cancel_scope.cancel()

    def joiner(messages: tuple[Message, ...], options: GenerationOptions) -> str:
        return "Thought: done.\nAction: Finish($2)"

    with Store.open(crashed) as store:
        (summary,) = store.runs()
        stopped = store.load(summary.id)
        assert str(stopped.task_index[TaskId("2")].task) == '2. echo("new", $1)'
        resumer = Agent(
            tools=tools(hang=False), model=FunctionModel(joiner), grammar=False, store=store
        )
        with anyio.fail_after(10):
            result = await resumer.resume(summary.id)
        record = store.load(summary.id)
    assert calls == ["new"]
    assert result.answer == "new"
    assert logged_seqs(crashed, summary.id) == list(range(1, record.last_seq + 1))
