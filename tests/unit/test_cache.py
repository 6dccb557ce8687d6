"""The call cache: single-flight, memory, the store, TTL, and failures shared."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import taskloom
from taskloom import Task, TaskId
from taskloom.engine import events as ev
from taskloom.store import CallCache, Store, cache_key

pytestmark = pytest.mark.anyio


def counting_tool(calls: list[str], gate: anyio.Event | None = None) -> taskloom.Tool:
    @taskloom.tool(cacheable=True)
    async def lookup(name: str) -> dict[str, str]:
        """Look a name up (counts its calls)."""
        calls.append(name)
        if gate is not None:
            await gate.wait()
        return {"name": name.upper()}

    return lookup


async def test_identical_calls_in_flight_run_once() -> None:
    calls: list[str] = []
    gate = anyio.Event()
    cache = CallCache()
    (lookup,) = cache.wrap([counting_tool(calls, gate)])
    results: list[object] = []

    async def ask(name: str) -> None:
        results.append(await lookup.call({"name": name}))

    async with anyio.create_task_group() as tg:
        for name in ["paris", "paris", "paris", "rome"]:
            tg.start_soon(ask, name)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert sorted(calls) == ["paris", "rome"]
    assert results.count({"name": "PARIS"}) == 3
    assert cache.stats.requested == 4
    assert cache.stats.executed == 2
    assert cache.stats.joined == 2


async def test_repeated_call_answers_from_memory() -> None:
    calls: list[str] = []
    cache = CallCache()
    (lookup,) = cache.wrap([counting_tool(calls)])
    assert await lookup.call({"name": "oslo"}) == {"name": "OSLO"}
    assert await lookup.call({"name": "oslo"}) == {"name": "OSLO"}
    assert calls == ["oslo"]
    assert cache.stats.memory_hits == 1


async def test_results_outlive_the_process_through_the_store(tmp_path: Path) -> None:
    calls: list[str] = []
    path = tmp_path / "s.sqlite3"
    with Store.open(path) as store:
        (lookup,) = CallCache(store).wrap([counting_tool(calls)])
        await lookup.call({"name": "lima"})
    with Store.open(path) as store:
        cache = CallCache(store)
        (lookup,) = cache.wrap([counting_tool(calls)])
        assert await lookup.call({"name": "lima"}) == {"name": "LIMA"}
    assert calls == ["lima"]
    assert cache.stats.store_hits == 1


async def test_expired_entries_run_again(tmp_path: Path) -> None:
    calls: list[str] = []
    with Store.open(tmp_path / "s.sqlite3") as store:
        (lookup,) = CallCache(store, ttl=0.0).wrap([counting_tool(calls)])
        await lookup.call({"name": "kyiv"})
        await lookup.call({"name": "kyiv"})
    assert calls == ["kyiv", "kyiv"]


async def test_waiters_share_the_leaders_failure() -> None:
    gate = anyio.Event()
    calls = 0

    @taskloom.tool(cacheable=True)
    async def broken(name: str) -> str:
        """Always fails."""
        nonlocal calls
        calls += 1
        await gate.wait()
        raise RuntimeError(f"no {name}")

    (wrapped,) = CallCache().wrap([broken])
    errors: list[str] = []

    async def ask() -> None:
        try:
            await wrapped.call({"name": "x"})
        except RuntimeError as exc:
            errors.append(str(exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert calls == 1
    assert errors == ["no x", "no x"]


async def test_a_cancelled_leader_hands_the_call_to_a_waiter() -> None:
    calls: list[str] = []
    gate = anyio.Event()
    cache = CallCache()
    (lookup,) = cache.wrap([counting_tool(calls, gate)])
    got: list[object] = []

    async def wait_for_it() -> None:
        got.append(await lookup.call({"name": "bern"}))

    leader = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_in_scope, leader, lookup)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(wait_for_it)
        await anyio.wait_all_tasks_blocked()
        leader.cancel()
        await anyio.wait_all_tasks_blocked()
        gate.set()
    assert got == [{"name": "BERN"}]
    assert calls == ["bern", "bern"]
    assert (cache.stats.cancelled, cache.stats.executed) == (1, 1)


async def _in_scope(scope: anyio.CancelScope, lookup: taskloom.Tool) -> None:
    with scope:
        await lookup.call({"name": "bern"})


def test_key_depends_on_name_version_and_canonical_arguments() -> None:
    calls: list[str] = []
    tool = counting_tool(calls)
    assert cache_key(tool, {"a": 1, "b": 2}) == cache_key(tool, {"b": 2, "a": 1})
    assert cache_key(tool, {"a": 1}) != cache_key(tool, {"a": 2})
    other = taskloom.tool(cacheable=True, version="2")(tool.fn)
    assert cache_key(tool, {"a": 1}) != cache_key(other, {"a": 1})


async def test_a_failed_call_is_answered_with_its_error_for_a_while() -> None:
    calls = 0

    @taskloom.tool(cacheable=True)
    async def flaky(name: str) -> str:
        """Fails."""
        nonlocal calls
        calls += 1
        raise LookupError(f"no {name}")

    (remembering,) = CallCache().wrap([flaky])
    for _ in range(3):
        with pytest.raises(LookupError, match="no x"):
            await remembering.call({"name": "x"})
    assert calls == 1
    (forgetting,) = CallCache(failure_ttl=0).wrap([flaky])
    for _ in range(2):
        with pytest.raises(LookupError):
            await forgetting.call({"name": "x"})
    assert calls == 3


async def test_a_batch_cache_keeps_failures_for_its_whole_life() -> None:
    calls = 0

    @taskloom.tool(cacheable=True)
    async def missing(name: str) -> str:
        """Fails."""
        nonlocal calls
        calls += 1
        raise LookupError(name)

    (wrapped,) = CallCache(failure_ttl=None).wrap([missing])
    for _ in range(3):
        with pytest.raises(LookupError):
            await wrapped.call({"name": "atlantis"})
    assert calls == 1


async def test_a_cached_sync_tools_timeout_and_times_count_only_once_it_has_a_thread() -> None:
    limiter = anyio.to_thread.current_default_thread_limiter()
    tokens, limiter.total_tokens = limiter.total_tokens, 1
    loop = asyncio.get_running_loop()
    holding, queued = anyio.Event(), anyio.Event()
    release, never = threading.Event(), threading.Event()
    timeout = 0.5

    @taskloom.tool
    def hold() -> str:
        """Takes the only thread until released."""
        loop.call_soon_threadsafe(holding.set)
        release.wait(30)
        return "held"

    @taskloom.tool(cacheable=True, timeout=timeout)
    def quick(n: int) -> int:
        """Returns at once when it gets a thread."""
        return n

    @taskloom.tool(cacheable=True, timeout=timeout)
    def slow() -> None:
        """Outlives its timeout even with a thread of its own."""
        never.wait(30)

    def note(event: ev.Event) -> None:
        if event.kind == "task_started" and event.task_id == "3":
            queued.set()

    tools = CallCache().wrap([hold, quick, slow])
    try:
        async with taskloom.open_run(tools=tools, on_event=note) as run:
            run.add(Task(id=TaskId("1"), tool="hold"))
            with anyio.fail_after(30):
                await holding.wait()
            run.add(Task(id=TaskId("2"), tool="quick", args=(2,)))
            run.add(Task(id=TaskId("3"), tool="slow"))
            with anyio.fail_after(30):
                await queued.wait()
            await anyio.sleep(timeout * 3)  # counted from their start, both would time out
            release.set()
    finally:
        release.set()
        never.set()
        limiter.total_tokens = tokens
    result = run.result()
    held, answered, timed_out = result.tasks["1"], result.tasks["2"], result.tasks["3"]
    assert answered.status == taskloom.TaskStatus.DONE and answered.output == 2
    assert held.finished_at is not None and answered.started_at is not None
    assert answered.started_at >= held.finished_at  # not timed while it waited for the thread
    assert isinstance(timed_out.error, taskloom.ToolTimedOut) and timed_out.error.thread_abandoned


async def test_a_timed_out_call_is_not_remembered_as_a_failure() -> None:
    never = threading.Event()
    calls: list[int] = []

    @taskloom.tool(cacheable=True, timeout=0.05)
    def stuck(n: int) -> int:
        """Hangs the first time only."""
        calls.append(n)
        if len(calls) == 1:
            never.wait(30)
        return n

    (cached,) = CallCache().wrap([stuck])
    try:
        first = await taskloom.execute(taskloom.Plan.parse("1. stuck(1)\n"), tools=[cached])
        second = await taskloom.execute(taskloom.Plan.parse("1. stuck(1)\n"), tools=[cached])
    finally:
        never.set()
    assert isinstance(first.tasks["1"].error, taskloom.ToolTimedOut)
    assert second.tasks["1"].output == 1 and calls == [1, 1]  # run again, not answered timed out
