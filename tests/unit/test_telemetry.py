"""Telemetry: a run's events as OpenTelemetry spans, and a recorded run as a timeline.

Spans are checked with the SDK's in-memory exporter: the tree (tool spans are
siblings under the run's span; a plan span holds its model call), names and
attributes. Timelines are checked for their lanes (no two bars of a lane
overlap), their SVG (well-formed XML, one bar per task) and the `trace`
command.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import mcp_types
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from typer.testing import CliRunner

import taskloom
from taskloom import telemetry
from taskloom.agent import Agent
from taskloom.cli import app
from taskloom.store import Store
from taskloom.telemetry import assign_lanes, build_timeline, render_html, render_svg
from taskloom.testing import ScriptedModel
from taskloom.tools._mcp_session import ServerSession, _Live, trace_meta
from taskloom.tools.mcp import _mcp_tool, load_servers

SVG = "{http://www.w3.org/2000/svg}"
runner = CliRunner()


# -- tools --------------------------------------------------------------------


class Pair:
    """Two calls that each wait until both have started: they surely overlap."""

    def __init__(self) -> None:
        self.started = 0
        self.both = anyio.Event()

    async def __call__(self, name: str) -> str:
        self.started += 1
        if self.started == 2:
            self.both.set()
        await self.both.wait()
        return name.upper()


def pair_tool() -> taskloom.Tool:
    pair = Pair()

    @taskloom.tool
    async def fetch(name: str) -> str:
        """Fetch a name (in pairs)."""
        return await pair(name)

    return fetch


@taskloom.tool
async def boom(why: str) -> str:
    """Always fails."""
    raise ValueError(why)


@taskloom.tool
async def join_words(a: str, b: str) -> str:
    """Two words as one."""
    return f"{a} {b}"


@taskloom.tool
async def lookup(name: str) -> dict[str, Any]:
    """A record per name."""
    return {"name": name, "size": len(name)}


@taskloom.tool
async def add(a: int, b: int) -> int:
    """The sum."""
    return a + b


PLAN = '1. fetch("a")\n2. fetch("b")\n3. boom("no")\n4. join_words($1, $2)\n5. join_words($3, $1)\n'
AGENT_PLAN = '1. lookup("alpha")\n2. lookup("be")\n3. add($1.size, $2.size)\n4. join()<END_OF_PLAN>'


# -- spans --------------------------------------------------------------------


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.instrument(provider, capture_content=False)
    yield exporter
    telemetry.uninstrument()
    provider.shutdown()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = by_name(spans, name)
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def times(span: ReadableSpan) -> tuple[int, int]:
    assert span.start_time is not None and span.end_time is not None
    return span.start_time, span.end_time


def tool_spans(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    """Tool spans by task id."""
    found = [s for s in spans if s.name.startswith("execute_tool ")]
    out = {str((s.attributes or {})["gen_ai.tool.call.id"]): s for s in found}
    assert len(out) == len(found)
    return out


@pytest.mark.anyio
async def test_a_plan_run_is_a_workflow_span_over_sibling_tool_spans(
    exporter: InMemorySpanExporter,
) -> None:
    result = await taskloom.execute(
        taskloom.Plan.parse(PLAN), tools=[pair_tool(), boom, join_words]
    )
    spans = exporter.get_finished_spans()
    root = one(spans, "invoke_workflow")
    assert root.kind is SpanKind.INTERNAL
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["taskloom.run.id"] == result.run_id
    assert root.attributes["taskloom.run.status"] == "completed"
    assert root.status.status_code is StatusCode.UNSET

    tools = tool_spans(spans)
    # Task 5 depends on the failed task 3: skipped, it never ran, so it has no span.
    assert sorted(tools) == ["1", "2", "3", "4"]
    assert len(spans) == 5
    for task_id, span in tools.items():
        assert parent_of(span) == span_id(root)
        assert span.kind is SpanKind.INTERNAL
        attributes = span.attributes or {}
        tool = result.tasks[task_id].tool
        assert span.name == f"execute_tool {tool}"
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert attributes["gen_ai.tool.name"] == tool
        assert attributes["gen_ai.tool.call.id"] == task_id
        # Content is recorded only when asked for.
        assert "gen_ai.tool.call.arguments" not in attributes
        assert "gen_ai.tool.call.result" not in attributes
        start, end = times(span)
        assert times(root)[0] <= start <= end <= times(root)[1]

    # The two fetches overlap, as they ran.
    (start_1, end_1), (start_2, end_2) = times(tools["1"]), times(tools["2"])
    assert start_1 < end_2 and start_2 < end_1

    failed = tools["3"]
    assert failed.status.status_code is StatusCode.ERROR
    assert "ValueError" in (failed.status.description or "")
    assert (failed.attributes or {})["error.type"] == "ToolFailed"
    assert (failed.attributes or {})["taskloom.error.cause"] == "ValueError"
    assert "error.type" not in (tools["4"].attributes or {})
    assert tools["4"].status.status_code is StatusCode.UNSET


@pytest.mark.anyio
async def test_span_times_are_the_events_times_on_the_wall_clock(
    exporter: InMemorySpanExporter,
) -> None:
    result = await taskloom.execute(
        taskloom.Plan.parse('1. lookup("a")\n2. lookup("b")'), tools=[lookup]
    )
    tools = tool_spans(exporter.get_finished_spans())
    at = {(e.kind, getattr(e, "task_id", None)): e.at for e in result.events}
    for task_id, span in tools.items():
        start, end = times(span)
        took = at["task_finished", task_id] - at["task_started", task_id]
        assert (end - start) / 1e9 == pytest.approx(took, abs=1e-6)
    gap = (times(tools["2"])[0] - times(tools["1"])[0]) / 1e9
    assert gap == pytest.approx(at["task_started", "2"] - at["task_started", "1"], abs=1e-6)


@pytest.mark.anyio
async def test_arguments_and_results_are_recorded_when_asked_for(
    exporter: InMemorySpanExporter,
) -> None:
    telemetry.instrument(exporter_provider(exporter), capture_content=True)
    await taskloom.execute(taskloom.Plan.parse('1. lookup("ab")'), tools=[lookup])
    attributes = tool_spans(exporter.get_finished_spans())["1"].attributes or {}
    assert attributes["gen_ai.tool.call.arguments"] == '{"name": "ab"}'
    assert attributes["gen_ai.tool.call.result"] == '{"name": "ab", "size": 2}'


@pytest.mark.anyio
async def test_the_standard_variable_asks_for_content(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry.instrument(exporter_provider(exporter))  # content: as the environment says
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    await taskloom.execute(taskloom.Plan.parse('1. lookup("ab")'), tools=[lookup])
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "false")
    await taskloom.execute(taskloom.Plan.parse('1. lookup("cd")'), tools=[lookup])
    spans = [s for s in exporter.get_finished_spans() if s.name == "execute_tool lookup"]
    assert [(s.attributes or {}).get("gen_ai.tool.call.arguments") for s in spans] == [
        '{"name": "ab"}',
        None,
    ]


def exporter_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.anyio
async def test_a_cancelled_run_ends_its_spans_with_an_error(
    exporter: InMemorySpanExporter,
) -> None:
    started = anyio.Event()

    @taskloom.tool
    async def hang(name: str) -> str:
        """Never returns."""
        started.set()
        await anyio.sleep_forever()
        return name

    async with anyio.create_task_group() as tg:

        async def go() -> None:
            await taskloom.execute(taskloom.Plan.parse('1. hang("x")'), tools=[hang])

        tg.start_soon(go)
        await started.wait()
        tg.cancel_scope.cancel()
    spans = exporter.get_finished_spans()
    root = one(spans, "invoke_workflow")
    assert root.status.status_code is StatusCode.ERROR
    assert (root.attributes or {})["error.type"] == "CancelledError"
    tool = tool_spans(spans)["1"]
    assert (tool.attributes or {})["error.type"] == "TaskCancelled"


@pytest.mark.anyio
async def test_a_resumed_plan_run_is_traced_and_a_rebuilt_one_is_not(
    exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    path = tmp_path / "s.sqlite3"
    plan = taskloom.Plan.parse('1. lookup("a")\n2. add($1.size, 1)')
    with Store.open(path) as store:
        run_id = store.journal(request="early", plan=plan).run_id
    with Store.open(path) as store:
        result = await taskloom.resume(run_id, store=store, tools=[lookup, add])
        assert result.outputs["2"] == 2
        await taskloom.resume(run_id, store=store, tools=[lookup, add])  # ended: rebuilt
    spans = exporter.get_finished_spans()
    root = one(spans, "invoke_workflow")
    assert (root.attributes or {})["taskloom.run.id"] == run_id
    assert sorted(tool_spans(spans)) == ["1", "2"]


@pytest.mark.anyio
async def test_an_agent_request_has_a_plan_span_with_its_chat_and_token_usage(
    exporter: InMemorySpanExporter,
) -> None:
    model = ScriptedModel([AGENT_PLAN, "Thought: added.\nAction: Finish(7)"], name="scripted")
    seen: list[Any] = []
    result = await Agent(tools=[lookup, add], model=model, grammar=False, on_event=seen.append).run(
        "How long are alpha and be together?"
    )
    assert result.answer == "7"
    spans = exporter.get_finished_spans()
    root = one(spans, "invoke_agent")
    assert root.parent is None
    assert (root.attributes or {})["gen_ai.operation.name"] == "invoke_agent"
    assert (root.attributes or {})["taskloom.run.status"] == "answered"
    assert "gen_ai.input.messages" not in (root.attributes or {})

    plan = one(spans, "plan")
    assert parent_of(plan) == span_id(root)
    assert (plan.attributes or {})["gen_ai.operation.name"] == "plan"
    assert (plan.attributes or {})["taskloom.round"] == 1
    assert (plan.attributes or {})["taskloom.plan.attempts"] == 1
    assert plan.status.status_code is StatusCode.UNSET

    chats = by_name(spans, "chat scripted")
    planner = [c for c in chats if parent_of(c) == span_id(plan)]
    joiner = [c for c in chats if parent_of(c) == span_id(root)]
    assert len(planner) == 1 and len(joiner) == 1 and len(chats) == 2
    calls = {e.purpose: e for e in seen if e.kind == "llm_call_finished"}
    for span, purpose in ((planner[0], "plan"), (joiner[0], "join")):
        attributes = span.attributes or {}
        assert span.kind is SpanKind.CLIENT
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "scripted"
        assert attributes["gen_ai.usage.input_tokens"] == calls[purpose].prompt_tokens > 0
        assert attributes["gen_ai.usage.output_tokens"] == calls[purpose].completion_tokens > 0
        assert attributes["taskloom.llm.purpose"] == purpose
        assert "gen_ai.output.messages" not in attributes
        assert times(root)[0] <= times(span)[0] <= times(span)[1] <= times(root)[1]
    assert times(planner[0])[0] >= times(plan)[0]
    assert times(planner[0])[1] <= times(plan)[1]

    tools = tool_spans(spans)
    assert sorted(tools) == ["1", "2", "3"]
    for span in tools.values():
        assert parent_of(span) == span_id(root)  # siblings of the plan span, not its children
    # The plan streams into the run: the first calls start before the planner's call ends.
    assert times(tools["1"])[0] <= times(planner[0])[1]
    decided = [e for e in root.events if e.name == "decided"]
    assert [(e.attributes or {})["taskloom.action"] for e in decided] == ["finish"]


@pytest.mark.anyio
async def test_an_agent_request_with_content_records_question_and_answer(
    exporter: InMemorySpanExporter,
) -> None:
    telemetry.instrument(exporter_provider(exporter), capture_content=True)
    model = ScriptedModel([AGENT_PLAN, "Thought: added.\nAction: Finish(7)"])
    await Agent(tools=[lookup, add], model=model, grammar=False).run("How long?")
    spans = exporter.get_finished_spans()
    root = one(spans, "invoke_agent").attributes or {}
    assert "How long?" in str(root["gen_ai.input.messages"])
    assert '"7"' in str(root["gen_ai.output.messages"])
    plan_chat = [s for s in spans if (s.attributes or {}).get("taskloom.llm.purpose") == "plan"]
    assert "lookup" in str((plan_chat[0].attributes or {})["gen_ai.output.messages"])


@pytest.mark.anyio
async def test_a_request_that_fails_says_why_on_its_span(exporter: InMemorySpanExporter) -> None:
    model = ScriptedModel(['1. lookup("alpha")\n2. nosuch(1)\n'] * 3)
    result = await Agent(tools=[lookup, add], model=model, grammar=False).run("Size?")
    assert result.status == "failed"
    spans = exporter.get_finished_spans()
    root = one(spans, "invoke_agent")
    assert (root.attributes or {})["error.type"] == "failed"
    assert root.status.status_code is StatusCode.ERROR
    plan = one(spans, "plan")
    assert (plan.attributes or {})["error.type"] == "PlanError"
    assert (plan.attributes or {})["taskloom.plan.attempts"] == 3
    assert "nosuch" in (plan.status.description or "")


@pytest.mark.anyio
async def test_a_repaired_plan_is_one_plan_span_with_a_chat_per_attempt(
    exporter: InMemorySpanExporter,
) -> None:
    model = ScriptedModel(
        [
            '1. lookup("alpha")\n2. nosuch(1)\n',
            '1. lookup("alpha")\n2. add($1.size, 1)\n3. join()<END_OF_PLAN>',
            "Action: Finish(6)",
        ]
    )
    result = await Agent(tools=[lookup, add], model=model, grammar=False).run("Size plus one?")
    assert result.answer == "6"
    spans = exporter.get_finished_spans()
    plan = one(spans, "plan")
    children = [s for s in spans if parent_of(s) == span_id(plan)]
    assert [s.name for s in children] == ["chat scripted", "chat scripted"]
    attempts = [e for e in plan.events if e.name == "plan_attempt"]
    assert [(e.attributes or {})["taskloom.valid"] for e in attempts] == [False, True]
    assert (plan.attributes or {})["taskloom.plan.attempts"] == 2
    assert plan.status.status_code is StatusCode.UNSET  # repaired


@pytest.mark.anyio
async def test_a_replan_gives_a_plan_span_per_round(exporter: InMemorySpanExporter) -> None:
    model = ScriptedModel(
        [
            '1. lookup("alpha")\n2. join()<END_OF_PLAN>',
            "Action: Replan(need the other)",
            '3. lookup("be")\n4. add($1.size, $3.size)\n5. join()<END_OF_PLAN>',
            "Action: Finish(7)",
        ]
    )
    result = await Agent(tools=[lookup, add], model=model, grammar=False).run("Sum?")
    assert result.answer == "7"
    spans = exporter.get_finished_spans()
    plans = sorted(by_name(spans, "plan"), key=lambda s: times(s)[0])
    assert [(p.attributes or {})["taskloom.round"] for p in plans] == [1, 2]
    root = one(spans, "invoke_agent")
    assert all(parent_of(p) == span_id(root) for p in plans)
    assert sorted(tool_spans(spans)) == ["1", "3", "4"]
    assert all(parent_of(s) == span_id(root) for s in tool_spans(spans).values())
    assert times(plans[0])[1] <= times(plans[1])[0]


# -- trace context inside tools -------------------------------------------------


@pytest.mark.anyio
async def test_a_tool_runs_under_its_own_span(exporter: InMemorySpanExporter) -> None:
    seen: dict[str, tuple[int, dict[str, str] | None]] = {}

    @taskloom.tool
    async def where(name: str) -> str:
        """Note the span current while the tool runs, and the meta an MCP call would send."""
        await anyio.lowlevel.checkpoint()
        seen[name] = (otel_trace.get_current_span().get_span_context().span_id, trace_meta())
        return name + "!"

    @taskloom.tool
    def where_sync(name: str) -> str:
        """The same, on a worker thread."""
        seen[name] = (otel_trace.get_current_span().get_span_context().span_id, trace_meta())
        return name

    plan = '1. where("a")\n2. where("b")\n3. where_sync("c")\n4. where_sync($1)'
    await taskloom.execute(taskloom.Plan.parse(plan), tools=[where, where_sync])
    tools = tool_spans(exporter.get_finished_spans())
    # Task 4's host is started by task 1's, which must not hand its span down.
    for task_id, name in (("1", "a"), ("2", "b"), ("3", "c"), ("4", "a!")):
        current, meta = seen[name]
        assert current == span_id(tools[task_id])
        assert meta is not None
        assert traceparent_ids(meta["traceparent"]) == ids(tools[task_id])


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def traceparent_ids(traceparent: str) -> tuple[int, int]:
    version, trace_id, parent_id, _flags = traceparent.split("-")
    assert version == "00"
    return int(trace_id, 16), int(parent_id, 16)


@pytest.mark.anyio
async def test_an_mcp_call_sends_the_trace_context_in_its_meta(
    exporter: InMemorySpanExporter,
) -> None:
    client = FakeClient()
    async with anyio.create_task_group() as tg:
        (config,) = load_servers([{"mcpServers": {"fake": {"command": "unused"}}}])
        session = ServerSession(config, tg)
        session._live = _Live(client=client)  # type: ignore[arg-type]
        spec = mcp_types.Tool(name="echo", input_schema={"type": "object", "properties": {}})
        echo = _mcp_tool(session, spec, name="echo")
        await taskloom.execute(taskloom.Plan.parse("1. echo()\n2. echo()"), tools=[echo])
        telemetry.uninstrument()
        await taskloom.execute(taskloom.Plan.parse("1. echo()"), tools=[echo])
    tools = tool_spans(exporter.get_finished_spans())
    sent = [traceparent_ids(m["traceparent"]) if m else None for m in client.metas]
    assert sorted(sent[:2], key=str) == sorted((ids(s) for s in tools.values()), key=str)
    assert sent[2] is None  # untraced: no _meta at all


@pytest.mark.anyio
async def test_an_mcp_clients_traceparent_parents_the_servers_run(
    exporter: InMemorySpanExporter,
) -> None:
    from contextlib import asynccontextmanager

    from mcp import Client

    from taskloom.server.mcp_server import ServeOptions, build_server

    tools = {"lookup": lookup}

    @asynccontextmanager
    async def served() -> Any:
        yield tools

    def no_agent(tools: Any, listener: Any) -> Agent:
        raise AssertionError("no agent here")

    server = build_server(ServeOptions(tools=served, agent=no_agent, store=None), tools)
    trace_id, parent_id = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    traceparent = f"00-{trace_id:032x}-{parent_id:016x}-01"
    async with Client(server) as connected:
        called = await connected.call_tool(
            "exec_plan", {"plan": '1. lookup("a")'}, meta={"traceparent": traceparent}
        )
        assert not called.is_error
        await connected.call_tool("exec_plan", {"plan": '1. lookup("b")'})
    roots = by_name(exporter.get_finished_spans(), "invoke_workflow")
    assert len(roots) == 2
    assert ids(roots[0])[0] == trace_id and parent_of(roots[0]) == parent_id
    assert ids(roots[1])[0] != trace_id and roots[1].parent is None  # no traceparent: a new trace


class FakeClient:
    """Stands for `mcp.Client`: notes the `_meta` of each call."""

    def __init__(self) -> None:
        self.metas: list[Any] = []

    async def call_tool(self, name: str, arguments: dict[str, Any], *, meta: Any = None) -> Any:
        self.metas.append(meta)
        return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=name)])


# -- on and off -----------------------------------------------------------------


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean | env,
        check=False,
    )


RUN_A_PLAN = """
import sys, anyio, taskloom

