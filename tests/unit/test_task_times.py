"""Task times measure the call itself, not the waits before it; summaries read right."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

import taskloom
from taskloom import Plan, RunResult, Task, TaskId, TaskResult, TaskStatus, execute, tool
from taskloom._console import timing_line
from taskloom.engine import events as ev

pytestmark = pytest.mark.anyio


async def test_a_sync_task_waiting_for_a_thread_is_not_timed_while_it_waits() -> None:
    anyio.to_thread.current_default_thread_limiter().total_tokens = 1  # this loop only
    a_running = threading.Event()
    release_a = threading.Event()

    @tool
    def gated(name: str) -> str:
        """The first call holds the only thread until released."""
        if name == "a":
            a_running.set()
            release_a.wait(30)
        return name

    async def release_when_a_runs() -> None:
        await anyio.to_thread.run_sync(a_running.wait, abandon_on_cancel=True)
        await anyio.sleep(0.05)  # b waits for the thread meanwhile
        release_a.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_when_a_runs)
            result = await execute(Plan.parse('1. gated("a")\n2. gated("b")\n'), tools=[gated])
    finally:
        release_a.set()
    a, b = result.tasks["1"], result.tasks["2"]
    assert a.status == b.status == TaskStatus.DONE
    assert a.started_at is not None and a.finished_at is not None and b.started_at is not None
    # b began when the thread was free, after a's call ended; not when it was dispatched.
    assert b.started_at >= a.finished_at
    assert result.work <= result.makespan  # one thread: never more than one call at a time


async def test_an_async_task_is_timed_from_its_call_not_from_its_journal_barrier(
    tmp_path: Any,
) -> None:
    calls: list[float] = []

    @tool
    async def side_effect() -> None:
        """Not idempotent: its start is committed before it is called."""
        calls.append(anyio.current_time())

    with taskloom.Store.open(tmp_path / "s.sqlite3") as store:
        plan = Plan.parse("1. side_effect()\n")
        result = await execute(plan, tools=[side_effect], journal=store.journal(plan=plan))
    (event,) = [e for e in result.events if e.kind == "task_started"]
    task = result.tasks["1"]
    assert task.started_at is not None
    assert event.at <= task.started_at <= calls[0]  # after the barrier, at the call


async def test_a_task_that_never_called_its_tool_has_no_start() -> None:
    @tool
    async def wants_int(n: int) -> int:
        """Needs an int."""
        return n

    @tool
    async def text() -> str:
        """Gives text."""
        return "x"

    result = await execute(Plan.parse("1. text()\n2. wants_int($1)\n"), tools=[text, wants_int])
    assert result.tasks["2"].status == TaskStatus.FAILED
    assert result.tasks["2"].started_at is None and result.tasks["2"].duration == 0.0


def test_a_process_exits_while_an_abandoned_sync_tool_still_runs() -> None:
    script = textwrap.dedent(
        """
        import threading, anyio, taskloom
        never = threading.Event()

        @taskloom.tool(timeout=0.05)
        def stuck() -> None:
            never.wait()

        async def main():
            result = await taskloom.execute(taskloom.Plan.parse("1. stuck()\\n"), tools=[stuck])
            print(result.tasks["1"].status)

        anyio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "failed"


def _result(*tasks: tuple[str, float | None, float | None], span: float) -> RunResult:
    made = {
        TaskId(i): TaskResult(
            id=TaskId(i),
            tool="t",
            arguments={},
            dependencies=(),
            status=TaskStatus.DONE,
            started_at=start,
            finished_at=end,
        )
        for i, start, end in tasks
    }
    return RunResult(
        run_id=taskloom.RunId("r"),
        status=taskloom.RunStatus.COMPLETED,
        tasks=made,
        events=(),
        started_at=0.0,
        finished_at=span,
    )


def test_the_summary_shows_parallelism_when_tasks_overlapped() -> None:
    line = timing_line(_result(("1", 0.0, 1.0), ("2", 0.0, 1.0), span=1.0))
    assert "parallelism 2.00x" in line


