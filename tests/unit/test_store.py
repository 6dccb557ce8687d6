"""The run store: the task codec, the journal, reading runs back, resuming, errors."""

from __future__ import annotations

import gc
import hashlib
import json
import random
import sqlite3
import sys
import weakref
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import taskloom
from taskloom import (
    Budget,
    DependencyFailed,
    Plan,
    RecordedFailure,
    Ref,
    Store,
    StoreError,
    Task,
    TaskCancelled,
    TaskId,
    TaskInterrupted,
    TaskStatus,
    Template,
    Tool,
    UserError,
    execute,
    open_run,
    tool,
)
from taskloom.engine import events as ev
from taskloom.errors import Position
from taskloom.store._codec import task_from_json, task_to_json
from taskloom.store._schema import APPLICATION_ID, SCHEMA_VERSION

# -- helpers ------------------------------------------------------------------


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the file through a connection of its own, as another process would."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql, params).fetchall()


def dump(path: Path) -> list[str]:
    """Every row of every table, as SQL text."""
    with closing(sqlite3.connect(path)) as db:
        return list(db.iterdump())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(path: Path, to: Path) -> None:
    """Copy what is committed in `path` right now: the file a crash at this instant leaves."""
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(to)) as target:
        source.backup(target)


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


@tool(idempotent=True)
async def echo(value: Any = None) -> Any:
    """Return the value."""
    return value


@tool
async def boom(x: Any = None) -> None:
    """Always fails (and is not idempotent)."""
    raise ValueError(f"bad {x}")


# -- the codec ----------------------------------------------------------------


