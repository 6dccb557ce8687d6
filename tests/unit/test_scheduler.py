import asyncio
import threading
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

import taskloom
from taskloom import (
    BadArguments,
    BadOutput,
    DependencyFailed,
    EditError,
    Plan,
    PlanError,
    Ref,
    Task,
    TaskId,
    ToolFailed,
    ToolTimedOut,
    execute,
    open_run,
    parse_stream,
    tool,
)
from taskloom.engine import events as ev


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """The scheduler is correct on both loops: asyncio's own, and uvloop (the CLI's)."""
    return request.param


pytestmark = pytest.mark.anyio


@tool
async def echo(value: Any = None) -> Any:
    """Return the value."""
    return value


@tool
def add(a: float, b: float) -> float:
    """Add two numbers (sync, runs in a thread)."""
    return a + b


@tool
async def boom(x: Any = None) -> None:
    """Always fails."""
    raise RuntimeError("kaboom")


def kinds(result: taskloom.RunResult, task_id: str) -> list[str]:
    return [e.kind for e in result.events if getattr(e, "task_id", None) == task_id]


async def test_runs_a_plan_and_passes_outputs_along() -> None:
    plan = Plan.parse('1. echo({"n": 2})\n2. echo(3)\n3. add($1.n, $2)\n4. echo("sum=$3")\n')
    result = await execute(plan, tools=[echo, add])
    assert result.status == "completed"
    assert {i: t.status for i, t in result.tasks.items()} == dict.fromkeys("1234", "done")
    assert result.tasks["3"].output == 5.0
    assert result.tasks["4"].output == "sum=5"
    assert result.tasks["3"].arguments == {"a": 2, "b": 3}
    assert result.outputs["1"] == {"n": 2}
    for task in result.tasks.values():
        assert task.started_at is not None and task.finished_at is not None
        assert result.started_at <= task.started_at <= task.finished_at <= result.finished_at


async def test_no_barrier_a_task_starts_while_its_cousin_still_runs() -> None:
    """B depends on A only; C is independent and can only finish once B has started."""
    b_started = anyio.Event()

    @tool
    async def slow_c() -> str:
        """Waits for B."""
        await b_started.wait()
        return "c"

    @tool
    async def b_tool(x: str) -> str:
        """B."""
        b_started.set()
        return x + "b"

    plan = Plan.parse('1. echo("a")\n2. b_tool($1)\n3. slow_c()\n')
    with anyio.fail_after(5):  # a level barrier would deadlock here
        result = await execute(plan, tools=[echo, b_tool, slow_c])
    assert result.tasks["2"].output == "ab"
    assert result.tasks["2"].started_at < result.tasks["3"].finished_at  # type: ignore[operator]


async def test_dependent_is_dispatched_in_the_turn_its_input_arrives() -> None:
    plan = Plan.parse("1. echo(1)\n2. echo($1)\n")
    result = await execute(plan, tools=[echo])
    sequence = [(e.kind, getattr(e, "task_id", None)) for e in result.events]
    finished = sequence.index(("task_finished", "1"))
    assert sequence[finished + 1] == ("task_ready", "2")
    assert [e.seq for e in result.events] == list(range(1, len(result.events) + 1))
    assert all(a.at <= b.at for a, b in zip(result.events, result.events[1:], strict=False))
    assert sequence[-1] == ("run_finished", None)


async def test_exact_event_sequence_of_a_small_plan() -> None:
    result = await execute(Plan.parse("1. echo(1)\n2. boom($1)\n3. echo($2)\n"), tools=[echo, boom])
    assert [(e.kind, getattr(e, "task_id", None)) for e in result.events] == [
        ("task_added", "1"),
        ("task_ready", "1"),
        ("task_added", "2"),
        ("task_added", "3"),
        ("task_started", "1"),
        ("task_finished", "1"),
        ("task_ready", "2"),
        ("task_started", "2"),
        ("task_failed", "2"),
        ("task_skipped", "3"),
        ("run_finished", None),
    ]


