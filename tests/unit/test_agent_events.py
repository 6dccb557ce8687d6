"""The agent's model calls, plan attempts and decisions are events in the request's sequence.

They are numbered with the scheduler's events (1, 2, 3... over every round,
resume included), reach `on_event`, and are what the store's journal records
them from.
"""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

import taskloom
from taskloom._console import LiveProgress
from taskloom.agent import Agent
from taskloom.engine import events as ev
from taskloom.errors import UserError
from taskloom.llm import GenerationOptions, Message
from taskloom.store import Store
from taskloom.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio


@taskloom.tool
async def lookup(name: str) -> dict[str, Any]:
    """A record per name."""
    return {"name": name, "size": len(name)}


@taskloom.tool
async def add(a: int, b: int) -> int:
    """The sum."""
    return a + b


PLAN = '1. lookup("alpha")\n2. lookup("be")\n3. add($1.size, $2.size)\n4. join()<END_OF_PLAN>'


def kinds(events: list[ev.Event]) -> list[str]:
    return [e.kind for e in events]


def index(events: list[ev.Event], kind: str, **fields: Any) -> int:
    """Position of the only event of `kind` whose fields match."""
    found = [
        i
        for i, e in enumerate(events)
        if e.kind == kind and all(getattr(e, k) == v for k, v in fields.items())
    ]
    assert len(found) == 1, (kind, fields, kinds(events))
    return found[0]


def assert_one_sequence(events: list[ev.Event], first: int = 1) -> None:
    """Numbered first, first + 1, ... with no gap or repeat, all under one run id."""
    assert [e.seq for e in events] == list(range(first, first + len(events)))
    assert len({e.run_id for e in events}) == 1


async def test_agent_events_are_numbered_with_the_task_events() -> None:
    seen: list[ev.Event] = []
    model = ScriptedModel([PLAN, "Thought: added.\nAction: Finish(7)"], name="scripted")
    result = await Agent(tools=[lookup, add], model=model, grammar=False, on_event=seen.append).run(
        "How long are alpha and be together?"
    )
    assert result.answer == "7"
    assert_one_sequence(seen)
    planned = index(seen, "llm_call_finished", purpose="plan")
    attempt = index(seen, "plan_attempt", valid=True)
    finished = index(seen, "run_finished")
    joined = index(seen, "llm_call_finished", purpose="join")
    decided = index(seen, "decided")
    # The plan's call ends, its attempt is judged, its tools end; then the join, then the decision.
    assert planned < attempt < joined and finished < joined < decided == len(seen) - 1
    # While the plan is written, each added call is followed by the text so far.
    partial = [e for e in seen if isinstance(e, ev.PlanAttempted) and e.valid is None]
    assert partial and all(e.attempt == 1 for e in partial)
    assert partial[0].seq > seen[index(seen, "task_added", task_id="1")].seq
    assert partial[0].text.startswith('1. lookup("alpha")')
    final = seen[attempt]
    assert isinstance(final, ev.PlanAttempted)
    assert (final.attempt, final.round, final.error) == (1, 1, None)
    assert final.text.startswith(PLAN.removesuffix("<END_OF_PLAN>"))
    call = seen[joined]
    assert isinstance(call, ev.LLMCallFinished)
    assert call.model == "scripted" and call.round == 1
    assert call.prompt_tokens > 0 and call.completion_tokens > 0 and call.latency_s >= 0
    assert "How long are alpha and be together?" in call.prompt
    assert call.completion == "Thought: added.\nAction: Finish(7)"
    decision = seen[decided]
    assert isinstance(decision, ev.Decided)
    assert (decision.action, decision.answer, decision.reason) == ("finish", "7", None)
    assert (decision.thought, decision.round) == ("added.", 1)
    # Agent events inside a round are on that round's result too.
    assert [e.kind for e in result.rounds[0].events].count("llm_call_finished") == 1


