"""One Runtime under many runs: limits that hold across them, and fair turns for slots."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import taskloom
from taskloom import Plan, Runtime, Task, UserError, execute, tool
from taskloom.agent import Agent, run_batch
from taskloom.llm import GenerationOptions, Message
from taskloom.store import CallCache
from taskloom.testing import FunctionModel


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """The shared runtime is correct on both loops, like the scheduler it feeds."""
    return request.param


pytestmark = pytest.mark.anyio


class Gauge:
    """Counts the calls of a tool in flight, measured from inside the tool."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.starts: list[str] = []
        """The tag of every call, in the order the calls started."""

    async def call(self, tag: str, turns: int = 3) -> str:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.starts.append(tag)
        try:
            for _ in range(turns):  # a few loop turns: other calls may start meanwhile
                await anyio.lowlevel.checkpoint()
        finally:
            self.now -= 1
        return tag


def tasks(tool_name: str, tag: str, count: int) -> list[Task]:
    return [Task(id=str(i), tool=tool_name, args=(tag,)) for i in range(1, count + 1)]


async def test_ten_runs_never_have_more_than_two_calls_of_a_limited_tool_in_flight() -> None:
    gauge = Gauge()

    @tool(max_concurrency=2)
    async def lookup(tag: str) -> str:
        """A call of a limited API."""
        return await gauge.call(tag)

    runtime = Runtime(tools=[lookup])
    results: list[taskloom.RunResult] = []

    async def one(number: int) -> None:
        results.append(await runtime.execute(tasks("lookup", f"run {number}", 6)))

    async with anyio.create_task_group() as tg:
        for number in range(10):
            tg.start_soon(one, number)
    assert gauge.peak == 2
    assert len(gauge.starts) == 60
    assert [str(r.status) for r in results] == ["completed"] * 10
    assert (runtime.in_flight, runtime.in_flight_of("lookup"), runtime.open_runs) == (0, 0, 0)

    # Alone, each run has the whole limit to itself.
    alone = Gauge()
    gauge.call = alone.call  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        for number in range(10):
            tg.start_soon(lambda n=number: execute(tasks("lookup", str(n), 6), tools=[lookup]))
    assert alone.peak > 2


async def test_a_global_limit_holds_across_runs_and_tools() -> None:
    gauge = Gauge()
    runtime = Runtime(max_concurrency=3)
    seen: list[int] = []

    async def first(tag: str) -> str:
        """One tool."""
        seen.append(runtime.in_flight)
        return await gauge.call(tag)

    async def second(tag: str) -> str:
        """Another tool."""
        seen.append(runtime.in_flight)
        return await gauge.call(tag)

    async def one(number: int) -> None:
        plan = tasks("first", str(number), 5) + [
            Task(id=str(i), tool="second", args=(str(number),)) for i in range(6, 11)
        ]
        result = await runtime.execute(plan, tools=[first, second])
        assert str(result.status) == "completed"

    async with anyio.create_task_group() as tg:
        for number in range(6):
            tg.start_soon(one, number)
    assert gauge.peak == 3
    assert len(gauge.starts) == 60
    assert max(seen) == 3  # the runtime's count agrees with the tool's


