"""Ctrl-C, SIGTERM and abandoned threads through the real command line.

Each case starts `taskloom exec` on a plan whose first tool writes a marker
file and then runs until stopped, waits for the marker, signals the process,
and checks what a user sees: it ends promptly with a one-line notice, exits
128 + the signal's number, and the store records the run `cancelled`.
"""

from __future__ import annotations

import json
import signal
import socket
import threading

import pytest

TOOLS = '''
import threading, time
from pathlib import Path
import anyio
import taskloom

never = threading.Event()

@taskloom.tool
def sync_sleeper(marker: str) -> str:
    """A sync tool that runs far longer than any test."""
    Path(marker).write_text("running")
    never.wait(600)
    return "woke"

@taskloom.tool
async def async_sleeper(marker: str) -> str:
    """An async tool that runs until cancelled, then cleans up."""
    Path(marker).write_text("running")
    try:
        await anyio.sleep(600)
    finally:
        Path(marker + ".cleaned").write_text("cleaned")
    return "woke"

@taskloom.tool(timeout=0.2)
def stuck(x: int = 0) -> int:
    """A sync tool that times out and is abandoned on its thread."""
    never.wait(600)
    return x
'''


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_signal_stops_exec_while_a_tool_runs(cli, sig: signal.Signals, kind: str) -> None:
    tools = cli.write("tools.py", TOOLS)
    marker = cli.root / "marker"
    plan = cli.write(
        "p.plan", f'1. {kind}_sleeper("{marker}")\n2. math("1 + 1")\n3. math("$2 + $1")\n'
    )
    process = cli.start("exec", plan, "--tools", tools)
    cli.wait_for(marker.exists, "the tool to start")
    outcome = cli.interrupt(process, sig)
    assert outcome.code == 128 + sig, (outcome.code, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    notice = outcome.stderr.strip().splitlines()[-1]
    assert f"interrupted by {sig.name}" in notice and "cancelled" in notice
    if kind == "async":
        assert (cli.root / "marker.cleaned").exists()  # its own cleanup ran
    cli.assert_store_intact()
    assert list(cli.statuses().values()) == ["cancelled"]
    tasks = cli.task_statuses()
    assert tasks[next(k for k in tasks if k[1] == "1")] == "cancelled"
    listed = cli("runs", "--json")
    assert [r["status"] for r in json.loads(listed.stdout)] == ["cancelled"]


def test_exec_exits_when_a_timed_out_sync_tool_is_still_running(cli) -> None:
    tools = cli.write("tools.py", TOOLS)
    plan = cli.write("p.plan", '1. stuck(1)\n2. math("2 + 2")\n')
    outcome = cli("exec", plan, "--tools", tools)
    assert outcome.code == 1, outcome.stderr[-2000:]  # a task failed: exit 1, and no hang
    assert "failed" in outcome.stdout
    assert "Traceback" not in outcome.stderr
    cli.assert_store_intact()
    assert list(cli.statuses().values()) == ["completed"]


def test_a_signal_stops_exec_json_with_a_notice_on_stderr_only(cli) -> None:
    tools = cli.write("tools.py", TOOLS)
    marker = cli.root / "marker"
    plan = cli.write("p.plan", f'1. async_sleeper("{marker}")\n')
    process = cli.start("exec", plan, "--tools", tools, "--json")
    cli.wait_for(marker.exists, "the tool to start")
    outcome = cli.interrupt(process, signal.SIGINT)
    assert outcome.code == 130
    assert outcome.stdout == ""  # stdout stays clean for JSON readers
    assert "interrupted by SIGINT" in outcome.stderr
    cli.assert_store_intact()


class SilentServer:
    """A model server on loopback that accepts a request and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.asked = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.recv(65536)
            self.asked.set()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.listener.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_run_while_it_waits_for_the_model(cli, sig: signal.Signals) -> None:
    server = SilentServer()
    try:
        url = f"http://127.0.0.1:{server.port}/v1"
        process = cli.start("run", "Population of France?", "--base-url", url, "--model", "m")
        cli.wait_for(server.asked.is_set, "the planner's request")
        outcome = cli.interrupt(process, sig)
    finally:
        server.close()
    assert outcome.code == 128 + sig, (outcome.code, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    assert f"interrupted by {sig.name}" in outcome.stderr.strip().splitlines()[-1]
    cli.assert_store_intact()
    assert list(cli.statuses().values()) == ["cancelled"]
