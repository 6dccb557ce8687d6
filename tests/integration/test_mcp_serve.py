"""`taskloom mcp-serve` in a real process, driven by the MCP SDK's client over stdio and HTTP."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

from chat_server import chat_server

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.timeout(120)]

HANG_GUARD_S = 60.0
"""Far past any step's expected time: only a hang reaches it."""

TOOLS = '''
import os
import sys

import anyio
import taskloom


@taskloom.tool
def shout(text: str) -> str:
    """The text in capitals."""
    print("printed by shout")  # to sys.stdout: must not reach the protocol's stream
    os.write(1, b"written to fd 1 by shout\\n")  # as C code or a child would
    return text.upper()


@taskloom.tool
def listen() -> str:
    """A line from stdin: over stdio it must not take the client's messages."""
    return sys.stdin.readline() + os.read(0, 100).decode()


@taskloom.tool
async def nap(seconds: float) -> float:
    """Sleeps, then returns the seconds."""
    await anyio.sleep(seconds)
    return seconds
'''


@pytest.fixture
def tools_file(tmp_path: Path) -> Path:
    path = tmp_path / "served_tools.py"
    path.write_text(TOOLS, encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "runs.sqlite3"


def serve_args(tools_file: Path, store: Path, *extra: str) -> list[str]:
    served = ["--tools", str(tools_file), "--store", str(store)]
    return ["-m", "taskloom", "mcp-serve", *served, *extra]


MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])
"""Both protocol eras: 2026's (what `auto` finds) and 2025's handshake, which most clients use."""


@asynccontextmanager
async def stdio(args: list[str], errlog: Path, mode: Any = "auto") -> AsyncIterator[Client]:
    params = StdioServerParameters(command=sys.executable, args=args, env=dict(os.environ))
    with errlog.open("w") as log:
        async with Client(stdio_client(params, errlog=log), mode=mode) as client:
            yield client


def statuses(store: Path) -> dict[str, str]:
    with sqlite3.connect(store) as conn:
        return dict(conn.execute("SELECT id, status FROM runs").fetchall())


def task_statuses(store: Path, run_id: str) -> dict[str, str]:
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT task_id, status FROM tasks WHERE run_id = ?", (run_id,))
        return dict(rows.fetchall())


async def check_tools_and_a_plan(client: Client) -> None:
    """The tools are listed with their schemas; a plan runs, with progress, through exec_plan."""
    listed = {t.name: t for t in (await client.list_tools()).tools}
    assert sorted(listed) == ["exec_plan", "list_runs", "run", "show_run"]
    assert listed["exec_plan"].input_schema["required"] == ["plan"]
    assert listed["exec_plan"].input_schema["properties"]["plan"]["type"] == "string"
    assert listed["run"].input_schema["required"] == ["question"]
    assert listed["show_run"].input_schema["required"] == ["run_id"]
    assert "shout(text: string)" in str(listed["exec_plan"].description)

    seen: list[float] = []
    all_settled = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)
        if progress == total == 3:
            all_settled.set()

    plan = '1. shout("a")\n2. shout("$1b")\n3. nap(0.01)\n4. join()'
    with anyio.fail_after(HANG_GUARD_S):
        result = await client.call_tool("exec_plan", {"plan": plan}, progress_callback=on_progress)
        await all_settled.wait()  # the client hands notifications to callbacks in tasks of its own
    assert not result.is_error, result.content
    data = result.structured_content
    assert data is not None and data["status"] == "completed"
    assert {i: t["output"] for i, t in data["tasks"].items()} == {"1": "A", "2": "AB", "3": 0.01}
    assert seen and seen == sorted(seen) and seen[-1] == 3

    bad = await client.call_tool("exec_plan", {"plan": '1. shout("a"'})
    assert bad.is_error and "not valid" in bad.content[0].text  # type: ignore[union-attr]
    unknown = await client.call_tool("exec_plan", {"plan": '1. whisper("a")'})
    assert unknown.is_error and "whisper" in unknown.content[0].text  # type: ignore[union-attr]

    listed_runs = await client.call_tool("list_runs", {})
    newest = listed_runs.structured_content["runs"][0]  # type: ignore[index]
    assert newest["id"] == data["run_id"] and newest["status"] == "completed"
    shown = await client.call_tool("show_run", {"run_id": data["run_id"]})
    assert [t["output"] for t in shown.structured_content["tasks"]] == ["A", "AB", 0.01]  # type: ignore[index]
    missing = await client.call_tool("show_run", {"run_id": "nosuchrun"})
    assert missing.is_error and "nosuchrun" in missing.content[0].text  # type: ignore[union-attr]