async def test_a_small_run_opened_behind_a_huge_queue_gets_its_turns() -> None:
    gauge = Gauge()
    big_started = anyio.Event()

    @tool
    async def work(tag: str) -> str:
        """Any call."""
        if len(gauge.starts) == 20:
            big_started.set()
        return await gauge.call(tag, turns=1)

    runtime = Runtime(tools=[work], max_concurrency=4)
    opened_at: list[int] = []
    small: list[taskloom.RunResult] = []

    async def small_run() -> None:
        await big_started.wait()
        opened_at.append(len(gauge.starts))
        small.append(await runtime.execute(tasks("work", "small", 3)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(runtime.execute, tasks("work", "big", 3000))
        tg.start_soon(small_run)
    last_small = max(i for i, tag in enumerate(gauge.starts) if tag == "small")
    big_between = gauge.starts[opened_at[0] : last_small].count("big")
    # Its three tasks start in its next three turns: three big starts between
    # them at most, after the slots already granted; never the big run's queue.
    assert big_between <= 4
    assert len(gauge.starts) == 3003
    assert str(small[0].status) == "completed"


async def test_weights_shift_the_share_of_slots() -> None:
    gauge = Gauge()

    @tool
    async def work(tag: str) -> str:
        """Any call."""
        return await gauge.call(tag, turns=1)

    runtime = Runtime(tools=[work], max_concurrency=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runtime.execute(tasks("work", "heavy", 600), weight=3))
        tg.start_soon(lambda: runtime.execute(tasks("work", "light", 600)))
    first = gauge.starts[:400]  # while both runs still have tasks waiting
    heavy, light = first.count("heavy"), first.count("light")
    assert 2.5 * light <= heavy <= 3.5 * light
    assert len(gauge.starts) == 1200


async def test_a_fractional_weight_holds_a_fraction_of_the_slots() -> None:
    gauge = Gauge()

    @tool
    async def work(tag: str) -> str:
        """Any call."""
        return await gauge.call(tag, turns=1)

    runtime = Runtime(tools=[work], max_concurrency=6)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runtime.execute(tasks("work", "slow", 100), weight=0.5))
        tg.start_soon(lambda: runtime.execute(tasks("work", "fast", 100)))
    first = gauge.starts[:90]
    assert 1.5 * first.count("slow") <= first.count("fast") <= 2.5 * first.count("slow")


async def test_a_cancelled_caller_frees_its_runs_slots_for_the_waiting_runs() -> None:
    release_c = anyio.Event()
    started: list[str] = []

    @tool
    async def stuck(tag: str) -> str:
        """Never returns on its own."""
        started.append(tag)
        await anyio.sleep_forever()
        return tag

    @tool
    async def gated(tag: str) -> str:
        """Returns once released."""
        started.append(tag)
        await release_c.wait()
        return tag

    @tool
    async def quick(tag: str) -> str:
        """Returns at once."""
        started.append(tag)
        return tag

    runtime = Runtime(tools=[stuck, gated, quick], max_concurrency=3)
    results: dict[str, taskloom.RunResult] = {}
    scope_a = anyio.CancelScope()

    async def keep(name: str, plan: list[Task], scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            results[name] = await runtime.execute(plan)

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep, "c", tasks("gated", "c", 1))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(keep, "a", tasks("stuck", "a", 2), scope_a)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(keep, "b", tasks("quick", "b", 4))
        await anyio.wait_all_tasks_blocked()
        assert started == ["c", "a", "a"]  # b waits: every slot is taken
        assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (3, 3, 1)

        scope_a.cancel()  # run a's caller gives up
        await anyio.wait_all_tasks_blocked()
        assert started.count("b") == 4  # a's two slots went to b
        assert "a" not in results and str(results["b"].status) == "completed"
        assert runtime.in_flight == 1  # c's call, untouched
        release_c.set()
    assert str(results["c"].status) == "completed"
    assert results["c"].tasks["1"].output == "c"
    assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (0, 0, 0)


async def test_a_run_cancelled_through_its_handle_gives_its_slots_to_the_others() -> None:
    started: list[str] = []

    @tool
    async def stuck(tag: str) -> str:
        """Never returns on its own."""
        started.append(tag)
        await anyio.sleep_forever()
        return tag

    @tool
    async def quick(tag: str) -> str:
        """Returns at once."""
        started.append(tag)
        return tag

    runtime = Runtime(tools=[stuck, quick], max_concurrency=2)
    other: list[taskloom.RunResult] = []
    async with anyio.create_task_group() as tg, runtime.open_run() as run:
        run.add_all(tasks("stuck", "a", 3))
        await anyio.wait_all_tasks_blocked()

        async def b() -> None:
            other.append(await runtime.execute(tasks("quick", "b", 3)))

        tg.start_soon(b)
        await anyio.wait_all_tasks_blocked()
        assert started == ["a", "a"]
        run.cancel()
        await anyio.wait_all_tasks_blocked()
        assert started == ["a", "a", "b", "b", "b"]
    assert str(run.result().status) == "cancelled"
    assert str(other[0].status) == "completed"
    assert runtime.in_flight == 0


async def test_a_rate_limit_holds_across_runs() -> None:
    calls: list[str] = []

    @tool(rate_limit=0.001)  # one call per 1,000 seconds
    async def api(tag: str) -> str:
        """A rate-limited API."""
        calls.append(tag)
        return tag

    runtime = Runtime(tools=[api])
    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(lambda name=name: runtime.execute(tasks("api", name, 1)))
        await anyio.wait_all_tasks_blocked()
        # The first call took the only start in this millennium; the others sleep.
        assert len(calls) == 1
        tg.cancel_scope.cancel()

    # Alone, each run has the whole rate to itself.
    calls.clear()
    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(lambda name=name: execute(tasks("api", name, 1), tools=[api]))
        await anyio.wait_all_tasks_blocked()
        assert len(calls) == 3
        tg.cancel_scope.cancel()


async def test_runs_share_the_runtimes_call_cache() -> None:
    ran: list[str] = []

    @tool(cacheable=True)
    async def fetch(tag: str) -> str:
        """A cacheable lookup."""
        ran.append(tag)
        await anyio.lowlevel.checkpoint()
        return tag.upper()

    cache = CallCache()
    runtime = Runtime(tools=[fetch], cache=cache)
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(lambda: runtime.execute([Task(id="1", tool="fetch", args=("x",))]))
    assert ran == ["x"]
    assert (cache.stats.requested, cache.stats.executed) == (5, 1)
    result = await execute([Task(id="1", tool="fetch", args=("x",))], runtime=runtime)
    assert result.tasks["1"].output == "X" and ran == ["x"]


async def test_a_graph_with_dependencies_runs_within_the_runs_own_limit() -> None:
    gauge = Gauge()

    @tool
    async def step(tag: str) -> str:
        """Any call."""
        return await gauge.call(tag)

    @tool
    async def both(a: str, b: str) -> str:
        """Joins two outputs."""
        return a + b

    runtime = Runtime(tools=[step, both], max_concurrency=8)
    plan = Plan.parse(
        '1. step("a")\n2. step("b")\n3. step("c")\n4. step("d")\n5. both($1, $2)\n6. both($5, $3)\n'
    )
    result = await runtime.execute(plan, max_concurrency=2)
    assert result.tasks["6"].output == "abc"
    assert gauge.peak == 2


async def test_a_streamed_plan_with_edits_runs_on_a_runtime() -> None:
    release = anyio.Event()

    @tool(max_concurrency=1)
    async def hold(tag: str) -> str:
        """Waits for the test."""
        await release.wait()
        return tag

    @tool
    async def echo(tag: str) -> str:
        """Returns its input."""
        return tag

    runtime = Runtime(tools=[hold, echo])
    async with runtime.open_run() as run:
        for task in tasks("hold", "x", 3):
            run.add(task)
        await anyio.wait_all_tasks_blocked()
        assert [str(run.status(i)) for i in "123"] == ["running", "ready", "ready"]
        run.cancel("2")
        run.rewrite("3", tool="echo", args=("y",))
        await anyio.wait_all_tasks_blocked()
        assert str(run.status("3")) == "done"  # the rewritten task's tool has room
        run.add(Task(id="4", tool="echo", args=(taskloom.Ref("3"),)))
        release.set()
    result = run.result()
    assert [str(result.tasks[i].status) for i in "1234"] == ["done", "cancelled", "done", "done"]
    assert result.tasks["4"].output == "y"


def lookup_planner(messages: tuple[Message, ...], options: GenerationOptions) -> str:
    """Plans four lookups, then answers."""
    prompt = messages[-1].content
    if "Results:" in prompt or "Action:" in prompt:
        return "Thought: done.\nAction: Finish(ok)"
    lines = [f'{i}. lookup("{i}")' for i in range(1, 5)]
    return "\n".join([*lines, "5. join()<END_OF_PLAN>"])


async def test_a_batch_shares_a_tools_limit_across_its_requests() -> None:
    gauge = Gauge()

    @tool(max_concurrency=1)
    async def lookup(tag: str) -> str:
        """A call of an API that takes one call at a time."""
        return await gauge.call(tag)

    agent = Agent(tools=[lookup], model=FunctionModel(lookup_planner), grammar=False)
    items = await run_batch(agent, ["a?", "b?", "c?", "d?"], concurrency=4)
    assert [i.result.status for i in items if i.result] == ["answered"] * 4
    assert len(gauge.starts) == 16
    assert gauge.peak == 1
    assert agent.runtime is not None and agent.runtime.open_runs == 0


async def test_an_agent_takes_its_tools_and_model_from_its_runtime() -> None:
    gauge = Gauge()

    @tool(max_concurrency=1)
    async def lookup(tag: str) -> str:
        """A call of an API that takes one call at a time."""
        return await gauge.call(tag)

    runtime = Runtime(tools=[lookup], model=FunctionModel(lookup_planner))
    answers: list[Any] = []

    async def ask(question: str) -> None:
        answers.append((await Agent(runtime=runtime, grammar=False).run(question)).answer)

    async with anyio.create_task_group() as tg:
        for question in ("a?", "b?", "c?"):
            tg.start_soon(ask, question)
    assert answers == ["ok"] * 3
    assert gauge.peak == 1 and len(gauge.starts) == 12


@pytest.mark.parametrize("weight", [0, -1, math.nan, math.inf, True, "2"])
async def test_a_bad_weight_is_a_user_error(weight: Any) -> None:
    @tool
    async def echo(tag: str) -> str:
        """Returns its input."""
        return tag

    runtime = Runtime(tools=[echo])
    with pytest.raises(UserError, match="weight must be a number above 0"):
        await runtime.execute(tasks("echo", "x", 1), weight=weight)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Runtime(max_concurrency=0), "max_concurrency must be a whole number"),
        (lambda: Runtime(max_concurrency=2.5), "max_concurrency must be a whole number"),  # type: ignore[arg-type]
        (lambda: Runtime(tools="search"), "tools must be a list"),  # type: ignore[arg-type]
    ],
)
async def test_bad_runtime_options_are_user_errors(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        make()


async def test_a_run_needs_tools_from_somewhere() -> None:
    with pytest.raises(UserError, match="give a runtime= that has tools"):
        await execute(tasks("echo", "x", 1))
    with pytest.raises(UserError, match="Runtime holds none"):
        await Runtime().execute(tasks("echo", "x", 1))
    with pytest.raises(UserError, match="give a runtime= that has tools"):
        Agent(model=FunctionModel(lookup_planner))


@tool
async def stuck(tag: str) -> str:
    """Never returns on its own."""
    await anyio.sleep_forever()
    return tag


async def test_a_run_cancelled_while_its_tasks_wait_for_slots_leaves_the_runtime() -> None:
    gauge = Gauge()

    @tool
    async def work(tag: str) -> str:
        """Any call."""
        return await gauge.call(tag)

    runtime = Runtime(tools=[stuck, work], max_concurrency=1)
    scope_b = anyio.CancelScope()

    async def b() -> None:
        with scope_b:
            await runtime.execute(tasks("work", "b", 3))

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runtime.execute(tasks("stuck", "a", 1)))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(b)
        await anyio.wait_all_tasks_blocked()
        assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (1, 2, 1)
        scope_b.cancel()  # b's caller gives up before b had a slot
        await anyio.wait_all_tasks_blocked()
        assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (1, 1, 0)
        tg.cancel_scope.cancel()
    assert gauge.starts == []
    assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (0, 0, 0)


