"""`taskloom serve` in a real process, and an SSE reader: what the HTTP API tests share."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

START_S = 60.0
"""Far past a normal start: only a hang reaches it."""

TOOLS = '''
import os
import time

import anyio
import taskloom


@taskloom.tool
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@taskloom.tool
async def nap(seconds: float) -> float:
    """Sleeps, then returns the seconds."""
    await anyio.sleep(seconds)
    return seconds


@taskloom.tool(idempotent=True)
async def gate(path: str) -> str:
    """Waits until the file exists (the test opens the gate, whole); returns its text."""
    while not os.path.exists(path):
        await anyio.sleep(0.05)
    with open(path) as f:
        return f.read()


@taskloom.tool
def odd() -> float:
    """A number JSON has no form for."""
    return float("nan")
'''


@dataclass
class Event:
    """One SSE message."""

    id: str | None
    event: str
    data: Any


@dataclass
class Server:
    """A running `taskloom serve`."""

    process: subprocess.Popen[bytes]
    url: str
    token: str | None
    log: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def start_plan(self, plan: str, **extra: Any) -> str:
        response = self.client.post("/v1/runs", json={"plan": plan, **extra})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def events(
        self, run_id: str, *, last_id: int | None = None, limit: int | None = None
    ) -> list[Event]:
        """The stream's messages (at most `limit`, then the connection is dropped)."""
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        got: list[Event] = []
        with self.client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as stream:
            assert stream.status_code == 200, stream.read()
            assert stream.headers["content-type"].startswith("text/event-stream")
            for message in read_sse(stream.iter_lines()):
                got.append(message)
                if limit is not None and len(got) >= limit:
                    break
        return got

    def follow(self, run_id: str) -> Iterator[Event]:
        """The stream's messages as they come (the connection closes when the caller stops)."""
        with self.client.stream("GET", f"/v1/runs/{run_id}/events") as stream:
            assert stream.status_code == 200, stream.read()
            yield from read_sse(stream.iter_lines())

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.client.close()

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def open_gate(gate: Path, text: str) -> None:
    """Open a `gate` tool's gate: its file appears with `text` in it, whole.

    Written beside it and renamed into place: a gate that saw the file half
    written (`write_text` creates it empty first) would return "".
    """
    beside = gate.with_name(f".{gate.name}.writing")
    beside.write_text(text, encoding="utf-8")
    os.replace(beside, gate)


def read_sse(lines: Iterator[str]) -> Iterator[Event]:
    """SSE messages from a stream's lines; comments are skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                yield Event(
                    fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def serve_args(store: Path, tools_file: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        *("-m", "taskloom", "serve", "--port", "0"),
        *("--store", str(store), "--tools", str(tools_file)),
        *extra,
    ]


def start(
    store: Path,
    tools_file: Path,
    log: Path,
    *extra: str,
    token: str | None = "test-token",
    env: dict[str, str] | None = None,
) -> Server:
    """Start `taskloom serve` on a free port; return once it accepts connections."""
    args = serve_args(store, tools_file, *extra)
    if token is not None and "--token" not in extra and "--no-auth" not in extra:
        args += ["--token", token]
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ)
        )
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if found:
            return Server(process, found.group(1), token, log)
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)  # the server's own process: no event to wait on
    process.kill()
    raise AssertionError(f"serve did not start:\n{log.read_text()}")


@contextmanager
def serving(store: Path, tools_file: Path, log: Path, *extra: str, **kw: Any) -> Iterator[Server]:
    server = start(store, tools_file, log, *extra, **kw)
    try:
        yield server
    finally:
        server.stop()
