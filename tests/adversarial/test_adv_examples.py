"""Bad `--examples` files and `--no-world` without tools, through the real command line.

No row reaches a model: each mistake is found before the first model call,
and the model settings point at a port nothing listens on.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

BOOKS = str(Path(__file__).resolve().parents[2] / "examples" / "books.py")
SAMPLE = str(Path(__file__).resolve().parents[1] / "mcp_sample_server.py")
GOOD = {"question": "Who wrote Emma?", "plan": '1. book("Emma")'}


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def agent_args(command: str, cli) -> list[str]:  # type: ignore[no-untyped-def]
    questions = cli.write("q.jsonl", '{"question": "Who wrote Dune?"}\n')
    head = ["run", "Who wrote Dune?"] if command == "run" else ["batch", str(questions)]
    return [*head, "--base-url", dead_url(), "--model", "m"]


BAD_FILES = {
    "a line that is not JSON": (
        json.dumps(GOOD) + '\n{"question": "Who wrote Dune?", "plan": \n',
        ["ex.jsonl, line 2"],
    ),
    "an example calling an unknown tool": (
        json.dumps({"question": "Who wrote Emma?", "plan": '1. shelf("Emma")'}) + "\n",
        ["example 1", "unknown tool 'shelf'"],
    ),
    "a decision on a task without a result": (
        json.dumps({**GOOD, "results": {"1": {"author": "Jane Austen"}}, "decision": "Finish($2)"})
        + "\n",
        ["refers to tasks without results", "'2'"],
    ),
    "an example that is a list": ('["Who wrote Emma?", "1. book()"]\n', ["line 1", "JSON object"]),
    "no examples at all": ("\n\n", ["holds no examples"]),
    "not UTF-8": (b"\xff\xfe{}\n", ["cannot read examples"]),
}


@pytest.mark.parametrize("command", ["run", "batch"])
@pytest.mark.parametrize("case", BAD_FILES.keys())
def test_a_bad_examples_file_is_a_clear_error(cli, command: str, case: str) -> None:  # type: ignore[no-untyped-def]
    content, mentions = BAD_FILES[case]
    examples = cli.write("ex.jsonl", content)
    outcome = cli(*agent_args(command, cli), "--no-world", "--tools", BOOKS, "--examples", examples)
    cli.assert_clear_error(outcome, 2, mentions=mentions)
    cli.assert_store_intact()


def test_an_examples_file_that_is_missing_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    outcome = cli(*agent_args("run", cli), "--examples", cli.root / "nope.jsonl")
    cli.assert_clear_error(outcome, 2, mentions=["cannot read examples from", "nope.jsonl"])
    assert cli.statuses() == {}


def test_world_examples_without_the_world_tools_are_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    world = {"question": "Peru?", "plan": '1. country("Peru")'}
    examples = cli.write("ex.jsonl", json.dumps(world))
    outcome = cli(*agent_args("run", cli), "--no-world", "--tools", BOOKS, "--examples", examples)
    cli.assert_clear_error(outcome, 2, mentions=["unknown tool 'country'"])
    cli.assert_store_intact()


@pytest.mark.parametrize("command", ["run", "batch", "exec", "mcp-serve"])
def test_no_world_with_no_other_tool_is_a_clear_error(cli, command: str) -> None:  # type: ignore[no-untyped-def]
    if command == "exec":
        args = ["exec", str(cli.write("p.plan", '1. country("Peru")\n'))]
    elif command == "mcp-serve":
        args = ["mcp-serve", "--base-url", dead_url(), "--model", "m"]
    else:
        args = agent_args(command, cli)
    outcome = cli(*args, "--no-world")
    cli.assert_clear_error(outcome, 2, mentions=["--no-world leaves no tools", "--tools", "--mcp"])
    assert cli.statuses() == {}


def test_no_world_keeps_an_mcp_servers_tools_and_only_those(cli) -> None:  # type: ignore[no-untyped-def]
    config = cli.write(
        "mcp.json", json.dumps({"mcpServers": {"s": {"command": sys.executable, "args": [SAMPLE]}}})
    )
    plan = cli.write("p.plan", "1. whoami()\n")
    outcome = cli("exec", plan, "--no-world", "--mcp", config, "--json")
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert json.loads(outcome.stdout)["tasks"]["1"]["status"] == "done"
    plan = cli.write("p.plan", '1. whoami()\n2. country("Peru")\n')
    outcome = cli("exec", plan, "--no-world", "--mcp", config)
    cli.assert_clear_error(outcome, 2, mentions=["unknown tool 'country'"])
    cli.assert_store_intact()