async def test_a_caller_cancelled_already_starts_nothing_on_the_runtime() -> None:
    gauge = Gauge()

    @tool
    async def work(tag: str) -> str:
        """Any call."""
        return await gauge.call(tag)

    runtime = Runtime(tools=[work], max_concurrency=2)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await runtime.execute(tasks("work", "a", 5))
    assert gauge.starts == []
    assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (0, 0, 0)
    result = await runtime.execute(tasks("work", "b", 5))  # the runtime goes on serving
    assert str(result.status) == "completed" and gauge.peak == 2


async def test_a_budget_that_runs_out_at_a_start_ends_only_its_own_run() -> None:
    gauge = Gauge()

    @tool
    async def work(tag: str) -> str:
        """Any call."""
        return await gauge.call(tag)

    runtime = Runtime(tools=[work], max_concurrency=2)
    results: dict[str, taskloom.RunResult] = {}

    async def keep(name: str, **options: Any) -> None:
        results[name] = await runtime.execute(tasks("work", name, 6), **options)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: keep("short", budget=taskloom.Budget(tool_calls=2)))
        tg.start_soon(lambda: keep("long"))
    assert str(results["short"].status) == "budget_exceeded"
    assert gauge.starts.count("short") == 2
    assert str(results["long"].status) == "completed" and gauge.starts.count("long") == 6
    assert gauge.peak == 2
    assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (0, 0, 0)


