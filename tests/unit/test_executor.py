"""The Executor seam: where a tool call runs, and how the scheduler reads what went wrong there."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import taskloom
from taskloom import (
    CallInterrupted,
    CallTimedOut,
    ExecutorLost,
    InlineExecutor,
    Resources,
    Task,
    TaskId,
    TaskStatus,
    ToolDefinitionError,
    UserError,
)
from taskloom.store import CallCache, Store
from taskloom.testing import RecordingExecutor

pytestmark = pytest.mark.anyio


@taskloom.tool
async def double(x: int) -> int:
    """Twice x."""
    return 2 * x


@taskloom.tool
def thread_name(x: int) -> str:
    """The thread this ran on."""
    return f"{x}:{threading.current_thread().name}"


@taskloom.tool
def send(to: str) -> str:
    """Has a side effect: not idempotent."""
    return f"sent to {to}"


@taskloom.tool(idempotent=True, retries=2, backoff=0.0)
def lookup(key: str) -> str:
    """Idempotent, retried twice."""
    return key.upper()


@taskloom.tool(cacheable=True)
def square(x: int) -> int:
    """Cacheable."""
    return x * x


def t(i: int, tool: str, *args: Any, deps: tuple[int, ...] = ()) -> Task:
    args = (*args, *(taskloom.Ref(TaskId(str(d))) for d in deps))
    return Task(id=TaskId(str(i)), tool=tool, args=args)


TOOLS = [double, thread_name, send, lookup, square]


async def test_an_executor_runs_every_call_and_the_results_are_the_inline_ones() -> None:
    plan = [t(1, "double", 2), t(2, "double", deps=(1,)), t(3, "thread_name", 7)]
    inline = await taskloom.execute(plan, tools=TOOLS)
    same = await taskloom.execute(plan, tools=TOOLS, executor=InlineExecutor())
    executor = RecordingExecutor()
    recorded = await taskloom.execute(plan, tools=TOOLS, executor=executor)
    for result in (inline, same, recorded):
        assert result.tasks[TaskId("2")].output == 8
        assert result.tasks[TaskId("3")].output.startswith("7:taskloom-worker")
    # Even an async tool with no policy (the scheduler's fast path) goes through it.
    assert sorted(name for name, _ in executor.calls) == ["double", "double", "thread_name"]
    assert ("double", {"x": 4}) in executor.calls


async def test_a_dead_worker_interrupts_a_call_with_side_effects_and_the_run_goes_on() -> None:
    died = CallInterrupted("send", "the Ray node running it died")
    executor = RecordingExecutor(fail={"send": died})
    plan = [t(1, "send", "ops"), t(2, "double", 1), t(3, "thread_name", deps=(1,))]
    result = await taskloom.execute(plan, tools=TOOLS, executor=executor)
    sent = result.tasks[TaskId("1")]
    assert sent.status is TaskStatus.INTERRUPTED
    assert isinstance(sent.error, taskloom.TaskInterrupted)
    assert sent.attempts == 1  # never called again
    assert str(sent.error).startswith("send was running when the Ray node running it died;")
    assert result.tasks[TaskId("2")].output == 2
    assert result.tasks[TaskId("3")].status is TaskStatus.SKIPPED
    assert result.status is taskloom.RunStatus.COMPLETED
    assert [name for name, _ in executor.calls].count("send") == 1


async def test_a_dead_worker_retries_an_idempotent_call_under_its_policy() -> None:
    def first_call_dies(attempt: int) -> BaseException | None:
        return (
            CallInterrupted("lookup", "the Ray worker process running it died")
            if attempt == 1
            else None
        )

    executor = RecordingExecutor(fail={"lookup": first_call_dies})
    result = await taskloom.execute([t(1, "lookup", "k")], tools=TOOLS, executor=executor)
    task = result.tasks[TaskId("1")]
    assert (task.status, task.output, task.attempts) == (TaskStatus.DONE, "K", 2)
    retried = [e for e in result.events if e.kind == "task_retried"]
    assert len(retried) == 1 and "worker process running it died" in str(retried[0].error)  # type: ignore[attr-defined]


async def test_an_idempotent_call_whose_workers_keep_dying_fails_after_its_attempts() -> None:
    executor = RecordingExecutor(fail={"lookup": CallInterrupted("lookup", "the node died")})
    result = await taskloom.execute([t(1, "lookup", "k")], tools=TOOLS, executor=executor)
    task = result.tasks[TaskId("1")]
    assert task.status is TaskStatus.FAILED and task.attempts == 3
    assert isinstance(task.error, taskloom.ToolFailed)
    assert "CallInterrupted" in str(task.error)


async def test_a_lost_executor_ends_the_run_with_its_error() -> None:
    lost = ExecutorLost("the Ray cluster", "RaySystemError: the GCS is gone")

    @taskloom.tool
    async def slow() -> None:
        """Runs until the run ends."""
        await anyio.sleep(60)

    executor = RecordingExecutor(fail={"send": lost})
    with anyio.fail_after(30), pytest.raises(ExecutorLost, match="the Ray cluster: RaySystemError"):
        await taskloom.execute(
            [t(1, "send", "x"), t(2, "slow")], tools=[send, slow], executor=executor
        )


async def test_a_lost_executor_leaves_a_stored_run_that_resume_finishes(tmp_path: Any) -> None:
    store = Store.open(tmp_path / "runs.sqlite3")
    try:
        executor = RecordingExecutor(fail={"send": ExecutorLost("the Ray cluster", "gone")})
        journal = store.journal(request="test")
        plan = [t(1, "double", 1), t(2, "send", "x"), t(3, "lookup", "k")]
        with pytest.raises(ExecutorLost):
            await taskloom.execute(plan, tools=TOOLS, executor=executor, journal=journal)
        record = store.load(journal.run_id)
        assert record.unfinished  # kept as a crash keeps a run
        statuses = {task.id: task.status for task in record.tasks}
        assert statuses["1"] == "done" and statuses["2"] == "running"
        result = await taskloom.resume(journal.run_id, store=store, tools=TOOLS)
        tasks = result.tasks
        assert tasks[TaskId("1")].output == 2  # kept, not run again
        assert tasks[TaskId("2")].status is TaskStatus.INTERRUPTED  # its effect may have happened
        assert tasks[TaskId("3")].output == "K"  # idempotent or never started: run now
        assert not store.load(journal.run_id).unfinished
    finally:
        store.close()


async def test_a_timeout_that_an_executor_stopped_says_how() -> None:
    stopped = CallTimedOut(
        "send", 1.0, stopped="its Ray task was cancelled and its worker process killed"
    )
    result = await taskloom.execute(
        [t(1, "send", "x")], tools=TOOLS, executor=RecordingExecutor(fail={"send": stopped})
    )
    error = result.tasks[TaskId("1")].error
    assert isinstance(error, taskloom.ToolTimedOut)
    assert not error.thread_abandoned
    how = "its Ray task was cancelled and its worker process killed"
    assert str(error) == f"send did not finish within 1s ({how})"


async def test_an_interrupted_task_is_stored_as_interrupted(tmp_path: Any) -> None:
    store = Store.open(tmp_path / "runs.sqlite3")
    try:
        journal = store.journal(request="test")
        died = CallInterrupted("send", "the Ray node running it died")
        await taskloom.execute(
            [t(1, "send", "x")],
            tools=TOOLS,
            executor=RecordingExecutor(fail={"send": died}),
            journal=journal,
        )
        record = store.load(journal.run_id)
        (task,) = record.tasks
        assert task.status == "interrupted" and task.error_type == "TaskInterrupted"
        assert "the Ray node running it died" in (task.error or "")
    finally:
        store.close()


async def test_a_cache_answers_on_the_driver_and_runs_the_tool_through_the_executor() -> None:
    cache = CallCache()
    (cached,) = cache.wrap([square])
    executor = RecordingExecutor()
    first = await cached.call_through(executor, {"x": 3})  # type: ignore[attr-defined]
    again = await cached.call_through(executor, {"x": 3})  # type: ignore[attr-defined]
    assert first == again == 9
    assert executor.calls == [("square", {"x": 3})]  # the tool itself, once
    assert cache.stats.memory_hits == 1


async def test_a_latency_waits_on_the_driver_and_a_cache_still_answers_first() -> None:
    slow = square.with_latency(0.01)
    executor = RecordingExecutor()
    assert await slow.call_through(executor, {"x": 2}) == 4  # type: ignore[attr-defined]
    assert executor.calls == [("square", {"x": 2})]
    (cached,) = CallCache().wrap([slow])
    for _ in range(2):
        assert await cached.call_through(executor, {"x": 5}) == 25  # type: ignore[attr-defined]
    assert executor.calls[1:] == [("square", {"x": 5})]  # the second answered by the cache


async def test_anything_but_an_executor_is_refused() -> None:
    with pytest.raises(UserError, match="executor must be an Executor"):
        await taskloom.execute([t(1, "double", 1)], tools=TOOLS, executor="ray")  # type: ignore[arg-type]


def test_resources_are_part_of_the_call_policy() -> None:
    @taskloom.tool(resources={"num_cpus": 2, "num_gpus": 0.5, "memory": 2**30, "gpu_node": 1})
    def heavy() -> None:
        """Needs a GPU node."""

    resources = heavy.policy.resources
    assert resources == Resources(num_cpus=2, num_gpus=0.5, memory=2**30, custom={"gpu_node": 1})
    assert resources is not None and resources.ray_options() == {
        "num_cpus": 2,
        "num_gpus": 0.5,
        "memory": 2**30,
        "resources": {"gpu_node": 1},
    }
    assert double.policy.resources is None


@pytest.mark.parametrize(
    "given",
    [{"num_cpus": -1}, {"num_gpus": float("nan")}, {"gpu_node": "one"}, {"": 1}, ["num_cpus"]],
)
def test_bad_resources_are_refused_when_the_tool_is_made(given: Any) -> None:
    with pytest.raises(ToolDefinitionError):

        @taskloom.tool(resources=given)
        def heavy() -> None:
            """Never made."""
