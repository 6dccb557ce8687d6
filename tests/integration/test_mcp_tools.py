"""MCP servers as tools, against real servers: `mcp-server-time` over stdio, and
the SDK-built sample server (tests/mcp_sample_server.py) over stdio and over
Streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import taskloom
from taskloom.engine import events as ev
from taskloom.tools import mcp

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SAMPLE = str(Path(__file__).resolve().parents[1] / "mcp_sample_server.py")
TIME_SERVER = str(Path(sys.executable).with_name("mcp-server-time"))
START_GUARD_S = 30.0
"""Far past a server's start: only a broken server reaches it."""


def stdio_sample(label: str = "sample", **keys: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [SAMPLE, "--label", label], **keys}


def servers(**entries: dict[str, Any]) -> dict[str, Any]:
    return {"mcpServers": entries}


def by_name(tools: list[taskloom.Tool]) -> dict[str, taskloom.Tool]:
    return {t.name: t for t in tools}


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def children_running(fragment: str) -> list[int]:
    """Pids of this process's children whose command line contains `fragment`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and fragment in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


async def run(text: str, tools: list[taskloom.Tool], **options: Any) -> taskloom.RunResult:
    plan = taskloom.Plan.parse(text, tools=tools)
    return await taskloom.execute(plan, tools=tools, **options)


def assert_overlapped(result: taskloom.RunResult, ids: list[str]) -> None:
    """Every call began before any of them ended: they were in flight together."""
    tasks = [result.tasks[taskloom.TaskId(i)] for i in ids]
    assert all(t.status is taskloom.TaskStatus.DONE for t in tasks), [t.error for t in tasks]
    last_start = max(t.started_at for t in tasks if t.started_at is not None)
    first_end = min(t.finished_at for t in tasks if t.finished_at is not None)
    assert last_start < first_end


# -- mcp-server-time over stdio -----------------------------------------------------------


async def test_time_server_calls_run_in_parallel_through_one_session() -> None:
    zones = ["Europe/Paris", "Asia/Tokyo", "America/New_York", "Etc/UTC", "Europe/Berlin"]
    plan = "".join(f'{i}. get_current_time("{z}")\n' for i, z in enumerate(zones, 1))
    async with mcp.connect(servers(time={"command": TIME_SERVER})) as tools:
        assert {"get_current_time", "convert_time"} <= set(by_name(tools))
        assert by_name(tools)["get_current_time"].policy.idempotent  # readOnlyHint
        result = await run(plan + f"{len(zones) + 1}. join()", tools)
        assert len(children_running("mcp-server-time")) == 1  # one server, one session
    assert_overlapped(result, [str(i) for i in range(1, len(zones) + 1)])
    outputs = [result.tasks[taskloom.TaskId(str(i))].output for i in range(1, len(zones) + 1)]
    assert [o["timezone"] for o in outputs] == zones  # structuredContent, as the server sent it
    assert children_running("mcp-server-time") == []


async def test_a_bad_argument_for_a_time_tool_is_a_plan_error() -> None:
    async with mcp.connect(servers(time={"command": TIME_SERVER})) as tools:
        with pytest.raises(taskloom.PlanError, match="timezone=5"):
            taskloom.Plan.parse("1. get_current_time(5)\n2. join()", tools=tools)
        with pytest.raises(taskloom.PlanError, match="missing required argument"):
            taskloom.Plan.parse("1. convert_time()\n2. join()", tools=tools)


# -- the sample server over Streamable HTTP ---------------------------------------------------


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """The sample server over Streamable HTTP on a free loopback port."""
    port = _free_port()
    process = start_http(port)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_http(port: int) -> subprocess.Popen[bytes]:
    """Start the sample server over HTTP on `port`, once it listens."""
    process = subprocess.Popen(
        [sys.executable, SAMPLE, "--http", str(port), "--label", "web"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_port(process, port)
    return process


def _wait_for_port(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_GUARD_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the sample server exited with {process.returncode}"
        try:
            httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)  # polling a port: there is no event to wait for
    pytest.fail("the sample HTTP server did not listen in time")


async def test_http_tools_keep_their_names_and_schemas(http_url: str) -> None:
    async with mcp.connect(servers(web={"url": http_url})) as tools:
        named = by_name(tools)
        assert {"get-time", "db.query", "slow", "fail"} <= set(named)
        assert named["db.query"].parameters == ("table", "limit")
        assert named["db.query"].policy.idempotent  # idempotentHint
        assert named["slow"].policy.idempotent  # readOnlyHint
        assert not named["fail"].policy.idempotent  # no hints: side effects
        assert named["slow"].description.startswith("Wait `seconds`")


async def test_http_names_with_dash_and_dot_run_from_plan_text(http_url: str) -> None:
    async with mcp.connect(servers(web={"url": http_url})) as tools:
        result = await run('1. get-time()\n2. db.query("users", limit=3)\n3. join()', tools)
    first, second = result.tasks[taskloom.TaskId("1")], result.tasks[taskloom.TaskId("2")]
    assert first.status is taskloom.TaskStatus.DONE, first.error
    assert isinstance(first.output, str) and float(first.output) > 0  # one text block: a str
    assert second.output == {"result": [{"id": i, "name": f"users-{i}"} for i in range(3)]}


async def test_http_is_error_fails_the_task_with_the_servers_message(http_url: str) -> None:
    async with mcp.connect(servers(web={"url": http_url})) as tools:
        result = await run('1. fail("disk full on /var")\n2. whoami()\n3. join()', tools)
    failed, sibling = result.tasks[taskloom.TaskId("1")], result.tasks[taskloom.TaskId("2")]
    assert failed.status is taskloom.TaskStatus.FAILED
    assert isinstance(failed.error, taskloom.ToolFailed)
    assert failed.error.cause_type == "MCPToolError"
    assert "disk full on /var" in str(failed.error) and "'web'" in str(failed.error)
    assert sibling.output == "web"  # the run went on


async def test_http_parallel_calls_overlap_in_one_session(http_url: str) -> None:
    plan = "".join(f'{i}. slow(0.3, "t{i}")\n' for i in range(1, 7)) + "7. join()"
    async with mcp.connect(servers(web={"url": http_url})) as tools:
        await run("1. peak_slow()\n2. join()", tools)  # from here on
        result = await run(plan, tools)
        peak = await run("1. peak_slow()\n2. join()", tools)
    assert_overlapped(result, [str(i) for i in range(1, 7)])
    assert peak.tasks[taskloom.TaskId("1")].output == {"result": 6}  # all six at once, there too
    assert result.tasks[taskloom.TaskId("3")].output == "web:t3"


async def test_several_text_blocks_are_a_list(http_url: str) -> None:
    async with mcp.connect(servers(web={"url": http_url})) as tools:
        result = await run("1. two_texts()\n2. join()", tools)
    assert result.tasks[taskloom.TaskId("1")].output == ["first", "second"]


async def test_http_timeout_cancels_the_call_on_the_server(http_url: str) -> None:
    config = servers(web={"url": http_url, "timeout": 0.5})
    async with mcp.connect(config) as tools:
        result = await run('1. slow(60, "http-late")\n2. join()', tools)
        late = result.tasks[taskloom.TaskId("1")]
        assert isinstance(late.error, taskloom.ToolTimedOut), late.error
        # The notification and the next request are separate HTTP posts: wait a bounded while.
        for _ in range(100):
            seen = await run("1. cancelled_tags()\n2. join()", tools)
            if "http-late" in seen.tasks[taskloom.TaskId("1")].output:
                break
            await anyio.sleep(0.05)
        assert "http-late" in seen.tasks[taskloom.TaskId("1")].output


async def test_an_http_server_killed_mid_call_fails_it_and_is_reached_again_later() -> None:
    port = _free_port()
    process = start_http(port)
    try:
        async with mcp.connect(servers(web={"url": f"http://127.0.0.1:{port}/mcp"})) as tools:
            started = anyio.Event()

            def on_event(event: ev.Event) -> None:
                if isinstance(event, ev.TaskStarted):
                    started.set()

            results: list[taskloom.RunResult] = []

            async def in_flight() -> None:
                results.append(await run('1. slow(60, "x")\n2. join()', tools, on_event=on_event))

            async with anyio.create_task_group() as group:
                group.start_soon(in_flight)
                await started.wait()
                await anyio.sleep(0.2)  # the request reaches the server: no event tells us when
                process.kill()
                process.wait()
            lost = results[0].tasks[taskloom.TaskId("1")]
            assert lost.status is taskloom.TaskStatus.FAILED
            assert "MCP server 'web'" in str(lost.error) and "connection closed" in str(lost.error)
            down = await run("1. whoami()\n2. join()", tools)
            assert "could not be reached" in str(down.tasks[taskloom.TaskId("1")].error)
            process = start_http(port)
            back = await run("1. whoami()\n2. join()", tools)
            assert back.tasks[taskloom.TaskId("1")].output == "web"
    finally:
        process.kill()
        process.wait()


# -- the sample server over stdio: cancellation, crashes, cleanup --------------------------------


async def test_stdio_timeout_sends_the_cancellation_notification() -> None:
    async with mcp.connect(servers(s=stdio_sample(timeout=0.3))) as tools:
        result = await run('1. slow(60, "late")\n2. join()', tools)
        assert isinstance(result.tasks[taskloom.TaskId("1")].error, taskloom.ToolTimedOut)
        # Over one pipe the notification reaches the server before this request.
        seen = await run("1. cancelled_tags()\n2. join()", tools)
    assert seen.tasks[taskloom.TaskId("1")].output == "late"


async def test_the_server_stops_when_the_block_ends() -> None:
    async with mcp.connect(servers(s=stdio_sample())) as tools:
        result = await run("1. pid()\n2. join()", tools)
        pid = result.tasks[taskloom.TaskId("1")].output["result"]
        assert alive(pid)
    assert not alive(pid)


async def test_the_server_stops_when_the_block_is_cancelled_mid_call() -> None:
    pid: int | None = None
    with anyio.move_on_after(60) as guard:
        async with anyio.create_task_group() as group:
            async with mcp.connect(servers(s=stdio_sample())) as tools:
                result = await run("1. pid()\n2. join()", tools)
                pid = result.tasks[taskloom.TaskId("1")].output["result"]
                started = anyio.Event()

                def on_event(event: ev.Event) -> None:
                    if isinstance(event, ev.TaskStarted):
                        started.set()

                plan = '1. slow(60, "a")\n2. slow(60, "b")\n3. join()'
                group.start_soon(functools.partial(run, plan, tools, on_event=on_event))
                await started.wait()
                group.cancel_scope.cancel()
    assert not guard.cancelled_caught
    assert pid is not None and not alive(pid)


async def test_a_crash_fails_the_calls_in_flight_and_the_next_call_restarts_it() -> None:
    async with mcp.connect(servers(s=stdio_sample())) as tools:
        before = await run("1. pid()\n2. join()", tools)
        old_pid = before.tasks[taskloom.TaskId("1")].output["result"]
        crashed = await run('1. slow(60, "a")\n2. slow(60, "b")\n3. die(0.2)\n4. join()', tools)
        for task_id in ("1", "2", "3"):
            task = crashed.tasks[taskloom.TaskId(task_id)]
            assert task.status is taskloom.TaskStatus.FAILED
            assert isinstance(task.error, taskloom.ToolFailed)
            assert task.error.cause_type == "MCPError"
            assert "MCP server 's'" in str(task.error) and "connection closed" in str(task.error)
        after = await run("1. pid()\n2. whoami()\n3. join()", tools)
        new_pid = after.tasks[taskloom.TaskId("1")].output["result"]
        assert after.tasks[taskloom.TaskId("2")].output == "sample"
        assert new_pid != old_pid and not alive(old_pid)
    assert not alive(new_pid)


async def test_a_server_killed_from_outside_mid_call_is_restarted() -> None:
    async with mcp.connect(servers(s=stdio_sample())) as tools:
        first = await run("1. pid()\n2. join()", tools)
        pid = first.tasks[taskloom.TaskId("1")].output["result"]
        started = anyio.Event()

        def on_event(event: ev.Event) -> None:
            if isinstance(event, ev.TaskStarted):
                started.set()

        async with anyio.create_task_group() as group:
            results: list[taskloom.RunResult] = []

            async def in_flight() -> None:
                results.append(await run('1. slow(60, "x")\n2. join()', tools, on_event=on_event))

            group.start_soon(in_flight)
            await started.wait()
            os.kill(pid, signal.SIGKILL)
        killed = results[0].tasks[taskloom.TaskId("1")]
        assert killed.status is taskloom.TaskStatus.FAILED and "MCP server 's'" in str(killed.error)
        later = await run("1. whoami()\n2. join()", tools)
        assert later.tasks[taskloom.TaskId("1")].output == "sample"


# -- two servers, one name ------------------------------------------------------------------


async def test_two_servers_with_one_name_are_reached_by_server_dot_tool() -> None:
    config = servers(a=stdio_sample("a"), b=stdio_sample("b"), time={"command": TIME_SERVER})
    async with mcp.connect(config) as tools:
        named = by_name(tools)
        assert {"a.whoami", "b.whoami", "a.db.query", "b.db.query"} <= set(named)
        assert "whoami" not in named and "get_current_time" in named  # unique names stay bare
        result = await run('1. a.whoami()\n2. b.whoami()\n3. a.slow(0.2, "q")\n4. join()', tools)
        assert [result.tasks[taskloom.TaskId(i)].output for i in "123"] == ["a", "b", "a:q"]
        with pytest.raises(taskloom.PlanError, match=r"ambiguous.*a\.whoami, b\.whoami"):
            taskloom.Plan.parse("1. whoami()\n2. join()", tools=tools)
        with pytest.raises(taskloom.PlanError, match=r"a\.db\.query, b\.db\.query"):
            taskloom.Plan.parse('1. db.query("t")\n2. join()', tools=tools)


async def test_a_tool_named_join_is_qualified_and_an_unnamable_one_left_out() -> None:
    odd = {"command": sys.executable, "args": [SAMPLE, "--odd"]}
    with pytest.warns(mcp.SkippedTool, match="'has space' left out"):
        async with mcp.connect(servers(odd=odd)) as tools:
            named = by_name(tools)
            assert "odd.join" in named and "join" not in named and "whoami" in named
            result = await run('1. odd.join(["a", "b"])\n2. join()', tools)
    assert result.tasks[taskloom.TaskId("1")].output == "a b"


# -- configuration over annotations, limits --------------------------------------------


async def test_the_config_overrides_the_annotations_both_ways() -> None:
    config = servers(
        ro=stdio_sample("ro", idempotent=False), rw=stdio_sample("rw", idempotent=True)
    )
    async with mcp.connect(config) as tools:
        named = by_name(tools)
        assert not named["ro.slow"].policy.idempotent
        assert named["rw.fail"].policy.idempotent


async def test_max_concurrency_bounds_the_calls_in_flight() -> None:
    plan = "".join(f'{i}. slow(0.1, "t{i}")\n' for i in range(1, 5)) + "5. join()"
    async with mcp.connect(servers(s=stdio_sample(max_concurrency=1))) as tools:
        result = await run(plan, tools)
        peak = await run("1. peak_slow()\n2. join()", tools)
    assert [result.tasks[taskloom.TaskId(str(i))].output for i in range(1, 5)] == [
        f"sample:t{i}" for i in range(1, 5)
    ]
    assert peak.tasks[taskloom.TaskId("1")].output == {"result": 1}


async def test_a_server_that_does_not_start_is_a_clear_error() -> None:
    with pytest.raises(taskloom.MCPError, match="no such program"):
        async with mcp.connect(servers(gone={"command": "/nonexistent/mcp-server"})):
            pass
    exits = {"command": sys.executable, "args": ["-c", "import sys; sys.exit('bad token')"]}
    with pytest.raises(taskloom.MCPError, match="bad token"):
        async with mcp.connect(servers(quits=exits)):
            pass


# -- the agent and the command line ------------------------------------------------------------


async def test_an_agent_plans_with_mcp_tools_and_answers_from_them(http_url: str) -> None:
    from taskloom.testing import ScriptedModel

    model = ScriptedModel(
        [
            '1. db.query("users", 1)\n2. whoami()\n3. join()',
            "Thought: both answered.\nAction: Finish(web)",
        ]
    )
    async with mcp.connect(servers(web={"url": http_url})) as tools:
        agent = taskloom.Agent(tools=tools, model=model, grammar=False)
        result = await agent.run("who serves the users table?")
    assert result.answer == "web"
    planner = "".join(m.content for m in model.calls[0])
    assert "db.query(" in planner and "get-time(" in planner  # the planner saw MCP names
    joiner = model.calls[1][-1].content
    assert '1. db.query(table="users", limit=1) -> {"result": [{"id": 0' in joiner
    assert "2. whoami() -> web" in joiner


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TASKLOOM_STORE": str(tmp_path / "store.sqlite3"), **extra}


def test_exec_runs_a_plan_with_mcp_tools_from_the_default_file(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(servers(s=stdio_sample(), time={"command": TIME_SERVER})))
    plan = tmp_path / "p.plan"
    plan.write_text('1. db.query("t")\n2. get_current_time("Etc/UTC")\n3. country("France")\n')
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "exec", str(plan), "--json"],
        env=cli_env(tmp_path, TASKLOOM_MCP=str(config)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    tasks = json.loads(done.stdout)["tasks"]
    assert tasks["1"]["output"] == {"result": [{"id": 0, "name": "t-0"}, {"id": 1, "name": "t-1"}]}
    assert tasks["2"]["output"]["timezone"] == "Etc/UTC"
    assert tasks["3"]["status"] == "done"


def test_ctrl_c_during_an_mcp_call_stops_the_command_and_its_server(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(servers(s=stdio_sample())))
    plan = tmp_path / "p.plan"
    plan.write_text('1. slow(60, "x")\n')
    store = tmp_path / "store.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "exec", str(plan), "--mcp", str(config)],
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        servers_of = _wait_for_running_task(process, store)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert servers_of and not any(alive(pid) for pid in servers_of)


def _wait_for_running_task(process: subprocess.Popen[str], store: Path) -> list[int]:
    """The pids of the command's MCP servers, once its task is recorded running."""
    deadline = time.monotonic() + START_GUARD_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        running = False
        if store.exists():
            with contextlib.suppress(sqlite3.Error), sqlite3.connect(store) as conn:
                rows = conn.execute("SELECT status FROM tasks").fetchall()
                running = ("running",) in rows
        pids = [p for p in _children_of(process.pid) if "mcp_sample_server" in _cmdline(p)]
        if running and pids:
            return pids
        time.sleep(0.05)  # a subprocess has no event to wait on
    pytest.fail("the MCP call did not start in time")


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}") / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_run_and_batch_plan_with_mcp_tools_through_the_command_line(tmp_path: Path) -> None:
    from chat_server import chat_server

    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(servers(s=stdio_sample())))
    plan = "1. whoami()\n2. get-time()\n3. join()<END_OF_PLAN>"
    finish = "Thought: the server said.\nAction: Finish(sample)"
    model = ["--model", "scripted", "--mcp", str(config)]
    with chat_server([plan, finish]) as server:
        done = subprocess.run(
            [sys.executable, "-m", "taskloom", "run", "who?", "--base-url", server.url, *model],
            env=cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        planner_prompt = json.dumps(server.requests[0]["messages"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sample" in done.stdout
    assert "whoami(" in planner_prompt and "get-time(" in planner_prompt
    questions = tmp_path / "q.jsonl"
    questions.write_text('"who?"\n"who else?"\n')
    with chat_server([plan, finish, plan, finish]) as server:
        batch = subprocess.run(
            [sys.executable, "-m", "taskloom", "batch", str(questions), "--concurrency", "1"]
            + ["--base-url", server.url, *model],
            env=cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert batch.returncode == 0, batch.stderr[-2000:]
    answers = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [a["answer"] for a in answers] == ["sample", "sample"]
    with sqlite3.connect(tmp_path / "store.sqlite3") as conn:
        configs = [json.loads(c) for (c,) in conn.execute("SELECT config FROM runs")]
    # Every request records its --mcp file, for resume to open it again.
    assert [c["mcp"] for c in configs] == [[str(config.resolve())]] * 3


def test_resume_calls_an_idempotent_mcp_tool_again_but_never_a_side_effect(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(servers(s=stdio_sample())))
    plan = tmp_path / "p.plan"
    # slow is read-only: running at the crash or not, resuming finishes it.
    plan.write_text('1. slow(3, "a")\n2. send(60, "bob")\n3. country("France")\n')
    store = tmp_path / "store.sqlite3"
    command = [sys.executable, "-m", "taskloom"]
    process = subprocess.Popen(
        [*command, "exec", str(plan), "--mcp", str(config)],
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server_pids = _wait_for_running_task(process, store)
    finally:
        process.kill()  # as a crash would: no cleanup at all
        process.wait()
    # Even then the server goes: its stdin closed with the killed process (MCP's stdio rule).
    deadline = time.monotonic() + START_GUARD_S
    while any(alive(pid) for pid in server_pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # no event tells this process when another one exits
    assert not any(alive(pid) for pid in server_pids)
    with sqlite3.connect(store) as conn:
        (run_id,) = conn.execute("SELECT id FROM runs").fetchone()
    plan.write_text("")  # nothing is read from the plan file again; the --mcp file is
    done = subprocess.run(
        [*command, "resume", run_id, "--json"],
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]  # one task could not be finished
    tasks = json.loads(done.stdout)["tasks"]
    assert tasks["1"]["status"] == "done" and tasks["1"]["output"] == "sample:a"
    assert tasks["2"]["error_type"] == "TaskInterrupted"  # never sent twice
    assert tasks["3"]["status"] == "done"


def test_resume_finishes_a_killed_agent_run_with_its_mcp_servers_and_python_tool(
    tmp_path: Path,
) -> None:
    from chat_server import chat_server

    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(servers(s=stdio_sample())))
    store = tmp_path / "store.sqlite3"
    plan = '1. slow(8, "a")\n2. send(60, "bob")\n3. python("6 * 7")\n4. join()'
    finish = "Thought: the message may not have gone out.\nAction: Finish(sample:a)"
    command = [sys.executable, "-m", "taskloom"]
    with chat_server([plan, finish]) as server:
        process = subprocess.Popen(
            [*command, "run", "send it", "--base-url", server.url, "--model", "scripted"]
            + ["--mcp", str(config), "--enable-python-tool", "--max-replans", "0"],
            env=cli_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Killed while slow and send run, once python has answered.
            _wait_for_tasks(
                process, store, {"slow": "running", "send": "running", "python": "done"}
            )
        finally:
            process.kill()  # as a crash would: no cleanup at all
            process.wait()
        with sqlite3.connect(store) as conn:
            (run_id,) = conn.execute("SELECT id FROM runs").fetchone()
        # No flags: the MCP servers (the --mcp file), the python tool and the model
        # all come from the record.
        done = subprocess.run(
            [*command, "resume", run_id, "--json"],
            env=cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        joiner = server.prompts()[-1]
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["answer"] == "sample:a"
    assert len(server.requests) == 2  # the plan was reused, not asked for again
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT tool, status, output, error_type FROM tasks").fetchall()
    tasks = {tool: (status, output, error) for tool, status, output, error in rows}
    assert tasks["slow"][:2] == ("done", '"sample:a"')  # read-only: called again
    assert tasks["send"][0] == "interrupted"  # a side effect: never sent twice
    assert tasks["python"][:2] == ("done", "42")  # kept from before the crash
    assert "was running when the process stopped" in joiner


def _wait_for_tasks(process: subprocess.Popen[bytes], store: Path, want: dict[str, str]) -> None:
    """Return once the store records each tool's task in the status `want` gives it."""
    deadline = time.monotonic() + START_GUARD_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        rows: list[tuple[str, str]] = []
        if store.exists():
            with contextlib.suppress(sqlite3.Error), sqlite3.connect(store) as conn:
                rows = conn.execute("SELECT tool, status FROM tasks").fetchall()
        if all((tool, status) in rows for tool, status in want.items()):
            return
        time.sleep(0.05)  # a subprocess has no event to wait on
    pytest.fail(f"the tasks did not reach {want} in time")


async def test_mcp_serve_offers_the_tools_of_its_mcp_servers_to_plans(tmp_path: Path) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(servers(s=stdio_sample())))
    args = ["-m", "taskloom", "mcp-serve", "--mcp", str(config)]
    args += ["--store", str(tmp_path / "store.sqlite3")]
    params = StdioServerParameters(command=sys.executable, args=args, env=dict(os.environ))
    with (tmp_path / "serve.err").open("w") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert "get-time(" in str(listed["exec_plan"].description)
            plan = '1. whoami()\n2. db.query("t", 1)\n3. slow(0, "$1")\n4. join()'
            with anyio.fail_after(START_GUARD_S):
                result = await client.call_tool("exec_plan", {"plan": plan})
            pids = [await client.call_tool("exec_plan", {"plan": "1. pid()"}) for _ in range(2)]
    assert not result.is_error, result.content
    outputs = {i: t["output"] for i, t in result.structured_content["tasks"].items()}
    assert outputs == {
        "1": "sample",
        "2": {"result": [{"id": 0, "name": "t-0"}]},
        "3": "sample:sample",
    }
    # One server for every call of the serve, and it ended with the serve.
    first, second = (p.structured_content["tasks"]["1"]["output"]["result"] for p in pids)
    assert first == second and not alive(first)