async def test_a_run_whose_listener_raises_crashes_alone() -> None:
    gauge = Gauge()

    @tool
    async def work(tag: str) -> str:
        """Any call."""
        return await gauge.call(tag)

    def explode(event: taskloom.engine.events.Event) -> None:
        if event.kind == "task_started":
            raise RuntimeError("listener bug")

    runtime = Runtime(tools=[work, stuck], max_concurrency=2)
    other: list[taskloom.RunResult] = []

    async def crashing() -> None:
        with pytest.raises(RuntimeError, match="listener bug"):
            await runtime.execute(tasks("stuck", "bad", 4), on_event=explode)

    async def fine() -> None:
        other.append(await runtime.execute(tasks("work", "good", 4)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(crashing)
        tg.start_soon(fine)
    assert str(other[0].status) == "completed" and gauge.starts == ["good"] * 4
    assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (0, 0, 0)


async def test_a_full_tool_holds_back_only_its_own_calls() -> None:
    release = anyio.Event()
    done: list[str] = []

    @tool(max_concurrency=1)
    async def single(tag: str) -> str:
        """One call at a time, across every run."""
        await release.wait()
        done.append(tag)
        return tag

    @tool
    async def free(tag: str) -> str:
        """No limit of its own."""
        done.append(tag)
        return tag

    runtime = Runtime(tools=[single, free], max_concurrency=8)
    results: list[taskloom.RunResult] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runtime.execute(tasks("single", "a", 1)))
        await anyio.wait_all_tasks_blocked()
        plan = tasks("single", "b", 2) + [
            Task(id=str(i), tool="free", args=(f"b{i}",)) for i in range(3, 6)
        ]

        async def b() -> None:
            results.append(await runtime.execute(plan, max_concurrency=2))

        tg.start_soon(b)
        await anyio.wait_all_tasks_blocked()
        # b's calls of `single` wait for a's; its other calls run, two at a time.
        assert sorted(done) == ["b3", "b4", "b5"]
        assert (runtime.in_flight_of("single"), runtime.waiting_runs) == (1, 1)
        release.set()
    assert done[3:] == ["a", "b", "b"]
    assert str(results[0].status) == "completed"
    assert (runtime.in_flight, runtime.open_runs, runtime.waiting_runs) == (0, 0, 0)


async def test_runs_on_a_runtime_are_recorded_and_resumable(tmp_path: Any) -> None:
    gauge = Gauge()

    @tool(max_concurrency=1, idempotent=False)
    async def charge(tag: str) -> str:
        """A side effect, made durable before each call."""
        return await gauge.call(tag)

    with taskloom.Store.open(tmp_path / "s.sqlite3") as store:
        runtime = Runtime(tools=[charge], store=store)
        results: list[taskloom.RunResult] = []

        async def one(tag: str) -> None:
            plan = Plan(tasks("charge", tag, 3))
            journal = store.journal(plan=plan)
            results.append(await runtime.execute(plan, journal=journal))

        async with anyio.create_task_group() as tg:
            for tag in "ab":
                tg.start_soon(one, tag)
        records = [store.load(r.run_id) for r in results]
    assert gauge.peak == 1 and len(gauge.starts) == 6
    assert [r.status for r in records] == ["completed", "completed"]
    assert all([t.status for t in r.tasks] == ["done"] * 3 for r in records)


async def test_the_mcp_servers_requests_share_a_tools_limit() -> None:
    from collections.abc import AsyncIterator, Mapping
    from contextlib import asynccontextmanager

    from mcp import Client

    from taskloom.server.mcp_server import ServeOptions, build_server

    gauge = Gauge()

    @tool(max_concurrency=1)
    async def single(tag: str) -> str:
        """An API that takes one call at a time."""
        return await gauge.call(tag)

    served = {"single": single}

    @asynccontextmanager
    async def opened() -> AsyncIterator[Mapping[str, taskloom.Tool]]:
        yield served

    def agent(tools: Mapping[str, taskloom.Tool], listener: Any) -> Agent:
        return Agent(tools=tools, model=FunctionModel(lookup_planner), on_event=listener)

    server = build_server(ServeOptions(tools=opened, agent=agent, store=None), served)
    plan = '1. single("a")\n2. single("b")\n3. single("c")'
    async with Client(server) as mcp:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(mcp.call_tool, "exec_plan", {"plan": plan})
    assert len(gauge.starts) == 12
    assert gauge.peak == 1
