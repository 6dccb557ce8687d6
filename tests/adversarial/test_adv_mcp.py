"""Bad MCP configurations and servers through the real command line.

Each row is one clear error (exit status 2, one paragraph on stderr naming
the file or the server), with the store left intact and no run stuck
`running`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

SAMPLE = str(Path(__file__).resolve().parents[1] / "mcp_sample_server.py")
PLAN = '1. whoami()\n2. country("France")\n'


def servers(**entries: object) -> str:
    return json.dumps({"mcpServers": entries})


def test_a_malformed_mcp_file_is_a_clear_error(cli) -> None:
    plan = cli.write("p.plan", PLAN)
    config = cli.write("mcp.json", '{"mcpServers": {"time": {"command": "x",}}}')
    outcome = cli("exec", plan, "--mcp", config)
    cli.assert_clear_error(outcome, mentions=["mcp.json is not valid JSON", "line 1"])
    cli.assert_store_intact()
    assert cli.statuses() == {}  # nothing ran, so nothing was recorded


def test_a_missing_mcp_file_is_a_clear_error(cli) -> None:
    plan = cli.write("p.plan", PLAN)
    outcome = cli("exec", plan, "--mcp", cli.root / "nope.json")
    cli.assert_clear_error(outcome, mentions=["nope.json does not exist"])
    cli.assert_store_intact()


def test_a_missing_default_file_from_the_environment_is_a_clear_error(cli) -> None:
    plan = cli.write("p.plan", PLAN)
    cli.env["TASKLOOM_MCP"] = str(cli.root / "default.json")
    outcome = cli("exec", plan)
    cli.assert_clear_error(outcome, mentions=["default.json does not exist"])
    cli.assert_store_intact()


@pytest.mark.parametrize(
    ("entry", "mentions"),
    [
        ({}, ["MCP server 'x'", 'needs either "command"']),
        ({"command": "a", "timeout": "soon"}, ["MCP server 'x'", "timeout"]),
        ({"command": "a", "max_concurrency": 0}, ["MCP server 'x'", "max_concurrency"]),
    ],
)
def test_a_bad_server_entry_names_the_file_and_the_server(cli, entry, mentions) -> None:
    plan = cli.write("p.plan", PLAN)
    config = cli.write("mcp.json", servers(x=entry))
    outcome = cli("exec", plan, "--mcp", config)
    cli.assert_clear_error(outcome, mentions=["mcp.json", *mentions])
    cli.assert_store_intact()


def test_a_server_whose_command_does_not_exist_is_a_clear_error(cli) -> None:
    plan = cli.write("p.plan", PLAN)
    config = cli.write("mcp.json", servers(ghost={"command": "no-such-mcp-server-here"}))
    outcome = cli("exec", plan, "--mcp", config)
    cli.assert_clear_error(
        outcome, mentions=["MCP server 'ghost'", "'no-such-mcp-server-here'", "no such program"]
    )
    cli.assert_store_intact()
    assert cli.statuses() == {}


def test_a_server_that_exits_at_once_is_a_clear_error_quoting_its_stderr(cli) -> None:
    plan = cli.write("p.plan", PLAN)
    quits = {"command": sys.executable, "args": ["-c", "import sys; sys.exit('missing API key')"]}
    config = cli.write("mcp.json", servers(quits=quits))
    outcome = cli("exec", plan, "--mcp", config)
    cli.assert_clear_error(
        outcome,
        mentions=["MCP server 'quits'", "MCP handshake", "its stderr said: missing API key"],
    )
    cli.assert_store_intact()


def test_a_plan_calling_a_name_two_servers_share_is_a_clear_error(cli) -> None:
    plan = cli.write("p.plan", PLAN)
    a = {"command": sys.executable, "args": [SAMPLE, "--label", "a"]}
    b = {"command": sys.executable, "args": [SAMPLE, "--label", "b"]}
    config = cli.write("mcp.json", servers(a=a, b=b))
    outcome = cli("exec", plan, "--mcp", config)
    cli.assert_clear_error(outcome, mentions=["p.plan", "ambiguous", "a.whoami, b.whoami"])
    cli.assert_store_intact()
    assert cli.statuses() == {}


def test_a_server_crash_fails_its_tasks_and_the_run_goes_on(cli) -> None:
    plan = cli.write("p.plan", '1. die(0.2)\n2. slow(30, "late")\n3. country("France")\n')
    config = cli.write("mcp.json", servers(s={"command": sys.executable, "args": [SAMPLE]}))
    outcome = cli("exec", plan, "--mcp", config, "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    tasks = json.loads(outcome.stdout)["tasks"]
    for task_id in ("1", "2"):
        assert tasks[task_id]["status"] == "failed"
        assert "MCP server 's'" in tasks[task_id]["error"]
    assert tasks["3"]["status"] == "done"
    cli.assert_store_intact()
    assert list(cli.statuses().values()) == ["completed"]  # the run ended; two of its tasks failed
