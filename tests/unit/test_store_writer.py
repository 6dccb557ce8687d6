"""The store's writer thread never dies silently, and a run whose process died reads abandoned.

Any failure on the writer thread (SQLite's, a value it cannot encode or bind,
a bug) becomes a StoreError that every waiter gets, at once, never a hang.
A run recorded `running` whose owner process is gone is read as `abandoned`
and can be resumed; a pid reused by another process does not fool it.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest

import taskloom
from taskloom import Plan, Store, StoreError, Task, TaskId, UserError, execute, tool
from taskloom.store._owner import _start_of, owner_gone, this_owner
from taskloom.store._schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from taskloom.store._writer import Json

HUGE = 10**5000


@tool(idempotent=True)
async def echo(value: Any = None) -> Any:
    """Return the value."""
    return value


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql, params).fetchall()


# -- the writer thread --------------------------------------------------------


class Unprintable:
    """Its str() raises, so the writer's fallback encoding fails too."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "param",
    [Json(HUGE), Json(Unprintable()), 2**70, object()],
    ids=["huge int", "unprintable", "int past 64 bits", "unbindable"],
)
async def test_a_write_that_fails_for_any_reason_is_a_store_error_for_every_waiter(
    tmp_path: Path, param: Any
) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        writer = store.writer
        writer.put(
            0,
            "INSERT INTO cache (key, tool, output, created) VALUES (?, ?, ?, ?)",
            ("k", "t", param, 0.0),
        )
        with anyio.fail_after(10):  # before: the thread died and sync() waited forever
            with pytest.raises(StoreError, match="recording stopped"):
                await writer.sync()
            # Later writes fail fast, and new runs are refused at once.
            with pytest.raises(StoreError, match="recording stopped"):
                await writer.sync()
            with pytest.raises(StoreError, match="recording stopped"):
                store.journal(request="later")
            with pytest.raises(StoreError, match="recording stopped"):
                store.flush()
        assert store.runs() == []  # reading still works
    assert query(tmp_path / "s.sqlite3", "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.anyio
async def test_lone_surrogates_are_written_as_escapes_and_json_reads_back_exactly(
    tmp_path: Path,
) -> None:
    """UTF-8 cannot hold a lone surrogate; once, binding one killed the writer thread."""
    path = tmp_path / "s.sqlite3"
    with Store.open(path) as store:
        store.writer.put(
            0,
            "INSERT INTO cache (key, tool, output, created) VALUES (?, ?, ?, ?)",
            ("k", "caf\udce9", Json({"name": "caf\udce9"}), 0.0),
        )
        with anyio.fail_after(10):
            await store.writer.sync()
        assert store.cached("k") == (True, {"name": "caf\udce9"})
    assert query(path, "SELECT tool FROM cache") == [("caf\\udce9",)]


@tool
def length(text: str) -> int:
    """How long the text is."""
    return len(text)


@tool
def fails_with(text: str) -> None:
    """Raise with the text as the message."""
    raise ValueError(text)


@pytest.mark.anyio
async def test_a_run_whose_arguments_and_errors_hold_lone_surrogates_is_recorded(
    tmp_path: Path,
) -> None:
    # Built in Python: the plan language refuses half a surrogate pair in its text,
    # but a task built in code (or a file name read with surrogateescape) may hold one.
    text = "caf\udce9"
    plan = Plan(
        [
            Task(id=TaskId("1"), tool="length", args=(text,)),
            Task(id=TaskId("2"), tool="fails_with", args=(text,)),
        ]
    )
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal(plan=plan)
        with anyio.fail_after(10):
            result = await execute(plan, tools=[length, fails_with], journal=journal)
        record = store.load(journal.run_id)
    assert result.tasks[TaskId("1")].output == 4
    assert str(result.tasks[TaskId("2")].error) == "fails_with raised ValueError: caf\\udce9"
    assert record.status == "completed"
    assert record.tasks[0].arguments == {"text": "caf\udce9"}
    assert record.tasks[1].error == "fails_with raised ValueError: caf\\udce9"


@pytest.mark.anyio
async def test_a_run_whose_task_cannot_be_written_raises_store_error_instead_of_hanging(
    tmp_path: Path,
) -> None:
    """A task built in Python may carry an argument no store can hold."""
    plan = Plan([Task(id=TaskId("1"), tool="echo", args=(HUGE,))])
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal()
        await journal.flush()
        with anyio.fail_after(10), pytest.raises(StoreError, match="ValueError"):
            await execute(plan, tools=[echo], journal=journal)


@pytest.mark.anyio
async def test_syncing_a_closed_store_is_a_store_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    store.close()
    with anyio.fail_after(10), pytest.raises(StoreError, match="closed"):
        await store.writer.sync()
    with pytest.raises(StoreError, match="closed"):
        store.flush()


def test_flush_commits_what_is_queued_without_an_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store.open(path) as store:
        run_id = store.journal(request="now").run_id
        store.flush()
        assert query(path, "SELECT id, status FROM runs") == [(run_id, "running")]


# -- the owner of a run, and abandoned runs -----------------------------------


ABANDON_CHILD = """
import os
import sys

from taskloom import Store

with Store.open(sys.argv[1]) as store:
    journal = store.journal(request="doomed")
    store.flush()
    print(journal.run_id, flush=True)
    os._exit(3)  # nothing in-process runs after this: no end is recorded
"""


def abandon(path: Path) -> str:
    """Record a run in a child process that then dies with os._exit; its id."""
    done = subprocess.run(
        [sys.executable, "-c", ABANDON_CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    return done.stdout.strip()


def test_a_run_whose_process_died_reads_abandoned_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    run_id = abandon(path)
    assert query(path, "SELECT status FROM runs") == [("running",)]  # as the row was left
    with Store.open(path) as store:
        assert [(r.id, r.status) for r in store.runs()] == [(run_id, "abandoned")]
        record = store.load(run_id)
        assert record.status == "abandoned" and record.unfinished
        result = anyio.run(lambda: taskloom.resume(run_id, store=store, tools=[echo]))
        assert result.status == "completed"
        finished = store.load(run_id)
    assert (finished.status, finished.resumes) == ("completed", 1)
    assert finished.owner == this_owner()[0]


def test_a_reused_pid_is_not_taken_for_the_owner(tmp_path: Path) -> None:
    """The pid is alive, but the process that has it started at another time."""
    path = tmp_path / "s.sqlite3"
    host = socket.gethostname()
    with subprocess.Popen(["sleep", "30"]) as other:
        try:
            real_start = _start_of(other.pid)
            assert real_start is not None
            boot = real_start.split("/")[0]
            with Store.open(path) as store:
                journal = store.journal(request="reused")
                store.writer.put(
                    0,
                    "UPDATE runs SET owner = ?, owner_start = ? WHERE id = ?",
                    (f"{host}:{other.pid}", f"{boot}/1", journal.run_id),
                )
                store.flush()
                assert store.load(journal.run_id).status == "abandoned"
                store.resume_journal(store.load(journal.run_id))  # allowed: its owner is gone
                store.writer.put(
                    0,
                    "UPDATE runs SET owner = ?, owner_start = ? WHERE id = ?",
                    (f"{host}:{other.pid}", real_start, journal.run_id),
                )
                store.flush()
                record = store.load(journal.run_id)
                assert record.status == "running"
                with pytest.raises(UserError, match=f"still being run by process {other.pid}"):
                    store.resume_journal(record)
        finally:
            other.kill()


def test_owners_that_cannot_be_checked_stay_running() -> None:
    assert not owner_gone(None, None)  # a row from before owners were kept
    assert not owner_gone("some-other-host:1", "x/1")  # another machine's process
    assert not owner_gone(*this_owner())  # this very process
    assert not owner_gone(f"{socket.gethostname()}:{os.getpid()}", None)


def old_store(path: Path, version: int, owner: str | None) -> None:
    """A store file as an older taskloom left it, with one running run."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for number, script in enumerate(MIGRATIONS[:version], start=1):
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(
            "INSERT INTO runs (id, kind, request, status, started, config)"
            " VALUES ('old', 'exec', 'r', 'running', 0, '{}')"
        )
        if version >= 2:
            db.execute("UPDATE runs SET owner = ?", (owner,))


def dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


@pytest.mark.parametrize(
    ("version", "owner", "status"),
    [(2, "dead", "abandoned"), (2, None, "running"), (1, None, "running")],
    ids=["schema 2, owner recorded", "schema 2, no owner", "schema 1"],
)
def test_an_older_store_migrates_and_its_runs_read_by_pid(
    tmp_path: Path, version: int, owner: str | None, status: str
) -> None:
    path = tmp_path / "old.sqlite3"
    if owner == "dead":
        owner = f"{socket.gethostname()}:{dead_pid()}"
    old_store(path, version, owner)
    with Store.open(path) as store:
        assert [r.status for r in store.runs()] == [status]
        assert store.load("old").status == status
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "SELECT owner_start FROM runs") == [(None,)]
