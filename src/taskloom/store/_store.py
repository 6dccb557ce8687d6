"""The run store: one SQLite file in WAL mode, written by one background thread.

Durability, as promised to users (docs/architecture.md repeats it):

- Before a tool that is not idempotent is called, the task's start is
  committed. After a crash such a task is known to have started, so it is
  never called a second time.
- A task reported finished is committed within one writer batch (normally
  well under a millisecond under load, since batches commit back to back).
  A crash inside that window makes an idempotent task run again on resume,
  and a side-effecting one come back `interrupted`.
- When `execute()` or `Agent.run()` returns, everything about the run is
  committed.

Commits use `synchronous=NORMAL`: they survive the process being killed; a
power cut may lose the last commits but never corrupts the file.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from taskloom._ids import RunId, TaskId
from taskloom._text import quoted, short_repr
from taskloom.errors import StoreError, UserError
from taskloom.plan import Plan
from taskloom.store._codec import task_from_json, task_to_json
from taskloom.store._journal import RunJournal
from taskloom.store._owner import owner_gone, this_owner
from taskloom.store._records import (
    ABANDONED,
    EventRecord,
    LlmCallRecord,
    PlanAttemptRecord,
    RunRecord,
    RunSummary,
    TaskRecord,
)
from taskloom.store._schema import APPLICATION_ID, SCHEMA_VERSION, migrate
from taskloom.store._writer import Json, Writer, explain

if TYPE_CHECKING:
    from taskloom.engine.events import Event

__all__ = ["RecordWatcher", "Store", "default_store_path"]

RecordWatcher = Callable[[RunId, EventRecord, "Event"], None]
"""Hears each event a journal logs: the run, the log's record, the engine's event."""

_MAX_PREFIX = 200
"""Characters of a run id prefix matched with LIKE; longer ones must match whole."""
_ALL_ROWS = 2**62
"""A `runs()` limit this large means all of them (SQLite's integers stop at 2**63)."""
_BUSY_TIMEOUT = 5.0
"""Seconds to wait for another process's lock before saying the store is locked."""


def default_store_path() -> Path:
    """`$TASKLOOM_STORE`, or `store.sqlite3` in the user's data directory."""
    configured = os.environ.get("TASKLOOM_STORE")
    if configured:
        return Path(configured).expanduser()
    return platformdirs.user_data_path("taskloom") / "store.sqlite3"


def _check_regular_file(path: Path) -> None:
    """A store is a file of its own; SQLite's errors for anything else mislead.

    Raises:
        StoreError: if `path` exists and is a folder, a device (`/dev/null`),
            a pipe or anything else but a regular file.

    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # created on open (or its folder cannot be, which open says)
    except ValueError:  # os.stat's "embedded null byte"
        raise StoreError(repr(str(path)), "a path cannot hold a NUL character") from None
    except OSError as exc:
        raise StoreError(str(path), f"cannot read it: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        raise StoreError(str(path), "it is a folder, not a file; give the path of a file")
    if not stat.S_ISREG(mode):
        raise StoreError(str(path), "it is not a regular file; give the path of a file")


@contextmanager
def _translated(path: Path, doing: str) -> Iterator[None]:
    """Turn SQLite's errors into StoreErrors that say what went wrong, in words."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(str(path), explain(doing, exc)) from exc


class Store:
    """Keeps runs (plans, tasks, events, LLM calls) and the shared call cache.

    Open one with `Store.open()`, use it for many runs (a batch shares one),
    and close it when done; it is also a context manager.
    """

    def __init__(self, path: Path, writer: Writer, reader: sqlite3.Connection) -> None:
        """Wrap an opened store; use `Store.open()` instead."""
        self.path = path
        """The store's file."""
        self._writer = writer
        self._reader = reader
        self._reading = threading.Lock()  # one reader connection, used from worker threads too
        self._watchers: list[RecordWatcher] = []

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = _BUSY_TIMEOUT
    ) -> Store:
        """Open (creating or upgrading) the store at `path`.

        Args:
            path: the file; `default_store_path()` when None.
            busy_timeout: seconds to wait when another process holds a lock.

        Returns:
            The open store.

        Raises:
            StoreError: if the file is corrupted, locked, not a taskloom store,
                written by a newer taskloom, or cannot be created. The file is
                left as it was.

        """
        where = Path(path).expanduser() if path is not None else default_store_path()
        _check_regular_file(where)
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(str(where), f"cannot create its folder: {exc.strerror}") from exc
        with _translated(where, "open it"):
            conn = _connect(where, busy_timeout)
            try:
                _check_header(conn, where)
                conn.execute("PRAGMA journal_mode = WAL")
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            reader = _connect(where, busy_timeout)
        return cls(where, Writer(conn, str(where)), reader)

    def close(self) -> None:
        """Commit everything queued and close the file."""
        self._writer.close()
        self._reader.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Block until everything queued so far is committed (call it outside a loop).

        Raises:
            StoreError: if a write failed, or the store is closed.

        """
        self._writer.wait()

    def _check_writable(self) -> None:
        if self._writer.failure is not None:
            raise self._writer.failure

    @property
    def writer(self) -> Writer:
        """The background writer (journals and the cache queue their writes on it)."""
        return self._writer

    # -- reading --------------------------------------------------------------

    def runs(self, limit: int | None = 50, *, before: str | None = None) -> list[RunSummary]:
        """Recent runs, newest first (all of them when `limit` is None).

        A run recorded `running` whose process is gone reads `abandoned`
        (see `store/_owner.py`); `resume` finishes it.

        Args:
            limit: how many runs at most; None for all.
            before: only the runs older than this one (its full id): the
                next page after a page that ended with it.

        Raises:
            UserError: if `limit` is not a whole number, or no run has the id `before`.
            StoreError: if the store cannot be read.

        """
        query, params = _RUNS, list[Any]([_limit(limit)])
        if before is not None:
            query, params = _RUNS_BEFORE, [before, before, before, _limit(limit)]
        with self._reading, _translated(self.path, "list runs"):
            if (
                before is not None
                and not self._reader.execute(
                    "SELECT 1 FROM runs WHERE id = ?", (before,)
                ).fetchone()
            ):
                raise UserError(f"no run {quoted(before)} in {self.path}")
            rows = self._reader.execute(query, params).fetchall()
        return [
            RunSummary(
                id=RunId(r[0]),
                kind=r[1],
                status=_status(r[2], r[5], r[6]),
                started=r[3],
                request=r[4],
                finished=r[7],
                answer=r[8],
            )
            for r in rows
        ]

    def subscribe(self, watcher: RecordWatcher) -> Callable[[], None]:
        """Hear every event any journal of this store logs, as it logs it.

        `watcher(run_id, record, event)` is called on the run's event loop,
        in the run's order, with the record the log keeps (committed soon
        after, not yet) and the event it was made from. It must return
        quickly and never raise: it runs inside the run's event delivery.
        An HTTP server streams runs' events to clients this way.

        Returns:
            A function that ends the subscription.

        """
        self._watchers.append(watcher)

        def unsubscribe() -> None:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

        return unsubscribe

    @property
    def watchers(self) -> list[RecordWatcher]:
        """The subscribed watchers (see `subscribe`); journals call each."""
        return self._watchers

    def find(self, run_id: str) -> RunId:
        """The full id of the run whose id is or starts with `run_id`.

        Raises:
            UserError: if `run_id` is no str or empty, or no run, or more than one, matches.
            StoreError: if the store cannot be read.

        """
        if not isinstance(run_id, str):
            raise UserError(f"a run id is a str, not {short_repr(run_id)}")
        if not run_id.strip():
            # Every id starts with "": an empty id would pick whichever run comes first.
            raise UserError("give a run id, or the start of one (taskloom runs lists them)")
        # A prefix longer than any id is no prefix; SQLite refuses very long patterns.
        query, params = "SELECT id FROM runs WHERE id = ?", [run_id]
        if len(run_id) <= _MAX_PREFIX:
            query += " OR id LIKE ? ESCAPE '\\' LIMIT 3"
            params.append(_like_prefix(run_id))
        with self._reading, _translated(self.path, "look up the run"):
            rows = self._reader.execute(query, params).fetchall()
        ids = {r[0] for r in rows}
        if run_id in ids:
            return RunId(run_id)
        if not ids:
            raise UserError(f"no run {quoted(run_id)} in {self.path}")
        if len(ids) > 1:
            raise UserError(f"{quoted(run_id)} matches several runs; give more of the id")
        return RunId(ids.pop())

    def load(self, run_id: str) -> RunRecord:
        """Everything recorded about one run (an id prefix is enough).

        Its status is `abandoned` if it was recorded `running` and its process is gone.

        Raises:
            UserError: if there is no such run.
            StoreError: if the store cannot be read.

        """
        full = self.find(run_id)
        with self._reading, _translated(self.path, f"read run {full}"):
            return self._load(full)

    def _load(self, run_id: RunId) -> RunRecord:
        db = self._reader
        db.execute("BEGIN")  # one consistent snapshot across the queries below
        try:
            run = db.execute(
                "SELECT kind, request, status, started, finished, answer, exhausted, config,"
                " resumes, owner, owner_start FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
            attempts = db.execute(
                "SELECT attempt, round, text, valid, error FROM plan_attempts"
                " WHERE run_id = ? ORDER BY attempt",
                (run_id,),
            ).fetchall()
            tasks = db.execute(
                "SELECT task_id, round, definition, status, arguments, output, error_type,"
                " error, started, finished FROM tasks WHERE run_id = ? ORDER BY position",
                (run_id,),
            ).fetchall()
            calls = db.execute(
                "SELECT purpose, model, prompt_hash, prompt_tokens, completion_tokens,"
                " latency_s FROM llm_calls WHERE run_id = ? ORDER BY n",
                (run_id,),
            ).fetchall()
            last = db.execute(
                "SELECT seq, at FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                (run_id,),
            ).fetchone()
        finally:
            db.execute("COMMIT")
        task_records = tuple(
            TaskRecord(
                id=TaskId(t[0]),
                round=t[1],
                task=task_from_json(json.loads(t[2])),
                status=t[3],
                arguments=_json(t[4]),
                output=_json(t[5]),
                error_type=t[6],
                error=t[7],
                started=t[8],
                finished=t[9],
            )
            for t in tasks
        )
        return RunRecord(
            id=run_id,
            kind=run[0],
            request=run[1],
            status=_status(run[2], run[9], run[10]),
            started=run[3],
            finished=run[4],
            answer=run[5],
            exhausted=run[6],
            config=json.loads(run[7]),
            resumes=run[8],
            owner=run[9],
            owner_start=run[10],
            plan_attempts=tuple(
                PlanAttemptRecord(
                    attempt=a[0],
                    round=a[1],
                    text=a[2],
                    valid=None if a[3] is None else bool(a[3]),
                    error=a[4],
                )
                for a in attempts
            ),
            tasks=task_records,
            llm_calls=tuple(
                LlmCallRecord(**dict(zip(_CALL_FIELDS, c, strict=True))) for c in calls
            ),
            last_seq=last[0] if last else 0,
            elapsed=last[1] if last else 0.0,
            task_index={t.id: t for t in task_records},
        )

    def events(self, run_id: str, *, after: int = 0) -> list[EventRecord]:
        """The events a run recorded, in sequence order (an id prefix is enough).

        Args:
            run_id: the run, or the start of its id.
            after: only the events numbered after this one.

        Raises:
            UserError: if there is no such run, or `after` is not a whole number.
            StoreError: if the store cannot be read.

        """
        if type(after) is not int:
            raise UserError(f"after is a whole number, not {short_repr(after)}")
        full = self.find(run_id)
        with self._reading, _translated(self.path, f"read the events of run {full}"):
            rows = self._reader.execute(
                "SELECT seq, kind, task_id, at, data FROM events"
                " WHERE run_id = ? AND seq > ? ORDER BY seq",
                (full, after),
            ).fetchall()
        return [
            EventRecord(
                seq=r[0],
                kind=r[1],
                task_id=None if r[2] is None else TaskId(r[2]),
                at=r[3],
                data=_json(r[4]),
            )
            for r in rows
        ]

    def cached(self, key: str, now: float | None = None) -> tuple[bool, Any]:
        """Look up one call-cache entry: (found, output). Expired entries are not found.

        Raises:
            StoreError: if the store cannot be read.

        """
        with self._reading, _translated(self.path, "read the call cache"):
            row = self._reader.execute(
                "SELECT output, expires FROM cache WHERE key = ?", (key,)
            ).fetchone()
        if row is None or (row[1] is not None and row[1] <= (now or time.time())):
            return False, None
        return True, json.loads(row[0])

    # -- writing, from any run ------------------------------------------------

    def remember(self, key: str, tool: str, output: Any, *, ttl: float | None = None) -> None:
        """Queue one call-cache entry (see `CallCache`)."""
        now = time.time()
        self._writer.put(
            0,
            "INSERT OR REPLACE INTO cache (key, tool, output, created, expires)"
            " VALUES (?, ?, ?, ?, ?)",
            (key, tool, Json(output), now, None if ttl is None else now + ttl),
        )

    def journal(
        self,
        *,
        kind: str = "exec",
        request: str = "",
        config: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        plan: Plan | None = None,
    ) -> RunJournal:
        """Start recording a new run; pass the journal to `execute()` or an Agent.

        Args:
            kind: "exec" for a plan, "agent" for a question.
            request: what was asked: the question, or the plan's name.
            config: JSON-able settings that resuming needs (tool source, limits).
            run_id: the run's id; a random one by default.
            plan: the complete plan an exec run will execute. It is written
                with the run's row, so a crash before the first task is
                recorded still leaves the whole plan to resume.

        Returns:
            The journal, whose `run_id` names the run.

        """
        new_id = RunId(run_id or uuid.uuid4().hex[:12])
        if run_id is not None:
            with self._reading, _translated(self.path, "check the run id"):
                taken = self._reader.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,))
                if taken.fetchone() is not None:
                    raise UserError(f"run {run_id!r} already exists in {self.path}")
        settings = dict(config or {})
        if plan is not None:
            settings["plan"] = [task_to_json(t) for t in plan.in_dependency_order()]
        self._check_writable()
        owner, start = this_owner()
        self._writer.put(
            0,
            "INSERT INTO runs (id, kind, request, status, started, config, owner, owner_start)"
            " VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
            (new_id, kind, request, time.time(), Json(settings), owner, start),
        )
        return RunJournal(self, new_id, kind=kind)

    def resume_journal(self, record: RunRecord) -> RunJournal:
        """Go on recording a run that stopped: numbering continues where it ended.

        Raises:
            UserError: if the process that ran it is still alive on this machine.
            StoreError: if an earlier write failed, so nothing more is recorded.

        """
        _check_stopped(record)
        self._check_writable()
        owner, start = this_owner()
        self._writer.put(
            0,
            "UPDATE runs SET status = 'running', finished = NULL, resumes = resumes + 1,"
            " owner = ?, owner_start = ? WHERE id = ?",
            (owner, start, record.id),
        )
        return RunJournal(
            self,
            record.id,
            kind=record.kind,
            positions=len(record.tasks),
            elapsed=record.elapsed,
            llm_calls=len(record.llm_calls),
        )


_RUNS = (
    "SELECT id, kind, status, started, request, owner, owner_start, finished, answer FROM runs"
    " ORDER BY started DESC, rowid DESC LIMIT ?"
)
_RUNS_BEFORE = (
    "SELECT id, kind, status, started, request, owner, owner_start, finished, answer FROM runs"
    " WHERE started < (SELECT started FROM runs WHERE id = ?)"
    " OR (started = (SELECT started FROM runs WHERE id = ?)"
    " AND rowid < (SELECT rowid FROM runs WHERE id = ?))"
    " ORDER BY started DESC, rowid DESC LIMIT ?"
)

_CALL_FIELDS = (
    "purpose",
    "model",
    "prompt_hash",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
)


def _status(recorded: str, owner: str | None, start: str | None) -> str:
    """A run's status as read: `abandoned` for a running run whose process is gone."""
    if recorded == "running" and owner_gone(owner, start):
        return ABANDONED
    return recorded


