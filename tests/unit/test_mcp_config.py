"""The `mcpServers` configuration: its shape, taskloom's keys, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskloom.errors import ConfigError
from taskloom.tools.mcp import ENV_VAR, config_sources, load_servers


def config(**entries: Any) -> dict[str, Any]:
    return {"mcpServers": entries}


def test_stdio_and_http_servers_are_read_with_their_keys() -> None:
    stdio, http = load_servers(
        [
            config(
                time={"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}},
                docs={
                    "url": "https://example.test/mcp",
                    "headers": {"Authorization": "Bearer x"},
                    "max_concurrency": 4,
                    "timeout": 2.5,
                    "idempotent": True,
                },
            )
        ]
    )
    assert (stdio.name, stdio.transport, stdio.command, stdio.args) == (
        "time",
        "stdio",
        "uvx",
        ("mcp-server-time",),
    )
    assert stdio.env == {"TZ": "UTC"} and stdio.idempotent is None and stdio.timeout is None
    assert (http.transport, http.url, http.headers) == (
        "http",
        "https://example.test/mcp",
        {"Authorization": "Bearer x"},
    )
    assert (http.max_concurrency, http.timeout, http.idempotent) == (4, 2.5, True)


def test_keys_of_other_clients_are_accepted_and_disabled_servers_left_out() -> None:
    servers = load_servers(
        [config(a={"command": "x", "type": "stdio"}, b={"command": "y", "disabled": True})]
    )
    assert [s.name for s in servers] == ["a"]


def test_a_file_is_read_and_named_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config(t={"command": "x"})))
    (server,) = load_servers([path])
    assert server.source == str(path)
    path.write_text(json.dumps(config(t={"command": "x", "timeout": -1})))
    with pytest.raises(ConfigError, match=rf"{path}: MCP server 't': timeout: .*greater than 0"):
        load_servers([path])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"servers": {}}, 'an object with "mcpServers"'),
        (config(t=[]), "MCP server 't' must be an object"),
        (config(t={}), 'needs either "command"'),
        (config(t={"command": "x", "url": "http://h"}), "not both or neither"),
        (config(t={"command": " "}), '"command" is empty'),
        (config(t={"url": "ftp://h"}), "must start with http"),
        (config(t={"command": "x", "args": "one string"}), "args: Input should be a valid list"),
        (config(t={"command": "x", "env": {"A": 1}}), "env.A: Input should be a valid string"),
        (config(t={"command": "x", "max_concurrency": 0}), "max_concurrency"),
        (config(t={"command": "x", "max_concurrency": True}), "max_concurrency"),
        (config(t={"command": "x", "idempotent": "yes"}), "idempotent"),
        (config(t={"command": "x", "timeout": float("nan")}), "timeout"),
        (config(**{"my server": {"command": "x"}}), "'my server' must be 1 to 64 letters"),
        (config(**{"a.b": {"command": "x"}}), "qualifies tool names as SERVER.TOOL"),
    ],
)
def test_bad_configurations_are_clear_config_errors(document: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_servers([document])


def test_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_servers([tmp_path / "missing.json"])
    with pytest.raises(ConfigError, match="is a folder"):
        load_servers([tmp_path])
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": {')
    with pytest.raises(ConfigError, match=r"bad\.json is not valid JSON: .*line 1"):
        load_servers([bad])
    bad.write_text("[]")
    with pytest.raises(ConfigError, match='bad.json: an MCP configuration is an object with "mcp'):
        load_servers([bad])
    with pytest.raises(ConfigError, match="a file's path or a mapping"):
        load_servers([42])  # type: ignore[list-item]


def test_two_sources_may_not_name_the_same_server() -> None:
    with pytest.raises(ConfigError, match="'t' is also defined in <mapping>"):
        load_servers([config(t={"command": "x"}), config(t={"command": "y"})])


def test_the_default_file_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert config_sources() == []
    monkeypatch.setenv(ENV_VAR, "/etc/mcp.json")
    assert config_sources() == ["/etc/mcp.json"]
    assert config_sources(["mine.json"]) == ["mine.json"]  # given files win


def test_the_command_line_loads_the_mcp_sdk_only_when_servers_are_configured() -> None:
    import subprocess
    import sys

    code = (
        "import sys, taskloom.cli\n"
        "print(sorted(m for m in ('mcp', 'mcp_types', 'httpx2') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
