"""MCP servers as tools: every tool an MCP server lists becomes a taskloom `Tool`.

```python
from taskloom.tools import mcp

async with mcp.connect("mcp.json") as tools:
    result = await taskloom.execute(plan, tools=tools)
```

The configuration is the `mcpServers` file that MCP clients share (stdio
servers by `command`, Streamable HTTP servers by `url`), plus taskloom's
own keys per server: `max_concurrency`, `timeout`, `idempotent`.

- Each server has one session, shared by all parallel calls of its tools.
  It starts when `connect` lists the tools, and again on the next call if
  the server crashed; the block's end stops every server (a stdio server's
  whole process group).
- A tool keeps its MCP name (`get-time`, `db.query`). When two servers
  offer the same name, both tools are named `SERVER.TOOL` instead, and a
  plan that calls the bare name is told which to choose; so is a tool whose
  name another tool of the run has (`reserved`: a built-in tool's, say),
  and a tool named `join` (which ends a plan). A tool taskloom cannot name
  or whose input schema is invalid is left out, with a `SkippedTool` warning.
- Arguments are checked against the tool's input schema before the call.
  The output is the result's `structuredContent` when it has one, else its
  text (one block: a str; several: a list). A result marked `isError`
  fails the task with the server's message (`MCPToolError`); a server that
  crashes fails the calls in flight (`MCPError`).
- A tool annotated `readOnlyHint` or `idempotentHint` is idempotent; any
  other is taken to have side effects and is never called again on resume.
  A server's `idempotent` key overrides both ways.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import mcp_types

from taskloom._text import clip
from taskloom.errors import MCPError, MCPToolError, ToolDefinitionError
from taskloom.plan.text import JOIN
from taskloom.tools._mcp_config import ENV_VAR, ServerConfig, config_sources, load_servers
from taskloom.tools._mcp_session import ServerSession
from taskloom.tools._schema import SchemaTool
from taskloom.tools._tool import CallPolicy, Tool

__all__ = ["ENV_VAR", "ServerConfig", "SkippedTool", "config_sources", "connect", "load_servers"]

Source = str | os.PathLike[str] | Mapping[str, Any] | ServerConfig
"""A configuration: an `mcpServers` JSON file's path, a mapping of that shape, or one server."""


@contextlib.asynccontextmanager
async def connect(*sources: Source, reserved: Collection[str] = ()) -> AsyncIterator[list[Tool]]:
    """Start the configured MCP servers and give their tools, for the block's duration.

    The servers start at once, in parallel, and list their tools; when the
    block ends (normally, by an error or by cancellation) every server is
    stopped before `connect` returns.

    Args:
        sources: configuration files or mappings; the servers of all of them.
        reserved: names other tools of the run already have: an MCP tool
            with one of them is named `SERVER.TOOL`.

    Yields:
        One `Tool` per tool the servers list, named as the module docstring says.

    Raises:
        ConfigError: a configuration is missing, malformed, or has a bad entry.
        MCPError: a server could not start or list its tools.

    """
    servers = load_servers(sources)
    with _ungrouped():
        async with anyio.create_task_group() as task_group:
            sessions = [ServerSession(server, task_group) for server in servers]
            try:
                listings = await _list_all(sessions)
                yield _tools(sessions, listings, reserved)
            finally:
                for session in sessions:
                    session.close()


