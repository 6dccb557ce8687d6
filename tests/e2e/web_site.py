"""What the browser tests share: a `taskloom serve` process, its tools, and Chromium's place."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

START_S = 90.0
"""Far past a normal start of the server: only a hang reaches it."""
WAIT_MS = 90_000
"""How long a page waits for something to appear: far past a normal run, a guard against hangs."""
TOKEN = "e2e-token"

TOOLS = '''
import os

import anyio
import taskloom


@taskloom.tool
async def gate(path: str) -> str:
    """Waits until the file exists (the test opens the gate); returns its text."""
    while not os.path.exists(path):
        await anyio.sleep(0.02)
    with open(path) as f:
        return f.read()


@taskloom.tool
async def nap(seconds: float) -> float:
    """Sleeps, then returns the seconds."""
    await anyio.sleep(seconds)
    return seconds
'''

FOREIGN_ENV = ("TASKLOOM_BASE_URL", "TASKLOOM_MODEL", "TASKLOOM_API_KEY", "TASKLOOM_TOKEN")


def chromium_path() -> str | None:
    """Debian's Chromium (`$TASKLOOM_CHROMIUM` names another), or None when it is not installed."""
    named = os.environ.get("TASKLOOM_CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    )


@dataclass
class Site:
    """A running `taskloom serve`: where it is, its store, and an API client."""

    url: str
    root: Path
    store: Path
    process: subprocess.Popen[bytes]
    api: httpx.Client

    def page_url(self) -> str:
        return f"{self.url}/?token={TOKEN}"

    def run(self, run_id: str) -> dict[str, Any]:
        answer = self.api.get(f"/v1/runs/{run_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def taskloom(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the command line against the server's store."""
        return subprocess.run(
            [sys.executable, "-m", "taskloom", *args, "--store", str(self.store)],
            capture_output=True,
            text=True,
            timeout=START_S,
            check=False,
        )


def wait_for_address(process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        found = re.search(r"(http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)  # another process's output: nothing to wait on but the file
    process.kill()
    raise AssertionError(f"serve did not start:\n{log.read_text()}")
