"""Budgets in the engine: tool calls, the deadline, expected durations, validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from taskloom import (
    Budget,
    DurationStats,
    Plan,
    Price,
    RunStatus,
    Task,
    TaskCancelled,
    TaskId,
    TaskStatus,
    UserError,
    execute,
    open_run,
    tool,
)


def counting(calls: list[Any]) -> Any:
    @tool(idempotent=True)
    async def echo(value: Any = None) -> Any:
        """Return the value, counting calls."""
        calls.append(value)
        return value

    return echo


def statuses(result: Any) -> dict[str, str]:
    return {i: str(t.status) for i, t in result.tasks.items()}


# -- validation ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["tool_calls", "deadline", "tokens", "cost"])
def test_negative_limits_are_refused(name: str) -> None:
    extra: dict[str, Any] = {"prices": {"m": Price(prompt=1, completion=1)}}
    with pytest.raises(UserError, match=f"budget {name} must not be negative, got -1"):
        Budget(**{name: -1}, **extra)


def test_a_cost_budget_needs_prices() -> None:
    with pytest.raises(UserError, match="a cost budget needs prices"):
        Budget(cost=1.0)
    assert Budget(cost=1.0, prices={"m": Price(prompt=1.0, completion=2.0)}).cost == 1.0


def test_zero_limits_and_no_limits_are_allowed() -> None:
    assert Budget(tool_calls=0, deadline=0, tokens=0).tool_calls == 0
    none = Budget()
    assert (none.tool_calls, none.deadline, none.tokens, none.cost) == (None, None, None, None)


def test_prices_per_million_tokens() -> None:
    price = Price(prompt=2.0, completion=8.0)
    assert price.cost(1_000_000, 0) == 2.0
    assert price.cost(500_000, 250_000) == pytest.approx(3.0)
    budget = Budget(cost=10.0, prices={"paid": price})
    assert budget.price("paid", 1_000_000, 1_000_000) == pytest.approx(10.0)
    assert budget.price("free", 1_000_000, 1_000_000) == 0.0


# -- tool calls ---------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_call_budget_stops_dispatch_after_n_calls() -> None:
    calls: list[Any] = []
    plan = Plan.parse("1. echo(1)\n2. echo(2)\n3. echo(3)\n4. echo(4)\n5. echo($4)\n")
    result = await execute(
        plan, tools=[counting(calls)], max_concurrency=1, budget=Budget(tool_calls=2)
    )
    assert len(calls) == 2
    assert result.status is RunStatus.BUDGET_EXCEEDED and result.status == "budget_exceeded"
    assert result.exhausted == "tool_calls"
    assert result.to_dict()["budget_exceeded"] == "tool_calls"
    done = [i for i, t in result.tasks.items() if t.status is TaskStatus.DONE]
    assert len(done) == 2 and {result.tasks[i].output for i in done} == set(calls)
    for task in result.tasks.values():
        if task.status is not TaskStatus.DONE:
            assert task.status is TaskStatus.CANCELLED
            assert task.arguments is None and task.attempts == 0
            assert isinstance(task.error, TaskCancelled)
    assert result.tasks[TaskId("4")].status is TaskStatus.DONE  # longest path first
    assert result.tasks[TaskId("5")].status is TaskStatus.CANCELLED
    assert str(result.tasks[TaskId("5")].error) == "cancelled: the tool_calls budget ran out"


@pytest.mark.anyio
async def test_a_chain_within_budget_completes() -> None:
    calls: list[Any] = []
    plan = Plan.parse("1. echo(1)\n2. echo($1)\n3. echo($2)\n")
    result = await execute(plan, tools=[counting(calls)], budget=Budget(tool_calls=3))
    assert result.status == "completed" and result.exhausted is None
    assert calls == [1, 1, 1]


@pytest.mark.anyio
async def test_a_zero_tool_call_budget_calls_nothing() -> None:
    calls: list[Any] = []
    plan = Plan.parse("1. echo(1)\n2. echo($1)\n")
    result = await execute(
        plan, tools=[counting(calls)], max_concurrency=1, budget=Budget(tool_calls=0)
    )
    assert calls == []
    assert result.exhausted == "tool_calls"
    assert statuses(result) == {"1": "cancelled", "2": "cancelled"}


@pytest.mark.anyio
async def test_exceed_stops_a_live_run_and_closes_it() -> None:
    calls: list[Any] = []
    echo = counting(calls)
    async with open_run(tools=[echo]) as run:
        run.add(Task(id=TaskId("1"), tool="echo", args=(1,)))
        await anyio.wait_all_tasks_blocked()
        assert run.status("1") is TaskStatus.DONE
        run.add(Task(id=TaskId("2"), tool="echo", args=(2,)))
        run.exceed("tokens")
        run.exceed("cost")  # the first budget to run out is the one named
        assert not run.accepting
        # The rest of a plan still streaming in is kept, as cancelled.
        run.add(Task(id=TaskId("3"), tool="echo", args=(3,)))
    final = run.result()
    assert (final.status, final.exhausted) == ("budget_exceeded", "tokens")
    assert statuses(final) == {"1": "done", "2": "cancelled", "3": "cancelled"}
    assert calls == [1]


# -- the deadline -------------------------------------------------------------


@pytest.mark.anyio
async def test_deadline_cancels_a_running_tool_and_really_stops_it() -> None:
    entered = anyio.Event()
    stopped: list[str] = []

    @tool
    async def hang() -> str:
        """Never returns on its own."""
        entered.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            stopped.append("cancelled")
            raise
        return "unreachable"

    calls: list[Any] = []
    plan = Plan.parse("1. echo(1)\n2. hang()\n3. echo($2)\n")
    with anyio.fail_after(10):
        result = await execute(plan, tools=[counting(calls), hang], budget=Budget(deadline=0.05))
    assert entered.is_set() and stopped == ["cancelled"]
    assert result.status == "budget_exceeded" and result.exhausted == "deadline"
    assert statuses(result) == {"1": "done", "2": "cancelled", "3": "cancelled"}
    error = result.tasks[TaskId("2")].error
    assert isinstance(error, TaskCancelled) and error.reason == "the deadline budget ran out"
    assert not error.thread_abandoned
    assert calls == [1]


@pytest.mark.anyio
async def test_a_run_that_ends_in_time_is_not_over_budget() -> None:
    calls: list[Any] = []
    with anyio.fail_after(10):
        result = await execute(
            Plan.parse("1. echo(1)\n"), tools=[counting(calls)], budget=Budget(deadline=30)
        )
    assert result.status == "completed" and result.exhausted is None
    assert result.makespan < 30  # the deadline watcher does not hold the run open


@pytest.mark.anyio
async def test_a_task_expected_to_outlast_the_deadline_is_not_started() -> None:
    slow_calls: list[str] = []

    @tool(idempotent=True)
    async def slow(x: int) -> int:
        """Observed to take a long time."""
        slow_calls.append("called")
        return x

    stats = DurationStats()
    stats.observe("slow", 60.0)
    calls: list[Any] = []
    plan = Plan.parse("1. echo(1)\n2. slow(2)\n3. echo($2)\n")
    with anyio.fail_after(10):  # ends at once: it does not wait for the 30 s deadline
        result = await execute(
            plan, tools=[counting(calls), slow], stats=stats, budget=Budget(deadline=30)
        )
    assert slow_calls == [] and calls == [1]
    assert result.exhausted == "deadline" and result.status == "budget_exceeded"
    # 3 is added after 2 was refused, so it is skipped rather than cancelled with it.
    assert statuses(result) == {"1": "done", "2": "cancelled", "3": "skipped"}
    error = result.tasks[TaskId("2")].error
    assert isinstance(error, TaskCancelled)
    assert "expected 60s would not end before the deadline" in error.reason


@pytest.mark.anyio
async def test_a_tool_expected_to_fit_the_deadline_is_started() -> None:
    stats = DurationStats()
    stats.observe("echo", 0.001)
    calls: list[Any] = []
    result = await execute(
        Plan.parse("1. echo(1)\n"),
        tools=[counting(calls)],
        stats=stats,
        budget=Budget(deadline=30),
    )
    assert calls == [1] and result.status == "completed"


# -- regressions: each of these once failed --------------------------------


@pytest.mark.anyio
async def test_a_tool_call_budget_smaller_than_a_complete_plan_cancels_the_rest() -> None:
    """add_plan() dispatches while it adds (no concurrency limit); once the budget closes
    the run, adding the next task raises UserError out of execute()."""
    calls: list[Any] = []
    plan = Plan.parse("1. echo(1)\n2. echo(2)\n3. echo(3)\n4. echo(4)\n")
    result = await execute(plan, tools=[counting(calls)], budget=Budget(tool_calls=2))
    assert result.exhausted == "tool_calls"
    assert set(result.tasks) == {"1", "2", "3", "4"}


@pytest.mark.anyio
async def test_a_tool_call_budget_smaller_than_a_streamed_plan_cancels_the_rest() -> None:
    """execute() feeds a streamed plan with run.add() and only catches PlanError."""
    calls: list[Any] = []

    async def stream() -> AsyncIterator[Task]:
        for i in range(1, 5):
            yield Task(id=TaskId(str(i)), tool="echo", args=(i,))

    result = await execute(stream(), tools=[counting(calls)], budget=Budget(tool_calls=1))
    assert result.exhausted == "tool_calls"


@pytest.mark.anyio
async def test_a_tool_call_budget_lets_admitted_calls_finish() -> None:
    """_admit() counts a call, then the next task's exceed() cancels every running task,
    the admitted ones included: with 3 ready tasks and room for 2, no tool runs at all."""
    calls: list[Any] = []
    plan = Plan.parse("1. echo(1)\n2. echo(2)\n3. echo(3)\n")
    result = await execute(plan, tools=[counting(calls)], budget=Budget(tool_calls=2))
    assert result.exhausted == "tool_calls"
    assert sorted(calls) == [1, 2]
    assert sorted(statuses(result).values()) == ["cancelled", "done", "done"]