async def cancel_a_running_plan(client: Client) -> str:
    """Start a plan with a long task, cancel the call once its first task settled.

    Returns:
        The run's id, read from the store through list_runs.

    """
    with anyio.CancelScope() as scope:

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            scope.cancel()  # task 1 settled; task 2 naps for minutes

        plan = {"plan": '1. shout("x")\n2. nap(600)'}
        with anyio.fail_after(HANG_GUARD_S):
            await client.call_tool("exec_plan", plan, progress_callback=on_progress)
    assert scope.cancelled_caught
    with anyio.fail_after(HANG_GUARD_S):
        while True:
            runs = (await client.call_tool("list_runs", {})).structured_content["runs"]  # type: ignore[index]
            if runs[0]["status"] != "running":
                break
            await anyio.sleep(0.05)  # the server's own process: no event to wait on
    assert runs[0]["status"] == "cancelled"
    return str(runs[0]["id"])


# -- stdio ------------------------------------------------------------------------


@MODES
async def test_over_stdio_tools_plans_progress_and_errors(
    tools_file: Path, store: Path, tmp_path: Path, mode: str
) -> None:
    errlog = tmp_path / "server.err"
    async with stdio(serve_args(tools_file, store), errlog, mode) as client:
        await check_tools_and_a_plan(client)
        heard = await client.call_tool("exec_plan", {"plan": "1. listen()"})
        assert heard.structured_content["tasks"]["1"]["output"] == ""  # type: ignore[index]
        await check_tools_and_a_plan(client)  # and the client's messages still arrive
    err = errlog.read_text()
    # What the tool printed went to stderr, and the protocol's stream stayed intact.
    assert "printed by shout" in err and "written to fd 1 by shout" in err
    assert "Traceback" not in err


@MODES
async def test_over_stdio_a_cancelled_call_stops_its_run(
    tools_file: Path, store: Path, tmp_path: Path, mode: str
) -> None:
    async with stdio(serve_args(tools_file, store), tmp_path / "server.err", mode) as client:
        run_id = await cancel_a_running_plan(client)
        again = await client.call_tool("exec_plan", {"plan": '1. shout("still here")'})
    assert again.structured_content["tasks"]["1"]["output"] == "STILL HERE"  # type: ignore[index]
    assert task_statuses(store, run_id) == {"1": "done", "2": "cancelled"}


async def test_over_stdio_a_client_that_goes_away_cancels_its_runs(
    tools_file: Path, store: Path, tmp_path: Path
) -> None:
    started = anyio.Event()
    with anyio.fail_after(HANG_GUARD_S):
        async with stdio(serve_args(tools_file, store), tmp_path / "server.err") as client:
            async with anyio.create_task_group() as tg:

                async def on_progress(done: float, total: float | None, msg: str | None) -> None:
                    started.set()

                async def call() -> None:
                    plan = {"plan": '1. shout("x")\n2. nap(600)'}
                    await client.call_tool("exec_plan", plan, progress_callback=on_progress)

                tg.start_soon(call)
                await started.wait()
                tg.cancel_scope.cancel()  # leave without cancelling the call: the client closes
    # The client closed the server's stdin, and the server ended at that, not at a signal.
    assert "interrupted" not in (tmp_path / "server.err").read_text()
    [(run_id, status)] = statuses(store).items()
    assert status == "cancelled"
    assert task_statuses(store, run_id) == {"1": "done", "2": "cancelled"}


