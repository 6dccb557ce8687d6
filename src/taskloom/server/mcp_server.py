"""taskloom as an MCP server: `run`, `exec_plan`, `list_runs` and `show_run` as MCP tools.

Each tool translates and does nothing else (invariant 8): MCP arguments come
in, the Python API the command line uses is called (`Plan.parse` and
`execute`, `Agent.run`, `Store.runs`, `Store.load`), and its result goes back
as structured content, the same JSON as the matching `--json` command, with
a short text beside it. Bad input (a plan that does not parse, a tool the
plan does not know, a run id no run has) is an MCP tool error (`isError`)
that says what is wrong; the server goes on serving.

While a plan runs, every task that settles sends the client a progress
notification: tasks settled of the tasks known so far (an agent's plan grows
while it runs, so the total may grow too). A client that cancels the call
(`notifications/cancelled`, or by going away) cancels the run the way any
caller's cancellation does: running tools stop and the store records the run
`cancelled`.

Over stdio nothing but the protocol may reach stdout. While serving, file
descriptor 1 points at stderr (the SDK's `stdio_server` moves it there) and
so does `sys.stdout`, so what tools print, and what their child processes
write, lands on stderr.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fcntl
import math
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TextIO, TypeVar, cast

import anyio
import anyio.to_thread
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.stdio import stdio_server
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from taskloom._text import clip, escape_surrogates
from taskloom.engine import RunResult, events, execute
from taskloom.engine._scheduler import EventListener
from taskloom.errors import PlanError, TaskloomError, UserError
from taskloom.plan import Plan
from taskloom.server._listen import Uvicorn, bind, is_loopback, origin, serve_shielded, started
from taskloom.store import RunJournal, Store
from taskloom.telemetry._setup import continued
from taskloom.tools import Tool
from taskloom.tools._threads import ThreadCall, run_in_thread

if TYPE_CHECKING:
    from taskloom.agent import Agent, AgentResult

__all__ = [
    "MCP_PATH",
    "AgentFactory",
    "ServeOptions",
    "ToolSet",
    "build_server",
    "is_loopback",
    "serve_http",
    "serve_stdio",
]

MCP_PATH = "/mcp"
"""Where the Streamable HTTP endpoint is served."""

_STOP_GRACE_S = 1
"""Seconds HTTP requests in flight get to end when the server stops; then they are cancelled."""
_MAX_TEXT = 4000
"""Characters of the text beside a result: a summary, the structured content has it all."""
_MAX_MESSAGE = 1500
"""Characters of an error's message."""

T = TypeVar("T")

ToolSet = Callable[[], AbstractAsyncContextManager[Mapping[str, Tool]]]
"""Opens the tools that plans may call, for as long as the server runs."""
AgentFactory = Callable[[Mapping[str, Tool], EventListener], "Agent"]
"""Builds the agent of one `run` call: over these tools, reporting to this listener."""


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """What `taskloom mcp-serve` serves: its tools, how it builds an agent, its store."""

    tools: ToolSet
    """The tools of every plan and every agent, opened once when serving starts."""
    agent: AgentFactory
    """The agent for one `run` call (the command line's model and agent settings)."""
    store: Store | None
    """Where runs are recorded and read back; None records nothing (`--no-store`)."""
    exec_config: Mapping[str, Any] = field(default_factory=dict)
    """What an `exec_plan` run records to be resumed (the tool source), as `taskloom exec` does."""
    max_concurrency: int | None = None
    """Tool calls of one `exec_plan` run at once, unless the call asks for another limit."""


# -- serving ------------------------------------------------------------------


async def serve_stdio(options: ServeOptions) -> None:
    """Serve MCP over this process's stdin and stdout until the client closes stdin.

    Raises:
        TaskloomError: if the tools cannot be opened.

    """
    async with options.tools() as tools:
        server = build_server(options, tools)
        lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async runs
        with _protocol_stdin() as stdin:
            lines = cast("anyio.AsyncFile[str]", _Lines(stdin))
            async with stdio_server(stdin=lines) as (read, write):
                # stdio_server has pointed fd 1 at stderr; print() follows it there, and
                # nothing reaches the wire through sys.stdout's own buffer later.
                with contextlib.redirect_stdout(sys.stderr):
                    await lowlevel.run(read, write, lowlevel.create_initialization_options())


