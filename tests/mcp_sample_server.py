"""A small MCP server for the tests, built with the SDK's MCPServer.

Run it over stdio (`python tests/mcp_sample_server.py`) or Streamable HTTP on
loopback (`python tests/mcp_sample_server.py --http PORT`). Its tools cover
what a client must handle: a slow call, a call whose result has `isError`,
structured output, names with `-` and `.`, annotations, and one that kills
the server mid-call.

`--label L` names the server in its answers (`whoami`, `slow`), so tests can
tell two copies apart when both offer the same tool names.
"""

from __future__ import annotations

import argparse
import os
import time

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel


class Row(BaseModel):
    """One row of the fake database."""

    id: int
    name: str


def build(label: str) -> MCPServer:
    """The server, its tools answering with `label` where they say who they are."""
    server = MCPServer(label)

    cancelled: list[str] = []
    running = {"now": 0, "peak": 0}

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=False)
    async def slow(seconds: float, tag: str = "") -> str:
        """Wait `seconds`, then say which server answered and the tag."""
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            cancelled.append(tag)  # the client sent notifications/cancelled
            raise
        finally:
            running["now"] -= 1
        return f"{label}:{tag}"

    @server.tool()
    def peak_slow() -> int:
        """The most `slow` calls that ran at once on this server, then reset."""
        peak, running["peak"] = running["peak"], running["now"]
        return peak

    @server.tool(structured_output=False)
    def cancelled_tags() -> str:
        """The tags of the `slow` calls the client cancelled, comma-separated."""
        return ",".join(cancelled)

    @server.tool(
        name="get-time", annotations=ToolAnnotations(readOnlyHint=True), structured_output=False
    )
    def get_time() -> str:
        """The server's wall-clock time, as seconds since the epoch."""
        return f"{time.time():.3f}"

    @server.tool(name="db.query", annotations=ToolAnnotations(idempotentHint=True))
    def db_query(table: str, limit: int = 2) -> list[Row]:
        """Rows of a table (structured output)."""
        return [Row(id=i, name=f"{table}-{i}") for i in range(limit)]

    @server.tool()
    def fail(message: str) -> str:
        """Always fails; the result carries `isError` and the message."""
        raise ToolError(message)

    @server.tool(structured_output=False)
    async def send(seconds: float, to: str) -> str:
        """Wait `seconds`, then "send" to `to`: a side effect (no hints)."""
        await anyio.sleep(seconds)
        return f"sent to {to}"

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool(structured_output=False)
    def whoami() -> str:
        """Which server this is."""
        return label

    @server.tool(structured_output=False)
    def two_texts() -> list[str]:
        """Two text blocks in one result."""
        return ["first", "second"]

    @server.tool()
    async def die(after: float = 0.0) -> str:
        """Exit the whole server process (a crash, as far as a client can tell)."""
        await anyio.sleep(after)
        os._exit(3)

    return server


def add_odd_tools(server: MCPServer) -> None:
    """Tools a client must cope with: one named `join`, one whose name has a space."""

    @server.tool(name="join", structured_output=False)
    def join_words(words: list[str]) -> str:
        """Join words with spaces."""
        return " ".join(words)

    @server.tool(name="has space", structured_output=False)
    def spaced() -> str:
        """A name outside MCP's recommended characters."""
        return "spaced"


def main() -> None:
    """Serve over stdio, or over Streamable HTTP on 127.0.0.1 with `--http PORT`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, metavar="PORT")
    parser.add_argument("--label", default="sample")
    parser.add_argument("--odd", action="store_true", help="add the tools of add_odd_tools")
    args = parser.parse_args()
    server = build(args.label)
    if args.odd:
        add_odd_tools(server)
    if args.http is None:
        server.run()
    else:
        server.settings.log_level = "WARNING"
        server.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
