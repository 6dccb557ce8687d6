"""Bad model servers, plans that never validate, tools that all fail, and resuming agent runs.

Every row runs the real `python -m taskloom` against a scripted
chat-completions server on 127.0.0.1 (tests/chat_server.py), or against a
port nothing listens on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chat_server import KEEP_ALIVE, SILENT, chat_server

QUESTION = "How far is Paris from Berlin?"
FINISH = "Thought: the distance is in the results.\nAction: Finish(878 km)"


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_args(url: str, *extra: str) -> list[str]:
    return ["run", QUESTION, "--base-url", url, "--model", "scripted", "--json", *extra]


def test_a_dead_server_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    outcome = cli(*run_args(f"http://127.0.0.1:{dead_port()}/v1"))
    cli.assert_clear_error(outcome, 2, mentions=["cannot", "connect"])
    assert json.loads(outcome.stdout)["status"] == "failed"
    cli.assert_store_intact()


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://127.0.0.1:99999/v1", "http:///v1", "localhost:8080"]
)
def test_a_base_url_no_request_could_reach_is_a_clear_error(cli, url: str) -> None:  # type: ignore[no-untyped-def]
    outcome = cli("run", QUESTION, "--base-url", url, "--model", "m")
    cli.assert_clear_error(outcome, 2, mentions=["base_url"])
    cli.assert_store_intact()


def test_a_server_that_only_sends_keep_alives_fails_at_the_time_limit(cli) -> None:  # type: ignore[no-untyped-def]
    with chat_server([KEEP_ALIVE]) as server:
        outcome = cli(*run_args(server.url, "--model-timeout", "1"))
    cli.assert_clear_error(outcome, 2, mentions=["limit"])
    assert "1s" in outcome.stderr
    cli.assert_store_intact()


def test_a_silent_server_fails_at_the_read_timeout(cli) -> None:  # type: ignore[no-untyped-def]
    with chat_server([SILENT]) as server:
        outcome = cli(*run_args(server.url, "--read-timeout", "0.5"))
    cli.assert_clear_error(outcome, 2, mentions=["silence"])
    cli.assert_store_intact()


def test_the_time_limit_comes_from_the_environment(cli) -> None:  # type: ignore[no-untyped-def]
    cli.env["TASKLOOM_MODEL_TIMEOUT"] = "0.5"
    with chat_server([KEEP_ALIVE]) as server:
        outcome = cli(*run_args(server.url))
    cli.assert_clear_error(outcome, 2, mentions=["0.5s"])
    cli.assert_store_intact()


def test_a_plan_repaired_from_its_first_call_runs(cli) -> None:  # type: ignore[no-untyped-def]
    replies = [
        '1. city("Paris")\n2. distanc("Paris", "Berlin")\n3. join()',
        '1. city("Paris")\n2. distance("Paris", "Berlin")\n3. join()',
        FINISH,
    ]
    with chat_server(replies) as server:
        outcome = cli(*run_args(server.url))
    assert outcome.code == 0, outcome.stderr
    data = json.loads(outcome.stdout)
    assert data["status"] == "answered"
    assert [a["valid"] for a in data["plan_attempts"]] == [False, True]
    assert [t["status"] for t in data["tasks"]] == ["done", "done"]
    cli.assert_store_intact()


def test_a_plan_that_never_validates_fails(cli) -> None:  # type: ignore[no-untyped-def]
    bad = '1. city("Paris")\n2. distanc("Paris", "Berlin")\n3. join()'
    with chat_server([bad, bad, bad, FINISH]) as server:
        outcome = cli(*run_args(server.url))
        assert len(server.requests) == 3  # no joiner call
    cli.assert_clear_error(outcome, 1, mentions=["still invalid after 3 attempts", "distanc"])
    data = json.loads(outcome.stdout)
    assert data["status"] == "failed" and data["answer"] is None
    assert (cli.statuses() or {"": "?"}).popitem()[1] == "failed"
    cli.assert_store_intact()


def test_when_every_tool_call_fails_there_is_no_answer(cli) -> None:  # type: ignore[no-untyped-def]
    replies = [
        '1. distance("Paris", "Qwzxplmtown")\n2. join()',
        "Thought: hmm.\nAction: Finish(Madrid)",  # an answer from nothing
    ]
    with chat_server(replies) as server:
        outcome = cli(*run_args(server.url, "--max-replans", "0"))
        assert len(server.requests) == 1  # the last round had nothing for a joiner
    cli.assert_clear_error(outcome, 1, mentions=["no tool call succeeded", "Qwzxplmtown"])
    data = json.loads(outcome.stdout)
    assert data["status"] == "failed" and data["answer"] is None
    cli.assert_store_intact()


CRASHING = """
import os, signal, sys
import anyio
from taskloom.agent import Agent
from taskloom.cli import load_tools
from taskloom.llm import OpenAICompatible
from taskloom.store import Store

async def main():
    store_path, base_url, tools_file = sys.argv[1:]
    with Store.open(store_path) as store:
        agent = Agent(
            tools=load_tools(tools_file),
            model=OpenAICompatible(base_url, "scripted"),
            max_replans=0,
            store=store,
        )
        await agent.run("Send the distance from Paris to Berlin")

anyio.run(main)
"""
TOOLS = """
import os, signal
import taskloom

@taskloom.tool
def send(text: str) -> str:
    '''Send a text; the process dies right after it.'''
    os.kill(os.getpid(), signal.SIGKILL)
    return "sent"
"""
PLAN = '1. distance("Paris", "Berlin")\n2. send("$1.km km")\n3. join()'


def killed_agent_run(cli, url: str) -> tuple[str, Path]:  # type: ignore[no-untyped-def]
    """An agent request whose process died mid-run; its id and its tools file."""
    tools = cli.write("adv_send_tools.py", TOOLS)
    script = cli.write("crash.py", CRASHING)
    proc = subprocess.run(
        [sys.executable, str(script), str(cli.store), url, str(tools)],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli.env,
    )
    assert proc.returncode == -9, proc.stderr
    ((run_id, status),) = cli.statuses().items()
    assert status == "running"
    return run_id, tools


def test_resuming_a_killed_agent_run_uses_what_it_recorded(cli) -> None:  # type: ignore[no-untyped-def]
    with chat_server([PLAN, FINISH]) as server:
        run_id, _ = killed_agent_run(cli, server.url)
        # The environment's model settings do not replace the recorded ones.
        cli.env["TASKLOOM_BASE_URL"] = "http://127.0.0.1:9/v1"
        outcome = cli("resume", run_id, "--json")
        assert len(server.requests) == 2  # the recorded server answered the joiner
    assert outcome.code == 0, outcome.stderr
    data = json.loads(outcome.stdout)
    assert data["status"] == "answered" and data["answer"] == "878 km"
    assert [t["status"] for t in data["tasks"]] == ["done", "interrupted"]
    cli.assert_store_intact()


def test_resuming_an_agent_run_whose_tools_are_gone_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    with chat_server([PLAN]) as server:
        run_id, tools = killed_agent_run(cli, server.url)
    tools.unlink()
    outcome = cli("resume", run_id)
    cli.assert_clear_error(outcome, 2, mentions=["adv_send_tools", "again"])
    cli.assert_store_intact(allow_running=True)  # still resumable once the tools are back