async def test_failure_skips_dependents_and_spares_siblings() -> None:
    plan = Plan.parse("1. boom()\n2. echo($1)\n3. echo($2)\n4. echo(4)\n5. add(1, 2)\n")
    result = await execute(plan, tools=[echo, boom, add])
    one, two, three = result.tasks["1"], result.tasks["2"], result.tasks["3"]
    assert one.status == "failed"
    assert isinstance(one.error, ToolFailed)
    assert str(one.error) == "boom raised RuntimeError: kaboom"
    assert two.status == "skipped" and three.status == "skipped"
    assert isinstance(two.error, DependencyFailed) and two.error.dependency == "1"
    assert isinstance(three.error, DependencyFailed) and three.error.dependency == "2"
    assert "kaboom" in str(three.error)
    assert result.tasks["4"].output == 4
    assert result.tasks["5"].output == 3.0
    assert result.status == "completed"


async def test_async_tool_that_hangs_times_out() -> None:
    @tool(timeout=0.05)
    async def hang() -> None:
        """Never returns."""
        await anyio.sleep_forever()

    result = await execute(Plan.parse("1. hang()\n2. echo(2)\n"), tools=[hang, echo])
    error = result.tasks["1"].error
    assert isinstance(error, ToolTimedOut) and not error.thread_abandoned
    assert result.tasks["2"].output == 2


async def test_sync_tool_that_hangs_times_out_and_its_thread_is_abandoned() -> None:
    release = threading.Event()

    @tool(timeout=0.05)
    def stuck() -> None:
        """Blocks its thread."""
        release.wait(10)

    try:
        result = await execute(Plan.parse("1. stuck()\n"), tools=[stuck])
    finally:
        release.set()
    error = result.tasks["1"].error
    assert isinstance(error, ToolTimedOut) and error.thread_abandoned
    assert "abandoned" in str(error)


async def test_idempotent_tools_are_retried_with_events() -> None:
    calls = 0

    @tool(idempotent=True, retries=3, backoff=0.001)
    async def flaky() -> str:
        """Fails twice."""
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError(f"attempt {calls}")
        return "ok"

    result = await execute(Plan.parse("1. flaky()\n"), tools=[flaky])
    assert result.tasks["1"].output == "ok"
    assert result.tasks["1"].attempts == 3
    retried = [e for e in result.events if isinstance(e, ev.TaskRetried)]
    assert [e.attempt for e in retried] == [1, 2]
    assert "attempt 1" in str(retried[0].error)


async def test_side_effecting_tools_are_not_retried() -> None:
    calls = 0

    @tool(retries=3)
    async def send() -> None:
        """Has side effects."""
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    result = await execute(Plan.parse("1. send()\n"), tools=[send])
    assert calls == 1
    assert result.tasks["1"].status == "failed"


async def test_output_that_cannot_be_serialised_is_a_failure() -> None:
    @tool
    async def weird() -> object:
        """Returns a lock."""
        return threading.Lock()

    result = await execute(Plan.parse("1. weird()\n2. echo($1)\n"), tools=[weird, echo])
    assert isinstance(result.tasks["1"].error, BadOutput)
    assert result.tasks["2"].status == "skipped"


async def test_reference_to_a_missing_field_is_a_bad_argument() -> None:
    result = await execute(Plan.parse('1. echo({"a": 1})\n2. echo($1.b)\n'), tools=[echo])
    error = result.tasks["2"].error
    assert isinstance(error, BadArguments)
    assert "$1.b: the output has no field 'b' (fields: a)" in str(error)


async def test_resolved_argument_of_the_wrong_type_is_a_bad_argument() -> None:
    result = await execute(Plan.parse('1. echo("x")\n2. add($1, 1)\n'), tools=[echo, add])
    error = result.tasks["2"].error
    assert isinstance(error, BadArguments)
    assert "a: Input should be a valid number" in str(error)


async def test_invalid_complete_plan_raises_before_anything_runs() -> None:
    ran = []

    @tool
    async def mark(x: int) -> None:
        """Record."""
        ran.append(x)

    with pytest.raises(PlanError, match="unknown tool 'nope'"):
        await execute(Plan.parse("1. mark(1)\n2. nope()\n"), tools=[mark])
    assert ran == []


