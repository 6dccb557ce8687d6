"""An agent request killed mid-run is resumed: plan text reused, no side effect twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import taskloom
from taskloom.agent import Agent
from taskloom.llm import GenerationOptions, Message
from taskloom.store import Store
from taskloom.testing import FunctionModel
from taskloom.tools.world import WORLD_TOOLS

CRASHING = """
import os, signal, sys
import anyio
import taskloom
from taskloom.agent import Agent
from taskloom.store import Store
from taskloom.testing import ScriptedModel
from taskloom.tools.world import WORLD_TOOLS

@taskloom.tool
def notify(message: str) -> str:
    '''Send a message: a side effect; the process dies right after it.'''
    with open(sys.argv[2], "a") as out:
        out.write(message + "\\n")
    os.kill(os.getpid(), signal.SIGKILL)
    return "sent"

PLAN = '1. country("France")\\n2. notify("France has $1.population people")\\n3. join()'

async def main():
    with Store.open(sys.argv[1]) as store:
        model = ScriptedModel([PLAN, "Action: Finish(never reached)"])
        agent = Agent(tools=[*WORLD_TOOLS, notify], model=model, grammar=False, store=store)
        await agent.run("Tell me France's population")

anyio.run(main)
"""


@taskloom.tool
def notify(message: str) -> str:
    """Send a message (must not be called again on resume)."""
    raise AssertionError("a side-effecting task ran twice")


def test_killed_agent_request_resumes_without_repeating_the_side_effect(tmp_path: Path) -> None:
    store_path, out = tmp_path / "s.sqlite3", tmp_path / "sent.txt"
    script = tmp_path / "crash.py"
    script.write_text(CRASHING)
    proc = subprocess.run(
        [sys.executable, str(script), str(store_path), str(out)], capture_output=True, timeout=60
    )
    assert proc.returncode == -9, proc.stderr
    assert out.read_text().splitlines() == ["France has 66987244 people"]

    joiner_prompts: list[str] = []

    def joiner(messages: tuple[Message, ...], options: GenerationOptions) -> str:
        joiner_prompts.append(messages[-1].content)
        return "Thought: the message may not have gone out.\nAction: Finish(66987244)"

    async def resume() -> taskloom.RunResult:
        with Store.open(store_path) as store:
            (run,) = store.runs()
            assert run.status == "abandoned"  # its process was killed
            record = store.load(run.id)
            assert record.plan_attempts[0].text.startswith("1. country")
            agent = Agent(
                tools=[*WORLD_TOOLS, notify],
                model=FunctionModel(joiner),
                grammar=False,
                store=store,
            )
            result = await agent.resume(run.id)
            assert result.answer == "66987244"
            after = store.load(run.id)
            assert after.status == "answered" and after.resumes == 1
            assert [t.status for t in after.tasks] == ["done", "interrupted"]
            return result.rounds[0]

    run = anyio.run(resume)
    assert run.tasks["1"].output["population"] == 66987244
    assert run.tasks["1"].attempts == 0  # restored, not called again
    assert run.tasks["2"].status == "interrupted"
    assert len(joiner_prompts) == 1  # no new plan was asked for: the written one was reused
    assert "was running when the process stopped" in joiner_prompts[0]
    assert out.read_text().splitlines() == ["France has 66987244 people"]


TOOLS_MODULE = """
import os, signal, sys
import taskloom

@taskloom.tool
def notify(message: str) -> str:
    '''Send a message: a side effect; the process dies right after it.'''
    with open(os.environ["SENT_FILE"], "a") as out:
        out.write(message + "\\n")
    if os.environ.get("DIE_AFTER_SENDING"):
        os.kill(os.getpid(), signal.SIGKILL)
    return "sent"
"""

CRASHING_OVER_HTTP = """
import sys
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
            model=OpenAICompatible(base_url, "scripted", total_timeout=30),
            max_replans=0,
            max_concurrency=2,
            tool_latency=0.01,
            store=store,
        )
        await agent.run("Tell me France's population")

anyio.run(main)
"""


def test_taskloom_resume_of_a_killed_agent_run_uses_what_the_run_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from chat_server import chat_server
    from taskloom.cli import app

    store_path, sent = tmp_path / "s.sqlite3", tmp_path / "sent.txt"
    tools_file = tmp_path / "resume_tools.py"
    tools_file.write_text(TOOLS_MODULE)
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_OVER_HTTP)
    replies = [
        '1. country("France")\n2. notify("France has $1.population people")\n3. join()',
        "Thought: the message may not have gone out.\nAction: Finish(66987244)",
    ]
    with chat_server(replies) as server:
        env = {**os.environ, "SENT_FILE": str(sent), "DIE_AFTER_SENDING": "1"}
        proc = subprocess.run(
            [sys.executable, str(script), str(store_path), server.url, str(tools_file)],
            capture_output=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == -9, proc.stderr
        assert len(server.requests) == 1  # the plan; the process died before the joiner

        monkeypatch.setenv("SENT_FILE", str(sent))
        with Store.open(store_path) as store:
            (run,) = store.runs()
        assert run.status == "abandoned"  # its owner was killed
        # No flags: the tools (a file), the model (the server), the limits all come
        # from the record. The store is closed: the CLI opens it itself.
        result = CliRunner().invoke(app, ["resume", run.id, "--json", "--store", str(store_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "answered" and data["answer"] == "66987244"
    assert sent.read_text().splitlines() == ["France has 66987244 people"]  # not sent twice
    assert len(server.requests) == 2
    joiner = server.requests[1]["messages"]
    assert "This is the last round" in joiner[0]["content"]  # the recorded max_replans=0
    assert "was running when the process stopped" in joiner[-1]["content"]
    with Store.open(store_path) as store:
        after = store.load(run.id)
    assert after.status == "answered" and after.resumes == 1
    assert after.config["max_concurrency"] == 2 and after.config["tool_latency"] == 0.01