@contextlib.contextmanager
def _protocol_stdin() -> Iterator[TextIO]:
    """The protocol's input on a descriptor of its own; fd 0 reads /dev/null meanwhile.

    Tools (and their children) that read stdin then see its end instead of
    taking the client's messages. The SDK's `stdio_server` would do this
    itself, but reads on anyio's threads, which a stop cannot abandon: Ctrl-C
    on a server whose client keeps stdin open waited for the next line.

    Yields:
        A text stream of the protocol's input.

    """
    try:
        private = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError:  # no fd 0 at all: nothing to move aside
        yield sys.stdin
        return
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        # closefd=False, and never closed: an abandoned read may still block on it.
        yield open(private, encoding="utf-8", errors="replace", closefd=False)
    finally:
        os.dup2(private, 0)


class _Lines:
    """A text stream's lines, each read on a daemon thread a cancellation abandons."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        call = ThreadCall(self._stream.readline, asyncio.get_running_loop())
        line = await run_in_thread(call)
        if not line:
            raise StopAsyncIteration
        return line


async def serve_http(
    options: ServeOptions,
    *,
    host: str,
    port: int,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve MCP over Streamable HTTP at `http://host:port/mcp` until cancelled.

    The socket is bound before serving starts, so port 0 picks a free port;
    `on_listening` is told the endpoint's URL once it accepts connections.
    When cancelled, requests in flight get `_STOP_GRACE_S` to end and are
    then cancelled (their runs are recorded cancelled) before the
    cancellation goes on.

    Raises:
        UserError: if the address cannot be bound (in use, not this machine's).
        TaskloomError: if the tools cannot be opened.

    """
    sock = bind(host, port)
    try:
        async with options.tools() as tools:
            app = build_server(options, tools).streamable_http_app(
                streamable_http_path=MCP_PATH, host=host
            )
            config = uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=_STOP_GRACE_S,
            )
            server = Uvicorn(config)
            url = _url(host, sock.getsockname()[1])
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve_shielded, server, sock)
                try:
                    if await started(server):
                        if on_listening is not None:
                            on_listening(url)
                        await anyio.sleep_forever()
                finally:
                    server.should_exit = True  # the shielded serve stops, gracefully
            raise UserError(f"the MCP server at {url} could not start")  # uvicorn said why
    finally:
        sock.close()


def _url(host: str, port: int) -> str:
    return origin(host, port) + MCP_PATH


# -- the tools ----------------------------------------------------------------

Question = Annotated[str, Field(description="The question to answer.")]
PlanText = Annotated[
    str,
    Field(
        description=(
            "A plan in taskloom's plan language: one call a line, `1. tool(arguments)`; "
            '`$1` is the output of task 1 (also inside text, "$1.name"); tasks run in '
            "parallel as soon as the tasks they refer to are done."
        )
    ),
]
MaxConcurrency = Annotated[
    int | None, Field(ge=1, description="Tool calls running at once; default: no limit.")
]
Limit = Annotated[int, Field(ge=1, le=10_000, description="How many runs, newest first.")]
RunIdArg = Annotated[str, Field(description="A run's id, or the start of it.")]

_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
_RUNS_TOOLS = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)


def build_server(options: ServeOptions, tools: Mapping[str, Tool]) -> MCPServer:
    """The MCP server whose tools call taskloom's API over `tools`.

    Returns:
        An MCPServer, not serving yet: serve it over stdio, HTTP, or in-process
        (`mcp.Client(server)`).

    """
    from taskloom import __version__
    from taskloom.agent.prompts import tool_catalogue

    api = _Api(options, tools)
    server: MCPServer = MCPServer(
        "taskloom",
        version=__version__,
        instructions=(
            "taskloom runs the tool calls of a plan as a DAG, each the moment its inputs "
            "exist. Give exec_plan a plan over the tools it lists, or give run a question "
            "to plan, run and answer; list_runs and show_run read recorded runs."
        ),
        log_level="WARNING",
    )
    catalogue = tool_catalogue(tools.values())
    server.add_tool(
        api.run,
        name="run",
        description=(
            "Answer a question: an LLM plans calls of these tools, taskloom runs them in "
            f"parallel while the plan is written, and the LLM answers from the results.\n"
            f"Tools:\n{catalogue}"
        ),
        annotations=_RUNS_TOOLS,
    )
    server.add_tool(
        api.exec_plan,
        name="exec_plan",
        description=(
            "Run a plan of calls of these tools, each call as soon as its inputs exist, "
            f"and return every task's status, output or error.\nTools:\n{catalogue}"
        ),
        annotations=_RUNS_TOOLS,
    )
    server.add_tool(
        api.list_runs,
        name="list_runs",
        description="List recorded runs, newest first: id, kind, status, start, request.",
        annotations=_READ_ONLY,
    )
    server.add_tool(
        api.show_run,
        name="show_run",
        description="Show one recorded run: its plans, tasks with outputs and errors, answer.",
        annotations=_READ_ONLY,
    )
    return server


