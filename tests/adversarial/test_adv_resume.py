"""Resuming an agent request whose MCP servers or tools are not what it recorded.

Each row is one clear error (exit status 2, one paragraph on stderr naming
the file or the tools), with the store intact and the run still resumable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SAMPLE = str(Path(__file__).resolve().parents[1] / "mcp_sample_server.py")

RECORDING = """
import json, os, sys
from taskloom.store import Store

store = Store.open(sys.argv[1])
journal = store.journal(kind="agent", request="who?", config=json.loads(sys.argv[2]))
store.flush()
os._exit(0)  # as a crash would: the request stays unfinished
"""


def servers(**entries: object) -> str:
    return json.dumps({"mcpServers": entries})


def abandoned_agent_run(cli: Any, config: dict[str, Any]) -> str:
    """The id of an agent request that recorded `config` and whose process died."""
    script = cli.write("record.py", RECORDING)
    done = subprocess.run(
        [sys.executable, str(script), str(cli.store), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli.env,
    )
    assert done.returncode == 0, done.stderr
    ((run_id, status),) = cli.statuses().items()
    assert status == "running"  # its owner is gone: abandoned
    return str(run_id)


def recorded(mcp: Path, *tools: str) -> dict[str, Any]:
    return {"tools": list(tools), "tool_sources": [], "mcp": [str(mcp)]}


def test_an_agent_run_whose_mcp_file_is_gone_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    config = cli.write("gone.json", servers(s={"command": sys.executable, "args": [SAMPLE]}))
    run_id = abandoned_agent_run(cli, recorded(config, "whoami"))
    config.unlink()
    outcome = cli("resume", run_id)
    cli.assert_clear_error(outcome, 2, mentions=["gone.json"])
    cli.assert_store_intact(allow_running=True)  # still resumable once the file is back


def test_mcp_on_resume_replaces_the_recorded_files(cli) -> None:  # type: ignore[no-untyped-def]
    config = cli.write("mcp.json", servers(s={"command": sys.executable, "args": [SAMPLE]}))
    run_id = abandoned_agent_run(cli, recorded(config, "whoami"))
    other = cli.write("other.json", '{"mcpServers": {"s": {"command": "x",}}}')
    outcome = cli("resume", run_id, "--mcp", other)
    cli.assert_clear_error(outcome, 2, mentions=["other.json is not valid JSON"])
    cli.assert_store_intact(allow_running=True)


def test_an_mcp_tool_the_server_no_longer_offers_is_named(cli) -> None:  # type: ignore[no-untyped-def]
    config = cli.write("mcp.json", servers(s={"command": sys.executable, "args": [SAMPLE]}))
    run_id = abandoned_agent_run(cli, recorded(config, "whoami", "vanished"))
    outcome = cli("resume", run_id)
    cli.assert_clear_error(outcome, 2, mentions=["vanished", "--mcp"])
    assert "whoami" not in outcome.stderr  # the server still offers that one
    cli.assert_store_intact(allow_running=True)