@taskloom.tool
async def echo(text: str) -> str:
    return text

async def main():
    result = await taskloom.execute(taskloom.Plan.parse('1. echo("hi")'), tools=[echo])
    print("status", result.status)

anyio.run(main)
print("otel loaded:", any(m.startswith("opentelemetry") for m in sys.modules))
"""


def test_tracing_is_off_by_default_and_imports_nothing() -> None:
    out = run_python(RUN_A_PLAN)
    assert out.returncode == 0, out.stderr
    assert "status completed" in out.stdout
    assert "otel loaded: False" in out.stdout


def test_the_otel_variables_choose_the_exporter() -> None:
    out = run_python(RUN_A_PLAN, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="svc")
    assert out.returncode == 0, out.stderr
    assert "otel loaded: True" in out.stdout
    assert '"name": "execute_tool echo"' in out.stdout
    assert '"name": "invoke_workflow"' in out.stdout
    assert '"service.name": "svc"' in out.stdout


class Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint on loopback that keeps what it is sent."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_otlp_endpoint_alone_sends_the_spans_there_over_http() -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        out = run_python(RUN_A_PLAN, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    finally:
        server.shutdown()
        server.server_close()
    assert out.returncode == 0, out.stderr
    # The spans are sent when the process exits, at the latest.
    assert [path for path, _ in Collector.received] == ["/v1/traces"]
    body = Collector.received[0][1]
    assert b"execute_tool echo" in body and b"invoke_workflow" in body


def test_a_global_tracer_provider_the_application_set_gets_the_spans() -> None:
    setup = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "memory = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(memory))\n"
        "trace.set_tracer_provider(provider)\n"
    )
    report = "print('in memory:', sorted(s.name for s in memory.get_finished_spans()))\n"
    out = run_python(setup + RUN_A_PLAN + report, OTEL_TRACES_EXPORTER="console")
    assert out.returncode == 0, out.stderr
    assert "in memory: ['execute_tool echo', 'invoke_workflow']" in out.stdout
    assert '"name":' not in out.stdout  # not on the console exporter as well


def test_an_exporter_that_is_not_installed_warns_and_the_run_goes_on() -> None:
    out = run_python(RUN_A_PLAN, OTEL_TRACES_EXPORTER="no_such_exporter")
    assert out.returncode == 0, out.stderr
    assert "status completed" in out.stdout
    assert "taskloom runs untraced" in out.stderr and "no_such_exporter" in out.stderr


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none,otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_which_variables_ask_for_traces(env: dict[str, str], wanted: bool) -> None:
    assert telemetry.traces_requested(env) is wanted


# -- the timeline -----------------------------------------------------------------


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return max(a[0], b[0]) < min(a[1], b[1])


@given(
    st.lists(
        st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0, 20, allow_nan=False)).map(
            lambda p: (p[0], p[0] + p[1])
        ),
        max_size=60,
    )
)
def test_lanes_never_hold_two_overlapping_bars_and_are_as_few_as_can_be(
    spans: list[tuple[float, float]],
) -> None:
    lanes = assign_lanes(spans)
    assert len(lanes) == len(spans)
    for i, a in enumerate(spans):
        for j in range(i + 1, len(spans)):
            if lanes[i] == lanes[j]:
                assert not overlaps(a, spans[j]), (a, spans[j])
    if all(start < end for start, end in spans):
        # As many lanes as the most intervals open at one moment.
        most = max((sum(s[0] <= t < s[1] for s in spans) for t, _ in spans), default=0)
        assert max(lanes, default=-1) + 1 == most


def test_lanes_reuse_a_lane_once_it_is_free() -> None:
    assert assign_lanes([(0, 2), (1, 3), (2, 4), (3, 5)]) == [0, 1, 0, 1]
    assert assign_lanes([(0, 10), (1, 2), (3, 4)]) == [0, 1, 1]
    assert assign_lanes([]) == []


async def record_plan_run(store: Store, plan: str = PLAN) -> str:
    journal = store.journal(request="test.plan")
    await taskloom.execute(
        taskloom.Plan.parse(plan), tools=[pair_tool(), boom, join_words], journal=journal
    )
    return journal.run_id


def svg_bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return [e for e in root.iter(f"{SVG}rect") if e.get("data-task") is not None]


@pytest.mark.anyio
async def test_a_recorded_runs_svg_parses_and_has_one_bar_per_task(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        run_id = await record_plan_run(store)
        record = store.load(run_id)
        timeline = build_timeline(record, store.events(run_id))
    bars = svg_bars(render_svg(timeline))
    assert sorted(b.get("data-task") for b in bars) == ["1", "2", "3", "4", "5"]
    states = {b.get("data-task"): b.get("data-state") for b in bars}
    assert states == {"1": "done", "2": "done", "3": "failed", "4": "done", "5": "skipped"}
    # The two fetches ran at once: two slots; the skipped task is in the lane of tasks not run.
    lanes = {bar.task_id: timeline.lanes[bar.lane] for bar in timeline.bars}
    assert {lanes["1"], lanes["2"]} == {"slot 1", "slot 2"}
    assert lanes["5"] == "not run"
    assert "planner" not in timeline.lanes
    for lane in range(len(timeline.lanes)):
        mine = [(b.start, b.end) for b in timeline.bars if b.lane == lane]
        assert not any(overlaps(a, b) for i, a in enumerate(mine) for b in mine[i + 1 :])


@pytest.mark.anyio
async def test_an_agent_runs_timeline_has_planner_and_joiner_bars(tmp_path: Path) -> None:
    model = ScriptedModel([AGENT_PLAN, "Thought: added.\nAction: Finish(7)"])
    with Store.open(tmp_path / "s.sqlite3") as store:
        agent = Agent(tools=[lookup, add], model=model, grammar=False, store=store)
        await agent.run("How long?")
        run_id = store.runs()[0].id
        timeline = build_timeline(store.load(run_id), store.events(run_id))
    assert timeline.lanes[:2] == ("planner", "joiner")
    kinds = [b.kind for b in timeline.bars]
    assert kinds.count("planner") == 1 and kinds.count("joiner") == 1 and kinds.count("task") == 3
    planner = next(b for b in timeline.bars if b.kind == "planner")
    joiner = next(b for b in timeline.bars if b.kind == "joiner")
    assert 0 <= planner.start <= planner.end <= joiner.start <= joiner.end <= timeline.duration
    assert len(svg_bars(render_svg(timeline))) == 3


@pytest.mark.anyio
async def test_every_round_of_a_request_is_timed_from_the_requests_start(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            '1. lookup("alpha")\n2. join()<END_OF_PLAN>',
            "Action: Replan(need the other)",
            '3. lookup("be")\n4. add($1.size, $3.size)\n5. join()<END_OF_PLAN>',
            "Action: Finish(7)",
        ]
    )
    with Store.open(tmp_path / "s.sqlite3") as store:
        await Agent(tools=[lookup, add], model=model, grammar=False, store=store).run("Sum?")
        run_id = store.runs()[0].id
        timeline = build_timeline(store.load(run_id), store.events(run_id))
    bars = {b.task_id or f"{b.kind} {b.label}": b for b in timeline.bars}
    first_join = bars["joiner join 1"]
    assert bars["1"].end <= first_join.start
    # The second round comes after the first's joiner, on the same clock.
    for later in ("planner plan 2", "3", "4"):
        assert bars[later].start >= first_join.end, later
    assert timeline.lanes[:2] == ("planner", "joiner")  # one lane each: they never overlap


def recorded(*tasks: tuple[str, str, float | None, float | None], request: str = "p") -> Any:
    """A RunRecord of tasks given as (argument, status, started, finished)."""
    from taskloom.store import RunRecord, TaskRecord

    records = tuple(
        TaskRecord(
            id=taskloom.TaskId(str(n)),
            round=0,
            task=taskloom.Task(id=taskloom.TaskId(str(n)), tool="echo", args=(argument,)),
            status=status,
            arguments=None,
            output=None,
            error_type=None if status == "done" else "ToolFailed",
            error=None if status == "done" else f"bad \x00 <{argument}>",
            started=started,
            finished=finished,
        )
        for n, (argument, status, started, finished) in enumerate(tasks, start=1)
    )
    return RunRecord(
        id=taskloom.RunId("r1"),
        kind="exec",
        request=request,
        status="completed",
        started=0.0,
        finished=1.0,
        answer=None,
        exhausted=None,
        config={},
        resumes=0,
        tasks=records,
        elapsed=max((t[3] or 0.0 for t in tasks), default=0.0),
    )


def test_text_that_xml_cannot_hold_is_replaced_and_markup_is_escaped() -> None:
    record = recorded(("<b>&\x01\ud800", "failed", 0.1, 0.5), request="<script>alert(1)</script>")
    timeline = build_timeline(record)
    assert len(svg_bars(render_svg(timeline))) == 1
    page = render_html(timeline)
    assert "<script>" not in page and "&lt;script&gt;" in page
    page.encode("utf-8")  # no lone surrogate left


def test_a_wide_fan_out_stays_about_a_screen_high() -> None:
    timeline = build_timeline(recorded(*((str(n), "done", 0.0, 1.0) for n in range(2000))))
    assert len(timeline.lanes) == 2000
    svg = render_svg(timeline)
    assert len(svg_bars(svg)) == 2000
    assert int(ET.fromstring(svg).get("height") or 0) < 1400


def test_an_empty_run_still_draws() -> None:
    timeline = build_timeline(recorded())
    assert timeline.lanes == () and timeline.duration == 0.0
    assert svg_bars(render_svg(timeline)) == []
    assert "no tasks" in render_html(timeline)


# -- the trace command ------------------------------------------------------------


@pytest.mark.anyio
async def test_trace_writes_an_html_page_and_an_svg(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store.open(path) as store:
        run_id = await record_plan_run(store)
    html, svg = tmp_path / "run.html", tmp_path / "run.svg"
    result = runner.invoke(
        app, ["trace", run_id[:6], "--html", str(html), "--svg", str(svg), "--store", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert str(html) in result.stderr and str(svg) in result.stderr
    drawing = svg.read_text(encoding="utf-8")
    assert len(svg_bars(drawing)) == 5
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert drawing in page  # the page embeds the same drawing
    # Self-contained: nothing is fetched from anywhere.
    lowered = page.lower()
    assert "<script" not in lowered and "<link" not in lowered
    assert " src=" not in lowered and " href=" not in lowered and "@import" not in lowered
    assert "http" not in lowered.replace('xmlns="http://www.w3.org/2000/svg"', "")


@pytest.mark.anyio
async def test_trace_of_an_unknown_run_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store.open(path) as store:
        await record_plan_run(store)
    out = tmp_path / "run.svg"
    result = runner.invoke(app, ["trace", "nosuchrun", "--svg", str(out), "--store", str(path)])
    assert result.exit_code == 2
    assert "no run 'nosuchrun'" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.anyio
async def test_trace_says_so_when_it_cannot_write_or_has_no_run_id(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store.open(path) as store:
        run_id = await record_plan_run(store)
    for args, said in (
        ([run_id, "--svg", str(tmp_path / "no" / "such" / "dir.svg")], "cannot write"),
        ([run_id, "--html", str(tmp_path)], "cannot write"),
        (["", "--svg", str(tmp_path / "x.svg")], "give a run id"),
    ):
        result = runner.invoke(app, ["trace", *args, "--store", str(path)])
        assert result.exit_code == 2, (args, result.output)
        assert said in result.stderr and "Traceback" not in result.output


def test_trace_needs_a_file_to_write(tmp_path: Path) -> None:
    result = runner.invoke(app, ["trace", "abc", "--store", str(tmp_path / "s.sqlite3")])
    assert result.exit_code == 2
    assert "--html FILE, --svg FILE or both" in result.stderr


def test_trace_without_a_store_fails_clearly(tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    result = runner.invoke(
        app, ["trace", "abc", "--html", str(out), "--store", str(tmp_path / "none.sqlite3")]
    )
    assert result.exit_code == 2
    assert "no run store" in result.stderr
    assert not (tmp_path / "none.sqlite3").exists()
