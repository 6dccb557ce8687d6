"""The command line: a thin shell over the Python API."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from taskloom._cli_io import (
    MAX_BATCH_BYTES,
    MAX_PLAN_BYTES,
    json_text,
    not_utf8,
    notice,
    read_bounded,
    run_stoppable,
    tool_output_to_stderr,
)
from taskloom._console import (
    LiveProgress,
    render_agent_summary,
    render_record,
    render_runs,
    render_summary,
)
from taskloom._text import clip, printable
from taskloom.engine import Budget, Price, RunResult, TaskStatus, execute
from taskloom.errors import ConfigError, PlanError, TaskloomError, UserError
from taskloom.plan import Plan
from taskloom.store import RunRecord, RunSummary, Store, default_store_path, resume
from taskloom.tools import Tool
from taskloom.tools._load import import_tools
from taskloom.tools._mcp_config import ServerConfig, config_sources, load_servers
from taskloom.tools.process import python_tool as taskloom_python_tool
from taskloom.tools.world import WORLD_TOOLS

if TYPE_CHECKING:
    from taskloom.server.mcp_server import ToolSet

__all__ = ["app", "load_tools", "main"]

app = typer.Typer(
    name="taskloom",
    help="Run the tool calls of a plan as a DAG, each the moment its inputs exist.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


T = TypeVar("T")

StorePath = Annotated[
    Path | None,
    typer.Option(
        "--store",
        envvar="TASKLOOM_STORE",
        help="The run store (SQLite); default: store.sqlite3 in the user data folder.",
    ),
]
NoStore = Annotated[bool, typer.Option("--no-store", help="Do not record the run.")]
McpFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--mcp",
        help="An mcpServers JSON file: its servers' tools join the run (repeatable; "
        "default: the file TASKLOOM_MCP names).",
    ),
]
EnablePythonTool = Annotated[
    bool,
    typer.Option(
        "--enable-python-tool",
        help="Add the python code tool (runs code in a worker process; not a sandbox).",
    ),
]


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


def load_tools(source: str | None, *, python_tool: bool = False) -> dict[str, Tool]:
    """The built-in world tools plus every Tool found in a module or .py file.

    A tool of `source` may not take the name of a built-in tool, nor of another
    tool of `source`: a plan names tools, and could not say which one it means.
    `python_tool` adds the `python` code tool (`--enable-python-tool`), which
    is otherwise never there.

    Raises:
        UserError: if the module or file cannot be imported (or exits while
            imported), defines no tools, or defines a tool whose name is taken.

    """
    tools = {t.name: t for t in WORLD_TOOLS}
    if python_tool:
        made = taskloom_python_tool()
        tools[made.name] = made
    if source is None:
        return tools
    found = import_tools(source)
    for name, item in found.items():
        if tools.get(name, item) is not item:
            raise UserError(
                f"{source} defines a tool named {name!r}, the name of a built-in tool"
                f"{' (--enable-python-tool)' if name == 'python' and python_tool else ''}; "
                "give it another name (@taskloom.tool(name=...))"
            )
    return tools | found


def _mcp_servers(console: Console, files: list[Path] | None) -> list[ServerConfig]:
    """The MCP servers of `--mcp` (or TASKLOOM_MCP), read now so a bad file fails at once."""
    try:
        return load_servers(config_sources(files or ()))
    except ConfigError as exc:
        raise _fail(console, str(exc)) from exc


def _mcp_config(servers: list[ServerConfig]) -> dict[str, Any]:
    """What a run records of its MCP servers, for `resume`: their files, by absolute path."""
    files = list(dict.fromkeys(str(Path(s.source).resolve()) for s in servers))
    return {"mcp": files} if files else {}


def _mcp_tools(
    *servers: ServerConfig, reserved: Collection[str]
) -> AbstractAsyncContextManager[list[Tool]]:
    """The MCP servers' tools for the block's duration (`taskloom.tools.mcp.connect`).

    The MCP SDK is imported only when there are servers: it costs a second
    of start-up that a command without them should not pay.
    """
    if not servers:
        return contextlib.nullcontext([])
    from taskloom.tools.mcp import connect as connect_servers

    return connect_servers(*servers, reserved=reserved)


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
    mcp: McpFiles = None,
    store_path: StorePath = None,
    no_store: NoStore = False,
    enable_python_tool: EnablePythonTool = False,
) -> None:
    """Run a hand-written plan with the built-in tools (and yours), in parallel."""
    console = Console(stderr=as_json)
    servers = _mcp_servers(console, mcp)
    try:
        tool_index = load_tools(tools, python_tool=enable_python_tool)
        text = read_bounded(plan_file, MAX_PLAN_BYTES, "plan")
        # With MCP servers, their tools are known once they run: checked in `go`.
        plan = Plan.parse(text, tools=None if servers else tool_index)
    except OSError as exc:
        _fail(console, f"cannot read {plan_file}: {exc.strerror or exc}")
    except (PlanError, UserError) as exc:
        about_file = isinstance(exc, PlanError | ConfigError)
        _fail(console, f"{plan_file}: {exc}" if about_file else str(exc))
    if not len(plan):
        _fail(console, f"{plan_file}: the plan has no tasks; write lines like 1. tool(arguments)")
    store = None if no_store else _open_store(console, store_path)
    config: dict[str, Any] = {"tools": _tool_source(tools), "max_concurrency": max_concurrency}
    config.update(_mcp_config(servers))
    if enable_python_tool:
        config["python_tool"] = True  # resume adds it again
    live = console.is_terminal and not as_json

    async def go(listener: Any) -> RunResult:
        async with _mcp_tools(*servers, reserved=tool_index) as remote:
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
            )

    with tool_output_to_stderr(as_json):
        result = _run_live(console, go, live=live, store=store)
    _print_run(console, result, as_json=as_json, plan_text=plan.to_text())


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
        str | None,
        typer.Option("--tools", help="Extra tools; default: those the run was started with."),
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
    store = _open_store(errors, store_path)
    try:
        record = store.load(run_id)
        servers = _recorded_servers(record.config, mcp)
        if record.kind == "agent":
            _resume_agent(
                errors, store, record, tools, servers, (model, base_url, api_key), as_json
            )
            return
        python_tool = bool(record.config.get("python_tool"))
        tool_index = load_tools(tools or record.config.get("tools"), python_tool=python_tool)
    except TaskloomError as exc:
        store.close()
        _fail(errors, str(exc))

    async def go(listener: Any) -> RunResult:
        async with _mcp_tools(*servers, reserved=tool_index) as remote:
            every = tool_index | {t.name: t for t in remote}
            return await resume(record.id, store=store, tools=every)

    with tool_output_to_stderr(as_json):
        result = _run_live(console, go, live=console.is_terminal and not as_json, store=store)
    _print_run(console, result, as_json=as_json, plan_text=None)


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
    tools: str | None,
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
        async with _mcp_tools(*servers, reserved=local) as remote:
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
        _fail(errors, str(exc))
    finally:
        store.close()
    _print_agent(Console(stderr=as_json), result, as_json=as_json)


def _agent_local_tools(
    config: Mapping[str, Any], source: str | None, *, python_tool: bool
) -> dict[str, Tool]:
    """The tools a resumed agent request has besides its MCP servers'.

    They are those of `source` (`--tools`) with the built-in ones, or else the
    recorded tools that can be imported again; the python tool joins them if
    the request had it.

    Raises:
        UserError: if a tool module cannot be imported.

    """
    from taskloom.agent._settings import importable_recorded_tools

    if source is not None:
        return load_tools(source, python_tool=python_tool)
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


def _open_store(console: Console, path: Path | None) -> Store:
    try:
        return Store.open(path)
    except TaskloomError as exc:
        raise _fail(console, str(exc)) from exc


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
        raise _fail(console, f"no run store at {where}: no run has been recorded there")
    store = _open_store(console, path)
    try:
        return read(store)
    except TaskloomError as exc:
        raise _fail(console, str(exc)) from exc
    finally:
        store.close()


def _tool_source(source: str | None) -> str | None:
    """The tool module as resuming will need it: files by absolute path."""
    if source is not None and (source.endswith(".py") or Path(source).is_file()):
        return str(Path(source).resolve())
    return source


def _run_live(console: Console, go: Any, *, live: bool, store: Store | None) -> Any:
    """Run `go(listener)` with live progress when on a terminal; close the store after."""
    try:
        if not live:
            return run_stoppable(go, None)
        with LiveProgress(console) as progress:
            return run_stoppable(go, progress.on_event)
    except TaskloomError as exc:
        _fail(console, str(exc))
    finally:
        if store is not None:
            store.close()


def _print_agent(console: Console, result: Any, *, as_json: bool) -> None:
    """Print an agent's result; exit 1 if it has no answer, 2 if its model could not be used."""
    if as_json:
        typer.echo(json_text(result.to_dict()))
    elif not result.model_failed:
        render_agent_summary(result, console)
    if result.model_failed:
        _fail(Console(stderr=True), str(result.error))
    if result.status != "answered":
        if as_json and result.error:  # stdout is the JSON: say why on stderr too
            Console(stderr=True).print(
                f"error: {result.error}", markup=False, highlight=False, soft_wrap=True
            )
        raise typer.Exit(1)