@contextlib.contextmanager
def _ungrouped() -> Iterator[None]:
    """Let an error of the block (or of the start) out as itself, not in an ExceptionGroup.

    The sessions' own tasks never fail once started (see `ServerSession`), so a
    group here holds only what the block raised.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        error.__suppress_context__ = True  # the group was only the task group's wrapping
        raise error from error.__cause__


async def _list_all(sessions: Sequence[ServerSession]) -> list[list[mcp_types.Tool]]:
    """Every server's tool listing, fetched in parallel.

    Raises:
        MCPError: the first server (in configuration order) that failed.

    """
    listings: list[list[mcp_types.Tool]] = [[] for _ in sessions]
    failures: dict[int, MCPError] = {}

    async def list_one(index: int) -> None:
        try:
            listings[index] = await sessions[index].list_tools()
        except MCPError as exc:
            failures[index] = exc

    async with anyio.create_task_group() as group:
        for index in range(len(sessions)):
            group.start_soon(list_one, index)
    if failures:
        raise failures[min(failures)]
    return listings


def _tools(
    sessions: Sequence[ServerSession],
    listings: Sequence[Sequence[mcp_types.Tool]],
    reserved: Collection[str],
) -> list[Tool]:
    """The servers' tools; names two servers share, or that `reserved` holds, are qualified."""
    offered = Counter(spec.name for listing in listings for spec in _unique(listing))
    tools = []
    for session, listing in zip(sessions, listings, strict=True):
        for spec in _unique(listing):
            # `join` ends a plan, so a server's `join` is reached as SERVER.join.
            shared = offered[spec.name] > 1 or spec.name in reserved or spec.name == JOIN
            name = f"{session.name}.{spec.name}" if shared else spec.name
            try:
                tools.append(_mcp_tool(session, spec, name=name))
            except ToolDefinitionError as exc:
                # One odd tool (a name with a space) should not cost the server's others.
                warnings.warn(SkippedTool(session.name, spec.name, str(exc)), stacklevel=4)
    return tools


class SkippedTool(UserWarning):
    """A tool a server lists that taskloom cannot use (its name or its schema); it is left out."""

    def __init__(self, server: str, tool: str, problem: str) -> None:
        self.server = server
        self.tool = tool
        self.problem = problem
        super().__init__(f"MCP server {server!r}: tool {clip(tool)!r} left out: {problem}")


def _unique(listing: Sequence[mcp_types.Tool]) -> list[mcp_types.Tool]:
    """The listing with one entry per name (a server that lists a name twice counts once)."""
    return list({spec.name: spec for spec in listing}.values())


def _mcp_tool(session: ServerSession, spec: mcp_types.Tool, *, name: str) -> Tool:
    """The taskloom Tool that calls `spec` on the server of `session`.

    Raises:
        ToolDefinitionError: the tool's name or input schema is unusable.

    """
    config = session.config
    remote = spec.name

    async def call(**arguments: Any) -> Any:
        result = await session.call(remote, arguments)
        return _output(session.name, remote, result)

    policy = CallPolicy(idempotent=_idempotent(config, spec), timeout=config.timeout)
    return SchemaTool(
        call,
        name=name,
        description=spec.description or spec.title or "",
        input_schema=spec.input_schema,
        policy=policy,
    )


def _idempotent(config: ServerConfig, spec: mcp_types.Tool) -> bool:
    """The config's word if it has one; else the tool's read-only or idempotent hint."""
    if config.idempotent is not None:
        return config.idempotent
    hints = spec.annotations
    return hints is not None and bool(hints.read_only_hint or hints.idempotent_hint)


def _output(server: str, tool: str, result: mcp_types.CallToolResult) -> Any:
    """What a task records for an MCP tool's result.

    Returns:
        `structuredContent` when present; else the content: one text block as
        a str, several blocks as a list (text as str, images and other
        blocks as their JSON objects); None for no content.

    Raises:
        MCPToolError: the result is marked `isError`; the message is its text.

    """
    if result.is_error:
        raise MCPToolError(server, tool, _text(result.content))
    if result.structured_content is not None:
        return result.structured_content
    blocks = [_block(block) for block in result.content]
    if not blocks:
        return None
    return blocks[0] if len(blocks) == 1 else blocks


def _block(block: Any) -> Any:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    dumped: dict[str, Any] = block.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def _text(content: Sequence[Any]) -> str:
    return "\n".join(b.text for b in content if isinstance(b, mcp_types.TextContent))