async def test_global_max_concurrency_is_respected() -> None:
    running = peak = 0

    @tool
    async def work(i: int) -> int:
        """Counts concurrency."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.001)
        running -= 1
        return i

    plan = Plan([Task(id=TaskId(str(i)), tool="work", args=(i,)) for i in range(1, 21)])
    result = await execute(plan, tools=[work], max_concurrency=3)
    assert peak == 3
    assert all(t.status == "done" for t in result.tasks.values())


async def test_per_tool_limit_does_not_block_other_tools() -> None:
    running = peak = 0
    gate = anyio.Event()

    @tool(max_concurrency=2)
    async def narrow(i: int) -> int:
        """At most two at once."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1
        return i

    @tool
    async def wide() -> str:
        """Opens the gate: runs although four narrow tasks are waiting."""
        gate.set()
        return "ok"

    tasks = [Task(id=TaskId(str(i)), tool="narrow", args=(i,)) for i in range(1, 7)]
    tasks.append(Task(id=TaskId("7"), tool="wide"))
    with anyio.fail_after(5):
        result = await execute(Plan(tasks), tools=[narrow, wide], max_concurrency=3)
    assert peak == 2
    assert result.tasks["7"].output == "ok"


async def test_longest_remaining_path_goes_first_when_slots_are_scarce() -> None:
    order: list[str] = []

    @tool
    async def step(name: str, after: Any = None) -> str:
        """Records the order of starts."""
        order.append(name)
        return name

    # Task 1 heads a chain of three; tasks 2 and 3 are alone. FIFO would run 1, 2, 3.
    text = (
        '1. step("lone-a")\n2. step("lone-b")\n'
        '3. step("head")\n4. step("mid", $3)\n5. step("tail", $4)\n'
    )
    await execute(Plan.parse(text), tools=[step], max_concurrency=1)
    assert order[0] == "head"
    order.clear()
    await execute(Plan.parse(text), tools=[step], max_concurrency=1, order="fifo")
    assert order[:3] == ["lone-a", "lone-b", "head"]


async def test_rate_limit_spaces_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scheduler's clock stands still, so the waits it asks for are exact
    # whatever the machine is doing: call i may start i / 50 s after the first.
    import taskloom.engine._scheduler as scheduler

    monkeypatch.setattr(scheduler, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    waits: list[float] = []
    real_sleep = anyio.sleep

    async def recorded_sleep(delay: float) -> None:
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(scheduler.anyio, "sleep", recorded_sleep)
    calls: list[int] = []

    @tool(rate_limit=50)
    async def ping(i: int) -> None:
        """Limited to 50 calls a second."""
        calls.append(i)

    plan = Plan([Task(id=TaskId(str(i)), tool="ping", args=(i,)) for i in range(1, 6)])
    result = await execute(plan, tools=[ping])
    assert {t.status for t in result.tasks.values()} == {taskloom.TaskStatus.DONE}
    assert sorted(calls) == [1, 2, 3, 4, 5]
    assert sorted(waits) == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])


async def test_streamed_plan_starts_tasks_before_the_plan_is_complete() -> None:
    first_ran = anyio.Event()

    @tool
    async def first() -> str:
        """Signals that it ran."""
        first_ran.set()
        return "one"

    async def chunks() -> AsyncIterator[str]:
        yield '1. first()\n2. echo("$'
        # The planner is still writing line 2; task 1 must already be running.
        with anyio.fail_after(5):
            await first_ran.wait()
        yield '1")\n'

    result = await execute(parse_stream(chunks(), tools=[first, echo]), tools=[first, echo])
    assert result.tasks["2"].output == "one"


async def test_plan_error_in_a_stream_keeps_the_tasks_before_it() -> None:
    async def chunks() -> AsyncIterator[str]:
        yield '1. echo("fine")\n2. echo(oops)\n3. echo(3)\n'

    result = await execute(parse_stream(chunks()), tools=[echo])
    assert result.tasks["1"].output == "fine"
    assert list(result.tasks) == ["1"]
    assert result.plan_error is not None
    assert "unquoted text 'oops'" in str(result.plan_error)


async def test_cancelling_a_run_really_stops_running_tools() -> None:
    stopped = anyio.Event()
    started = anyio.Event()

    @tool
    async def forever() -> None:
        """Runs until cancelled."""
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            stopped.set()

    async with open_run(tools=[forever, echo]) as run:
        run.add(Task(id=TaskId("1"), tool="forever"))
        run.add(Task(id=TaskId("2"), tool="echo", args=(Ref(TaskId("1")),)))
        await started.wait()
        run.cancel()
    result = run.result()
    assert stopped.is_set()
    assert result.status == "cancelled"
    assert result.tasks["1"].status == "cancelled"
    assert result.tasks["2"].status == "cancelled"


