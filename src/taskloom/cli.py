"""The command line: a thin shell over the Python API."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from taskloom._cli_agent import batch, run_
from taskloom._cli_common import (
    ApiKey,
    EnablePythonTool,
    McpFiles,
    NoStore,
    NoWorld,
    RayAddress,
    StorePath,
    fail,
    load_tools,
    mcp_servers,
    mcp_tools,
    open_store,
    print_agent,
    print_run,
    ray_executor,
    recorded_mcp,
    require_tools,
    run_live,
    tool_source,
)
from taskloom._cli_io import (
    MAX_PLAN_BYTES,
    json_text,
    read_bounded,
    run_stoppable,
    tool_output_to_stderr,
)
from taskloom._cli_serve import mcp_serve, serve
from taskloom._console import (
    render_record,
    render_runs,
)
from taskloom.engine import RunResult, execute
from taskloom.errors import ConfigError, PlanError, TaskloomError, UserError
from taskloom.plan import Plan
from taskloom.store import RunRecord, RunSummary, Store, default_store_path, resume
from taskloom.tools import Tool
from taskloom.tools._mcp_config import ServerConfig, config_sources, load_servers
from taskloom.tools.process import python_tool as taskloom_python_tool

__all__ = ["app", "load_tools", "main"]


T = TypeVar("T")

app = typer.Typer(
    name="taskloom",
    help="Run the tool calls of a plan as a DAG, each the moment its inputs exist.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Run the tool calls of a plan as a DAG, each the moment its inputs exist."""
    _print_any_text()


