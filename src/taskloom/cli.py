"""The command line: a thin shell over the Python API."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from rich.console import Console
from rich.markup import escape

from taskloom._console import (
    LiveProgress,
    render_agent_summary,
    render_record,
    render_runs,
    render_summary,
)
from taskloom.engine import RunResult, TaskStatus, execute
from taskloom.errors import PlanError, TaskloomError, UserError
from taskloom.plan import Plan
from taskloom.store import Store, resume
from taskloom.tools import Tool
from taskloom.tools.world import WORLD_TOOLS

__all__ = ["app", "load_tools", "main"]

app = typer.Typer(
    name="taskloom",
    help="Run the tool calls of a plan as a DAG, each the moment its inputs exist.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


StorePath = Annotated[
    Path | None,
    typer.Option(
        "--store",
        envvar="TASKLOOM_STORE",
        help="The run store (SQLite); default: store.sqlite3 in the user data folder.",
    ),
]
NoStore = Annotated[bool, typer.Option("--no-store", help="Do not record the run.")]


@app.callback()
def _root() -> None:
    """Run the tool calls of a plan as a DAG, each the moment its inputs exist."""


def load_tools(source: str | None) -> dict[str, Tool]:
    """The built-in world tools plus every Tool found in a module or .py file.

    Tools from `source` replace built-in tools of the same name.

    Raises:
        UserError: if the module or file cannot be imported.

    """
    tools = {t.name: t for t in WORLD_TOOLS}
    if source is None:
        return tools
    try:
        if source.endswith(".py") or Path(source).is_file():
            path = Path(source)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise UserError(f"cannot load tools from {source}")
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(source)
    except TaskloomError:
        raise
    except Exception as exc:  # the user's module failed to import: say so plainly
        raise UserError(f"cannot load tools from {source}: {type(exc).__name__}: {exc}") from exc
    found = {v.name: v for v in vars(module).values() if isinstance(v, Tool)}
    if not found:
        raise UserError(f"{source} defines no @taskloom.tool functions")
    return tools | found


@app.command("exec")
def exec_(
    plan_file: Annotated[Path, typer.Argument(help="A plan in the plan language.")],
    tools: Annotated[
        str | None, typer.Option("--tools", help="A module or .py file with extra tools.")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", min=1, help="Tasks running at once.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    store_path: StorePath = None,
    no_store: NoStore = False,
) -> None:
    """Run a hand-written plan with the built-in tools (and yours), in parallel."""
    console = Console(stderr=as_json)
    try:
        tool_index = load_tools(tools)
        text = plan_file.read_bytes()
        plan = Plan.parse(text, tools=tool_index)
    except OSError as exc:
        _fail(console, f"cannot read {plan_file}: {exc.strerror or exc}")
    except (PlanError, UserError) as exc:
        _fail(console, f"{plan_file}: {exc}" if isinstance(exc, PlanError) else str(exc))
    store = None if no_store else _open_store(console, store_path)
    config = {"tools": _tool_source(tools), "max_concurrency": max_concurrency}
    journal = store.journal(request=str(plan_file), config=config, plan=plan) if store else None
    if journal is not None:
        console.print(f"run {journal.run_id}", style="dim", highlight=False)
    live = console.is_terminal and not as_json

    async def go(listener: Any) -> RunResult:
        return await execute(
            plan,
            tools=tool_index,
            max_concurrency=max_concurrency,
            on_event=listener,
            journal=journal,
        )

    result = _run_live(console, go, live=live, store=store)
    _print_run(console, result, as_json=as_json, plan_text=plan.to_text())


@app.command("resume")
def resume_(
    run_id: Annotated[str, typer.Argument(help="The run (or the start of its id).")],
    tools: Annotated[
        str | None,
        typer.Option("--tools", help="Extra tools; default: those the run was started with."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    store_path: StorePath = None,
) -> None:
    """Finish a run whose process stopped: done tasks are kept, side effects never repeat."""
    console = Console(stderr=as_json)
    store = _open_store(console, store_path)
    try:
        record = store.load(run_id)
        tool_index = load_tools(tools or record.config.get("tools"))
    except TaskloomError as exc:
        store.close()
        _fail(console, str(exc))

    async def go(listener: Any) -> RunResult:
        return await resume(record.id, store=store, tools=tool_index)

    result = _run_live(console, go, live=console.is_terminal and not as_json, store=store)
    _print_run(console, result, as_json=as_json, plan_text=None)


@app.command("runs")
def runs_(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
    store_path: StorePath = None,
) -> None:
    """List recorded runs, newest first."""
    console = Console()
    store = _open_store(console, store_path)
    try:
        runs = store.runs(limit)
    except TaskloomError as exc:
        _fail(console, str(exc))
    finally:
        store.close()
    if as_json:
        rows = [dataclasses.asdict(r) for r in runs]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        render_runs(runs, console)


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="The run (or the start of its id).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    store_path: StorePath = None,
) -> None:
    """Show one run: its plans, a table of its tasks with timings and results, the answer."""
    console = Console()
    store = _open_store(console, store_path)
    try:
        record = store.load(run_id)
    except TaskloomError as exc:
        _fail(console, str(exc))
    finally:
        store.close()
    if as_json:
        data = dataclasses.asdict(record)
        data.pop("task_index")
        for task, source in zip(data["tasks"], record.tasks, strict=True):
            task["task"] = str(source.task)
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        render_record(record, console)


def _open_store(console: Console, path: Path | None) -> Store:
    try:
        return Store.open(path)
    except TaskloomError as exc:
        raise _fail(console, str(exc)) from exc


def _tool_source(source: str | None) -> str | None:
    """The tool module as resuming will need it: files by absolute path."""
    if source is not None and (source.endswith(".py") or Path(source).is_file()):
        return str(Path(source).resolve())
    return source


def _run_live(console: Console, go: Any, *, live: bool, store: Store | None) -> Any:
    """Run `go(listener)` with live progress when on a terminal; close the store after."""
    try:
        if not live:
            return anyio.run(go, None)
        with LiveProgress(console) as progress:
            return anyio.run(go, progress.on_event)
    except TaskloomError as exc:
        _fail(console, str(exc))
    finally:
        if store is not None:
            store.close()


def _print_run(
    console: Console, result: RunResult, *, as_json: bool, plan_text: str | None
) -> None:
    if as_json:
        out = result.to_dict()
        if plan_text is not None:
            out["plan"] = plan_text
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2, default=str))
    else:
        render_summary(result, console)
    if any(t.status is not TaskStatus.DONE for t in result.tasks.values()):
        raise typer.Exit(1)


@app.command("run")
def run_(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    model: Annotated[
        str | None,
        typer.Option("--model", envvar="TASKLOOM_MODEL", help="Model name, or a GGUF path."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url", envvar="TASKLOOM_BASE_URL", help="An OpenAI-compatible server's /v1 URL."
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="TASKLOOM_API_KEY", help="The server's key.")
    ] = None,
    agent: Annotated[
        str,
        typer.Option("--agent", help="llmcompiler (parallel plans) or react (one call a step)."),
    ] = "llmcompiler",
    tools: Annotated[
        str | None, typer.Option("--tools", help="A module or .py file with extra tools.")
    ] = None,
    tool_latency: Annotated[
        float, typer.Option("--tool-latency", min=0.0, help="Seconds added to every tool call.")
    ] = 0.0,
    max_replans: Annotated[int, typer.Option("--max-replans", min=0)] = 3,
    max_concurrency: Annotated[int | None, typer.Option("--max-concurrency", min=1)] = None,
    grammar: Annotated[
        bool | None,
        typer.Option(
            "--grammar/--no-grammar",
            help="Constrain output with GBNF (default: on for the embedded model only).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
) -> None:
    """Answer a question: plan with an LLM, run the plan in parallel while it is written, join."""
    from taskloom.agent import Agent, AgentResult
    from taskloom.agent.react import ReActAgent
    from taskloom.llm import model_from_config

    console = Console(stderr=as_json)
    if agent not in ("llmcompiler", "react"):
        _fail(console, f"--agent must be llmcompiler or react, not {agent!r}")
    try:
        chosen = model_from_config(model, base_url, api_key)
        tool_list = [t.with_latency(tool_latency) for t in load_tools(tools).values()]
    except (UserError, TaskloomError) as exc:
        _fail(console, str(exc))
    live = console.is_terminal and not as_json
    progress = LiveProgress(console) if live else None
    options: dict[str, Any] = {
        "tools": tool_list,
        "model": chosen,
        "grammar": grammar,
        "max_concurrency": max_concurrency,
        "on_event": progress.on_event if progress else None,
    }

    async def go() -> AgentResult:
        if agent == "react":
            return await ReActAgent(**options).run(question)
        return await Agent(
            **options,
            max_replans=max_replans,
            on_plan_text=progress.on_plan_text if progress else None,
        ).run(question)

    try:
        if progress is None:
            result = anyio.run(go)
        else:
            with progress:
                result = anyio.run(go)
    except TaskloomError as exc:
        _fail(console, str(exc))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        render_agent_summary(result, console)
    if result.status != "answered":
        raise typer.Exit(1)


def _fail(console: Console, message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(2)


def main() -> None:
    """Entry point of the `taskloom` command."""
    app()
