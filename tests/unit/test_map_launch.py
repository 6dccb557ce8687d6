"""A map's elements launched in the turn their list arrives (`engine/_launch.py`).

The launch must be invisible: the same events in the same order, the same
results and errors as the ordinary path (add, ready, queue, start), which a
map takes when something has to happen between an element's list and its call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pydantic
import pytest

from taskloom import BadArguments, MapFailed, Plan, RunId, TaskId, execute, open_run, tool
from taskloom.engine import _branch
from taskloom.engine import events as ev
from taskloom.engine.result import RunResult
from taskloom.tools import Tool

# -- tools --------------------------------------------------------------------


@tool(name="items")
async def items(n: int) -> list[Any]:
    """0 .. n-1, with "x" in place of 2 when n is negative (a bad item)."""
    values: list[Any] = list(range(abs(n)))
    if n < 0:
        values[2] = "x"
    return values


@tool(name="now")
async def now(item: int, scale: int = 10) -> int:
    """Returns at once."""
    return item * scale


@tool(name="later")
async def later(item: int, scale: int = 10) -> int:
    """Returns after one checkpoint."""
    await anyio.lowlevel.checkpoint()
    return item * scale


@tool(name="total")
async def total(values: list[int]) -> int:
    """The sum."""
    return sum(values)


@tool(name="fails")
async def fails(item: int) -> int:
    """Raises for odd items."""
    if item % 2:
        raise ValueError(f"odd {item}")
    return item


TOOLS = [items, now, later, total, fails]


# -- helpers ------------------------------------------------------------------


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The maps that took the launch path, by id."""
    seen: list[str] = []
    real = _branch.launch

    def spy(run: Any, node: Any, *rest: Any) -> bool:
        launched = real(run, node, *rest)
        if launched:
            seen.append(node.task.id)
        return launched

    monkeypatch.setattr(_branch, "launch", spy)
    return seen


async def ordinary(monkeypatch: pytest.MonkeyPatch, run: Callable[[], Any]) -> Any:
    """`run()` with every map taking the ordinary path."""
    with monkeypatch.context() as patch:
        patch.setattr(_branch, "launchable", lambda run, node: False)
        return await run()


def told(result: RunResult) -> list[tuple[Any, ...]]:
    """Every event as its kind and fields, without its number, time and run."""
    out: list[tuple[Any, ...]] = []
    for event in result.events:
        fields = []
        for f in dataclasses.fields(event):
            if f.name in ("seq", "at", "run_id"):
                continue
            value = getattr(event, f.name)
            if isinstance(value, BaseException):
                value = (type(value).__name__, str(value))
            fields.append((f.name, value))
        out.append((event.kind, *fields))
    return out


def tasks(result: RunResult) -> dict[str, tuple[Any, ...]]:
    """Every task's status, output, error, arguments and attempts."""
    return {
        i: (
            str(t.status),
            t.output,
            None if t.error is None else (type(t.error).__name__, str(t.error)),
            t.arguments,
            t.attempts,
            t.dependencies,
        )
        for i, t in result.tasks.items()
    }


def in_order(result: RunResult) -> Iterator[None]:
    """Checks that events are numbered 1, 2, ... and timed in that order."""
    events = result.events
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(a.at <= b.at for a, b in zip(events, events[1:], strict=False))
    yield from ()


# -- the same events and results ------------------------------------------------


