"""The call cache: single-flight, memory, the store, TTL, and failures shared."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import taskloom
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