async def test_over_stdio_run_answers_a_question_with_a_model_server(
    tools_file: Path, store: Path, tmp_path: Path
) -> None:
    replies = ['1. shout("hello")\n2. join()', "Thought: it is shouted.\nAction: Finish(HELLO)"]
    with chat_server(replies) as model:
        args = serve_args(tools_file, store, "--base-url", model.url, "--model", "scripted")
        async with stdio(args, tmp_path / "server.err") as client:
            with anyio.fail_after(HANG_GUARD_S):
                result = await client.call_tool("run", {"question": "Shout hello?"})
            shown = await client.call_tool(
                "show_run",
                {"run_id": result.structured_content["run_id"]},  # type: ignore[index]
            )
    assert not result.is_error, result.content
    data = result.structured_content
    assert data is not None and data["status"] == "answered" and data["answer"] == "HELLO"
    assert [(t["tool"], t["output"]) for t in data["tasks"]] == [("shout", "HELLO")]
    assert shown.structured_content["kind"] == "agent"  # type: ignore[index]
    assert shown.structured_content["answer"] == "HELLO"  # type: ignore[index]
    assert "Shout hello?" in model.prompts()[0]


async def test_over_stdio_without_a_store_nothing_is_recorded(
    tools_file: Path, tmp_path: Path
) -> None:
    args = ["-m", "taskloom", "mcp-serve", "--tools", str(tools_file), "--no-store"]
    async with stdio(args, tmp_path / "server.err") as client:
        ran = await client.call_tool("exec_plan", {"plan": '1. shout("a")'})
        listed = await client.call_tool("list_runs", {})
    assert ran.structured_content["tasks"]["1"]["output"] == "A"  # type: ignore[index]
    assert listed.is_error and "--no-store" in listed.content[0].text  # type: ignore[union-attr]


# -- Streamable HTTP ------------------------------------------------------------------


@contextmanager
def http_server(tools_file: Path, store: Path, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """`mcp-serve --http --port 0` in its own process: its URL, and the process."""
    errlog = (tmp_path / "http.err").open("w+")
    process = subprocess.Popen(
        [sys.executable, *serve_args(tools_file, store, "--http", "--port", "0")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=errlog,
        start_new_session=True,
    )
    try:
        yield _wait_for_url(process, errlog), process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        errlog.close()


def _wait_for_url(process: subprocess.Popen[bytes], errlog: Any) -> str:
    end = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < end:
        errlog.seek(0)
        found = re.search(r"serving MCP at (http://\S+)", errlog.read())
        if found:
            return found.group(1)
        if process.poll() is not None:
            errlog.seek(0)
            pytest.fail(f"mcp-serve exited with {process.returncode}: {errlog.read()}")
        time.sleep(0.05)  # a line on another process's stderr: nothing to wait on
    pytest.fail("mcp-serve --http never said where it listens")


@MODES
async def test_over_http_tools_plans_progress_and_errors(
    tools_file: Path, store: Path, tmp_path: Path, mode: Any
) -> None:
    with http_server(tools_file, store, tmp_path) as (url, process):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        async with Client(url, mode=mode) as client:
            await check_tools_and_a_plan(client)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=HANG_GUARD_S) == 130


@MODES
async def test_over_http_a_cancelled_call_stops_its_run(
    tools_file: Path, store: Path, tmp_path: Path, mode: Any
) -> None:
    with http_server(tools_file, store, tmp_path) as (url, _):
        async with Client(url, mode=mode) as client:
            run_id = await cancel_a_running_plan(client)
    assert task_statuses(store, run_id) == {"1": "done", "2": "cancelled"}


async def test_stopping_the_http_server_cancels_the_runs_in_flight(
    tools_file: Path, store: Path, tmp_path: Path
) -> None:
    started = anyio.Event()
    with http_server(tools_file, store, tmp_path) as (url, process):
        async with Client(url) as client, anyio.create_task_group() as tg:

            async def on_progress(done: float, total: float | None, msg: str | None) -> None:
                started.set()

            async def call() -> None:
                plan = {"plan": '1. shout("x")\n2. nap(600)'}
                with pytest.raises(MCPError, match="without a response"):  # the server stopped
                    await client.call_tool("exec_plan", plan, progress_callback=on_progress)

            tg.start_soon(call)
            with anyio.fail_after(HANG_GUARD_S):
                await started.wait()
            process.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(process.wait, HANG_GUARD_S)  # TimeoutExpired: a hang
            tg.cancel_scope.cancel()
        assert process.returncode == 143
    [(run_id, status)] = statuses(store).items()
    assert status == "cancelled"
    assert task_statuses(store, run_id) == {"1": "done", "2": "cancelled"}
