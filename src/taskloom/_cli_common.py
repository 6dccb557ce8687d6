"""What the commands share: their options, tool and MCP loading, printing, failing."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from taskloom._cli_io import (
    json_text,
    run_stoppable,
)
from taskloom._console import (
    LiveProgress,
    render_agent_summary,
    render_summary,
)
from taskloom._text import clip, printable
from taskloom.engine import Budget, Price, RunResult, TaskStatus
from taskloom.errors import ConditionFalse, ConfigError, TaskloomError, UserError
from taskloom.plan._subplan import load_subplan
from taskloom.store import Store
from taskloom.tools import Tool
from taskloom.tools._load import import_tools
from taskloom.tools._mcp_config import ServerConfig, config_sources, load_servers
from taskloom.tools.process import python_tool as taskloom_python_tool
from taskloom.tools.world import EXAMPLES_PATH, WORLD_TOOLS

__all__ = [
    "AgentSettings",
    "ApiKey",
    "BaseUrl",
    "Deadline",
    "EnablePythonTool",
    "ExamplesFile",
    "Grammar",
    "MaxConcurrency",
    "MaxCost",
    "MaxReplans",
    "MaxTokens",
    "MaxToolCalls",
    "McpFiles",
    "Model",
    "ModelTimeout",
    "NoStore",
    "NoWorld",
    "Prices",
    "RayAddress",
    "ReadTimeout",
    "StorePath",
    "ToolLatency",
    "Tools",
    "budget_from_options",
    "fail",
    "load_tools",
    "mcp_servers",
    "mcp_tools",
    "open_store",
    "print_agent",
    "print_run",
    "read_examples",
    "ray_executor",
    "recorded_mcp",
    "require_tools",
    "run_live",
    "tool_source",
]

if TYPE_CHECKING:
    from taskloom.agent import Example

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


RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray",
        envvar="TASKLOOM_RAY",
        help="Run the tool calls on a Ray cluster: auto, ray://HOST:PORT, HOST:PORT, or "
        "local (a private one-machine cluster). Needs taskloom[ray].",
    ),
]


def ray_executor(address: str | None) -> AbstractAsyncContextManager[Any]:
    """The block's executor: a connected `RayExecutor` for `--ray`, else None (calls run here).

    Raises:
        UserError: if Ray is not installed.
        ConfigError: for a bad address.

    """
    if not address:
        return contextlib.nullcontext(None)
    try:
        from taskloom.ray import RayExecutor
    except ImportError as exc:
        raise UserError(f"--ray needs Ray: pip install 'taskloom[ray]' ({exc})") from None
    return RayExecutor(address=address)


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


NoWorld = Annotated[
    bool,
    typer.Option(
        "--no-world",
        help="Leave out the built-in world tools; bring yours with --tools or --mcp.",
    ),
]


ExamplesFile = Annotated[
    Path | None,
    typer.Option(
        "--examples",
        help="Worked examples over your tools for the planner and joiner: JSON lines, "
        'one {"question", "plan", "results", "decision"} object a line '
        "(default: the world tools' own, when they are in).",
    ),
]


def load_tools(
    source: str | Sequence[str] | None, *, python_tool: bool = False, world: bool = True
) -> dict[str, Tool]:
    """The built-in world tools plus every Tool found in modules, .py and .plan files.

    A tool of `source` may not take the name of a built-in tool, nor of another
    tool of `source`: a plan names tools, and could not say which one it means.
    A `.plan` file is a sub-plan (`load_subplan`): it is loaded after the
    modules, in the order given, and may call their tools and the sub-plans
    before it. `python_tool` adds the `python` code tool
    (`--enable-python-tool`), which is otherwise never there; `world=False`
    (`--no-world`) leaves the world tools out.

    Raises:
        UserError: if the module or file cannot be imported (or exits while
            imported), defines no tools, or defines a tool whose name is taken.
        PlanError: if a sub-plan file does not parse.

    """
    tools = {t.name: t for t in WORLD_TOOLS} if world else {}
    if python_tool:
        made = taskloom_python_tool()
        tools[made.name] = made
    sources = [source] if isinstance(source, str) else list(source or ())
    modules = [s for s in sources if not s.endswith(".plan")]
    for module in modules:
        tools = _load_module(tools, module, python_tool=python_tool)
    for path in (s for s in sources if s.endswith(".plan")):
        made = load_subplan(path, tools)
        if made.name in tools:
            raise UserError(
                f"{path} is the sub-plan {made.name!r}, the name of another tool; "
                "give it another name (# name: ...)"
            )
        tools[made.name] = made
    return tools


def _load_module(tools: dict[str, Tool], source: str, *, python_tool: bool) -> dict[str, Tool]:
    """`tools` and those of the module or .py file `source` (see `load_tools`)."""
    found = import_tools(source)
    for name, item in found.items():
        if tools.get(name, item) is not item:
            raise UserError(
                f"{source} defines a tool named {name!r}, the name of a built-in tool"
                f"{' (--enable-python-tool)' if name == 'python' and python_tool else ''}; "
                "give it another name (@taskloom.tool(name=...))"
            )
    return tools | found


def read_examples(path: Path | None, *, world: bool) -> list[Example] | None:
    """The worked examples a command gives its agent: `--examples`, else the world tools' own.

    Returns:
        The examples of `path`; without it, those of the world tools when
        they are in; else None, for the agent's notional ones.

    Raises:
        UserError: if the file cannot be read or a line is not an example.

    """
    from taskloom.agent import load_examples

    if path is not None:
        return load_examples(path)
    if world and EXAMPLES_PATH.is_file():
        return load_examples(EXAMPLES_PATH)
    return None


def require_tools(tools: Collection[str], servers: Collection[ServerConfig]) -> None:
    """Check that a command has tools: `--no-world` alone leaves none.

    Raises:
        UserError: if there are no tools and no MCP servers to bring some.

    """
    if not tools and not servers:
        raise UserError(
            "--no-world leaves no tools: bring yours with --tools MODULE_OR_FILE "
            "or --mcp SERVERS.json"
        )


def mcp_servers(console: Console, files: list[Path] | None) -> list[ServerConfig]:
    """The MCP servers of `--mcp` (or TASKLOOM_MCP), read now so a bad file fails at once."""
    try:
        return load_servers(config_sources(files or ()))
    except ConfigError as exc:
        raise fail(console, str(exc)) from exc


def recorded_mcp(servers: list[ServerConfig]) -> dict[str, Any]:
    """What a run records of its MCP servers, for `resume`: their files, by absolute path."""
    files = list(dict.fromkeys(str(Path(s.source).resolve()) for s in servers))
    return {"mcp": files} if files else {}


def mcp_tools(
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


def open_store(console: Console, path: Path | None) -> Store:
    try:
        return Store.open(path)
    except TaskloomError as exc:
        raise fail(console, str(exc)) from exc


def tool_source(source: str | Sequence[str] | None) -> str | list[str] | None:
    """The tool modules and files as resuming will need them: files by absolute path."""
    if source is not None and not isinstance(source, str):
        found = [tool_source(s) for s in source]
        return [s for s in found if isinstance(s, str)] or None
    if source is not None and (source.endswith((".py", ".plan")) or Path(source).is_file()):
        return str(Path(source).resolve())
    return source


def run_live(console: Console, go: Any, *, live: bool, store: Store | None) -> Any:
    """Run `go(listener)` with live progress when on a terminal; close the store after."""
    try:
        if not live:
            return run_stoppable(go, None)
        with LiveProgress(console) as progress:
            return run_stoppable(go, progress.on_event)
    except TaskloomError as exc:
        fail(console, str(exc))
    finally:
        if store is not None:
            store.close()


def print_agent(console: Console, result: Any, *, as_json: bool) -> None:
    """Print an agent's result; exit 1 if it has no answer, 2 if its model could not be used."""
    if as_json:
        typer.echo(json_text(result.to_dict()))
    elif not result.model_failed:
        render_agent_summary(result, console)
    if result.model_failed:
        fail(Console(stderr=True), str(result.error))
    if result.status != "answered":
        if as_json and result.error:  # stdout is the JSON: say why on stderr too
            Console(stderr=True).print(
                f"error: {result.error}", markup=False, highlight=False, soft_wrap=True
            )
        raise typer.Exit(1)