async def test_a_replan_continues_the_sequence_after_the_decision() -> None:
    seen: list[ev.Event] = []
    model = ScriptedModel(
        [
            '1. lookup("alpha")\n2. join()',
            "Thought: need be.\nAction: Replan(the length of be)",
            '2. lookup("be")\n3. add($1.size, $2.size)\n4. join()',
            "Thought: ok.\nAction: Finish(7)",
        ]
    )
    result = await Agent(tools=[lookup, add], model=model, grammar=False, on_event=seen.append).run(
        "?"
    )
    assert result.answer == "7"
    assert_one_sequence(seen)
    replan = index(seen, "decided", action="replan")
    decision = seen[replan]
    assert isinstance(decision, ev.Decided)
    assert (decision.reason, decision.answer, decision.round) == ("the length of be", None, 1)
    assert replan < index(seen, "task_added", task_id="2")
    assert [e.kind for e in seen[replan - 1 : replan + 2]] == [
        "llm_call_finished",
        "decided",
        "task_added",
    ]
    attempts = [e for e in seen if isinstance(e, ev.PlanAttempted) and e.valid is not None]
    assert [(a.attempt, a.round) for a in attempts] == [(1, 1), (2, 2)]
    assert [e.round for e in seen if isinstance(e, ev.Decided)] == [1, 2]
    assert seen[-1].kind == "decided"
    # Each round's run holds its own slice of the one sequence.
    first, second = result.rounds
    # Between them come the join's call and the decision.
    assert second.events[0].seq == first.events[-1].seq + 3


async def test_an_invalid_attempt_and_its_repair_are_both_events() -> None:
    seen: list[ev.Event] = []
    model = ScriptedModel(
        ['1. lokup("alpha")', '1. lookup("alpha")\n2. join()', "Action: Finish(5)"]
    )
    result = await Agent(tools=[lookup], model=model, grammar=False, on_event=seen.append).run("?")
    assert result.answer == "5"
    assert_one_sequence(seen)
    ended = [e for e in seen if isinstance(e, ev.PlanAttempted) and e.valid is not None]
    assert [(a.attempt, a.valid) for a in ended] == [(1, False), (2, True)]
    assert "unknown tool 'lokup'" in (ended[0].error or "")
    calls = [e for e in seen if isinstance(e, ev.LLMCallFinished)]
    assert [c.purpose for c in calls] == ["plan", "plan", "join"]


async def test_a_run_that_ended_early_still_numbers_the_planners_events() -> None:
    """A tool-call budget can end the round's run before the planner's call is accounted."""
    seen: list[ev.Event] = []
    model = ScriptedModel([PLAN, "Action: Finish(never)"])
    budget = taskloom.Budget(tool_calls=1)
    agent = Agent(
        tools=[lookup, add], model=model, grammar=False, on_event=seen.append, budget=budget
    )
    result = await agent.run("?")
    assert result.exhausted == "tool_calls"
    assert_one_sequence(seen)
    # The round's run holds the events up to its end; what the agent did later follows it.
    ended = index(seen, "run_finished")
    assert list(result.rounds[0].events) == seen[: ended + 1]
    assert all(isinstance(e, ev.AgentEvent) for e in seen[ended + 1 :])
    assert kinds(seen).count("llm_call_finished") == 1
    assert [e.valid for e in seen if isinstance(e, ev.PlanAttempted)][-1] is True


async def test_the_journal_records_agent_events(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    model = ScriptedModel([PLAN, "Thought: added.\nAction: Finish(7)"])
    seen: list[ev.Event] = []
    with Store.open(path) as store:
        agent = Agent(
            tools=[lookup, add], model=model, grammar=False, store=store, on_event=seen.append
        )
        result = await agent.run("How long are alpha and be together?")
        (summary,) = store.runs()
        record = store.load(summary.id)
    assert result.answer == "7"
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT seq, kind, data FROM events WHERE run_id = ? ORDER BY seq", (record.id,)
        ).fetchall()
    # The log is the very sequence the listener saw.
    assert [(seq, kind) for seq, kind, _ in rows] == [(e.seq, e.kind) for e in seen]
    assert {e.run_id for e in seen} == {record.id}
    assert record.last_seq == len(rows)
    data = {kind: json.loads(d) for _, kind, d in rows if kind in {"decided"}}
    assert data["decided"] == {
        "round": 1,
        "action": "finish",
        "answer": "7",
        "reason": None,
        "thought": "added.",
    }
    logged_calls = [json.loads(d) for _, kind, d in rows if kind == "llm_call_finished"]
    assert [(c["n"], c["purpose"]) for c in logged_calls] == [(1, "plan"), (2, "join")]
    # The tables `show` and resume read are filled from the events.
    assert [(a.attempt, a.round, a.valid) for a in record.plan_attempts] == [(1, 1, True)]
    assert record.plan_attempts[0].text.startswith('1. lookup("alpha")')
    assert [c.purpose for c in record.llm_calls] == ["plan", "join"]
    assert all(len(c.prompt_hash) == 64 for c in record.llm_calls)
    assert [c.completion_tokens for c in record.llm_calls] == [
        c["completion_tokens"] for c in logged_calls
    ]