def shape(value: Any) -> Any:
    """The value with every type spelled out, so 1 != True and a tuple != a list."""
    if isinstance(value, Ref):
        return ("ref", value.task, tuple(shape(p) for p in value.path))
    if isinstance(value, Template):
        return ("template", tuple(shape(p) for p in value.parts))
    if isinstance(value, tuple):
        return ("tuple", tuple(shape(v) for v in value))
    if isinstance(value, list):
        return ("list", tuple(shape(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((shape(k), shape(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def through_json(task: Task) -> Task:
    """Encode, write as JSON text the way the store does, read back, decode."""
    text = json.dumps(task_to_json(task), ensure_ascii=False)
    return task_from_json(json.loads(text))


task_ids = st.text(alphabet="0123456789ab", min_size=1, max_size=3)
refs = st.builds(
    Ref,
    task_ids,
    st.lists(st.one_of(st.text(max_size=5), st.integers(0, 20)), max_size=3).map(tuple),
)
templates = st.builds(
    Template, st.lists(st.one_of(st.text(max_size=8), refs), max_size=4).map(tuple)
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)
values = st.recursive(
    st.one_of(scalars, refs, templates),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
    ),
    max_leaves=25,
)
tasks = st.builds(
    Task,
    id=task_ids.map(TaskId),
    tool=st.sampled_from(["echo", "city", "send"]),
    args=st.lists(values, max_size=3).map(tuple),
    kwargs=st.dictionaries(st.from_regex(r"[a-z_]{1,6}", fullmatch=True), values, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(tasks)
def test_codec_round_trips_any_task_through_json(task: Task) -> None:
    back = through_json(task)
    assert back == task
    assert back.id == task.id and back.tool == task.tool
    assert shape(back.args) == shape(task.args)
    assert shape(dict(back.kwargs)) == shape(dict(task.kwargs))
    assert back.dependencies == task.dependencies


def test_codec_keeps_refs_templates_and_container_types() -> None:
    task = Task(
        id=TaskId("7"),
        tool="send",
        args=(
            Ref(TaskId("1"), ("cities", 0, "name")),
            Template(("population of ", Ref(TaskId("2")), " and ", Ref(TaskId("3"), ("x",)))),
            [1, (2, 3), {"k": [Ref(TaskId("4"))]}],
        ),
        kwargs={"flag": True, "n": 1, "f": 1.5, "none": None, "t": (), "l": [], "d": {}},
    )
    back = through_json(task)
    assert shape(back.args) == shape(task.args)
    assert shape(dict(back.kwargs)) == shape(dict(task.kwargs))
    assert back.dependencies == {"1", "2", "3", "4"}
    assert str(back) == str(task)


def test_codec_does_not_mistake_a_plain_dict_for_a_marker() -> None:
    lookalike = {"$ref": ["1", []]}
    task = Task(id=TaskId("1"), tool="echo", args=(lookalike, {"$tuple": [1]}))
    back = through_json(task)
    assert back.args == (lookalike, {"$tuple": [1]})
    assert back.dependencies == frozenset()


def test_codec_keeps_non_string_dict_keys() -> None:
    task = Task(id=TaskId("1"), tool="echo", args=({1: "one", (2, "b"): "pair", None: 0},))
    back = through_json(task)
    assert shape(back.args) == shape(task.args)


def test_codec_drops_thought_and_position() -> None:
    task = Task(
        id=TaskId("1"), tool="echo", args=(1,), thought="why", position=Position(line=3, column=1)
    )
    back = through_json(task)
    assert back.thought is None and back.position is None
    assert back.call_text() == task.call_text()


# -- opening a store ----------------------------------------------------------


def test_a_new_store_is_marked_as_ours_and_at_the_newest_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "s.sqlite3"
    Store.open(path).close()
    assert query(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    with Store.open(path) as store:  # reopening migrates nothing and keeps it usable
        assert store.runs() == []
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    path.touch()
    with Store.open(path) as store:
        assert store.runs() == []
    assert query(path, "PRAGMA application_id") == [(APPLICATION_ID,)]


# -- recording and reading back -----------------------------------------------


@pytest.mark.anyio
async def test_journal_records_every_task_and_a_gapless_event_log(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    plan = Plan.parse('1. echo({"a": [1, 2]})\n2. boom($1.a[1])\n3. echo($2)\n4. echo("got $1")\n')
    with Store.open(path) as store:
        journal = store.journal(request="four.plan", config={"tools": None}, plan=plan)
        result = await execute(plan, tools=[echo, boom], journal=journal)
        record = store.load(journal.run_id)

    assert record.id == journal.run_id
    assert (record.kind, record.request, record.status) == ("exec", "four.plan", "completed")
    assert record.finished is not None and record.finished >= record.started
    assert record.exhausted is None and record.resumes == 0 and record.answer is None
    assert record.config["tools"] is None
    assert [t["id"] for t in record.config["plan"]] == ["1", "2", "3", "4"]

    by_id = record.task_index
    assert [t.id for t in record.tasks] == ["1", "2", "3", "4"]
    assert {t.id: t.status for t in record.tasks} == {
        "1": "done",
        "2": "failed",
        "3": "skipped",
        "4": "done",
    }
    assert [str(t.task) for t in record.tasks] == [str(t) for t in plan]
    assert by_id[TaskId("1")].arguments == {"value": {"a": [1, 2]}}
    assert by_id[TaskId("1")].output == {"a": [1, 2]}
    assert by_id[TaskId("2")].arguments == {"x": 2}
    assert by_id[TaskId("2")].output is None
    assert by_id[TaskId("2")].error_type == "ToolFailed"
    assert by_id[TaskId("2")].error == "boom raised ValueError: bad 2"
    assert by_id[TaskId("3")].error_type == "DependencyFailed"
    assert by_id[TaskId("3")].arguments is None and by_id[TaskId("3")].started is None
    assert by_id[TaskId("4")].output == 'got {"a": [1, 2]}'
    for task in (by_id[TaskId("1")], by_id[TaskId("2")], by_id[TaskId("4")]):
        assert task.started is not None and task.finished is not None
        assert 0 <= task.started <= task.finished

    logged = query(
        path,
        "SELECT seq, kind, task_id FROM events WHERE run_id = ? ORDER BY seq",
        (record.id,),
    )
    assert [row[0] for row in logged] == list(range(1, len(result.events) + 1))
    assert logged == [(e.seq, e.kind, getattr(e, "task_id", None)) for e in result.events]
    assert record.last_seq == len(result.events)
    failed = query(
        path, "SELECT data FROM events WHERE run_id = ? AND kind = 'task_failed'", (record.id,)
    )
    assert json.loads(failed[0][0]) == {"error": "boom raised ValueError: bad 2"}


@pytest.mark.anyio
async def test_runs_are_listed_newest_first_and_found_by_prefix(tmp_path: Path) -> None:
    plan = Plan.parse("1. echo(1)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        for run_id in ["abc111", "abc222", "xyz333", "q_r444"]:
            await execute(plan, tools=[echo], journal=store.journal(run_id=run_id))
        assert [r.id for r in store.runs()] == ["q_r444", "xyz333", "abc222", "abc111"]
        assert [r.id for r in store.runs(limit=2)] == ["q_r444", "xyz333"]
        assert all(r.kind == "exec" and r.status == "completed" for r in store.runs())

        assert store.find("xyz") == "xyz333"
        assert store.find("abc1") == "abc111"
        assert store.find("abc222") == "abc222"
        assert store.find("q_r") == "q_r444"
        assert store.load("abc2").id == "abc222"
        with pytest.raises(UserError, match="'abc' matches several runs; give more of the id"):
            store.find("abc")
        with pytest.raises(UserError, match="no run 'nope' in"):
            store.find("nope")
        with pytest.raises(UserError, match="no run 'nope'"):
            store.load("nope")
        # LIKE's wildcards in what the user typed are taken literally.
        for wildcard in ["ab_", "%", "_", "x%3"]:
            with pytest.raises(UserError, match="no run"):
                store.find(wildcard)


@pytest.mark.anyio
async def test_an_exact_id_wins_over_longer_ids_it_prefixes(tmp_path: Path) -> None:
    plan = Plan.parse("1. echo(1)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        for run_id in ["abc", "abcd", "abce"]:
            await execute(plan, tools=[echo], journal=store.journal(run_id=run_id))
        assert store.find("abc") == "abc"
        with pytest.raises(UserError, match="several"):
            store.find("ab")


@pytest.mark.anyio
async def test_an_empty_or_huge_run_id_finds_no_run_and_says_so_briefly(tmp_path: Path) -> None:
    plan = Plan.parse("1. echo(1)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        await execute(plan, tools=[echo], journal=store.journal(run_id="abc111"))
        for empty in ["", "  "]:  # a prefix of every id, which would pick one at random
            with pytest.raises(UserError, match="give a run id"):
                store.find(empty)
        with pytest.raises(UserError, match=r"no run 'aaaa.*\(100,000 characters\)") as caught:
            store.load("a" * 100_000)
        assert len(str(caught.value)) < 300
        long_id = "b" * 300  # longer than any prefix matched with LIKE: found whole
        await execute(plan, tools=[echo], journal=store.journal(run_id=long_id))
        assert store.find(long_id) == long_id


def test_run_ids_limits_and_paths_of_the_wrong_type_are_clear_errors(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        for bad in [None, 5]:
            with pytest.raises(UserError, match="a run id is a str, not"):
                store.load(bad)  # type: ignore[arg-type]
        with pytest.raises(UserError, match="limit is a whole number or None, not 'x'"):
            store.runs("x")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="cannot hold a NUL character"):
        Store.open(str(tmp_path / "a\x00b"))


@pytest.mark.anyio
async def test_a_runs_limit_past_sqlite_integers_lists_them_all(tmp_path: Path) -> None:
    plan = Plan.parse("1. echo(1)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        for run_id in ["r1", "r2"]:
            await execute(plan, tools=[echo], journal=store.journal(run_id=run_id))
        assert [r.id for r in store.runs(10**20)] == ["r2", "r1"]


@pytest.mark.anyio
async def test_two_runs_recorded_at_once_keep_their_own_numbering(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    plan = Plan.parse("1. echo(1)\n2. echo($1)\n3. echo($2)\n4. echo(4)\n")
    results: dict[str, taskloom.RunResult] = {}

    async def one(store: Store, run_id: str) -> None:
        journal = store.journal(run_id=run_id)
        results[run_id] = await execute(plan, tools=[echo], journal=journal)

    with Store.open(path) as store:
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, store, "left")
            tg.start_soon(one, store, "right")
    assert sorted(results) == ["left", "right"]
    for run_id, result in results.items():
        seqs = query(path, "SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        assert [s for (s,) in seqs] == list(range(1, len(result.events) + 1))
    assert query(path, "SELECT count(*) FROM tasks WHERE status = 'done'") == [(8,)]


@pytest.mark.anyio
async def test_journal_records_a_budget_that_ran_out(tmp_path: Path) -> None:
    plan = Plan.parse("1. echo(1)\n2. echo($1)\n3. echo($2)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal(plan=plan)
        result = await execute(plan, tools=[echo], journal=journal, budget=Budget(tool_calls=1))
        record = store.load(journal.run_id)
    assert result.exhausted == "tool_calls"
    assert (record.status, record.exhausted) == ("budget_exceeded", "tool_calls")
    assert [t.status for t in record.tasks] == ["done", "cancelled", "cancelled"]
    assert record.tasks[1].error_type == "TaskCancelled"


# -- committed before a side effect -------------------------------------------


@pytest.mark.anyio
async def test_a_side_effecting_tool_sees_its_start_already_committed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    seen: list[Any] = []

    @tool
    async def send(x: int) -> int:
        """Reads, from another connection, what the store says about this call."""
        seen.append(
            query(
                path,
                "SELECT t.status, t.arguments, r.status FROM tasks t JOIN runs r"
                " ON r.id = t.run_id WHERE t.task_id = ?",
                (str(x),),
            )
        )
        return x

    plan = Plan.parse("1. send(1)\n2. echo($1)\n3. send(3)\n")
    with Store.open(path) as store:
        result = await execute(plan, tools=[send, echo], journal=store.journal(plan=plan))
    assert result.outputs == {"1": 1, "2": 1, "3": 3}
    assert sorted(seen) == [
        [("running", '{"x": 1}', "running")],
        [("running", '{"x": 3}', "running")],
    ]


@pytest.mark.anyio
async def test_only_side_effecting_tools_wait_for_a_commit(tmp_path: Path) -> None:
    @tool
    async def send(x: int) -> int:
        """Not idempotent."""
        return x + 1

    plan = Plan.parse("1. echo(1)\n2. send($1)\n3. echo($2)\n4. echo(4)\n")
    waited: list[str] = []
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal(plan=plan)
        commit_first = journal.before_call

        async def counting(task_id: TaskId) -> None:
            waited.append(task_id)
            await commit_first(task_id)

        journal.before_call = counting  # type: ignore[method-assign]
        result = await execute(plan, tools=[echo, send], journal=journal)
    assert waited == ["2"]
    assert result.outputs == {"1": 1, "2": 2, "3": 2, "4": 4}


# -- resuming -----------------------------------------------------------------

CRASH_PLAN = (
    "1. fetch(1)\n"  # idempotent: done before the crash
    "2. send(2)\n"  # side effect: done before the crash
    "3. send(3)\n"  # side effect: running at the crash -> interrupted
    "4. fetch(4)\n"  # idempotent: running at the crash -> called again
    "5. send($3)\n"  # pending on 3 -> skipped
    "6. fetch($4)\n"  # pending on 4 -> runs
    "7. send($6)\n"  # pending on 6 -> runs
    "8. boom(8)\n"  # failed before the crash -> kept failed
)


def nothing(x: int) -> None:
    """For tools that never hang."""


def crash_tools(
    calls: list[tuple[str, int]], *, hang: Iterable[int] = (), entered: Callable[[int], None]
) -> list[Tool]:
    """fetch (idempotent) and send (a side effect) that count calls; `hang` ones never return."""
    hanging = set(hang)

    @tool(idempotent=True, name="fetch")
    async def fetch(x: int) -> int:
        """x * 10."""
        calls.append(("fetch", x))
        if x in hanging:
            entered(x)
            await anyio.sleep_forever()
        return x * 10

    @tool(name="send")
    async def send(x: int) -> int:
        """x + 100, with a side effect."""
        calls.append(("send", x))
        if x in hanging:
            entered(x)
            await anyio.sleep_forever()
        return x + 100

    @tool(name="boom")
    async def boom_(x: int) -> int:
        """Fails."""
        calls.append(("boom", x))
        raise ValueError(f"bad {x}")

    return [fetch, send, boom_]


async def record_crash(path: Path, crashed: Path, plan_text: str, hang: set[int]) -> str:
    """Run `plan_text` until the `hang` tasks are inside their tools and every other
    task that can settle has; copy the file as a crash then would leave it."""
    plan = Plan.parse(plan_text)
    calls: list[tuple[str, int]] = []
    inside = {x: anyio.Event() for x in hang}
    tools = crash_tools(calls, hang=hang, entered=lambda x: inside[x].set())
    settled = anyio.Event()
    others = {t.id for t in plan if not t.dependencies and int(t.args[0]) not in hang}
    seen: set[str] = set()

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.TaskFinished | ev.TaskFailed):
            seen.add(event.task_id)
            if seen >= others:
                settled.set()

    with Store.open(path) as store:
        journal = store.journal(request="crash", plan=plan)
        with anyio.fail_after(10):
            async with open_run(tools=tools, journal=journal, on_event=on_event) as run:
                await run.add_plan(plan)
                for event in inside.values():
                    await event.wait()
                await settled.wait()
                await journal.flush()
                snapshot(path, crashed)
                run.cancel()
    return journal.run_id


@pytest.mark.anyio
async def test_resume_keeps_done_work_reruns_idempotent_and_interrupts_side_effects(
    tmp_path: Path,
) -> None:
    crashed = tmp_path / "crashed.sqlite3"
    run_id = await record_crash(tmp_path / "s.sqlite3", crashed, CRASH_PLAN, hang={3, 4})

    with Store.open(crashed) as store:
        before = store.load(run_id)
        assert before.status == "running"
        assert {t.id: t.status for t in before.tasks} == {
            "1": "done",
            "2": "done",
            "3": "running",
            "4": "running",
            "5": "pending",
            "6": "pending",
            "7": "pending",
            "8": "failed",
        }
        calls: list[tuple[str, int]] = []
        result = await taskloom.resume(
            run_id[:6], store=store, tools=crash_tools(calls, entered=nothing)
        )
        after = store.load(run_id)

    # Done and failed tasks are not called again; the side effect that was running is not.
    assert calls == [("fetch", 4), ("fetch", 40), ("send", 400)]
    assert result.run_id == run_id and result.status == "completed"
    assert {i: t.status for i, t in result.tasks.items()} == {
        "1": "done",
        "2": "done",
        "3": "interrupted",
        "4": "done",
        "5": "skipped",
        "6": "done",
        "7": "done",
        "8": "failed",
    }
    assert result.outputs == {"1": 10, "2": 102, "4": 40, "6": 400, "7": 500}
    interrupted = result.tasks[TaskId("3")].error
    assert isinstance(interrupted, TaskInterrupted) and interrupted.tool == "send"
    skipped = result.tasks[TaskId("5")].error
    assert isinstance(skipped, DependencyFailed) and skipped.dependency == "3"
    failed = result.tasks[TaskId("8")].error
    assert isinstance(failed, RecordedFailure)
    assert (failed.kind, failed.message) == ("ToolFailed", "boom raised ValueError: bad 8")

    # The event log goes on where the crashed process left it.
    assert result.events[0].seq == before.last_seq + 1
    assert [e.seq for e in result.events] == list(
        range(before.last_seq + 1, before.last_seq + 1 + len(result.events))
    )
    logged = query(crashed, "SELECT seq, at FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
    assert [seq for seq, _ in logged] == list(range(1, after.last_seq + 1))
    assert after.last_seq == result.events[-1].seq
    assert all(a[1] <= b[1] for a, b in zip(logged, logged[1:], strict=False))

    assert (after.status, after.resumes, after.finished is not None) == ("completed", 1, True)
    rows = {t.id: t for t in after.tasks}
    assert [t.id for t in after.tasks] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    assert (rows[TaskId("3")].status, rows[TaskId("3")].error_type) == (
        "interrupted",
        "TaskInterrupted",
    )
    assert (rows[TaskId("5")].status, rows[TaskId("5")].error_type) == (
        "skipped",
        "DependencyFailed",
    )
    assert (rows[TaskId("4")].status, rows[TaskId("4")].output) == ("done", 40)
    assert (rows[TaskId("7")].status, rows[TaskId("7")].output) == ("done", 500)


@pytest.mark.anyio
async def test_resuming_a_finished_run_runs_and_writes_nothing(tmp_path: Path) -> None:
    crashed = tmp_path / "crashed.sqlite3"
    run_id = await record_crash(tmp_path / "s.sqlite3", crashed, CRASH_PLAN, hang={3, 4})
    with Store.open(crashed) as store:
        first = await taskloom.resume(run_id, store=store, tools=crash_tools([], entered=nothing))
    rows = dump(crashed)

    calls: list[tuple[str, int]] = []
    with Store.open(crashed) as store:
        again = await taskloom.resume(
            run_id, store=store, tools=crash_tools(calls, entered=nothing)
        )
    assert calls == []
    assert dump(crashed) == rows
    assert {i: t.status for i, t in again.tasks.items()} == {
        i: t.status for i, t in first.tasks.items()
    }
    assert again.outputs == first.outputs
    assert not any(isinstance(e, ev.TaskStarted) for e in again.events)


@pytest.mark.anyio
async def test_a_crash_before_any_task_was_recorded_resumes_the_whole_plan(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    plan = Plan.parse("1. fetch(1)\n2. send($1)\n3. fetch($2)\n")
    with Store.open(path) as store:
        run_id = store.journal(request="early", config={"max_concurrency": 1}, plan=plan).run_id
    with Store.open(path) as store:
        assert store.load(run_id).tasks == ()
        calls: list[tuple[str, int]] = []
        result = await taskloom.resume(
            run_id, store=store, tools=crash_tools(calls, entered=nothing)
        )
        record = store.load(run_id)
    assert calls == [("fetch", 1), ("send", 10), ("fetch", 110)]
    assert result.outputs == {"1": 10, "2": 110, "3": 1100}
    assert record.status == "completed" and [t.status for t in record.tasks] == ["done"] * 3
    assert record.last_seq == result.events[-1].seq


@pytest.mark.anyio
async def test_resume_refuses_unknown_runs_and_agent_runs(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        await store.journal(kind="agent", request="why?", run_id="agent1").flush()
        with pytest.raises(UserError, match="no run 'missing'"):
            await taskloom.resume("missing", store=store, tools=[echo])
        with pytest.raises(UserError, match="agent run"):
            await taskloom.resume("agent1", store=store, tools=[echo])


# -- store errors -------------------------------------------------------------


def test_a_file_of_garbage_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    path.write_bytes(random.Random(7).randbytes(16384))
    before, names = digest(path), siblings(path)
    with pytest.raises(StoreError, match="corrupted or is not a taskloom store") as caught:
        Store.open(path)
    assert caught.value.path == str(path) and str(path) in str(caught.value)
    assert digest(path) == before and siblings(path) == names


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('keep me')")
    before, names = digest(path), siblings(path)
    with pytest.raises(StoreError, match="it is a SQLite database, but not a taskloom store"):
        Store.open(path)
    assert digest(path) == before and siblings(path) == names
    assert query(path, "SELECT body FROM notes") == [("keep me",)]
    assert query(path, "PRAGMA user_version") == [(0,)]


def test_a_store_from_a_newer_taskloom_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    Store.open(path).close()
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 98}")
    before = digest(path)
    with pytest.raises(StoreError, match=rf"newer taskloom \(schema version {SCHEMA_VERSION + 98}"):
        Store.open(path)
    assert digest(path) == before
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION + 98,)]


def test_a_store_locked_by_another_process_is_refused_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskloom.store import _store

    waits: list[float] = []
    connect = _store._connect

    def spy(where: Path, busy_timeout: float) -> sqlite3.Connection:
        waits.append(busy_timeout)
        return connect(where, busy_timeout)

    path = tmp_path / "s.sqlite3"
    Store.open(path).close()
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        # In WAL mode readers pass a writer's lock; exclusive locking mode with a
        # write in progress keeps everybody out, as a stuck process would.
        other.execute("PRAGMA locking_mode = EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        other.execute("UPDATE runs SET kind = kind")
        before = digest(path)
        monkeypatch.setattr(_store, "_connect", spy)
        with pytest.raises(StoreError, match="locked by another process"):
            Store.open(path, busy_timeout=0.1)
        assert waits and set(waits) == {0.1}  # SQLite waits the short time, not the 5 s default
        monkeypatch.undo()
        assert digest(path) == before
        other.execute("ROLLBACK")
    with Store.open(path) as store:  # usable once the other process let go
        assert store.runs() == []


@pytest.mark.anyio
async def test_a_store_write_locked_during_a_run_stops_it_before_a_side_effect(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    Store.open(path).close()
    called: list[int] = []

    @tool
    async def send(x: int) -> int:
        """A side effect."""
        called.append(x)
        return x

    plan = Plan.parse("1. send(1)\n")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # readers pass, writers wait
        with Store.open(path, busy_timeout=0.1) as store:
            journal = store.journal(plan=plan)
            with pytest.raises(StoreError, match="cannot write: the file is locked"):
                with anyio.fail_after(10):
                    await execute(plan, tools=[send], journal=journal)
        other.execute("ROLLBACK")
    assert called == []


def test_a_store_whose_folder_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create its folder"):
        Store.open(blocker / "s.sqlite3")


FULL_DISK_CHILD = """
import resource
import signal
import sys

import anyio

from taskloom import Plan, Store, StoreError, execute, tool

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk: writes fail with EFBIG
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@tool(idempotent=True)
async def blob(n: int) -> str:
    '''A large output.'''
    return str(n % 10) * 100_000


async def main() -> None:
    with Store.open(sys.argv[1]) as store:
        plan = Plan.parse("".join(f"{i}. blob({i})\\n" for i in range(1, 31)))
        journal = store.journal(request="big", plan=plan)
        await journal.flush()  # the run's row (and its plan) are on disk before any output
        print(journal.run_id, flush=True)
        await execute(plan, tools=[blob], journal=journal)


try:
    anyio.run(main)
except StoreError as exc:  # anything else escapes with a traceback and exit code 1
    print(f"StoreError: {exc}", file=sys.stderr)
    sys.exit(3)
"""


def blob_tool() -> Tool:
    @tool(idempotent=True)
    async def blob(n: int) -> str:
        """A large output."""
        return str(n % 10) * 100_000

    return blob


@pytest.mark.anyio
async def test_a_full_disk_stops_the_run_with_a_store_error_and_keeps_earlier_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    plan = Plan.parse('1. echo("small")\n2. echo($1)\n')
    with Store.open(path) as store:
        journal = store.journal(request="before", plan=plan)
        await execute(plan, tools=[echo], journal=journal)
    earlier = journal.run_id
    child = tmp_path / "child.py"
    child.write_text(FULL_DISK_CHILD)

    with anyio.fail_after(45):  # a hang fails the test
        proc = await anyio.run_process(
            [sys.executable, str(child), str(path), str(300_000)], check=False
        )
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith(f"StoreError: run store {path}: cannot write: the disk is full"), (
        stderr
    )
    failed_run = stdout.strip()

    with Store.open(path) as store:
        record = store.load(earlier)
        assert record.status == "completed"
        assert [t.output for t in record.tasks] == ["small", "small"]
        # The run that hit the limit was recorded as far as the disk allowed: resumable.
        assert {r.id for r in store.runs()} == {earlier, failed_run}
        result = await taskloom.resume(failed_run, store=store, tools=[blob_tool()])
        assert result.status == "completed" and len(result.outputs) == 30
    assert query(path, "PRAGMA integrity_check") == [("ok",)]


# -- regressions: each of these once failed --------------------------------


@pytest.mark.anyio
async def test_execute_with_a_journal_reports_the_stored_run_id(
    tmp_path: Path,
) -> None:
    """open_run() gives the Run a fresh random id when run_id is None, although the
    journal records under journal.run_id: RunResult.run_id (and `exec --json`'s run_id)
    names a run that `show`/`resume` cannot find."""
    plan = Plan.parse("1. echo(1)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal(plan=plan)
        result = await execute(plan, tools=[echo], journal=journal)
        assert store.load(journal.run_id).status == "completed"
        assert result.run_id == journal.run_id
        assert {e.run_id for e in result.events} == {journal.run_id}


@pytest.mark.anyio
async def test_resume_when_a_cancelled_task_depends_on_one_that_reruns(
    tmp_path: Path,
) -> None:
    """restore_tasks restores settled tasks first and adds the ones to run after, so a
    recorded cancelled task whose dependency is re-run is added before it exists."""
    path, crashed = tmp_path / "s.sqlite3", tmp_path / "crashed.sqlite3"
    calls: list[tuple[str, int]] = []
    inside = anyio.Event()
    plan = Plan.parse("1. fetch(1)\n2. fetch($1)\n")
    with Store.open(path) as store:
        journal = store.journal(plan=plan)
        tools = crash_tools(calls, hang={1}, entered=lambda x: inside.set())
        with anyio.fail_after(10):
            async with open_run(tools=tools, journal=journal) as run:
                await run.add_plan(plan)
                await inside.wait()
                run.cancel("2")  # one task cancelled by hand, its dependency still running
                await journal.flush()
                snapshot(path, crashed)
                run.cancel()
    with Store.open(crashed) as store:
        assert [t.status for t in store.load(journal.run_id).tasks] == ["running", "cancelled"]
        result = await taskloom.resume(
            journal.run_id, store=store, tools=crash_tools(calls, entered=nothing)
        )
    assert result.tasks[TaskId("1")].status is TaskStatus.DONE
    assert result.tasks[TaskId("2")].status is TaskStatus.CANCELLED


@pytest.mark.anyio
async def test_resume_without_the_tool_of_a_finished_task_raises_plan_error(
    tmp_path: Path,
) -> None:
    """Run.restore looks the tool up with `self._tools[task.tool]`: a KeyError, not the
    PlanError/UserError resume() documents (the CLI shows it as a traceback)."""
    plan = Plan.parse("1. echo(1)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal(plan=plan)
        await execute(plan, tools=[echo], journal=journal)

        @tool(idempotent=True)
        async def other(x: int) -> int:
            """Not the tool the run used."""
            return x

        with pytest.raises((UserError, taskloom.PlanError), match="echo"):
            await taskloom.resume(journal.run_id, store=store, tools=[other])


@pytest.mark.anyio
async def test_resuming_a_finished_budget_exceeded_run_keeps_its_status(
    tmp_path: Path,
) -> None:
    """A finished run is 'rebuilt from the store', but the rebuilt result says completed
    and forgets which budget ran out (`taskloom resume` prints that)."""
    plan = Plan.parse("1. echo(1)\n2. echo($1)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal(plan=plan)
        await execute(plan, tools=[echo], journal=journal, budget=Budget(tool_calls=1))
        assert store.load(journal.run_id).status == "budget_exceeded"
        again = await taskloom.resume(journal.run_id, store=store, tools=[echo])
    assert isinstance(again.tasks[TaskId("2")].error, TaskCancelled | RecordedFailure)
    assert (again.status, again.exhausted) == ("budget_exceeded", "tool_calls")


@pytest.mark.anyio
async def test_a_journal_lets_its_finished_run_go_while_the_store_is_open(
    tmp_path: Path,
) -> None:
    """Every RunJournal registers `_stop_runs` on the shared writer and never removes it,
    so a store used for many runs (a batch) keeps every Run, its nodes and outputs."""
    plan = Plan.parse("1. echo(1)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        async with open_run(tools=[echo], journal=store.journal(plan=plan)) as run:
            await run.add_plan(plan)
        assert run.result().outputs == {"1": 1}
        alive = weakref.ref(run)
        del run
        gc.collect()
        assert alive() is None


def test_a_run_whose_process_is_alive_is_not_resumed(tmp_path: Path) -> None:
    import socket
    import subprocess

    from taskloom import UserError

    path = tmp_path / "live.sqlite3"
    with subprocess.Popen(["sleep", "30"]) as other:
        try:
            with Store.open(path) as store:
                journal = store.journal(request="live")
                anyio.run(journal.flush)
                store._writer.put(  # as schema 2 kept owners: host and pid, no start
                    0,
                    "UPDATE runs SET owner = ?, owner_start = NULL WHERE id = ?",
                    (f"{socket.gethostname()}:{other.pid}", journal.run_id),
                )
                anyio.run(journal.flush)
                record = store.load(journal.run_id)
                with pytest.raises(UserError, match=f"still being run by process {other.pid}"):
                    store.resume_journal(record)
        finally:
            other.kill()
    with Store.open(path) as store:  # once that process is gone, resuming is allowed
        store.resume_journal(store.load(journal.run_id))


@pytest.mark.parametrize("where", ["/dev/null", "folder"])
def test_a_store_path_that_is_not_a_regular_file_says_so(tmp_path: Path, where: str) -> None:
    path = Path(where) if where.startswith("/") else tmp_path
    with pytest.raises(StoreError, match="not a regular file|is a folder") as caught:
        Store.open(path)
    assert "disk is full" not in str(caught.value)


# -- a crashed run ------------------------------------------------------------


def _raises_on_first_finish() -> Callable[[ev.Event], None]:
    raised = False

    def listener(event: ev.Event) -> None:
        nonlocal raised
        if isinstance(event, ev.TaskFinished) and not raised:
            raised = True
            raise LookupError("listener broke")

    return listener


def _raises_always(event: ev.Event) -> None:
    if isinstance(event, ev.TaskFinished | ev.TaskCancelledEvent | ev.RunFinished):
        raise LookupError("listener broke")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "listener",
    [_raises_on_first_finish(), _raises_always],
    ids=["raises-once", "raises-on-every-end"],
)
async def test_a_crashed_run_leaves_no_task_unsettled_in_the_store(
    tmp_path: Path, listener: Callable[[ev.Event], None]
) -> None:
    @tool
    async def wait_forever(x: Any = None) -> None:
        """Runs until the crash cancels it."""
        await anyio.sleep_forever()

    plan = Plan.parse("1. echo(1)\n2. echo($1)\n3. wait_forever()\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal(request="crash", plan=plan)
        with anyio.fail_after(30), pytest.raises(LookupError, match="listener broke"):
            await execute(plan, tools=[echo, wait_forever], journal=journal, on_event=listener)
        record = store.load(journal.run_id)
    assert record.status == "cancelled"
    statuses = {t.id: t.status for t in record.tasks}
    assert set(statuses) == {"1", "2", "3"}
    assert not {"pending", "running"} & set(statuses.values()), statuses
    for task in record.tasks:
        if task.status == "cancelled":
            assert task.error_type == "TaskCancelled" and task.finished is not None
            assert task.error is not None and "crashed" in task.error