def _print_run(
    console: Console, result: RunResult, *, as_json: bool, plan_text: str | None
) -> None:
    if as_json:
        out = result.to_dict()
        if plan_text is not None:
            out["plan"] = plan_text
        typer.echo(json_text(out))
    else:
        render_summary(result, console)
    if any(t.status is not TaskStatus.DONE for t in result.tasks.values()):
        raise typer.Exit(1)


Model = Annotated[
    str | None,
    typer.Option("--model", envvar="TASKLOOM_MODEL", help="Model name, or a GGUF path."),
]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url", envvar="TASKLOOM_BASE_URL", help="An OpenAI-compatible server's /v1 URL."
    ),
]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="TASKLOOM_API_KEY", help="The server's key.")
]
ModelTimeout = Annotated[
    float | None,
    typer.Option(
        "--model-timeout",
        envvar="TASKLOOM_MODEL_TIMEOUT",
        min=0.001,
        help="Seconds one call to a model server may take in all (default 300).",
    ),
]
ReadTimeout = Annotated[
    float | None,
    typer.Option(
        "--read-timeout",
        envvar="TASKLOOM_READ_TIMEOUT",
        min=0.001,
        help="Seconds a model server may stay silent (default 120).",
    ),
]
Tools = Annotated[
    str | None, typer.Option("--tools", help="A module or .py file with extra tools.")
]
ToolLatency = Annotated[
    float, typer.Option("--tool-latency", min=0.0, help="Seconds added to every tool call.")
]
MaxReplans = Annotated[int, typer.Option("--max-replans", min=0)]
MaxConcurrency = Annotated[
    int | None, typer.Option("--max-concurrency", min=1, help="Tool calls running at once.")
]
Grammar = Annotated[
    bool | None,
    typer.Option(
        "--grammar/--no-grammar",
        help="Constrain output with GBNF (default: on for the embedded model only).",
    ),
]
MaxToolCalls = Annotated[
    int | None, typer.Option("--max-tool-calls", min=0, help="Budget: tool calls per request.")
]
MaxTokens = Annotated[
    int | None, typer.Option("--max-tokens", min=0, help="Budget: LLM tokens per request.")
]
Deadline = Annotated[
    float | None, typer.Option("--deadline", min=0.0, help="Budget: seconds per request.")
]
MaxCost = Annotated[
    float | None, typer.Option("--max-cost", min=0.0, help="Budget: money per request.")
]
Prices = Annotated[
    list[str] | None,
    typer.Option(
        "--price",
        help="MODEL=PROMPT,COMPLETION: price per million tokens (repeat for more models).",
    ),
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _AgentSettings:
    """What `run` and `batch` share: how to build the agent."""

    model: str | None
    base_url: str | None
    api_key: str | None
    tools: str | None
    tool_latency: float
    max_replans: int
    max_concurrency: int | None
    grammar: bool | None
    budget: Budget | None
    model_timeout: float | None = None
    read_timeout: float | None = None
    python_tool: bool = False
    mcp_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """What each request records of its MCP servers (`_mcp_config`), for `resume`."""

    def recorded(self) -> dict[str, Any]:
        """What each request records beside the agent's settings: tools `resume` builds again."""
        return {**self.mcp_config, **({"python_tool": True} if self.python_tool else {})}

    def chat_model(self) -> Any:
        """The chat model these settings name; nothing is loaded or sent yet.

        Raises:
            ConfigError: for a bad model setting.

        """
        from taskloom.llm import model_from_config

        return model_from_config(
            self.model,
            self.base_url,
            self.api_key,
            timeout=self.model_timeout,
            read_timeout=self.read_timeout,
        )

    def build(
        self,
        store: Store | None,
        *,
        model: Any = None,
        tools: Mapping[str, Tool] | None = None,
        **extra: Any,
    ) -> Any:
        """The agent these settings describe; `model` and `tools`, when given, are used as built.

        Raises:
            TaskloomError: for a bad model setting or tool module.

        """
        from taskloom.agent import Agent

        return Agent(
            tools=load_tools(self.tools, python_tool=self.python_tool) if tools is None else tools,
            tool_latency=self.tool_latency,
            model=self.chat_model() if model is None else model,
            grammar=self.grammar,
            max_concurrency=self.max_concurrency,
            max_replans=self.max_replans,
            store=store,
            budget=self.budget,
            extra_config=self.recorded(),
            **extra,
        )


def _budget(
    tool_calls: int | None,
    tokens: int | None,
    deadline: float | None,
    cost: float | None,
    prices: list[str] | None,
) -> Budget | None:
    """A Budget from the command line's flags, or None when none is set.

    Raises:
        UserError: for a malformed or negative --price, or a cost budget without prices.

    """
    table = {}
    for entry in prices or ():
        name, _, numbers = entry.rpartition("=")
        try:
            prompt, completion = (float(x) for x in numbers.split(","))
        except ValueError:
            raise UserError(f"--price {entry!r}: write MODEL=PROMPT,COMPLETION") from None
        if not name:
            raise UserError(f"--price {entry!r}: write MODEL=PROMPT,COMPLETION")
        if not all(math.isfinite(p) and p >= 0 for p in (prompt, completion)):
            # float() reads "nan", "inf" and "-1": no price of a token.
            raise UserError(f"--price {entry!r}: prices are finite numbers >= 0")
        table[name] = Price(prompt=prompt, completion=completion)
    if tool_calls is None and tokens is None and deadline is None and cost is None:
        return None
    return Budget(tool_calls=tool_calls, tokens=tokens, deadline=deadline, cost=cost, prices=table)


@app.command("run")
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
    max_replans: MaxReplans = 3,
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
) -> None:
    """Answer a question: plan with an LLM, run the plan in parallel while it is written, join."""
    from taskloom.agent import AgentResult
    from taskloom.agent.react import ReActAgent

    console = Console(stderr=as_json)
    if agent not in ("llmcompiler", "react"):
        _fail(console, f"--agent must be llmcompiler or react, not {agent!r}")
    servers = _mcp_servers(console, mcp)
    live = console.is_terminal and not as_json
    progress = LiveProgress(console) if live else None
    store = None if no_store or agent == "react" else _open_store(console, store_path)
    try:
        settings = _AgentSettings(
            model=model,
            base_url=base_url,
            api_key=api_key,
            tools=tools,
            tool_latency=tool_latency,
            max_replans=max_replans,
            max_concurrency=max_concurrency,
            grammar=grammar,
            budget=_budget(max_tool_calls, max_tokens, deadline, max_cost, price),
            model_timeout=model_timeout,
            read_timeout=read_timeout,
            python_tool=enable_python_tool,
            mcp_config=_mcp_config(servers),
        )
        local = load_tools(tools, python_tool=enable_python_tool)
    except TaskloomError as exc:
        if store is not None:
            store.close()
        _fail(console, str(exc))

    async def go() -> AgentResult:
        async with _mcp_tools(*servers, reserved=local) as remote:
            return await answer(local | {t.name: t for t in remote})

    async def answer(every: dict[str, Tool]) -> AgentResult:
        planner = settings.build(
            store,
            tools=every,
            on_event=progress.on_event if progress else None,
            on_plan_text=progress.on_plan_text if progress else None,
        )
        if agent == "react":
            react = ReActAgent(
                tools=planner.tools,
                model=planner.model,
                grammar=grammar,
                max_concurrency=max_concurrency,
                on_event=progress.on_event if progress else None,
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
        _fail(console, str(exc))
    finally:
        if store is not None:
            store.close()
    _print_agent(console, result, as_json=as_json)


@app.command("batch")
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
    max_replans: MaxReplans = 3,
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
) -> None:
    """Answer many questions at once, sharing one model, one call cache and one store."""
    from rich.progress import Progress

    from taskloom.agent import BatchItem, read_requests, run_batch
    from taskloom.store import CallCache

    console = Console(stderr=True)
    servers = _mcp_servers(console, mcp)
    try:
        data = read_bounded(requests_file, MAX_BATCH_BYTES, "batch file")
        # utf-8-sig: a byte order mark (Windows editors write one) is no part of line 1.
        requests = read_requests(data.decode("utf-8-sig").splitlines())
    except OSError as exc:
        _fail(console, f"cannot read {requests_file}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        _fail(console, f"{requests_file}: {not_utf8(exc)}")
    except UserError as exc:
        _fail(console, f"{requests_file}: {exc}")
    if not requests:
        _fail(console, f'{requests_file}: no requests; write one per line, {{"question": "..."}}')
    store = None if no_store else _open_store(console, store_path)
    cache = CallCache(store, failure_ttl=None)  # a failed lookup stays failed in one batch
    try:
        settings = _AgentSettings(
            model=model,
            base_url=base_url,
            api_key=api_key,
            tools=tools,
            tool_latency=tool_latency,
            max_replans=max_replans,
            max_concurrency=max_concurrency,
            grammar=grammar,
            budget=_budget(max_tool_calls, max_tokens, deadline, max_cost, price),
            model_timeout=model_timeout,
            read_timeout=read_timeout,
            python_tool=enable_python_tool,
            mcp_config=_mcp_config(servers),
        )
        local = load_tools(tools, python_tool=enable_python_tool)
        sink = output.open("w", encoding="utf-8") if output else None
    except (TaskloomError, OSError) as exc:
        if store is not None:
            store.close()
        _fail(console, str(exc))
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
            async with _mcp_tools(*servers, reserved=local) as remote:
                every = local | {t.name: t for t in remote}
                planner = settings.build(store, tools=every, cache=cache)
                await run_batch(planner, requests, concurrency=concurrency, on_result=on_result)

        try:
            run_stoppable(go)
        except TaskloomError as exc:
            _fail(console, str(exc))
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


_MAX_MESSAGE = 1500
"""Characters of an error message printed; the messages quote excerpts, this is a last guard."""


@app.command("mcp-serve")
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
    max_replans: MaxReplans = 3,
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
) -> None:
    """Serve taskloom to MCP clients: run, exec_plan, list_runs and show_run as tools."""
    from taskloom.server import mcp_server

    errors = Console(stderr=True)
    servers = _mcp_servers(errors, mcp)
    if not http and (host is not None or port is not None):
        _fail(errors, "--host and --port are for --http; without it the server uses stdio")
    host, port = host or "127.0.0.1", 8000 if port is None else port
    try:
        settings = _AgentSettings(
            model=model,
            base_url=base_url,
            api_key=api_key,
            tools=tools,
            tool_latency=tool_latency,
            max_replans=max_replans,
            max_concurrency=max_concurrency,
            grammar=grammar,
            budget=_budget(max_tool_calls, max_tokens, deadline, max_cost, price),
            model_timeout=model_timeout,
            read_timeout=read_timeout,
            mcp_config=_mcp_config(servers),
        )
        served = _served_tools(tools, servers)
        chat_model = settings.chat_model()
    except TaskloomError as exc:
        _fail(errors, str(exc))
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
    store = None if no_store else _open_store(errors, store_path)
    options = mcp_server.ServeOptions(
        tools=served,
        agent=lambda tools, listener: settings.build(
            store, tools=tools, model=chat_model, on_event=listener
        ),
        store=store,
        exec_config={"tools": _tool_source(tools), **_mcp_config(servers)},
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
        _fail(errors, str(exc))
    finally:
        if store is not None:
            store.close()


def _served_tools(source: str | None, servers: list[ServerConfig]) -> ToolSet:
    """The tools `mcp-serve` offers plans and its agent: checked now, open while it serves.

    This is the one place that tool set is built; tools that live inside an
    async context (MCP servers used as tools) are entered in `opened`.

    Raises:
        UserError: as `load_tools` does.

    """
    loaded = load_tools(source)

    @asynccontextmanager
    async def opened() -> AsyncIterator[Mapping[str, Tool]]:
        async with _mcp_tools(*servers, reserved=loaded) as remote:
            yield loaded | {t.name: t for t in remote}

    return opened


def _fail(console: Console, message: str) -> typer.Exit:
    # On stderr, whatever stdout carries; a Text, not markup: the message
    # quotes user data, which may hold "[/]".
    err = console if console.stderr else Console(stderr=True)
    text = Text.assemble(("error:", "red"), " ", printable(clip(message, _MAX_MESSAGE)))
    err.print(text, highlight=False, soft_wrap=True)  # one line per line, whatever the width
    raise typer.Exit(2)


def main() -> None:
    """Entry point of the `taskloom` command."""
    app()
