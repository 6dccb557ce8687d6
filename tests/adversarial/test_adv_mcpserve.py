"""`taskloom mcp-serve` given bad options: a clear error before serving, never a traceback."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_that_is_no_port_is_refused(cli, port: str) -> None:  # type: ignore[no-untyped-def]
    outcome = cli("mcp-serve", "--http", "--port", port)
    assert outcome.code == 2
    assert "Traceback" not in outcome.stderr
    assert "--port" in outcome.stderr
    assert outcome.stdout == ""
    cli.assert_store_intact()


def test_a_port_in_use_is_a_clear_error(cli, taken_port: int) -> None:  # type: ignore[no-untyped-def]
    outcome = cli("mcp-serve", "--http", "--port", str(taken_port))
    cli.assert_clear_error(outcome, 2, mentions=["cannot listen", str(taken_port), "in use"])
    cli.assert_store_intact()


def test_a_host_that_does_not_resolve_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    outcome = cli("mcp-serve", "--http", "--host", "nosuchhost.invalid", "--port", "0")
    cli.assert_clear_error(outcome, 2, mentions=["cannot listen", "nosuchhost.invalid"])
    cli.assert_store_intact()


def test_host_or_port_without_http_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    outcome = cli("mcp-serve", "--port", "8123")
    cli.assert_clear_error(outcome, 2, mentions=["--http", "stdio"])


@pytest.mark.parametrize("http", [[], ["--http", "--port", "0"]])
def test_a_missing_tools_file_is_a_clear_error(cli, http: list[str]) -> None:  # type: ignore[no-untyped-def]
    outcome = cli("mcp-serve", "--tools", "missing_tools.py", *http)
    cli.assert_clear_error(outcome, 2, mentions=["missing_tools.py"])
    assert outcome.stdout == ""  # over stdio, a client reads nothing it could take for protocol
    cli.assert_store_intact()


def test_a_tools_file_that_defines_no_tools_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    empty = cli.write("no_tools.py", "X = 1\n")
    outcome = cli("mcp-serve", "--tools", empty)
    cli.assert_clear_error(outcome, 2, mentions=["defines no"])


def test_a_server_url_without_a_model_name_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    outcome = cli("mcp-serve", "--base-url", "http://127.0.0.1:9/v1")
    cli.assert_clear_error(outcome, 2, mentions=["model name"])


def test_a_file_that_is_no_store_is_refused_untouched(cli) -> None:  # type: ignore[no-untyped-def]
    notes = cli.write("notes.txt", "my notes\n")
    outcome = cli("mcp-serve", "--store", notes)
    cli.assert_clear_error(outcome, 2, mentions=["notes.txt"])
    assert notes.read_text() == "my notes\n"


def test_a_non_loopback_host_is_warned_about(cli) -> None:  # type: ignore[no-untyped-def]
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the warning comes, then
    # the error, and nothing listens beyond loopback even for a moment.
    outcome = cli("mcp-serve", "--http", "--host", "192.0.2.1", "--port", "0")
    cli.assert_clear_error(outcome, 2, mentions=["cannot listen", "192.0.2.1"])
    warning = outcome.stderr[: outcome.stderr.index("error:")]
    assert "warning: 192.0.2.1 is not a loopback address" in warning
    assert "no authentication" in warning
    cli.assert_store_intact()


def test_bytes_that_are_no_protocol_on_stdin_do_not_crash_the_server(cli) -> None:  # type: ignore[no-untyped-def]
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "exec_plan"}}
    lines = ["not json", "{}", '{"jsonrpc": "2.0", "id": 7, "method": "nosuch"}', json.dumps(call)]
    outcome = cli("mcp-serve", stdin="\n".join(lines) + "\n")
    # stdin ended, so the server did: no traceback, and stdout holds only protocol.
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr
    replies = [json.loads(line) for line in outcome.stdout.splitlines()]
    assert replies and all(r["jsonrpc"] == "2.0" and "error" in r for r in replies)
    cli.assert_store_intact()


def test_started_on_a_terminal_it_says_how_it_is_meant_to_be_used(cli) -> None:  # type: ignore[no-untyped-def]
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        cli.command("mcp-serve", "--no-store"),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
        cwd=cli.root,
        start_new_session=True,
    )
    os.close(terminal)
    try:
        line = process.stderr.readline()  # type: ignore[union-attr]
        assert b"speaks MCP on stdin and stdout" in line and b"--http" in line
        os.write(main, b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n')
        reply = json.loads(process.stdout.readline())  # type: ignore[union-attr]
        assert reply["id"] == 1  # it serves (and so Ctrl-C is handled)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        os.close(main)
    assert process.returncode == 130
    assert b"Traceback" not in err