async def test_cancelling_one_task_cancels_its_dependents_only() -> None:
    started = anyio.Event()

    @tool
    async def forever() -> None:
        """Runs until cancelled."""
        started.set()
        await anyio.sleep_forever()

    async with open_run(tools=[forever, echo]) as run:
        run.add_all(Plan.parse("1. forever()\n2. echo($1)\n3. echo(3)\n"))
        await started.wait()
        run.cancel("1")
    result = run.result()
    assert result.status == "completed"
    assert [result.tasks[i].status for i in "123"] == ["cancelled", "cancelled", "done"]
    assert "task 1 was cancelled" in str(result.tasks["2"].error)


async def test_cancelled_sync_tool_reports_its_abandoned_thread() -> None:
    release = threading.Event()
    started = threading.Event()

    @tool
    def blocking() -> None:
        """Blocks its thread."""
        started.set()
        release.wait(10)

    try:
        async with open_run(tools=[blocking]) as run:
            run.add(Task(id=TaskId("1"), tool="blocking"))
            await anyio.to_thread.run_sync(started.wait)
            run.cancel("1")
    finally:
        release.set()
    error = run.result().tasks["1"].error
    assert isinstance(error, taskloom.TaskCancelled) and error.thread_abandoned


async def test_live_edits_add_rewrite_and_cancel_pending_tasks() -> None:
    gate = anyio.Event()

    @tool
    async def wait_gate() -> int:
        """Blocks until the test opens the gate."""
        await gate.wait()
        return 10

    async with open_run(tools=[wait_gate, echo, add]) as run:
        run.add_all(Plan.parse("1. wait_gate()\n2. add($1, 1)\n3. echo($1)\n"))
        await anyio.wait_all_tasks_blocked()
        assert run.status("1") == "running"
        new = run.rewrite("2", args=(Ref(TaskId("1")), 100))
        assert new.args[1] == 100
        run.cancel("3")
        run.add(Task(id=TaskId("4"), tool="add", args=(Ref(TaskId("2")), 1)))
        with pytest.raises(EditError, match="cannot rewrite task 1: it is running"):
            run.rewrite("1", args=())
        with pytest.raises(PlanError, match="used twice"):
            run.add(Task(id=TaskId("4"), tool="echo"))
        gate.set()
    result = run.result()
    assert result.tasks["2"].output == 110
    assert result.tasks["3"].status == "cancelled"
    assert result.tasks["4"].output == 111
    with pytest.raises(EditError, match="it is done"):
        run.rewrite("2", args=(1, 2))


async def test_rewrite_that_would_close_a_cycle_is_refused() -> None:
    gate = anyio.Event()

    @tool
    async def wait_gate() -> int:
        """Blocks."""
        await gate.wait()
        return 1

    async with open_run(tools=[wait_gate, echo]) as run:
        run.add_all(Plan.parse("1. wait_gate()\n2. echo($1)\n3. echo($2)\n"))
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(PlanError, match="cycle"):
            run.rewrite("2", args=(Ref(TaskId("3")),))
        gate.set()
    assert run.result().tasks["3"].output == 1


async def test_adding_after_close_is_refused() -> None:
    async with open_run(tools=[echo]) as run:
        run.add(Task(id=TaskId("1"), tool="echo", args=(1,)))
    with pytest.raises(taskloom.UserError, match="no longer accepts"):
        run.add(Task(id=TaskId("2"), tool="echo"))


async def test_event_listener_sees_every_event_in_order() -> None:
    seen: list[int] = []
    result = await execute(
        Plan.parse("1. echo(1)\n2. echo($1)\n"), tools=[echo], on_event=lambda e: seen.append(e.seq)
    )
    assert seen == [e.seq for e in result.events]


