"""Outputs every consumer can handle, and tools that try to end the process.

An output that cannot be stored, encoded or printed fails its own task
(BadOutput) where the scheduler accepts it; a tool that raises SystemExit,
KeyboardInterrupt or another BaseException fails its own task (ToolFailed).
Either way siblings run on, dependents are skipped with the cause, and the
run ends normally.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

from taskloom import (
    BadOutput,
    DependencyFailed,
    Plan,
    RunResult,
    Store,
    TaskId,
    ToolFailed,
    execute,
    tool,
)
from taskloom._console import render_summary
from taskloom.engine._node import MAX_INT_DIGITS
from taskloom.store import CallCache

pytestmark = pytest.mark.anyio

HUGE = 10**5000


@tool(idempotent=True)
async def echo(value: Any = None) -> Any:
    """Return the value."""
    return value


def cyclic() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


class Opaque:
    """Neither pydantic nor json knows it."""


BAD_OUTPUTS: dict[str, tuple[Any, str]] = {
    "a 5,000-digit int": (HUGE, f"more than {MAX_INT_DIGITS} digits"),
    "a negative 5,000-digit int": (-HUGE, f"more than {MAX_INT_DIGITS} digits"),
    "a 5,000-digit int in a record": ({"n": HUGE}, f"more than {MAX_INT_DIGITS} digits"),
    "a lone surrogate": ("caf\udce9", "not valid Unicode"),
    "a lone surrogate in a list": (["ok", "\ud800"], "not valid Unicode"),
    "a cycle": (cyclic(), "contains itself"),
    "a list nested 100,000 deep": (deep(100_000), "nested too deeply"),
    "an object as a dict key": ({Opaque(): 1}, "cannot be serialised"),
    "an unknown object": (Opaque(), "unknown type"),
}


def returning(value: Any, *, sync: bool = False, retries: int = 0) -> Any:
    """A tool named `make` that returns `value`."""
    if sync:

        @tool(name="make", retries=retries, idempotent=True)
        def make_sync() -> Any:
            """Return the value (sync)."""
            return value

        return make_sync

    @tool(name="make", retries=retries, idempotent=True)
    async def make() -> Any:
        """Return the value."""
        return value

    return make


def printable(result: RunResult) -> str:
    """What the summary and `--json` print: neither may raise."""
    console = Console(record=True, width=200, file=io.StringIO())
    render_summary(result, console)
    return json.dumps(result.to_dict(), default=str)


# -- outputs that cannot be stored --------------------------------------------


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("retries", [0, 2], ids=["simple", "retried"])
@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
async def test_an_output_that_cannot_be_stored_fails_only_its_task(
    case: str, sync: bool, retries: int
) -> None:
    value, why = BAD_OUTPUTS[case]
    plan = Plan.parse('1. make()\n2. echo("x $1")\n3. echo($1)\n4. echo("sibling")\n')
    with anyio.fail_after(30):
        result = await execute(plan, tools=[returning(value, sync=sync, retries=retries), echo])
    first = result.tasks[TaskId("1")]
    assert first.status == "failed"
    assert isinstance(first.error, BadOutput)
    assert why in str(first.error), str(first.error)
    assert first.attempts == 1  # a bad output is not retried: the tool would return it again
    for dependent in ("2", "3"):
        task = result.tasks[TaskId(dependent)]
        assert task.status == "skipped"
        assert isinstance(task.error, DependencyFailed) and why in str(task.error)
    assert result.tasks[TaskId("4")].output == "sibling"
    printable(result)


@pytest.mark.parametrize(
    "value",
    [
        10**MAX_INT_DIGITS - 1,
        -(10**MAX_INT_DIGITS - 1),
        "naïve café ☕",
        math.nan,
        math.inf,
        {"nested": [1, 2.5, None, True, "é"]},
        {1: "an int key becomes text"},
    ],
    ids=["4300 digits", "-4300 digits", "unicode", "nan", "inf", "record", "int key"],
)
async def test_outputs_every_consumer_can_encode_are_kept(value: Any) -> None:
    result = await execute(Plan.parse("1. make()\n"), tools=[returning(value)])
    task = result.tasks[TaskId("1")]
    assert task.status == "done", task.error
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(task.output)
    elif isinstance(value, dict) and 1 in value:
        assert task.output == {"1": "an int key becomes text"}
    else:
        assert task.output == value
    printable(result)


async def test_a_stored_run_with_a_huge_int_output_ends_and_records_the_failure(
    tmp_path: Path,
) -> None:
    """Once, the writer thread died encoding the int and execute() never returned."""
    plan = Plan.parse('1. make()\n2. echo("$1")\n3. echo(3)\n')
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal(plan=plan)
        with anyio.fail_after(30):
            result = await execute(plan, tools=[returning(HUGE), echo], journal=journal)
        record = store.load(journal.run_id)
    assert result.status == "completed"
    assert record.status == "completed"
    assert [(t.status, t.error_type) for t in record.tasks] == [
        ("failed", "BadOutput"),
        ("skipped", "DependencyFailed"),
        ("done", None),
    ]


async def test_a_cacheable_tool_with_an_output_no_store_can_hold_is_not_cached(
    tmp_path: Path,
) -> None:
    """Once, the cache queued the output for the store, and recording stopped."""
    calls: list[int] = []

    @tool(cacheable=True)
    async def huge_lookup(n: int) -> int:
        """A lookup whose answer no store can hold."""
        calls.append(n)
        return HUGE

    plan = Plan.parse("1. huge_lookup(1)\n2. echo(2)\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        cache = CallCache(store)
        for _ in range(2):
            journal = store.journal(plan=plan)
            with anyio.fail_after(30):
                result = await execute(plan, tools=cache.wrap([huge_lookup, echo]), journal=journal)
            assert isinstance(result.tasks[TaskId("1")].error, BadOutput)
            assert result.tasks[TaskId("2")].output == 2
            assert store.load(journal.run_id).status == "completed"
    assert calls == [1, 1]  # nothing was remembered, in memory or in the store


# -- tools that try to end the process ----------------------------------------


class Unusual(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


RAISED: dict[str, BaseException] = {
    "SystemExit": SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt(),
    "GeneratorExit": GeneratorExit(),
    "a BaseException subclass": Unusual("odd"),
}


def raising(exc: BaseException, *, sync: bool, retries: int) -> Any:
    if sync:

        @tool(name="stop", retries=retries, idempotent=True, backoff=0.0)
        def stop_sync() -> None:
            """Raise (in a worker thread)."""
            raise exc

        return stop_sync

    @tool(name="stop", retries=retries, idempotent=True, backoff=0.0)
    async def stop() -> None:
        """Raise."""
        raise exc

    return stop


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("retries", [0, 1], ids=["simple", "retried"])
@pytest.mark.parametrize("case", list(RAISED))
async def test_a_tool_that_raises_a_base_exception_fails_only_its_task(
    case: str, sync: bool, retries: int
) -> None:
    exc = RAISED[case]
    plan = Plan.parse('1. stop()\n2. echo($1)\n3. echo("sibling")\n')
    with anyio.fail_after(30):
        result = await execute(plan, tools=[raising(exc, sync=sync, retries=retries), echo])
    first = result.tasks[TaskId("1")]
    assert first.status == "failed"
    assert isinstance(first.error, ToolFailed)
    assert first.error.cause_type == type(exc).__name__
    assert "may not stop the process" in str(first.error)
    assert first.attempts == retries + 1
    assert result.tasks[TaskId("2")].status == "skipped"
    assert result.tasks[TaskId("3")].output == "sibling"
    assert result.status == "completed"


async def test_an_ordinary_exception_says_nothing_about_stopping_the_process() -> None:
    result = await execute(
        Plan.parse("1. stop()\n"), tools=[raising(ValueError("no"), sync=False, retries=0)]
    )
    assert str(result.tasks[TaskId("1")].error) == "stop raised ValueError: no"


class Mute(Exception):
    """Its message cannot be made."""

    def __str__(self) -> str:
        raise RuntimeError("no message")


async def test_an_exception_whose_message_cannot_be_made_is_still_a_task_failure() -> None:
    with anyio.fail_after(10):
        result = await execute(
            Plan.parse("1. stop()\n"), tools=[raising(Mute(), sync=False, retries=0)]
        )
    assert str(result.tasks[TaskId("1")].error) == (
        "stop raised Mute: (its message could not be read: RuntimeError in __str__)"
    )