def _check_stopped(record: RunRecord) -> None:
    """Refuse to resume a run whose process still lives: it would run tasks twice."""
    if record.owner is None or record.status != "running":
        return  # no owner recorded, or it is gone (abandoned), or the run ended
    host, _, pid_text = record.owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return  # another machine's (we cannot tell), or this very process's
    raise UserError(
        f"run {record.id} is still being run by process {pid_text} on this machine; "
        "resume it once that process has stopped"
    )


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _limit(limit: int | None) -> int:
    """SQLite's LIMIT for `runs(limit)`: -1 for all of them.

    Raises:
        UserError: if `limit` is not a whole number (or None).

    """
    if limit is None:
        return -1
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise UserError(f"limit is a whole number or None, not {short_repr(limit)}")
    return -1 if limit > _ALL_ROWS else max(limit, 0)


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _check_header(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse, untouched, a file that is not ours or is newer than we understand."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    app = int(conn.execute("PRAGMA application_id").fetchone()[0])
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if tables and app != APPLICATION_ID:
        raise StoreError(str(path), "it is a SQLite database, but not a taskloom store")
    if version > SCHEMA_VERSION:
        raise StoreError(
            str(path),
            f"it was written by a newer taskloom (schema version {version}; this one "
            f"reads up to {SCHEMA_VERSION}); upgrade taskloom to use it",
        )