async def test_timing_summary() -> None:
    @tool
    async def nap(seconds: float, after: Any = None) -> None:
        """Sleeps (or, for 0, returns at once without yielding)."""
        if seconds:
            await anyio.sleep(seconds)

    # 1 -> 3 sleeps 0.1 s in all; 2 never yields, and 4 sleeps beside 1: the
    # chain is the critical path on any machine, however loaded.
    plan = Plan.parse("1. nap(0.05)\n2. nap(0)\n3. nap(0.05, $1)\n4. nap(0.05)\n")
    result = await execute(plan, tools=[nap])
    assert result.critical_path == ("1", "3")
    # Lower bounds from the sleeps, with room for timer granularity: uvloop
    # rounds a timer to whole milliseconds and may wake a sleeper that early.
    assert result.critical_path_s >= 0.09
    assert result.makespan >= result.critical_path_s
    assert result.work >= 0.135
    assert result.parallelism > 1.0
    summary = result.to_dict()
    assert summary["timings"]["critical_path"] == ["1", "3"]
    assert summary["tasks"]["3"]["dependencies"] == ["1"]


async def test_tasks_may_use_outputs_of_an_earlier_plan() -> None:
    async with open_run(tools=[echo, add], earlier={TaskId("1"): {"n": 5}}) as run:
        run.add(Task(id=TaskId("2"), tool="add", args=(Ref(TaskId("1"), ("n",)), 1)))
        with pytest.raises(PlanError, match="used twice"):
            run.add(Task(id=TaskId("1"), tool="echo"))
    result = run.result()
    assert result.tasks["2"].output == 6
    assert list(result.tasks) == ["2"]


async def test_a_tool_that_swallows_cancellation_cannot_undo_it() -> None:
    started = anyio.Event()
    release = anyio.Event()

    @tool
    async def stubborn() -> str:
        """Ignores the first cancellation."""
        started.set()
        try:
            await anyio.sleep_forever()
        except BaseException:
            await release.wait()  # swallow it and carry on
        return "finished anyway"

    async with open_run(tools=[stubborn, echo]) as run:
        run.add_all(Plan.parse("1. stubborn()\n2. echo(2)\n"))
        await started.wait()
        run.cancel("1")
        release.set()
    result = run.result()
    assert result.tasks["1"].status == "cancelled"
    assert result.tasks["1"].output is None
    assert result.tasks["2"].output == 2
    kinds_of_1 = [e.kind for e in result.events if getattr(e, "task_id", None) == "1"]
    assert kinds_of_1.count("task_cancelled") == 1 and "task_finished" not in kinds_of_1


async def test_a_run_result_repr_is_a_summary_not_every_task() -> None:
    plan = Plan([Task(id=TaskId(str(n)), tool="echo", args=(n,)) for n in range(1, 501)])
    result = await execute(plan, tools=[echo])
    text = repr(result)
    assert "tasks=<500: 500 done>" in text and "status='completed'" in text
    assert len(text) < 200
    # asyncio takes this repr of every finished task's result: it must not make 500 TaskResults.
    assert len(result.tasks._made) == 0  # type: ignore[attr-defined]


async def test_a_listener_that_raises_ends_the_run_with_its_error() -> None:
    def picky(event: ev.Event) -> None:
        if event.kind == "task_started":
            raise LookupError("listener broke")

    with anyio.fail_after(5), pytest.raises(LookupError, match="listener broke"):
        await execute(Plan.parse("1. echo(1)\n2. echo($1)\n"), tools=[echo], on_event=picky)


async def test_cancelling_the_caller_waits_for_every_running_tool_to_stop() -> None:
    stopped: list[str] = []
    started = anyio.Event()

    @tool
    async def slow_to_stop(name: str) -> None:
        """Sleeps; needs a moment to clean up when cancelled."""
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)
            stopped.append(name)

    with anyio.CancelScope() as caller:
        async with open_run(tools=[slow_to_stop]) as run:
            run.add_all(Plan.parse('1. slow_to_stop("a")\n2. slow_to_stop("b")\n'))
            await started.wait()
            caller.cancel()
            await anyio.sleep(5)
    # Leaving the block means both tools have finished cleaning up.
    assert sorted(stopped) == ["a", "b"]
    assert {t.status for t in run.result().tasks.values()} == {"cancelled"}