class _Api:
    """The served tools: each turns its arguments into one call of taskloom's API."""

    def __init__(self, options: ServeOptions, tools: Mapping[str, Tool]) -> None:
        self._options = options
        self._tools = tools

    async def run(self, question: Question, ctx: Context) -> CallToolResult:
        """Answer `question` with an agent over the served tools.

        Returns:
            The `taskloom run --json` record plus the run's id; an MCP tool
            error when the request could not be answered (its record too,
            when there is one).

        """

        def ask(listener: EventListener) -> Awaitable[AgentResult]:
            return self._options.agent(self._tools, listener).run(question)

        try:
            result = await _reporting_progress(ctx, ask)
        except TaskloomError as exc:
            return _tool_error(str(exc))
        data = result.to_dict()
        data["run_id"] = result.rounds[0].run_id if result.rounds else None
        return _structured(data, _answer_text(result), is_error=result.status != "answered")

    async def exec_plan(
        self, plan: PlanText, ctx: Context, max_concurrency: MaxConcurrency = None
    ) -> CallToolResult:
        """Run a plan over the served tools.

        Returns:
            The `taskloom exec --json` record (failed tasks are in it: a run
            that ran is no tool error); an MCP tool error for a plan that
            does not parse or check against the tools, or has no tasks.

        """
        try:
            parsed = Plan.parse(plan, tools=self._tools)
        except PlanError as exc:
            return _tool_error(f"the plan is not valid: {exc}")
        except TaskloomError as exc:
            return _tool_error(str(exc))
        if not len(parsed):
            return _tool_error("the plan has no tasks; write lines like 1. tool(arguments)")
        limit = self._options.max_concurrency if max_concurrency is None else max_concurrency

        def go(listener: EventListener) -> Awaitable[RunResult]:
            journal = self._journal(parsed, limit)
            return execute(
                parsed,
                tools=self._tools,
                max_concurrency=limit,
                on_event=listener,
                journal=journal,
            )

        try:
            result = await _reporting_progress(ctx, go)
        except TaskloomError as exc:
            return _tool_error(str(exc))
        data = result.to_dict()
        data["plan"] = parsed.to_text()
        return _structured(data, _run_text(result))

    def _journal(self, plan: Plan, max_concurrency: int | None) -> RunJournal | None:
        store = self._options.store
        if store is None:
            return None
        config = {**self._options.exec_config, "max_concurrency": max_concurrency}
        first = str(next(iter(plan)))
        return store.journal(request=f"exec_plan: {clip(first)}", config=config, plan=plan)

    async def list_runs(self, limit: Limit = 20) -> CallToolResult:
        """The recorded runs, newest first.

        Returns:
            `{"runs": [...]}`, each as `taskloom runs --json` lists it; an
            MCP tool error without a store or when it cannot be read.

        """
        try:
            store = self._store()
            runs = await anyio.to_thread.run_sync(store.runs, limit)
        except TaskloomError as exc:
            return _tool_error(str(exc))
        lines = [f"{r.id} {r.kind} {r.status}: {clip(r.request)}" for r in runs]
        text = "\n".join([f"{len(runs)} runs, newest first", *lines])
        return _structured({"runs": [dataclasses.asdict(r) for r in runs]}, text)

    async def show_run(self, run_id: RunIdArg) -> CallToolResult:
        """One recorded run.

        Returns:
            The `taskloom show --json` record; an MCP tool error for a run id
            that no run has (or several share), or without a store.

        """
        try:
            store = self._store()
            record = await anyio.to_thread.run_sync(store.load, run_id)
        except TaskloomError as exc:
            return _tool_error(str(exc))
        counts = collections.Counter(t.status for t in record.tasks)
        text = f"run {record.id} ({record.kind}) {record.status}: {_counted(counts)}"
        if record.answer is not None:
            text += f"\nanswer: {record.answer}"
        return _structured(record.to_dict(), text)

    def _store(self) -> Store:
        if self._options.store is None:
            raise UserError("no runs are recorded: this server was started with --no-store")
        return self._options.store