def snapshot(path: Path, to: Path) -> None:
    """Copy what is committed in `path` right now: the file a crash at this instant leaves."""
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(to)) as target:
        source.backup(target)


async def test_a_resumed_request_continues_the_sequence(tmp_path: Path) -> None:
    path, crashed = tmp_path / "s.sqlite3", tmp_path / "crashed.sqlite3"
    inside = anyio.Event()

    @taskloom.tool(name="fetch", idempotent=True)
    async def hanging(name: str) -> int:
        """Hangs, as a process about to be killed does."""
        inside.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    @taskloom.tool(name="fetch", idempotent=True)
    async def fetch(name: str) -> int:
        """The length of the name."""
        return len(name)

    plan = '1. lookup("alpha")\n2. fetch("be")\n3. join()<END_OF_PLAN>'
    planned = anyio.Event()

    def watch(event: ev.Event) -> None:
        if isinstance(event, ev.PlanAttempted) and event.valid:
            planned.set()

    before: list[ev.Event] = []

    def listen(event: ev.Event) -> None:
        before.append(event)
        watch(event)

    with Store.open(path) as store:
        agent = Agent(
            tools=[lookup, hanging],
            model=ScriptedModel([plan]),
            grammar=False,
            store=store,
            on_event=listen,
        )
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(agent.run, "alpha and be?")
                await inside.wait()
                await planned.wait()
                await anyio.to_thread.run_sync(store.flush)
                snapshot(path, crashed)
                tg.cancel_scope.cancel()

    def joiner(messages: tuple[Message, ...], options: GenerationOptions) -> str:
        return "Thought: both known.\nAction: Finish(2)"

    after: list[ev.Event] = []
    with Store.open(crashed) as store:
        (summary,) = store.runs()
        stopped = store.load(summary.id)
        assert stopped.unfinished
        resumer = Agent(
            tools=[lookup, fetch],
            model=FunctionModel(joiner),
            grammar=False,
            store=store,
            on_event=after.append,
        )
        with anyio.fail_after(10):
            result = await resumer.resume(summary.id)
        record = store.load(summary.id)
    assert result.answer == "2"
    assert stopped.last_seq == len([e for e in before if e.seq <= stopped.last_seq])
    assert_one_sequence(after, first=stopped.last_seq + 1)
    assert after[-2].kind == "llm_call_finished" and after[-1].kind == "decided"
    assert {e.run_id for e in after} == {summary.id}
    with closing(sqlite3.connect(crashed)) as db:
        seqs = [
            r[0]
            for r in db.execute(
                "SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (summary.id,)
            )
        ]
    assert seqs == list(range(1, record.last_seq + 1))
    assert record.last_seq == after[-1].seq
    assert [c.purpose for c in record.llm_calls] == ["plan", "join"]
    assert [a.valid for a in record.plan_attempts] == [True]
    assert record.status == "answered"


async def test_run_emit_takes_only_agent_events_and_only_while_the_run_goes_on() -> None:
    seen: list[ev.Event] = []
    async with taskloom.open_run(tools=[lookup], on_event=seen.append, first_seq=4) as run:
        event = run.emit(
            ev.Decided, round=1, action="replan", answer=None, reason="r", thought=None
        )
        assert event.seq == 5 and seen == [event]
        with pytest.raises(UserError, match="AgentEvent"):
            run.emit(ev.TaskReady, task_id="1")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="has finished"):
        run.emit(ev.Decided, round=1, action="finish", answer="a", reason=None, thought=None)
    assert [e.kind for e in seen] == ["decided", "run_finished"]


async def test_the_live_view_takes_agent_events_alongside_task_events() -> None:
    out = io.StringIO()
    view = Console(file=out, width=120)
    progress = LiveProgress(view)
    model = ScriptedModel([PLAN, "Action: Finish(7)"])
    agent = Agent(tools=[lookup, add], model=model, grammar=False, on_event=progress.on_event)
    result = await agent.run("?")
    view.print(progress._render())
    assert result.answer == "7"
    assert "lookup" in out.getvalue() and "done: 3" in out.getvalue()
