"""Bad input through the real command line, in subprocesses.

Each case runs `python -m taskloom ...` in a fresh process with a private
store, and asserts what a user sees: the exit code, one clear paragraph on
stderr (never a traceback), and a store left intact with no run stuck
`running`.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

HANG_GUARD_S = 120.0
"""Far past any case's expected time: only a hang reaches it."""


@dataclass(frozen=True)
class Outcome:
    """What a finished command left behind."""

    code: int
    stdout: str
    stderr: str


class Cli:
    """Runs taskloom in a subprocess against one private store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "store.sqlite3"
        self.env = {**os.environ, "TASKLOOM_STORE": str(self.store), "PYTHONUNBUFFERED": "1"}

    def write(self, name: str, content: str | bytes) -> Path:
        """A file in the case's folder."""
        path = self.root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def command(self, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", "taskloom", *(str(a) for a in args)]

    def __call__(
        self, *args: str | Path, stdin: str | None = None, timeout: float = HANG_GUARD_S
    ) -> Outcome:
        done = subprocess.run(
            self.command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.root,
            timeout=timeout,
            check=False,
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str | Path) -> subprocess.Popen[str]:
        """Start a command to signal or kill later (its own process group)."""
        return subprocess.Popen(
            self.command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.root,
            start_new_session=True,
        )

    def interrupt(
        self, process: subprocess.Popen[str], sig: signal.Signals = signal.SIGINT
    ) -> Outcome:
        """Send `sig` and wait for the process to end (a hang fails the test)."""
        process.send_signal(sig)
        try:
            stdout, stderr = process.communicate(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"the command did not stop after {sig.name}")
        return Outcome(process.returncode, stdout, stderr)

    def statuses(self) -> dict[str, str]:
        """Every recorded run's status, read straight from the file."""
        if not self.store.exists():
            return {}
        with sqlite3.connect(self.store) as conn:
            return dict(conn.execute("SELECT id, status FROM runs").fetchall())

    def task_statuses(self) -> dict[tuple[str, str], str]:
        """Every recorded task's status by (run, task)."""
        with sqlite3.connect(self.store) as conn:
            rows = conn.execute("SELECT run_id, task_id, status FROM tasks").fetchall()
        return {(run, task): status for run, task, status in rows}

    @staticmethod
    def assert_clear_error(
        outcome: Outcome, code: int = 2, *, mentions: Sequence[str] = ()
    ) -> None:
        """One short paragraph on stderr that says what is wrong; never a traceback."""
        err = outcome.stderr
        assert outcome.code == code, (outcome.code, err[-2000:])
        assert "Traceback" not in err and "Traceback" not in outcome.stdout, err[-2000:]
        assert "error:" in err, err[-2000:]
        message = err[err.index("error:") :].strip()
        assert "\n\n" not in message, message
        assert len(message) < 2000, message[:2000]
        for word in mentions:
            assert word in message, (word, message)

    def assert_store_intact(self, *, allow_running: bool = False) -> None:
        """The store passes SQLite's integrity check and no run is left `running`."""
        if not self.store.exists():
            return
        with sqlite3.connect(self.store) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if not allow_running:
            assert "running" not in self.statuses().values(), self.statuses()

    @staticmethod
    def wait_for(predicate: Callable[[], bool], what: str, timeout: float = HANG_GUARD_S) -> None:
        """Poll until `predicate()` holds (a subprocess has no event to wait on)."""
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.05)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)