def _print_any_text() -> None:
    """Let stdout and stderr print a lone surrogate (escaped in a plan, say) as its escape.

    Such text is no valid Unicode, and printing it would otherwise raise in
    the middle of a summary or of `taskloom show`.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot change: leave it
                pass


@app.command("exec")
def exec_(
    plan_file: Annotated[Path, typer.Argument(help="A plan in the plan language.")],
    tools: Annotated[
        list[str] | None,
        typer.Option(
            "--tools",
            help="A module or .py file with extra tools, or a .plan file that is a sub-plan "
            "tool (repeatable; sub-plans after the tools they call).",
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", min=1, help="Tasks running at once.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    mcp: McpFiles = None,
    store_path: StorePath = None,
    no_store: NoStore = False,
    enable_python_tool: EnablePythonTool = False,
    no_world: NoWorld = False,
    ray: RayAddress = None,
) -> None:
    """Run a hand-written plan with the built-in tools (and yours), in parallel."""
    console = Console(stderr=as_json)
    servers = mcp_servers(console, mcp)
    try:
        tool_index = load_tools(tools, python_tool=enable_python_tool, world=not no_world)
        require_tools(tool_index, servers)
        text = read_bounded(plan_file, MAX_PLAN_BYTES, "plan")
        # With MCP servers, their tools are known once they run: checked in `go`.
        plan = Plan.parse(text, tools=None if servers else tool_index)
    except OSError as exc:
        fail(console, f"cannot read {plan_file}: {exc.strerror or exc}")
    except (PlanError, UserError) as exc:
        about_file = isinstance(exc, PlanError | ConfigError)
        fail(console, f"{plan_file}: {exc}" if about_file else str(exc))
    if not len(plan):
        fail(console, f"{plan_file}: the plan has no tasks; write lines like 1. tool(arguments)")
    store = None if no_store else open_store(console, store_path)
    config: dict[str, Any] = {"tools": tool_source(tools), "max_concurrency": max_concurrency}
    config.update(recorded_mcp(servers))
    if enable_python_tool:
        config["python_tool"] = True  # resume adds it again
    if no_world:
        config["no_world"] = True  # resume leaves them out again
    live = console.is_terminal and not as_json

    async def go(listener: Any) -> RunResult:
        async with (
            mcp_tools(*servers, reserved=tool_index) as remote,
            ray_executor(ray) as executor,
        ):
            every = tool_index | {t.name: t for t in remote}
            checked = _checked_plan(plan_file, text, every) if servers else plan
            journal = None
            if store is not None:
                journal = store.journal(request=str(plan_file), config=config, plan=checked)
                store.flush()  # the run is on disk before any tool runs: even os._exit leaves it
                console.print(f"run {journal.run_id}", style="dim", highlight=False)
            return await execute(
                checked,
                tools=every,
                max_concurrency=max_concurrency,
                on_event=listener,
                journal=journal,
                executor=executor,
            )

    with tool_output_to_stderr(as_json):
        result = run_live(console, go, live=live, store=store)
    print_run(console, result, as_json=as_json, plan_text=plan.to_text())


def _checked_plan(plan_file: Path, text: bytes, tools: dict[str, Tool]) -> Plan:
    """The plan checked against every tool, MCP servers' included.

    Raises:
        UserError: naming the plan file, for a plan that does not fit the tools.

    """
    try:
        return Plan.parse(text, tools=tools)
    except PlanError as exc:
        raise UserError(f"{plan_file}: {exc}") from exc


@app.command("resume")
def resume_(
    run_id: Annotated[str, typer.Argument(help="The run (or the start of its id).")],
    tools: Annotated[
        list[str] | None,
        typer.Option(
            "--tools",
            help="Extra tools (repeatable, .plan sub-plans too); default: those the run "
            "was started with.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Another model than the one recorded (name or GGUF path)."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Another server than the one recorded.")
    ] = None,
    api_key: ApiKey = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    mcp: McpFiles = None,
    store_path: StorePath = None,
) -> None:
    """Finish a run whose process stopped: done tasks are kept, side effects never repeat.

    The run's recorded model is used unless --model or --base-url is given;
    TASKLOOM_MODEL and TASKLOOM_BASE_URL do not replace it.
    """
    console = Console(stderr=as_json)
    errors = Console(stderr=True)
    store = open_store(errors, store_path)
    try:
        record = store.load(run_id)
        servers = _recorded_servers(record.config, mcp)
        if record.kind == "agent":
            _resume_agent(
                errors, store, record, tools, servers, (model, base_url, api_key), as_json
            )
            return
        python_tool = bool(record.config.get("python_tool"))
        tool_index = load_tools(
            tools or record.config.get("tools"),
            python_tool=python_tool,
            world=not record.config.get("no_world"),
        )
    except TaskloomError as exc:
        store.close()
        fail(errors, str(exc))

    async def go(listener: Any) -> RunResult:
        async with mcp_tools(*servers, reserved=tool_index) as remote:
            every = tool_index | {t.name: t for t in remote}
            return await resume(record.id, store=store, tools=every)

    with tool_output_to_stderr(as_json):
        result = run_live(console, go, live=console.is_terminal and not as_json, store=store)
    print_run(console, result, as_json=as_json, plan_text=None)


def _recorded_servers(config: Mapping[str, Any], mcp: list[Path] | None) -> list[ServerConfig]:
    """The MCP servers a run recorded (its `--mcp` files), or those of `mcp` instead.

    Raises:
        ConfigError: if a file is gone or no longer a valid mcpServers file.

    """
    recorded = [Path(p) for p in config.get("mcp") or ()]
    return load_servers(config_sources(mcp or recorded))


def _resume_agent(
    errors: Console,
    store: Store,
    record: RunRecord,
    tools: Sequence[str] | None,
    servers: list[ServerConfig],
    model: tuple[str | None, str | None, str | None],
    as_json: bool,
) -> None:
    """Resume an agent request as it was recorded; flags replace its tools or model.

    Its MCP servers are opened again for the resumed request; so is the
    python tool if it had it.
    """
    from taskloom.agent import Agent, AgentResult
    from taskloom.llm import model_from_config

    async def go() -> AgentResult:
        async with mcp_tools(*servers, reserved=local) as remote:
            every = local | {t.name: t for t in remote}
            if tools is None:
                _check_recorded_tools(record, every)
            agent = Agent.from_store(store, record.id, tools=every, model=chosen)
            result: AgentResult = await agent.resume(record.id)
            return result

    try:
        chosen = model_from_config(*model) if model[0] or model[1] else None
        python_tool = bool(record.config.get("python_tool"))
        local = _agent_local_tools(record.config, tools, python_tool=python_tool)
        with tool_output_to_stderr(as_json):
            result = run_stoppable(go)
    except TaskloomError as exc:
        fail(errors, str(exc))
    finally:
        store.close()
    print_agent(Console(stderr=as_json), result, as_json=as_json)


def _agent_local_tools(
    config: Mapping[str, Any], source: Sequence[str] | None, *, python_tool: bool
) -> dict[str, Tool]:
    """The tools a resumed agent request has besides its MCP servers'.

    They are those of `source` (`--tools`) with the built-in ones (unless the
    request had `--no-world`), or else the recorded tools that can be
    imported again; the python tool joins them if the request had it.

    Raises:
        UserError: if a tool module cannot be imported.

    """
    from taskloom.agent._settings import importable_recorded_tools

    if source is not None:
        return load_tools(source, python_tool=python_tool, world=not config.get("no_world"))
    found = importable_recorded_tools(config)
    if python_tool:
        found["python"] = taskloom_python_tool()
    return found


def _check_recorded_tools(record: RunRecord, tools: Mapping[str, Tool]) -> None:
    """Check that every tool the request recorded is there again.

    Raises:
        UserError: naming the tools that neither their modules nor the MCP servers offer now.

    """
    from taskloom.agent._settings import recorded_tool_names

    missing = [n for n in recorded_tool_names(record.config) if n not in tools]
    if missing:
        raise UserError(
            f"run {record.id} used the tools {', '.join(missing)}, which neither their modules "
            "nor its MCP servers offer now; give them again (--tools, --mcp)"
        )


@app.command("runs")
def runs_(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
    store_path: StorePath = None,
) -> None:
    """List recorded runs, newest first."""
    console = Console()
    runs = _read_store(console, store_path, lambda store: store.runs(limit), missing=_no_runs)
    if as_json:
        typer.echo(json_text([dataclasses.asdict(r) for r in runs]))
    else:
        render_runs(runs, console)


def _no_runs() -> list[RunSummary]:
    return []


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="The run (or the start of its id).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    store_path: StorePath = None,
) -> None:
    """Show one run: its plans, a table of its tasks with timings and results, the answer."""
    console = Console()
    record = _read_store(console, store_path, lambda store: store.load(run_id))
    if as_json:
        typer.echo(json_text(record.to_dict()))
    else:
        render_record(record, console)


@app.command("trace")
def trace(
    run_id: Annotated[str, typer.Argument(help="The run (or the start of its id).")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML timeline here.")
    ] = None,
    svg: Annotated[Path | None, typer.Option("--svg", help="Write an SVG timeline here.")] = None,
    store_path: StorePath = None,
) -> None:
    """Draw a recorded run's timeline: a lane per concurrent slot, a bar per task."""
    from taskloom.telemetry.timeline import load_timeline, render_html, render_svg

    console = Console(stderr=True)
    if html is None and svg is None:
        fail(console, "say where to draw the timeline: --html FILE, --svg FILE or both")
    timeline = _read_store(console, store_path, lambda store: load_timeline(store, run_id))
    for path, render in ((html, render_html), (svg, render_svg)):
        if path is None:
            continue
        try:
            path.write_text(render(timeline), encoding="utf-8")
        except OSError as exc:
            fail(console, f"cannot write {path}: {exc.strerror or exc}")
        console.print(f"wrote {path}", markup=False, highlight=False)


def _read_store(
    console: Console,
    path: Path | None,
    read: Callable[[Store], T],
    *,
    missing: Callable[[], T] | None = None,
) -> T:
    """Open the store, read from it, close it; a store error ends the command (exit 2).

    Reading never creates a store: where there is none, the command returns
    `missing()`, or without `missing` fails saying so.
    """
    where = path.expanduser() if path is not None else default_store_path()
    if not where.exists():
        if missing is not None:
            return missing()
        raise fail(console, f"no run store at {where}: no run has been recorded there")
    store = open_store(console, path)
    try:
        return read(store)
    except TaskloomError as exc:
        raise fail(console, str(exc)) from exc
    finally:
        store.close()


app.command("run")(run_)
app.command("batch")(batch)
app.command("mcp-serve")(mcp_serve)
app.command("serve")(serve)


def main() -> None:
    """Entry point of the `taskloom` command."""
    app()
