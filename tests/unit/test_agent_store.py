"""The agent with a store, budgets, a shared cache, and batches (test models only)."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

import taskloom
from taskloom import Budget, Price
from taskloom.agent import Agent, read_requests, run_batch
from taskloom.llm import GenerationOptions, Message
from taskloom.store import CallCache, Store
from taskloom.testing import FunctionModel, ScriptedModel
from taskloom.tools.world import WORLD_TOOLS

pytestmark = pytest.mark.anyio

PLAN = (
    '1. country("France")\n'
    '2. country("Germany")\n'
    '3. math("$1.population + $2.population")\n'
    "4. join()<END_OF_PLAN>"
)


async def test_an_agent_run_is_recorded(tmp_path: Path) -> None:
    model = ScriptedModel([PLAN, "Thought: added.\nAction: Finish(149915166)"])
    with Store.open(tmp_path / "s.sqlite3") as store:
        result = await Agent(tools=WORLD_TOOLS, model=model, grammar=False, store=store).run(
            "France and Germany together?"
        )
        (summary,) = store.runs()
        record = store.load(summary.id)
    assert result.answer == "149915166"
    assert record.kind == "agent" and record.status == "answered"
    assert record.request == "France and Germany together?"
    assert record.answer == "149915166"
    assert [a.valid for a in record.plan_attempts] == [True]
    assert record.plan_attempts[0].text.startswith('1. country("France")')
    assert [t.status for t in record.tasks] == ["done", "done", "done"]
    assert record.tasks[2].output == 149915166.0
    assert [c.purpose for c in record.llm_calls] == ["plan", "join"]
    assert all(len(c.prompt_hash) == 64 for c in record.llm_calls)


async def test_replan_rounds_continue_event_numbers(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            '1. country("France")\n2. join()',
            "Thought: need more.\nAction: Replan(need Germany)",
            '2. country("Germany")\n3. math("$1.population + $2.population")\n4. join()',
            "Thought: ok.\nAction: Finish(149915166)",
        ]
    )
    with Store.open(tmp_path / "s.sqlite3") as store:
        result = await Agent(tools=WORLD_TOOLS, model=model, grammar=False, store=store).run("?")
        record = store.load(store.runs()[0].id)
        seqs = [
            r[0]
            for r in store._reader.execute(
                "SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (record.id,)
            )
        ]
    assert result.answer == "149915166"
    assert seqs == list(range(1, len(seqs) + 1))
    assert [(t.id, t.round) for t in record.tasks] == [("1", 1), ("2", 2), ("3", 2)]


async def test_token_budget_stops_before_the_joiner() -> None:
    model = ScriptedModel([PLAN, "Thought: x.\nAction: Finish(never)"])
    agent = Agent(tools=WORLD_TOOLS, model=model, grammar=False, budget=Budget(tokens=10))
    result = await agent.run("France and Germany together?")
    assert result.status == "budget_exceeded"
    assert result.exhausted == "tokens"
    assert len(model.calls) == 1  # the joiner was never asked
    assert result.to_dict()["budget_exceeded"] == "tokens"


async def test_cost_budget_uses_the_price_table() -> None:
    model = ScriptedModel([PLAN, "Thought: x.\nAction: Finish(never)"], name="paid")
    budget = Budget(cost=0.000001, prices={"paid": Price(prompt=100.0, completion=100.0)})
    result = await Agent(tools=WORLD_TOOLS, model=model, grammar=False, budget=budget).run("?")
    assert result.status == "budget_exceeded" and result.exhausted == "cost"


async def test_tool_call_budget_counts_over_rounds() -> None:
    model = ScriptedModel([PLAN, "Thought: x.\nAction: Finish(partial)"])
    agent = Agent(tools=WORLD_TOOLS, model=model, grammar=False, budget=Budget(tool_calls=2))
    result = await agent.run("?")
    (run,) = result.rounds
    assert result.exhausted == "tool_calls"
    assert run.status == "budget_exceeded"
    assert [run.tasks[i].status for i in ("1", "2", "3")] == ["done", "done", "cancelled"]


async def test_deadline_ends_a_slow_request() -> None:
    @taskloom.tool
    async def slow(name: str) -> str:
        """Never answers in time."""
        await anyio.sleep(30)
        return name

    model = ScriptedModel(['1. slow("a")\n2. join()', "Action: Finish(x)"])
    agent = Agent(tools=[slow], model=model, grammar=False, budget=Budget(deadline=0.2))
    with anyio.fail_after(10):
        result = await agent.run("?")
    assert result.status == "budget_exceeded" and result.exhausted == "deadline"
    assert result.rounds[0].tasks["1"].status == "cancelled"


def planner_for_countries(messages: tuple[Message, ...], options: GenerationOptions) -> str:
    """A test planner: one country() per capitalised word, then a joiner that lists them."""
    prompt = messages[-1].content
    if "Results:" in prompt or "Action:" in prompt:
        return "Thought: done.\nAction: Finish(ok)"
    question = prompt.rsplit("Question:", 1)[-1]
    names = re.findall(r"\b(France|Germany|Spain|Italy)\b", question)
    lines = [f'{i}. country("{n}")' for i, n in enumerate(names, start=1)]
    return "\n".join([*lines, f"{len(names) + 1}. join()<END_OF_PLAN>"])


async def test_a_batch_runs_each_distinct_lookup_once(tmp_path: Path) -> None:
    questions = [
        "France and Germany?",
        "Germany and Spain?",
        "Spain and France?",
        "Italy and France?",
    ]
    model = FunctionModel(planner_for_countries)
    with Store.open(tmp_path / "s.sqlite3") as store:
        cache = CallCache(store)
        agent = Agent(tools=WORLD_TOOLS, model=model, grammar=False, store=store, cache=cache)
        items = await run_batch(agent, questions, concurrency=4)
        recorded = store.runs()
    assert [i.request.question for i in items] == questions
    assert all(i.result is not None and i.result.status == "answered" for i in items)
    assert cache.stats.requested == 8
    assert cache.stats.executed == cache.stats.distinct == 4  # France, Germany, Spain, Italy
    assert len(recorded) == 4
    line = items[0].to_dict()
    assert set(line) >= {"id", "answer", "status", "timings", "usage"}


def test_batch_requests_are_read_from_json_lines() -> None:
    requests = read_requests(['{"id": "a", "question": "one?"}', "", '"two?"'])
    assert [(r.id, r.question) for r in requests] == [("a", "one?"), ("3", "two?")]
    with pytest.raises(taskloom.UserError, match="line 2"):
        read_requests(['"ok"', "{not json"])
    with pytest.raises(taskloom.UserError, match="line 1"):
        read_requests(['{"q": "missing"}'])


@pytest.mark.parametrize(
    "plan",
    [
        "9" * 5000 + '. country("France")\n',
        '1. country("France")\n2. math($' + "9" * 5000 + ")\n",
        "1. math(" + "[" * 10_000 + ")\n",
    ],
    ids=["huge task number", "huge reference", "nested 10,000 deep"],
)
async def test_a_model_plan_with_huge_numbers_is_a_plan_error_not_a_stuck_run(
    tmp_path: Path, plan: str
) -> None:
    def reply(messages: tuple[Message, ...], options: GenerationOptions) -> str:
        if "Action:" in messages[0].content or "Finish(" in messages[0].content:
            return "Thought: nothing found.\nAction: Finish(unknown)"
        return plan

    with Store.open(tmp_path / "s.sqlite3") as store:
        agent = Agent(tools=WORLD_TOOLS, model=FunctionModel(reply), grammar=False, store=store)
        result = await agent.run("Population of France?")
        (summary,) = store.runs()
    assert summary.status != "running"
    assert summary.status == result.status
    assert any("9 digits" in str(a.error) or "nested" in str(a.error) for a in result.plan_attempts)
