"""`taskloom mcp-serve`: taskloom as an MCP server, over stdio or Streamable HTTP."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from taskloom._cli_common import (
    AgentSettings,
    ApiKey,
    BaseUrl,
    Deadline,
    ExamplesFile,
    Grammar,
    MaxConcurrency,
    MaxCost,
    MaxReplans,
    MaxTokens,
    MaxToolCalls,
    McpFiles,
    Model,
    ModelTimeout,
    NoStore,
    NoWorld,
    Prices,
    ReadTimeout,
    StorePath,
    ToolLatency,
    Tools,
    budget_from_options,
    fail,
    mcp_servers,
    mcp_tools,
    open_store,
    read_examples,
    recorded_mcp,
    tool_source,
)
from taskloom._cli_io import (
    notice,
    run_stoppable,
)
from taskloom.errors import TaskloomError
from taskloom.tools import Tool
from taskloom.tools._mcp_config import ServerConfig

if TYPE_CHECKING:
    from taskloom.server.mcp_server import ToolSet

__all__ = [
    "mcp_serve",
]


def mcp_serve(
    http: Annotated[bool, typer.Option("--http", help="Serve Streamable HTTP, not stdio.")] = False,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="With --http: the address to listen on (default 127.0.0.1; "
            "the server has no authentication, keep it on loopback).",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="With --http: the port (0: a free one)."),
    ] = None,
    model: Model = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    model_timeout: ModelTimeout = None,
    read_timeout: ReadTimeout = None,
    tools: Tools = None,
    tool_latency: ToolLatency = 0.0,
    max_replans: MaxReplans = None,
    max_concurrency: MaxConcurrency = None,
    grammar: Grammar = None,
    max_tool_calls: MaxToolCalls = None,
    max_tokens: MaxTokens = None,
    deadline: Deadline = None,
    max_cost: MaxCost = None,
    price: Prices = None,
    mcp: McpFiles = None,
    store_path: StorePath = None,
    no_store: NoStore = False,
    no_world: NoWorld = False,
    examples: ExamplesFile = None,
) -> None:
    """Serve taskloom to MCP clients: run, exec_plan, list_runs and show_run as tools."""
    from taskloom.server import mcp_server

    errors = Console(stderr=True)
    servers = mcp_servers(errors, mcp)
    if not http and (host is not None or port is not None):
        fail(errors, "--host and --port are for --http; without it the server uses stdio")
    host, port = host or "127.0.0.1", 8000 if port is None else port
    try:
        settings = AgentSettings(
            model=model,
            base_url=base_url,
            api_key=api_key,
            tools=tools,
            tool_latency=tool_latency,
            max_replans=max_replans,
            max_concurrency=max_concurrency,
            grammar=grammar,
            budget=budget_from_options(max_tool_calls, max_tokens, deadline, max_cost, price),
            model_timeout=model_timeout,
            read_timeout=read_timeout,
            mcp_config=recorded_mcp(servers),
            world=not no_world,
            examples=read_examples(examples, world=not no_world),
        )
        served = _served_tools(settings, servers)
        chat_model = settings.chat_model()
    except TaskloomError as exc:
        fail(errors, str(exc))
    if not http and sys.stdin.isatty():
        notice(
            "taskloom mcp-serve speaks MCP on stdin and stdout: start it from an MCP "
            "client (its mcpServers file), or serve HTTP with --http; Ctrl-C stops it"
        )
    if http and not mcp_server.is_loopback(host):
        notice(
            f"warning: {host} is not a loopback address: anyone who can reach port {port} "
            "can run plans with these tools (the server has no authentication)"
        )
    store = None if no_store else open_store(errors, store_path)
    options = mcp_server.ServeOptions(
        tools=served,
        agent=lambda tools, listener: settings.build(
            store, tools=tools, model=chat_model, on_event=listener
        ),
        store=store,
        exec_config={
            "tools": tool_source(tools),
            **recorded_mcp(servers),
            **({} if settings.world else {"no_world": True}),
        },
        max_concurrency=max_concurrency,
    )

    async def serve() -> None:
        if not http:
            return await mcp_server.serve_stdio(options)
        await mcp_server.serve_http(
            options, host=host, port=port, on_listening=lambda url: notice(f"serving MCP at {url}")
        )

    try:
        run_stoppable(serve)
    except TaskloomError as exc:
        fail(errors, str(exc))
    finally:
        if store is not None:
            store.close()


def _served_tools(settings: AgentSettings, servers: list[ServerConfig]) -> ToolSet:
    """The tools `mcp-serve` offers plans and its agent: checked now, open while it serves.

    This is the one place that tool set is built; tools that live inside an
    async context (MCP servers used as tools) are entered in `opened`.

    Raises:
        UserError: as `AgentSettings.local_tools` does.

    """
    loaded = settings.local_tools(servers)

    @asynccontextmanager
    async def opened() -> AsyncIterator[Mapping[str, Tool]]:
        async with mcp_tools(*servers, reserved=loaded) as remote:
            yield loaded | {t.name: t for t in remote}

    return opened