# -- progress -------------------------------------------------------------------

_SETTLED = (events.TaskFinished, events.TaskFailed, events.TaskSkipped, events.TaskCancelledEvent)


class _Progress:
    """Counts a run's tasks from its events; sends the client each new count of settled ones."""

    def __init__(self) -> None:
        self.known = 0
        self.settled = 0
        self._changed = anyio.Event()
        self._over = False

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.TaskAdded):
            self.known += 1
        elif isinstance(event, _SETTLED):
            self.settled += 1
            self._changed.set()

    def end(self) -> None:
        """Let `send` report what is left and return."""
        self._over = True
        self._changed.set()

    async def send(self, ctx: Context) -> None:
        """Report progress each time more tasks have settled, until `end()`.

        Tasks that settle in one burst are one notification: progress must
        grow with each, and a client needs no more.
        """
        reported = 0
        while True:
            await self._changed.wait()
            self._changed = anyio.Event()
            if self.settled > reported:
                reported = self.settled
                total = max(self.known, reported)
                await ctx.report_progress(reported, total, f"{reported} of {total} tasks settled")
            if self._over:
                return


async def _reporting_progress(ctx: Context, go: Callable[[EventListener], Awaitable[T]]) -> T:
    """`go(listener)`, with progress sent to the client as the listener sees tasks settle.

    A no-op for progress when the client asked for none (`report_progress` is).
    When runs are traced, a `traceparent` the client sent makes the run's span
    a child of the client's.
    """
    progress = _Progress()
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress.send, ctx)
        try:
            # A client's `traceparent` (in the request's `_meta`) parents the run's trace.
            with continued(ctx.request_context.meta):
                result = await go(progress.on_event)
        except Exception as exc:  # raised below as itself, not in the group's ExceptionGroup
            failure = exc
        finally:
            progress.end()
    if failure is not None:
        raise failure
    return result


# -- results ----------------------------------------------------------------------


def _structured(data: dict[str, Any], text: str, *, is_error: bool = False) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=escape_surrogates(_clipped(text, _MAX_TEXT)))],
        structured_content=_wire(data),
        is_error=is_error,
    )


def _tool_error(message: str) -> CallToolResult:
    text = escape_surrogates(_clipped(message, _MAX_MESSAGE))
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 30] + f"... ({len(text):,} characters)"


def _wire(value: Any) -> Any:
    """`value` as JSON can carry it, the way the command line's `--json` writes it.

    A float that is not finite becomes "NaN", "Infinity" or "-Infinity"; a
    lone surrogate in a text (which UTF-8 cannot hold) its escape.
    """
    if isinstance(value, str):
        return value if value.isascii() else escape_surrogates(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {_wire(k): _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    return value


def _counted(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "no tasks"


def _run_text(result: RunResult) -> str:
    """The run's status, then a line per task: its status and output or error."""
    tasks = list(result.tasks.values())
    counts = collections.Counter(str(t.status) for t in tasks)
    lines = [f"run {result.run_id} {result.status}: {_counted(counts)}"]
    if result.plan_error is not None:
        lines.append(f"the plan broke off: {result.plan_error}")
    for task in tasks:
        shown = task.output if task.error is None else task.error
        lines.append(f"{task.id}. {task.tool}: {task.status}: {clip(str(shown), 200)}")
    return "\n".join(lines)


def _answer_text(result: AgentResult) -> str:
    if result.status == "answered":
        return str(result.answer)
    return f"not answered ({result.status}): {result.error}"