def print_run(console: Console, result: RunResult, *, as_json: bool, plan_text: str | None) -> None:
    if as_json:
        out = result.to_dict()
        if plan_text is not None:
            out["plan"] = plan_text
        typer.echo(json_text(out))
    else:
        render_summary(result, console)
    # A task skipped by a false condition did what the plan asked: not running.
    if any(
        t.status is not TaskStatus.DONE and not isinstance(t.error, ConditionFalse)
        for t in result.tasks.values()
    ):
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


MaxReplans = Annotated[
    int | None,
    typer.Option(
        "--max-replans", min=0, help="New plans after the first [default: 1 embedded, else 3]."
    ),
]


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
class AgentSettings:
    """What `run` and `batch` share: how to build the agent."""

    model: str | None
    base_url: str | None
    api_key: str | None
    tools: str | None
    tool_latency: float
    max_replans: int | None
    max_concurrency: int | None
    grammar: bool | None
    budget: Budget | None
    model_timeout: float | None = None
    read_timeout: float | None = None
    python_tool: bool = False
    mcp_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """What each request records of its MCP servers (`recorded_mcp`), for `resume`."""
    world: bool = True
    """Whether the built-in world tools are in (`--no-world` leaves them out)."""
    examples: Sequence[Example] | None = None
    """The worked examples (`read_examples`); None: the agent's notional ones."""

    def recorded(self) -> dict[str, Any]:
        """What each request records beside the agent's settings: tools `resume` builds again."""
        return {
            **self.mcp_config,
            **({"python_tool": True} if self.python_tool else {}),
            **({} if self.world else {"no_world": True}),
        }

    def local_tools(self, servers: Collection[ServerConfig] = ()) -> dict[str, Tool]:
        """The tools these settings name, MCP servers' aside (`load_tools`).

        Raises:
            UserError: as `load_tools` does, or if there are no tools and no servers.

        """
        tools = load_tools(self.tools, python_tool=self.python_tool, world=self.world)
        require_tools(tools, servers)
        return tools

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
            TaskloomError: for a bad model setting, tool module or examples
                file, an example that does not fit the tools, or no tools.

        """
        from taskloom.agent import Agent

        if tools is not None and not tools:
            raise UserError("no tools: the MCP servers offer none, and --no-world leaves out ours")
        return Agent(
            tools=self.local_tools() if tools is None else tools,
            examples=self.examples,
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


def budget_from_options(
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


_MAX_MESSAGE = 1500
"""Characters of an error message printed; the messages quote excerpts, this is a last guard."""


def fail(console: Console, message: str) -> typer.Exit:
    # On stderr, whatever stdout carries; a Text, not markup: the message
    # quotes user data, which may hold "[/]".
    err = console if console.stderr else Console(stderr=True)
    text = Text.assemble(("error:", "red"), " ", printable(clip(message, _MAX_MESSAGE)))
    err.print(text, highlight=False, soft_wrap=True)  # one line per line, whatever the width
    raise typer.Exit(2)