def test_the_summary_says_how_busy_tools_were_when_the_run_mostly_waited() -> None:
    line = timing_line(_result(("1", 0.0, 0.1), ("2", 0.5, 0.6), span=1.0))
    assert "parallelism" not in line
    assert "tools busy 20% of the makespan" in line


def test_the_summary_of_one_task_shows_no_parallelism() -> None:
    line = timing_line(_result(("1", 0.0, 1.0), span=1.0))
    assert "parallelism" not in line and "busy" not in line


def test_an_agent_round_shows_tool_time_against_wall_time() -> None:
    line = timing_line(_result(("1", 0.0, 0.01), ("2", 0.0, 0.01), span=2.0), within_agent=True)
    assert "tools ran 0.020s in all over 2.000s of wall time" in line
    assert "parallelism" not in line


def _one_thread() -> tuple[anyio.CapacityLimiter, float]:
    """Leave this loop's thread limiter a single slot; returns it and its old size."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    tokens = limiter.total_tokens
    limiter.total_tokens = 1
    return limiter, tokens


async def test_a_sync_tools_timeout_counts_only_once_it_has_a_thread() -> None:
    limiter, tokens = _one_thread()
    loop = asyncio.get_running_loop()
    holding, all_started = anyio.Event(), anyio.Event()
    release, never = threading.Event(), threading.Event()
    started: set[str] = set()
    timeout = 0.5

    @tool
    def hold() -> str:
        """Takes the only thread until released."""
        loop.call_soon_threadsafe(holding.set)
        release.wait(30)
        return "held"

    @tool(timeout=timeout)
    def quick() -> str:
        """Returns at once when it gets a thread."""
        return "quick"

    @tool(timeout=timeout)
    def slow() -> str:
        """Outlives its timeout even with a thread of its own."""
        never.wait(30)
        return "slow"

    def note_start(event: ev.Event) -> None:
        if event.kind == "task_started":
            started.add(event.task_id)
            if len(started) == 3:
                all_started.set()

    try:
        async with taskloom.open_run(tools=[hold, quick, slow], on_event=note_start) as run:
            run.add(Task(id=TaskId("1"), tool="hold"))
            with anyio.fail_after(30):
                await holding.wait()
            run.add(Task(id=TaskId("2"), tool="quick"))
            run.add(Task(id=TaskId("3"), tool="slow"))
            with anyio.fail_after(30):
                await all_started.wait()  # 2 and 3 wait for the only thread now
            # Longer than their timeout: counted from their start, both would time out here.
            await anyio.sleep(timeout * 3)
            release.set()
    finally:
        release.set()
        never.set()
        limiter.total_tokens = tokens
    result = run.result()
    assert result.tasks["1"].output == "held"
    assert result.tasks["2"].status == TaskStatus.DONE and result.tasks["2"].output == "quick"
    slow_task = result.tasks["3"]
    assert slow_task.status == TaskStatus.FAILED
    assert isinstance(slow_task.error, taskloom.ToolTimedOut) and slow_task.error.thread_abandoned


async def test_an_async_tools_timeout_is_recorded_as_a_timeout() -> None:
    @tool(timeout=0.05)
    async def hang() -> None:
        """Never returns."""
        await anyio.sleep_forever()

    result = await execute(Plan.parse("1. hang()\n"), tools=[hang])
    error = result.tasks["1"].error
    assert isinstance(error, taskloom.ToolTimedOut) and error.timeout == 0.05


async def test_a_sync_tools_own_timeout_error_is_its_failure_not_a_timeout() -> None:
    @tool(timeout=30)
    def gives_up() -> None:
        """Raises TimeoutError itself, long before its own timeout."""
        raise TimeoutError("the remote end did not answer")

    result = await execute(Plan.parse("1. gives_up()\n"), tools=[gives_up])
    error = result.tasks["1"].error
    assert isinstance(error, taskloom.ToolFailed) and error.cause_type == "TimeoutError"


async def test_tool_call_raises_call_timed_out_for_a_sync_function() -> None:
    never = threading.Event()

    @tool
    def stuck() -> None:
        """Blocks its thread."""
        never.wait(30)

    try:
        with pytest.raises(taskloom.CallTimedOut, match="stuck did not finish within 0.05s"):
            await stuck.call({}, timeout=0.05)
    finally:
        never.set()
