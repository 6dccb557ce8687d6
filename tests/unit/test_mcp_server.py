"""The MCP server's tools, through an in-process MCP client of the SDK: translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

import taskloom
from taskloom.agent import Agent
from taskloom.engine._scheduler import EventListener
from taskloom.errors import ModelError
from taskloom.server.mcp_server import ServeOptions, build_server, is_loopback
from taskloom.store import Store
from taskloom.testing import ScriptedModel
from taskloom.tools.world import WORLD_TOOLS

pytestmark = pytest.mark.anyio

gate: list[anyio.Event] = []
"""What `held` waits for: each test that uses it puts a fresh event here."""


@taskloom.tool
def double(x: int) -> int:
    """Twice x."""
    return 2 * x


@taskloom.tool
async def held(x: int) -> int:
    """Returns x once the test opens the gate."""
    await gate[-1].wait()
    return x


@taskloom.tool
def infinite() -> float:
    """No finite number."""
    return float("inf")


@taskloom.tool
def surrogate() -> str:
    """Fails with a message UTF-8 cannot hold."""
    raise ValueError("bad \udc80 byte")


TOOLS: dict[str, taskloom.Tool] = {
    t.name: t for t in [*WORLD_TOOLS, double, held, infinite, surrogate]
}


def options(store: Store | None, replies: list[str | Exception] | None = None) -> ServeOptions:
    @asynccontextmanager
    async def tools() -> AsyncIterator[Mapping[str, taskloom.Tool]]:
        yield TOOLS

    def agent(tools: Mapping[str, taskloom.Tool], listener: EventListener) -> Agent:
        model = ScriptedModel(replies or [])
        return Agent(tools=tools, model=model, store=store, on_event=listener)

    return ServeOptions(tools=tools, agent=agent, store=store, exec_config={"tools": None})


@asynccontextmanager
async def client(
    store: Store | None = None, replies: list[str | Exception] | None = None
) -> AsyncIterator[Client]:
    server = build_server(options(store, replies), TOOLS)
    async with Client(server) as connected:
        yield connected


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = Store.open(tmp_path / "runs.sqlite3")
    yield opened
    opened.close()


async def test_lists_its_four_tools_with_their_input_schemas() -> None:
    async with client() as mcp:
        listed = {t.name: t for t in (await mcp.list_tools()).tools}
    assert sorted(listed) == ["exec_plan", "list_runs", "run", "show_run"]
    assert listed["exec_plan"].input_schema["required"] == ["plan"]
    assert listed["exec_plan"].input_schema["properties"]["plan"]["type"] == "string"
    assert "ctx" not in listed["exec_plan"].input_schema["properties"]
    assert listed["run"].input_schema["required"] == ["question"]
    assert listed["show_run"].input_schema["required"] == ["run_id"]
    assert "required" not in listed["list_runs"].input_schema
    # A client's LLM writes plans over the served tools: the description lists them.
    assert "double(x: integer)" in str(listed["exec_plan"].description)
    assert listed["list_runs"].annotations is not None
    assert listed["list_runs"].annotations.read_only_hint is True


async def test_exec_plan_runs_the_plan_and_returns_every_task() -> None:
    plan = '1. double(4)\n2. double("$1")\n3. math("$2 + 1")\n4. join()'
    async with client() as mcp:
        result = await mcp.call_tool("exec_plan", {"plan": plan})
    assert not result.is_error
    data = result.structured_content
    assert data is not None
    assert data["status"] == "completed"
    assert {i: t["output"] for i, t in data["tasks"].items()} == {"1": 8, "2": 16, "3": 17}
    assert all(t["status"] == "done" for t in data["tasks"].values())
    assert data["plan"].startswith("1. double(4)")
    text = result.content[0].text  # type: ignore[union-attr]
    assert f"run {data['run_id']} completed: 3 done" in text


async def test_a_failed_task_is_data_not_a_tool_error() -> None:
    async with client() as mcp:
        result = await mcp.call_tool("exec_plan", {"plan": '1. math("1 / 0")\n2. double(1)'})
    assert not result.is_error
    tasks = result.structured_content["tasks"]  # type: ignore[index]
    assert tasks["1"]["status"] == "failed" and tasks["1"]["error"]
    assert tasks["2"]["output"] == 2


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        ("1. double(", ["not valid"]),
        ("1. nosuchtool(1)", ["nosuchtool"]),
        ('1. double("a", 2)', ["double"]),
        ("", ["no tasks"]),
    ],
)
async def test_a_bad_plan_is_a_tool_error(plan: str, words: list[str]) -> None:
    async with client() as mcp:
        result = await mcp.call_tool("exec_plan", {"plan": plan})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        for word in words:
            assert word in text, text
        # The server goes on serving.
        again = await mcp.call_tool("exec_plan", {"plan": "1. double(1)"})
    assert not again.is_error


async def test_an_unknown_mcp_tool_and_bad_arguments_are_tool_errors() -> None:
    async with client() as mcp:
        unknown = await mcp.call_tool("exec_plans", {"plan": "1. double(1)"})
        bad = await mcp.call_tool("exec_plan", {"plan": "1. double(1)", "max_concurrency": 0})
        missing = await mcp.call_tool("show_run", {})
    assert unknown.is_error and "exec_plans" in unknown.content[0].text  # type: ignore[union-attr]
    assert bad.is_error and "max_concurrency" in bad.content[0].text  # type: ignore[union-attr]
    assert missing.is_error and "run_id" in missing.content[0].text  # type: ignore[union-attr]


async def test_progress_is_sent_as_tasks_settle() -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        if progress == 2:
            gate[-1].set()  # task 3 settles only after the first two were reported

    gate.append(anyio.Event())
    plan = "1. double(1)\n2. double(2)\n3. held(3)"
    async with client() as mcp:
        result = await mcp.call_tool("exec_plan", {"plan": plan}, progress_callback=on_progress)
    assert not result.is_error
    assert [p for p, _, _ in seen] == sorted({p for p, _, _ in seen})  # it only grows
    assert seen[-1] == (3, 3, "3 of 3 tasks settled")
    assert any(p == 2 for p, _, _ in seen)


async def test_a_client_cancelling_the_call_cancels_the_run(store: Store) -> None:
    gate.append(anyio.Event())  # never set: task 2 runs until cancelled
    async with client(store) as mcp:
        with anyio.CancelScope() as scope:

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                scope.cancel()  # task 1 settled, task 2 is running

            plan = {"plan": "1. double(1)\n2. held(2)"}
            await mcp.call_tool("exec_plan", plan, progress_callback=on_progress)
        assert scope.cancelled_caught
    # The client is closed, so the server's handler has ended and the run with it.
    store.flush()
    [run] = store.runs()
    assert run.status == "cancelled"
    record = store.load(run.id)
    assert {t.id: t.status for t in record.tasks} == {"1": "done", "2": "cancelled"}


async def test_list_runs_and_show_run_read_the_store(store: Store) -> None:
    async with client(store) as mcp:
        ran = await mcp.call_tool("exec_plan", {"plan": "1. double(21)"})
        run_id = ran.structured_content["run_id"]  # type: ignore[index]
        listed = await mcp.call_tool("list_runs", {"limit": 5})
        shown = await mcp.call_tool("show_run", {"run_id": run_id[:6]})
        unknown = await mcp.call_tool("show_run", {"run_id": "nosuchrun"})
    runs = listed.structured_content["runs"]  # type: ignore[index]
    assert [r["id"] for r in runs] == [run_id]
    assert runs[0]["status"] == "completed" and runs[0]["kind"] == "exec"
    record = shown.structured_content
    assert record is not None and record["id"] == run_id
    assert record["tasks"][0]["task"] == "1. double(21)"
    assert record["tasks"][0]["output"] == 42
    assert unknown.is_error and "nosuchrun" in unknown.content[0].text  # type: ignore[union-attr]


async def test_without_a_store_the_run_tools_say_so() -> None:
    async with client(None) as mcp:
        listed = await mcp.call_tool("list_runs", {})
        shown = await mcp.call_tool("show_run", {"run_id": "abc"})
    for result in (listed, shown):
        assert result.is_error and "--no-store" in result.content[0].text  # type: ignore[union-attr]


async def test_run_answers_with_the_agent(store: Store) -> None:
    replies = ["1. double(21)\n2. join()", "Thought: done.\nAction: Finish(42)"]
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with client(store, replies) as mcp:
        result = await mcp.call_tool(
            "run", {"question": "Twice 21?"}, progress_callback=on_progress
        )
        shown = await mcp.call_tool("show_run", {"run_id": result.structured_content["run_id"]})  # type: ignore[index]
    assert not result.is_error
    data = result.structured_content
    assert data is not None and data["answer"] == "42" and data["status"] == "answered"
    assert [(t["tool"], t["output"]) for t in data["tasks"]] == [("double", 42)]
    assert result.content[0].text == "42"  # type: ignore[union-attr]
    assert seen == [1]  # the agent's one task settled
    assert shown.structured_content["kind"] == "agent"  # type: ignore[index]


async def test_an_unanswered_question_is_a_tool_error_with_its_record() -> None:
    async with client(None, [ModelError("scripted", "down")]) as mcp:
        empty = await mcp.call_tool("run", {"question": "  "})
        result = await mcp.call_tool("run", {"question": "Twice 21?"})
    assert empty.is_error and "empty" in empty.content[0].text  # type: ignore[union-attr]
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["status"] == "failed"
    assert "down" in result.content[0].text  # type: ignore[union-attr]


async def test_values_json_cannot_carry_are_written_as_the_cli_writes_them() -> None:
    async with client() as mcp:
        result = await mcp.call_tool("exec_plan", {"plan": "1. infinite()\n2. surrogate()"})
        again = await mcp.call_tool("exec_plan", {"plan": "1. double(1)"})
    tasks = result.structured_content["tasks"]  # type: ignore[index]
    assert tasks["1"]["output"] == "Infinity"
    assert tasks["2"]["status"] == "failed" and "\\udc80" in tasks["2"]["error"]
    assert not again.is_error  # the server did not trip over the text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_calls_from_one_client_run_at_the_same_time() -> None:
    gate.append(anyio.Event())
    halfway: set[int] = set()
    results: dict[int, Any] = {}

    async with client() as mcp:

        async def call(n: int) -> None:
            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                halfway.add(n)
                if halfway == {1, 2}:
                    gate[-1].set()  # both runs are waiting in `held`: neither waits for the other

            plan = {"plan": f"1. double({n})\n2. held(2)"}
            results[n] = await mcp.call_tool("exec_plan", plan, progress_callback=on_progress)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 1)
                tg.start_soon(call, 2)
    assert [results[n].structured_content["tasks"]["1"]["output"] for n in (1, 2)] == [2, 4]  # type: ignore[index]
