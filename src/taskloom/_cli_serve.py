"""`taskloom mcp-serve`: taskloom as an MCP server, over stdio or Streamable HTTP."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from taskloom._cli_common import (
    AgentSettings,
    ApiKey,
    BaseUrl,
    Deadline,
    EnablePythonTool,
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
    RayAddress,
    ReadTimeout,
    StorePath,
    ToolLatency,
    Tools,
    budget_from_options,
    fail,
    mcp_servers,
    mcp_tools,
    open_store,
    ray_executor,
    read_examples,
    recorded_mcp,
    tool_source,
)
from taskloom._cli_io import (
    notice,
    run_stoppable,
)
from taskloom.errors import TaskloomError, UserError
from taskloom.tools import Tool
from taskloom.tools._mcp_config import ServerConfig

if TYPE_CHECKING:
    from taskloom.server.mcp_server import ToolSet

__all__ = [
    "mcp_serve",
    "serve",
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


def serve(
    host: Annotated[
        str, typer.Option("--host", help="The address to listen on (keep it on loopback).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="The port (0: a free one).")
    ] = 8642,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="TASKLOOM_TOKEN",
            help="The bearer token clients must send (default: one made on first start, "
            "kept in the user config folder).",
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="No token (allowed on a loopback address only).")
    ] = False,
    max_runs: Annotated[
        int, typer.Option("--max-runs", min=1, help="Runs going on at once; past it, 429.")
    ] = 16,
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
    enable_python_tool: EnablePythonTool = False,
    no_world: NoWorld = False,
    examples: ExamplesFile = None,
    ray: RayAddress = None,
) -> None:
    """Serve the HTTP API (runs, their live events) and the web page."""
    import dataclasses

    from taskloom.server import _auth, http
    from taskloom.server._listen import is_loopback
    from taskloom.server._runs import RunOptions, RunService, ServiceOptions

    errors = Console(stderr=True)
    servers = mcp_servers(errors, mcp)
    try:
        if no_auth and token is not None:
            raise UserError("--no-auth and --token contradict each other; give one")
        if no_auth and not is_loopback(host):
            raise UserError(
                f"--no-auth is allowed on a loopback address only (127.0.0.1, ::1), not {host}: "
                "anyone who can reach the port could run tools"
            )
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
            python_tool=enable_python_tool,
            mcp_config=recorded_mcp(servers),
            world=not no_world,
            examples=read_examples(examples, world=not no_world),
        )
        served = _served_tools(settings, servers)
        chat_model = settings.chat_model()
        secret, made = (None, False) if no_auth else _token(token)
        executor = ray_executor(ray)  # connected before the server listens
    except TaskloomError as exc:
        fail(errors, str(exc))
    store = open_store(errors, store_path)

    def agent(tools: Mapping[str, Tool], options: RunOptions) -> Any:
        chosen = dataclasses.replace(
            settings,
            max_concurrency=options.max_concurrency or settings.max_concurrency,
            budget=options.budget or settings.budget,
        )
        return chosen.build(store, tools=tools, model=chat_model)

    exec_config = {
        "tools": tool_source(tools),
        **recorded_mcp(servers),
        **({"python_tool": True} if enable_python_tool else {}),
        **({} if settings.world else {"no_world": True}),
    }

    def listening(url: str) -> None:
        notice(f"serving the taskloom API and page at {url}")
        if made:
            notice(f"the API token (printed once; kept in {_auth.token_path()}): {secret}")
            notice(f"open the page: {url}/?token={secret}")

    async def go() -> None:
        async with executor as opened, served() as tools_now:
            service = RunService(
                ServiceOptions(
                    store=store,
                    tools=tools_now,
                    agent=agent,
                    model=chat_model if (model or base_url) else None,
                    exec_config=exec_config,
                    max_concurrency=max_concurrency,
                    budget=settings.budget,
                    max_runs=max_runs,
                    executor=opened,
                )
            )
            app = http.create_app(service, token=secret)
            await http.serve_http(app, host=host, port=port, on_listening=listening)

    try:
        run_stoppable(go)
    except TaskloomError as exc:
        fail(errors, str(exc))
    finally:
        store.close()


def _token(given: str | None) -> tuple[str, bool]:
    """The token `serve` asks for: `--token`, else the kept one (made on first start).

    Raises:
        UserError: for a `--token` that is not a valid token.
        ConfigError: if the kept token cannot be read or made.

    """
    from taskloom.server import _auth

    if given is not None:
        return _auth.check_token(given), False
    return _auth.load_or_create_token()
