"""The agent's commands: `run` (one request) and `batch` (many at once)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    print_agent,
    ray_executor,
    read_examples,
    recorded_mcp,
)
from taskloom._cli_io import (
    MAX_BATCH_BYTES,
    json_text,
    not_utf8,
    read_bounded,
    run_stoppable,
    tool_output_to_stderr,
)
from taskloom._console import (
    LiveProgress,
)
from taskloom.errors import TaskloomError, UserError
from taskloom.tools import Tool

__all__ = [
    "batch",
    "run_",
]


def run_(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    model: Model = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    model_timeout: ModelTimeout = None,
    read_timeout: ReadTimeout = None,
    agent: Annotated[
        str,
        typer.Option("--agent", help="llmcompiler (parallel plans) or react (one call a step)."),
    ] = "llmcompiler",
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
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
    mcp: McpFiles = None,
    store_path: StorePath = None,
    no_store: NoStore = False,
    enable_python_tool: EnablePythonTool = False,
    no_world: NoWorld = False,
    examples: ExamplesFile = None,
    ray: RayAddress = None,
) -> None:
    """Answer a question: plan with an LLM, run the plan in parallel while it is written, join."""
    from taskloom.agent import AgentResult
    from taskloom.agent.react import ReActAgent

    console = Console(stderr=as_json)
    if agent not in ("llmcompiler", "react"):
        fail(console, f"--agent must be llmcompiler or react, not {agent!r}")
    servers = mcp_servers(console, mcp)
    live = console.is_terminal and not as_json
    progress = LiveProgress(console) if live else None
    store = None if no_store or agent == "react" else open_store(console, store_path)
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
            python_tool=enable_python_tool,
            mcp_config=recorded_mcp(servers),
            world=not no_world,
            examples=read_examples(examples, world=not no_world),
        )
        local = settings.local_tools(servers)
    except TaskloomError as exc:
        if store is not None:
            store.close()
        fail(console, str(exc))

    async def go() -> AgentResult:
        async with mcp_tools(*servers, reserved=local) as remote, ray_executor(ray) as executor:
            return await answer(local | {t.name: t for t in remote}, executor)

    async def answer(every: dict[str, Tool], executor: Any) -> AgentResult:
        planner = settings.build(
            store,
            tools=every,
            on_event=progress.on_event if progress else None,
            on_plan_text=progress.on_plan_text if progress else None,
            executor=executor,
        )
        if agent == "react":
            react = ReActAgent(
                tools=planner.tools,
                model=planner.model,
                grammar=grammar,
                max_concurrency=max_concurrency,
                on_event=progress.on_event if progress else None,
                executor=executor,
            )
            result: AgentResult = await react.run(question)
            return result
        result = await planner.run(question)
        return result

    try:
        if progress is None:
            with tool_output_to_stderr(as_json):
                result = run_stoppable(go)
        else:
            with progress:
                result = run_stoppable(go)
    except TaskloomError as exc:
        fail(console, str(exc))
    finally:
        if store is not None:
            store.close()
    print_agent(console, result, as_json=as_json)


def batch(
    requests_file: Annotated[
        Path, typer.Argument(help='JSON lines: {"question": ..., "id": ...} or "question".')
    ],
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Requests in flight at once.")
    ] = 4,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON lines here, not stdout.")
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
    enable_python_tool: EnablePythonTool = False,
    no_world: NoWorld = False,
    examples: ExamplesFile = None,
    ray: RayAddress = None,
) -> None:
    """Answer many questions at once, sharing one model, one call cache and one store."""
    from rich.progress import Progress

    from taskloom.agent import BatchItem, read_requests, run_batch
    from taskloom.store import CallCache

    console = Console(stderr=True)
    servers = mcp_servers(console, mcp)
    try:
        data = read_bounded(requests_file, MAX_BATCH_BYTES, "batch file")
        # utf-8-sig: a byte order mark (Windows editors write one) is no part of line 1.
        requests = read_requests(data.decode("utf-8-sig").splitlines())
    except OSError as exc:
        fail(console, f"cannot read {requests_file}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        fail(console, f"{requests_file}: {not_utf8(exc)}")
    except UserError as exc:
        fail(console, f"{requests_file}: {exc}")
    if not requests:
        fail(console, f'{requests_file}: no requests; write one per line, {{"question": "..."}}')
    store = None if no_store else open_store(console, store_path)
    cache = CallCache(store, failure_ttl=None)  # a failed lookup stays failed in one batch
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
            python_tool=enable_python_tool,
            mcp_config=recorded_mcp(servers),
            world=not no_world,
            examples=read_examples(examples, world=not no_world),
        )
        local = settings.local_tools(servers)
        sink = output.open("w", encoding="utf-8") if output else None
    except (TaskloomError, OSError) as exc:
        if store is not None:
            store.close()
        fail(console, str(exc))
    failed = 0
    with (
        tool_output_to_stderr(sink is None) as stdout,
        Progress(console=console, transient=True) as bar,
    ):
        job = bar.add_task("answering", total=len(requests))
        lines = sink or stdout

        def on_result(item: BatchItem) -> None:
            nonlocal failed
            failed += item.to_dict()["status"] != "answered"
            lines.write(json_text(item.to_dict(), indent=None) + "\n")
            lines.flush()
            bar.advance(job)

        async def go() -> None:
            # One session per server for the whole batch, shared by every request.
            async with (
                mcp_tools(*servers, reserved=local) as remote,
                ray_executor(ray) as executor,
            ):
                every = local | {t.name: t for t in remote}
                planner = settings.build(store, tools=every, cache=cache, executor=executor)
                await run_batch(planner, requests, concurrency=concurrency, on_result=on_result)

        try:
            run_stoppable(go)
        except TaskloomError as exc:
            fail(console, str(exc))
        finally:
            if store is not None:
                store.close()
            if sink is not None:
                sink.close()
    stats = cache.stats
    console.print(
        f"{len(requests)} requests, {failed} not answered · tool calls: "
        f"{stats.requested} requested, {stats.executed} executed",
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)
