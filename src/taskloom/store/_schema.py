"""The store's tables, and the migrations that bring an older file up to date.

The schema version lives in SQLite's `user_version`; `application_id` marks
the file as a taskloom store, so a stranger's database is refused untouched.
Migrations only ever append: version N's script turns an N-1 file into an N
file inside one transaction, so a crash mid-migration leaves the old file.
"""

from __future__ import annotations

import sqlite3

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "migrate"]

APPLICATION_ID = 0x544C4F4D
"""'TLOM': written into the file header so a taskloom store is recognisable."""

MIGRATIONS: tuple[str, ...] = (
    # 1: runs, plan attempts, tasks, the event log, LLM calls and the call cache.
    """
    CREATE TABLE runs (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,              -- exec | agent
        request     TEXT NOT NULL,              -- the question, or the plan's name
        status      TEXT NOT NULL,              -- running | completed | cancelled | ...
        started     REAL NOT NULL,              -- wall clock, unix seconds
        finished    REAL,
        answer      TEXT,
        exhausted   TEXT,                       -- the budget that ran out, if one did
        config      TEXT NOT NULL DEFAULT '{}', -- JSON: what resuming needs
        resumes     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_start ON runs (started DESC);
    CREATE TABLE plan_attempts (
        run_id      TEXT NOT NULL REFERENCES runs (id),
        attempt     INTEGER NOT NULL,
        round       INTEGER NOT NULL,
        text        TEXT NOT NULL,
        valid       INTEGER,                    -- NULL while still being written
        error       TEXT,
        PRIMARY KEY (run_id, attempt)
    );
    CREATE TABLE tasks (
        run_id      TEXT NOT NULL REFERENCES runs (id),
        task_id     TEXT NOT NULL,
        position    INTEGER NOT NULL,           -- order of addition
        round       INTEGER NOT NULL DEFAULT 0,
        tool        TEXT NOT NULL,
        definition  TEXT NOT NULL,              -- JSON: the task, references included
        status      TEXT NOT NULL,
        arguments   TEXT,                       -- JSON: resolved, once started
        output      TEXT,                       -- JSON, once done
        error_type  TEXT,
        error       TEXT,
        started     REAL,                       -- seconds after the run's start
        finished    REAL,
        PRIMARY KEY (run_id, task_id)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        run_id      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        task_id     TEXT,
        at          REAL NOT NULL,              -- seconds after the run's start
        data        TEXT,                       -- JSON: the event's own fields
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE llm_calls (
        run_id      TEXT NOT NULL,
        n           INTEGER NOT NULL,
        purpose     TEXT NOT NULL,              -- plan | join | react
        model       TEXT NOT NULL,
        prompt_hash TEXT NOT NULL,
        prompt_tokens     INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        latency_s   REAL NOT NULL,
        PRIMARY KEY (run_id, n)
    );
    CREATE TABLE cache (
        key         TEXT PRIMARY KEY,           -- tool, version, canonical arguments
        tool        TEXT NOT NULL,
        output      TEXT NOT NULL,              -- JSON
        created     REAL NOT NULL,
        expires     REAL                        -- unix seconds, NULL for never
    );
    """,
    # 2: which process is running a run (host:pid), so a live run is not resumed twice.
    """
    ALTER TABLE runs ADD COLUMN owner TEXT
    """,
    # 3: the owner's start (boot id/start ticks), so a reused pid is not taken for it
    # and a run whose process is gone reads as abandoned (see store/_owner.py).
    """
    ALTER TABLE runs ADD COLUMN owner_start TEXT
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
"""The newest schema this taskloom writes and reads."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file up to SCHEMA_VERSION; return the version it had.

    The caller has checked that the file's version is not newer than ours.
    Each migration runs in its own transaction together with its version bump.
    """
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for version in range(found + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version - 1].split(";"):  # no ";" in comments
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return found