async def test_a_task_cancelled_from_outside_the_run_is_settled_as_cancelled() -> None:
    @tool
    async def cancelled_by_someone_else() -> None:
        """Its asyncio task is cancelled by code that is not the run."""
        current = asyncio.current_task()
        assert current is not None
        current.cancel()
        await anyio.sleep(1)

    with anyio.fail_after(5):
        result = await execute(
            Plan.parse("1. cancelled_by_someone_else()\n2. echo($1)\n3. echo(3)\n"),
            tools=[cancelled_by_someone_else, echo],
        )
    assert result.tasks["1"].status == "cancelled"
    assert "cancelled" in str(result.tasks["1"].error)
    assert result.tasks["2"].status == "cancelled"
    assert result.tasks["3"].output == 3


@pytest.mark.parametrize(
    ("value", "words"),
    [(object(), "returned an object that cannot"), ([], "returned a list that cannot")],
    ids=["object", "cyclic list"],
)
async def test_an_output_that_is_not_json_is_named_with_its_type_in_plain_words(
    value: Any, words: str
) -> None:
    if isinstance(value, list):
        value.append(value)  # a list that holds itself: no JSON can

    @tool
    def give(n: int) -> Any:
        return value

    result = await execute(Plan.parse("1. give(1)\n", tools=[give]), tools=[give])
    error = result.tasks["1"].error
    assert isinstance(error, BadOutput)
    assert words in str(error)


@pytest.mark.parametrize(
    ("plan", "tools", "words"),
    [
        ('1. echo("a")', [echo], "execute() needs a Plan"),
        (b'1. echo("a")', [echo], "execute() needs a Plan"),
        (['1. echo("a")'], [echo], "a Plan is built from Tasks, not '1. echo"),
        ([], None, "tools must be a list of tools or functions, not None"),
        ([], echo, "tools must be a list of tools or functions, not <Tool echo>"),
        ([], "echo", "tools must be a list of tools or functions, not 'echo'"),
    ],
    ids=["plan text", "plan bytes", "a list of lines", "no tools", "one tool", "a tool name"],
)
async def test_execute_of_plan_text_or_tools_that_are_no_collection_is_a_user_error(
    plan: Any, tools: Any, words: str
) -> None:
    with pytest.raises(taskloom.UserError) as caught:
        await execute(plan, tools=tools)
    assert words in str(caught.value)
    assert len(str(caught.value)) < 300


async def test_execute_of_a_huge_object_quotes_it_briefly() -> None:
    with pytest.raises(taskloom.UserError) as caught:
        await execute({"x": "a" * 1_000_000}, tools=[echo])  # type: ignore[arg-type]
    assert "characters" in str(caught.value) and len(str(caught.value)) < 300


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


class _SelfPrinting(Exception):
    def __str__(self) -> str:
        return str(self)  # recurses until Python stops it


@pytest.mark.parametrize(
    ("cause", "words"),
    [
        (_Unprintable(), "raised _Unprintable: (its message could not be read: RuntimeError"),
        (_SelfPrinting(), "raised _SelfPrinting: (its message could not be read: RecursionError"),
        (LookupError(), "raised LookupError"),
    ],
    ids=["__str__ raises", "__str__ recurses", "no message"],
)
async def test_a_tool_exception_whose_message_is_unreadable_or_empty_fails_only_its_task(
    cause: Exception, words: str
) -> None:
    @tool
    async def bad(n: int) -> int:
        raise cause

    result = await execute(
        Plan.parse("1. bad(1)\n2. echo(2)\n", tools=[bad, echo]), tools=[bad, echo]
    )
    assert result.tasks["2"].status == "done"
    message = str(result.tasks["1"].error)
    assert message.startswith(f"bad {words}") and not message.endswith(": ")


async def test_run_add_of_something_that_is_no_task_is_a_user_error() -> None:
    async with open_run(tools=[echo]) as run:
        with pytest.raises(taskloom.UserError, match="takes a Task"):
            run.add("1. echo(1)")  # type: ignore[arg-type]
        run.add(Task(id=TaskId("1"), tool="echo", args=(1,)))
    assert run.result().tasks["1"].status is taskloom.TaskStatus.DONE


@pytest.mark.parametrize("limit", [0, 1.5, True, "2"])
async def test_max_concurrency_must_be_a_whole_number_of_at_least_one(limit: Any) -> None:
    with pytest.raises(taskloom.UserError, match="whole number of at least 1"):
        await execute(Plan.parse("1. echo(1)\n"), tools=[echo], max_concurrency=limit)