PLANS = [
    pytest.param("1. items(5)\n2. now($1[*])\n3. total($2)\n", id="returns at once"),
    pytest.param("1. items(5)\n2. later($1[*], scale=3)\n3. total($2)\n", id="one checkpoint"),
    pytest.param("1. items(4)\n2. fails($1[*])\n3. total($2)\n", id="some fail"),
    pytest.param("1. items(3)\n2. now($1[*])\n3. later($1[*])\n4. total($3)\n", id="two maps"),
    pytest.param("1. items(0)\n2. now($1[*])\n3. total($2)\n", id="empty"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("listening", [False, True], ids=["no listener", "listener"])
async def test_a_launched_map_tells_what_the_ordinary_path_tells(
    plan: str, listening: bool, launches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    heard: list[ev.Event] = []

    async def run() -> RunResult:
        return await execute(
            Plan.parse(plan),
            tools=TOOLS,
            run_id="r",
            on_event=heard.append if listening else None,
        )

    launched = await run()
    assert launches or "items(0)" in plan  # an empty map has nothing to launch
    if listening:
        assert list(launched.events) == heard
    list(in_order(launched))
    heard.clear()
    plain = await ordinary(monkeypatch, run)
    assert told(launched) == told(plain)
    assert tasks(launched) == tasks(plain)
    assert launched.status == plain.status


@pytest.mark.anyio
async def test_a_launched_element_starts_when_its_call_does(launches: list[str]) -> None:
    result = await execute(Plan.parse("1. items(3)\n2. later($1[*])\n"), tools=TOOLS)
    assert launches == ["2"]
    for event in result.events:
        if isinstance(event, ev.TaskStarted) and event.task_id.startswith("2."):
            task = result.tasks[TaskId(event.task_id)]
            assert event.at == task.started_at
            assert task.started_at is not None and task.finished_at is not None
            assert result.tasks[TaskId("1")].finished_at <= task.started_at  # type: ignore[operator]


# -- bad arguments ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_bad_item_fails_its_element_with_its_own_error(
    launches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> RunResult:
        return await execute(Plan.parse("1. items(-4)\n2. now($1[*])\n"), tools=TOOLS)

    result = await run()
    assert launches == []  # checked in one pass, which failed: element by element
    error = result.tasks[TaskId("2.2")].error
    assert isinstance(error, BadArguments)
    assert "item" in str(error) and "integer" in str(error)
    assert isinstance(result.tasks[TaskId("2")].error, MapFailed)
    assert [str(result.tasks[TaskId(f"2.{i}")].status) for i in range(4)] == [
        "done",
        "done",
        "failed",
        "done",
    ]
    assert tasks(result) == tasks(await ordinary(monkeypatch, run))


@pytest.mark.anyio
async def test_a_missing_field_of_an_item_fails_its_element(launches: list[str]) -> None:
    @tool(name="records")
    async def records() -> list[dict[str, int]]:
        """Two records, the second without `v`."""
        return [{"v": 1}, {"w": 2}]

    plan = Plan.parse("1. records()\n2. now($1[*].v)\n")
    result = await execute(plan, tools=[records, now])
    assert launches == []
    assert result.tasks[TaskId("2.0")].output == 10
    assert "no field 'v'" in str(result.tasks[TaskId("2.1")].error)


# -- what keeps a map on the ordinary path -------------------------------------------


class RecordingJournal:
    """A journal that records when each non-idempotent start was made durable."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    @property
    def run_id(self) -> RunId:
        return RunId("journaled")

    def attach(self, run: Any) -> None:
        """Nothing to subscribe to."""

    async def before_call(self, task_id: TaskId) -> None:
        await anyio.lowlevel.checkpoint()  # a write off the loop, say
        self.log.append(("durable", task_id))

    async def close(self, result: RunResult) -> None:
        """Nothing to write."""


@pytest.mark.anyio
async def test_a_journaled_side_effect_is_durable_before_each_element_is_called(
    launches: list[str],
) -> None:
    log: list[tuple[str, str]] = []

    @tool(name="send")
    async def send(item: int) -> int:
        """A side effect: not idempotent."""
        log.append(("called", f"2.{item}"))
        return item

    plan = Plan.parse("1. items(3)\n2. send($1[*])\n")
    result = await execute(plan, tools=[items, send], journal=RecordingJournal(log))
    assert launches == []
    assert str(result.status) == "completed"
    for i in range(3):
        assert log.index(("durable", f"2.{i}")) < log.index(("called", f"2.{i}"))


@pytest.mark.anyio
async def test_a_journaled_idempotent_map_is_launched(launches: list[str]) -> None:
    log: list[tuple[str, str]] = []

    @tool(name="read", idempotent=True)
    async def read(item: int) -> int:
        """Harmless to call twice."""
        log.append(("called", f"2.{item}"))
        return item

    plan = Plan.parse("1. items(3)\n2. read($1[*])\n")
    result = await execute(plan, tools=[items, read], journal=RecordingJournal(log))
    assert launches == ["2"]
    assert result.tasks[TaskId("2")].output == [0, 1, 2]
    assert ("durable", "2.0") not in log  # nothing to make durable first


@pytest.mark.anyio
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_concurrency": 2}, id="a concurrency limit"),
        pytest.param({"tool": {"timeout": 5.0}}, id="a timeout"),
        pytest.param({"tool": {"idempotent": True, "retries": 1}}, id="retries"),
        pytest.param({"tool": {"max_concurrency": 1}}, id="a tool's limit"),
    ],
)
async def test_a_map_with_something_to_wait_for_takes_the_ordinary_path(
    options: dict[str, Any], launches: list[str]
) -> None:
    @tool(name="step", **options.get("tool", {}))
    async def step(item: int) -> int:
        """Doubles."""
        return 2 * item

    plan = Plan.parse("1. items(4)\n2. step($1[*])\n")
    result = await execute(
        plan, tools=[items, step], max_concurrency=options.get("max_concurrency")
    )
    assert launches == []
    assert result.tasks[TaskId("2")].output == [0, 2, 4, 6]


# -- cancellation and listeners ------------------------------------------------


@pytest.mark.anyio
async def test_cancelling_a_launched_map_before_its_events_are_told(launches: list[str]) -> None:
    release = anyio.Event()

    @tool(name="wait")
    async def wait(item: int) -> int:
        """Waits for the test."""
        await release.wait()
        return item

    heard: list[ev.Event] = []
    async with open_run(tools=[items, wait], on_event=heard.append) as live:
        live.add_all(Plan.parse("1. items(3)\n2. wait($1[*])\n"))
        live.close()
        await anyio.wait_all_tasks_blocked()
        assert launches == ["2"]
        assert [live.status(f"2.{i}") for i in range(3)] == ["running"] * 3
        live.cancel("2")
    result = live.result()
    assert {i: str(t.status) for i, t in result.tasks.items()} == {
        "1": "done",
        "2": "cancelled",
        "2.0": "cancelled",
        "2.1": "cancelled",
        "2.2": "cancelled",
    }
    kinds = [(e.kind, getattr(e, "task_id", None)) for e in heard]
    for i in range(3):
        element = f"2.{i}"
        order = [kinds.index((k, element)) for k in ("task_added", "task_ready", "task_started")]
        assert order == sorted(order)
        assert order[-1] < kinds.index(("task_cancelled", element))
    list(in_order(result))


@pytest.mark.anyio
async def test_the_run_cancelled_while_elements_start_stops_them_all(
    launches: list[str],
) -> None:
    started: list[int] = []

    @tool(name="block")
    async def block(item: int) -> int:
        """Never returns."""
        started.append(item)
        await anyio.sleep_forever()
        return item

    with anyio.move_on_after(30):  # a guard against a hang, not a timing
        async with open_run(tools=[items, block]) as live:
            live.add_all(Plan.parse("1. items(50)\n2. block($1[*])\n"))
            live.close()
            await anyio.wait_all_tasks_blocked()
            live.cancel()
    assert launches == ["2"]
    assert len(started) == 50
    result = live.result()
    assert all(str(t.status) == "cancelled" for i, t in result.tasks.items() if i != "1")
    list(in_order(result))


@pytest.mark.anyio
async def test_a_listener_that_cancels_the_run_while_elements_are_told(
    launches: list[str],
) -> None:
    release = anyio.Event()

    @tool(name="wait")
    async def wait(item: int) -> int:
        """Waits for the test."""
        await release.wait()
        return item

    heard: list[ev.Event] = []

    async with open_run(tools=[items, wait]) as live:

        def listener(event: ev.Event) -> None:
            heard.append(event)
            if isinstance(event, ev.TaskAdded) and event.task_id == "2.0":
                live.cancel(reason="enough")

        live.subscribe(listener)
        live.add_all(Plan.parse("1. items(4)\n2. wait($1[*])\n"))
        live.close()
    assert launches == ["2"]
    result = live.result()
    assert list(result.events) == heard
    list(in_order(result))
    kinds = [(e.kind, getattr(e, "task_id", None)) for e in heard]
    for i in range(4):
        element = f"2.{i}"
        assert kinds.index(("task_added", element)) < kinds.index(("task_cancelled", element))
        assert str(result.tasks[TaskId(element)].status) == "cancelled"


@pytest.mark.anyio
async def test_a_listener_that_raises_on_a_launched_element_stops_the_run(
    launches: list[str],
) -> None:
    class Refused(Exception):
        """The listener's own error."""

    def listener(event: ev.Event) -> None:
        if isinstance(event, ev.TaskAdded) and event.task_id == "2.1":
            raise Refused("no")

    with pytest.raises(Refused):
        await execute(Plan.parse("1. items(3)\n2. later($1[*])\n"), tools=TOOLS, on_event=listener)
    assert launches == ["2"]


# -- Tool.validate_many ----------------------------------------------------------


@tool(name="many")
async def many_kinds(
    n: int,
    tags: list[str],
    ratio: float = 0.5,
    limit: int = pydantic.Field(3, ge=0),
    extra: list[int] = [],  # noqa: B006  (pydantic copies it for each call)
) -> int:
    """A tool with coercions, constraints and defaults."""
    return n


@pytest.mark.parametrize(
    ("varying", "same"),
    [
        ({"n": [1, "2", 3.0]}, {"tags": ["a"]}),
        ({"n": [1, 2, 3], "tags": [["a"], ["b", "c"], []]}, {"ratio": 1}),
        ({"n": [1, 2, 3]}, {"tags": ("x",), "limit": "7"}),
    ],
)
def test_validate_many_gives_what_validate_gives_each_call(
    varying: dict[str, list[Any]], same: dict[str, Any]
) -> None:
    count = len(next(iter(varying.values())))
    rows = [{**same, **{k: v[i] for k, v in varying.items()}} for i in range(count)]
    many = many_kinds.validate_many(varying, same, count)
    assert many == [many_kinds.validate(row) for row in rows]
    assert many is not None
    for got, row in zip(many, rows, strict=True):
        want = many_kinds.validate(row)
        assert list(got) == list(want)  # the same parameters, in the same order
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
    # A list is each call's own, as `validate` makes it: a call that changes it changes no other.
    assert many[0]["tags"] is not many[1]["tags"]
    assert many[0]["extra"] is not many[1]["extra"]


@pytest.mark.parametrize(
    ("varying", "same"),
    [
        ({"n": [1, "x", 3]}, {"tags": []}),
        ({"n": [1, 2]}, {"tags": [], "limit": -1}),
        ({"n": [1, 2]}, {}),  # tags missing
    ],
)
def test_validate_many_says_none_when_some_call_is_bad(
    varying: dict[str, list[Any]], same: dict[str, Any]
) -> None:
    assert many_kinds.validate_many(varying, same, 2 if len(varying["n"]) == 2 else 3) is None


def test_validate_many_of_a_schema_tool_validates_each_call() -> None:
    from taskloom.tools._schema import SchemaTool

    async def echo(**arguments: Any) -> Any:
        return arguments

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    echo_tool: Tool = SchemaTool(echo, name="echo", description="Echoes.", input_schema=schema)
    assert echo_tool.validate_many({"n": [1, 2]}, {}, 2) == [{"n": 1}, {"n": 2}]
    assert echo_tool.validate_many({"n": [1, "x"]}, {}, 2) is None
    assert echo_tool.validate_many({}, {}, 0) == []
