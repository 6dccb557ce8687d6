"""The HTTP API's run service in-process: starting, following, cancelling runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

import taskloom
from taskloom.agent import Agent
from taskloom.errors import PlanError, UserError
from taskloom.server._runs import Busy, NotLive, RunOptions, RunService, ServiceOptions
from taskloom.server._sse import event_stream
from taskloom.store import EventRecord, Store
from taskloom.testing import ScriptedModel
from taskloom.tools import Tool

pytestmark = pytest.mark.anyio

HANG_GUARD_S = 30.0


@taskloom.tool
async def nap(seconds: float) -> float:
    """Sleeps, then returns the seconds."""
    await anyio.sleep(seconds)
    return seconds


@taskloom.tool
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


TOOLS = {"nap": nap, "shout": shout}


def service(store: Store, replies: list[str] = (), **extra: Any) -> RunService:  # type: ignore[assignment]
    model = ScriptedModel(list(replies))

    def agent(tools: Mapping[str, Tool], options: RunOptions) -> Agent:
        return Agent(tools=tools, model=model, grammar=False, store=store)

    return RunService(ServiceOptions(store=store, tools=TOOLS, agent=agent, **extra))


async def stream_text(svc: RunService, run_id: str, after: int = 0) -> str:
    with anyio.fail_after(HANG_GUARD_S):
        return "".join([chunk async for chunk in event_stream(svc, run_id, after)])


async def test_a_plan_is_recorded_before_its_id_comes_back(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        async with service(store) as svc:
            run_id = await svc.start_plan('1. shout("a")\n2. shout("$1b")', RunOptions())
            # Committed already: a second connection sees it.
            with Store.open(tmp_path / "s.sqlite3") as other:
                assert other.load(run_id).status in ("running", "completed")
            text = await stream_text(svc, run_id)
        record = store.load(run_id)
    assert record.status == "completed" and [t.output for t in record.tasks] == ["A", "AB"]
    assert text.endswith('event: end\ndata: {"status": "completed"}\n\n')
    assert text.count("\nevent: ") == record.last_seq + 1  # and the end


async def test_live_and_logged_events_join_without_gap_or_repeat(tmp_path: Path) -> None:
    lines = "\n".join(f"{n}. nap(0.001)" for n in range(1, 41))
    with Store.open(tmp_path / "s.sqlite3") as store:
        async with service(store) as svc:
            run_id = await svc.start_plan(lines, RunOptions(max_concurrency=3))
            heard: list[int] = []
            async with anyio.create_task_group() as tg:

                async def late_reader(delay: float) -> None:
                    await anyio.sleep(delay)
                    text = await stream_text(svc, run_id)
                    heard.append(text.count("\nid: ") + text.startswith("id: "))

                for delay in (0, 0.01, 0.03, 0.06):
                    tg.start_soon(late_reader, delay)
            last = store.load(run_id).last_seq
    assert heard == [last] * 4


async def test_a_question_runs_through_the_agent(tmp_path: Path) -> None:
    replies = ['1. shout("x")\n2. join()<END_OF_PLAN>', "Thought: ok.\nAction: Finish($1)"]
    with Store.open(tmp_path / "s.sqlite3") as store:
        async with service(store, replies) as svc:
            run_id = await svc.start_question("shout x?", RunOptions())
            text = await stream_text(svc, run_id)
        record = store.load(run_id)
    assert record.kind == "agent" and record.answer == "X"
    assert "event: decided" in text and text.endswith('data: {"status": "answered"}\n\n')


async def test_cancel_limits_and_bad_plans(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        async with service(store, max_runs=1) as svc:
            with pytest.raises(PlanError, match="no tasks"):
                await svc.start_plan("# nothing", RunOptions())
            run_id = await svc.start_plan("1. nap(600)", RunOptions())
            with pytest.raises(Busy):
                await svc.start_plan("1. nap(600)", RunOptions())
            with anyio.fail_after(HANG_GUARD_S):
                assert await svc.cancel(run_id) == "cancelled"
            with pytest.raises(NotLive, match="cancelled"):
                await svc.cancel(run_id)
            with pytest.raises(UserError, match="no run"):
                await svc.cancel("nosuchrun")
        assert store.load(run_id).status == "cancelled"


async def test_leaving_the_service_cancels_its_runs(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        async with service(store) as svc:
            run_id = await svc.start_plan("1. nap(600)", RunOptions())
        assert store.load(run_id).status == "cancelled"


def test_runs_page_by_page_and_watchers_hear_each_record(tmp_path: Path) -> None:
    heard: list[tuple[str, int, str]] = []

    def watcher(run_id: str, record: EventRecord, event: Any) -> None:
        heard.append((run_id, record.seq, record.kind))

    with Store.open(tmp_path / "s.sqlite3") as store:
        stop = store.subscribe(watcher)
        ids = []
        for n in range(3):
            journal = store.journal(request=f"r{n}")
            anyio.run(lambda j=journal: taskloom.execute([], tools=TOOLS, journal=j))
            ids.append(journal.run_id)
        stop()
        store.flush()
        assert [r.id for r in store.runs(2)] == ids[::-1][:2]
        assert [r.id for r in store.runs(2, before=ids[1])] == [ids[0]]
        assert store.runs(before=ids[0]) == []
        assert store.runs(1)[0].finished is not None
        with pytest.raises(UserError, match="no run"):
            store.runs(before="nosuchrun")
    assert [h[0] for h in heard] == ids and all(h[1:] == (1, "run_finished") for h in heard)


async def test_an_agent_journal_is_made_before_the_run(tmp_path: Path) -> None:
    model = ScriptedModel(['1. shout("y")\n2. join()', "Thought: ok.\nAction: Finish($1)"])
    with Store.open(tmp_path / "s.sqlite3") as store:
        agent = Agent(tools=TOOLS, model=model, grammar=False, store=store)
        with pytest.raises(UserError, match="empty"):
            agent.journal("  ")
        journal = agent.journal("shout y?", run_id="chosen")
        await journal.flush()
        assert store.load("chosen").status == "running"
        result = await agent.run("shout y?", journal=journal)
        assert result.answer == "Y" and store.load("chosen").answer == "Y"
    with pytest.raises(UserError, match="store"):
        Agent(tools=TOOLS, model=model).journal("q")


async def test_the_runs_of_a_service_share_a_tool_s_limit(tmp_path: Path) -> None:
    in_flight, peak = 0, 0

    @taskloom.tool(max_concurrency=2)
    async def probe(n: int) -> int:
        """Counts the calls in flight across every run."""
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.01)
        in_flight -= 1
        return n

    lines = "\n".join(f"{n}. probe({n})" for n in range(1, 6))
    with Store.open(tmp_path / "s.sqlite3") as store:
        options = ServiceOptions(
            store=store,
            tools={"probe": probe},
            agent=lambda tools, options: None,  # type: ignore[arg-type, return-value]
        )
        async with RunService(options) as svc:
            ids = [await svc.start_plan(lines, RunOptions()) for _ in range(5)]
            for run_id in ids:
                await stream_text(svc, run_id)
        assert all(store.load(i).status == "completed" for i in ids)
    assert peak == 2  # each run alone would have had the whole limit: 10 across five


async def test_every_run_calls_its_tools_through_the_services_executor(tmp_path: Path) -> None:
    from taskloom.testing import RecordingExecutor

    executor = RecordingExecutor()
    replies = ['1. shout("q")\n2. join()<END_OF_PLAN>', "Thought: ok.\nAction: Finish($1)"]
    with Store.open(tmp_path / "s.sqlite3") as store:
        async with service(store, replies, executor=executor) as svc:
            plan_run = await svc.start_plan('1. shout("p")', RunOptions())
            await stream_text(svc, plan_run)
            question = await svc.start_question("shout q", RunOptions())
            await stream_text(svc, question)
        assert store.load(plan_run).status == "completed"
        assert store.load(question).status == "answered"
    assert executor.calls == [("shout", {"text": "p"}), ("shout", {"text": "q"})]
