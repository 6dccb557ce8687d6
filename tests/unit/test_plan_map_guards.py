"""Maps (`$2.names[*]`), conditions (`... if $3.ok`) and optional references (`$5?`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest

import taskloom
from taskloom import (
    ConditionError,
    ConditionFalse,
    DependencyFailed,
    EditError,
    MapFailed,
    Plan,
    PlanError,
    PlanParser,
    Ref,
    Store,
    TaskId,
    Template,
    ToolFailed,
    execute,
    open_run,
    tool,
)
from taskloom.engine import events as ev
from taskloom.plan.json import plan_json_schema, tasks_from_json
from taskloom.store._codec import task_from_json, task_to_json

# -- tools --------------------------------------------------------------------


@tool(name="source")
async def source() -> dict[str, Any]:
    """Lists to map over, and fields to test."""
    return {
        "names": ["Paris", "Atlantis", "Lyon"],
        "good": ["Paris", "Lyon"],
        "codes": ["FR-75", "XX", "FR-69"],
        "short": ["a"],
        "none": [],
        "people": [{"name": "Ada"}, {"name": "Alan"}],
        "status": "down",
        "count": 2,
        "word": "text",
    }


@tool(name="city")
async def city(name: str) -> str:
    """Fails for a city that does not exist."""
    if name == "Atlantis":
        raise KeyError(name)
    return name.upper()


@tool(name="pair")
async def pair(a: str, b: str) -> str:
    """Joins two values."""
    return f"{a}/{b}"


@tool(name="count")
async def count(items: list[Any] | None) -> int:
    """How many items (-1 for None)."""
    return -1 if items is None else len(items)


@tool(name="either")
async def either(a: Any = None, b: Any = None) -> list[Any]:
    """Both values, None where a branch did not run."""
    return [a, b]


@tool(name="say")
async def say(text: str) -> str:
    """Returns the text."""
    return text


TOOLS = [source, city, pair, count, either, say]


# -- parsing ------------------------------------------------------------------

PARSED = [
    ("2. city($1.names[*])", "names", (), False),
    ("2. city($1.people[*].name)", "people", ("name",), False),
    ("2. city(${1.names[*]})", "names", (), False),
    ("2. city($1[*])", None, (), False),
    ("2. count($1?)", None, None, True),
    ("2. count($1?.names)", "names", None, True),
]


@pytest.mark.parametrize(("line", "field", "each", "optional"), PARSED)
def test_references_with_star_and_question_mark_parse(
    line: str, field: str | None, each: tuple[str, ...] | None, optional: bool
) -> None:
    plan = Plan.parse("1. source()\n" + line + "\n")
    task = plan["2"]
    (ref,) = [*task.args]
    assert isinstance(ref, Ref)
    assert ref.path == (() if field is None else (field,))
    assert (ref.each, ref.optional) == (each, optional)
    assert task.is_map is (each is not None)
    assert Plan.parse(plan.to_text())["2"] == task  # written back, read again


def test_a_map_reference_inside_a_string_is_one_text_per_item() -> None:
    task = Plan.parse('1. source()\n2. say("hello $1.names[*]!")\n')["2"]
    assert task.is_map
    (template,) = task.args
    assert isinstance(template, Template)
    assert template.parts == ("hello ", Ref(TaskId("1"), ("names",), ()), "!")


def test_a_question_mark_after_a_reference_in_a_string_is_text() -> None:
    task = Plan.parse('1. source()\n2. say("is it $1?")\n')["2"]
    (template,) = task.args
    assert template.parts == ("is it ", Ref(TaskId("1")), "?")


CONDITIONS = [
    ('3. say("x") if $1.status != "ok"', '$1.status != "ok"', {"1"}),
    ('3. say("x") if len($1.names) > 2 and $2?', "len($1.names) > 2 and $2?", {"1", "2"}),
    ('3. say("x") if $1.count == 2  # a comment', "$1.count == 2", {"1"}),
    ("3. say($2) if not $1.word", "not $1.word", {"1", "2"}),
    ("3. say('#') if $1.word == '#'", "$1.word == '#'", {"1"}),
]


@pytest.mark.parametrize(("line", "condition", "dependencies"), CONDITIONS)
def test_conditions_parse_and_their_references_are_dependencies(
    line: str, condition: str, dependencies: set[str]
) -> None:
    plan = Plan.parse(f'1. source()\n2. say("y")\n{line}\n')
    task = plan["3"]
    assert task.guard is not None and task.guard.text == condition
    assert task.dependencies == dependencies
    assert Plan.parse(plan.to_text())["3"] == task


PLAN_ERRORS = [
    ("2. city($1.a[*].b[*])", "[*] only once", 18),
    ("2. city($1?.names[*])", "cannot be optional", 9),
    ('2. say("x") if', "the condition after 'if' is empty", 15),
    ('2. say("x") if   ', "the condition after 'if' is empty", 18),
    ('2. say("x") if $1.count ==', "not a valid expression", 27),
    ('2. say("x") if status == "ok"', "unknown name 'status'", 16),
    ('2. say("x") if $1.names[*]', "a condition cannot map", 16),
    ('2. say("x") if $2.ok', "refers to its own result", 16),
    ('2. say("x") if $9.ok', "does not exist yet", 16),
    ('2. say("x") if $1.word == "abc', "never closed", 27),
    ("2. city($1.names[?])", "an index, a quoted key or *", 18),
]


@pytest.mark.parametrize(("line", "message", "column"), PLAN_ERRORS)
def test_bad_maps_and_conditions_are_plan_errors_with_positions(
    line: str, message: str, column: int
) -> None:
    parser = PlanParser()
    parser.feed("1. source()\n")
    with pytest.raises(PlanError) as caught:
        parser.feed(line + "\n")
    assert message in caught.value.reason
    assert caught.value.position is not None
    assert (caught.value.position.line, caught.value.position.column) == (2, column)
    assert caught.value.task_id == "2"


def test_json_plans_map_take_conditions_and_optional_references() -> None:
    tasks = tasks_from_json(
        {
            "tasks": [
                {"id": 1, "tool": "source", "args": {}},
                {"id": 2, "tool": "city", "args": {"name": "$1.names[*]"}},
                {"id": 3, "tool": "count", "args": {"items": "$2?"}, "condition": "$1.count > 1"},
            ]
        }
    )
    assert tasks[1].is_map
    assert tasks[2].kwargs["items"] == Ref(TaskId("2"), optional=True)
    assert tasks[2].guard is not None and tasks[2].guard.text == "$1.count > 1"
    schema = plan_json_schema(TOOLS)
    variant = schema["properties"]["tasks"]["items"]["anyOf"][0]
    assert variant["properties"]["condition"] == {"type": "string"}


def test_the_store_keeps_maps_conditions_and_optional_references() -> None:
    plan = Plan.parse("1. source()\n2. city($1.people[*].name)\n3. either($2?) if $1.count > 1\n")
    for task in plan:
        again = task_from_json(task_to_json(task))
        assert (again.args, again.kwargs, again.guard, again.is_map) == (
            task.args,
            task.kwargs,
            task.guard,
            task.is_map,
        )


# -- running ------------------------------------------------------------------


async def run(text: str, **options: Any) -> taskloom.RunResult:
    return await execute(Plan.parse(text, tools=TOOLS), tools=TOOLS, **options)


def statuses(result: taskloom.RunResult) -> dict[str, str]:
    return {i: str(t.status) for i, t in result.tasks.items()}


RUNS: list[tuple[str, str, dict[str, str], dict[str, Any]]] = [
    (
        "a map over a list",
        "1. source()\n2. city($1.good[*])\n3. count($2)\n",
        {"1": "done", "2": "done", "3": "done", "2.0": "done", "2.1": "done"},
        {"2": ["PARIS", "LYON"], "2.0": "PARIS", "2.1": "LYON", "3": 2},
    ),
    (
        "a field of each item",
        "1. source()\n2. say($1.people[*].name)\n",
        {"1": "done", "2": "done", "2.0": "done", "2.1": "done"},
        {"2": ["Ada", "Alan"]},
    ),
    (
        "one text per item",
        '1. source()\n2. say("hi $1.good[*]")\n',
        {"1": "done", "2": "done", "2.0": "done", "2.1": "done"},
        {"2": ["hi Paris", "hi Lyon"]},
    ),
    (
        "an empty list",
        "1. source()\n2. city($1.none[*])\n3. count($2)\n",
        {"1": "done", "2": "done", "3": "done"},
        {"2": [], "3": 0},
    ),
    (
        "zip",
        "1. source()\n2. pair($1.names[*], $1.codes[*])\n",
        {"1": "done", "2": "done", "2.0": "done", "2.1": "done", "2.2": "done"},
        {"2": ["Paris/FR-75", "Atlantis/XX", "Lyon/FR-69"]},
    ),
    (
        "the same list twice",
        "1. source()\n2. pair($1.good[*], $1.good[*])\n",
        {"1": "done", "2": "done", "2.0": "done", "2.1": "done"},
        {"2": ["Paris/Paris", "Lyon/Lyon"]},
    ),
    (
        "a map beside a fixed argument",
        '1. source()\n2. pair($1.good[*], "x")\n',
        {"1": "done", "2": "done", "2.0": "done", "2.1": "done"},
        {"2": ["Paris/x", "Lyon/x"]},
    ),
    (
        "unequal zip",
        "1. source()\n2. pair($1.names[*], $1.short[*])\n3. count($2)\n",
        {"1": "done", "2": "failed", "3": "skipped"},
        {},
    ),
    (
        "not a list",
        "1. source()\n2. city($1.word[*])\n",
        {"1": "done", "2": "failed"},
        {},
    ),
    (
        "a failed element",
        "1. source()\n2. city($1.names[*])\n3. count($2)\n4. count($1.names)\n",
        {
            "1": "done",
            "2": "failed",
            "3": "skipped",
            "4": "done",
            "2.0": "done",
            "2.1": "failed",
            "2.2": "done",
        },
        {"2.0": "PARIS", "2.2": "LYON", "4": 3},
    ),
    (
        "a true condition",
        '1. source()\n2. say("page") if $1.status != "ok"\n',
        {"1": "done", "2": "done"},
        {"2": "page"},
    ),
    (
        "a false condition",
        '1. source()\n2. say("page") if $1.status == "ok"\n3. say($2)\n4. count($1.good)\n',
        {"1": "done", "2": "skipped", "3": "skipped", "4": "done"},
        {"4": 2},
    ),
    (
        "either branch",
        '1. source()\n2. say("up") if $1.status == "ok"\n'
        '3. say("down") if $1.status != "ok"\n4. either($2?, $3?)\n',
        {"1": "done", "2": "skipped", "3": "done", "4": "done"},
        {"4": [None, "down"]},
    ),
    (
        "an optional reference down a skipped branch",
        '1. source()\n2. say("up") if $1.count > 5\n3. say($2)\n4. count($3?.items)\n',
        {"1": "done", "2": "skipped", "3": "skipped", "4": "done"},
        {"4": -1},
    ),
    (
        "an optional reference to a failed task",
        '1. source()\n2. city("Atlantis")\n3. either($2?)\n',
        {"1": "done", "2": "failed", "3": "skipped"},
        {},
    ),
    (
        "an optional reference to a task that ran",
        '1. source()\n2. say("up") if $1.count == 2\n3. either($2?)\n',
        {"1": "done", "2": "done", "3": "done"},
        {"3": ["up", None]},
    ),
    (
        "a condition on an optional reference",
        '1. source()\n2. say("up") if $1.count > 5\n3. say("fallback") if $2? is None\n',
        {"1": "done", "2": "skipped", "3": "done"},
        {"3": "fallback"},
    ),
    (
        "a false condition on a map",
        "1. source()\n2. city($1.good[*]) if $1.count > 5\n3. count($2?)\n",
        {"1": "done", "2": "skipped", "3": "done"},
        {"3": -1},
    ),
    (
        "a missing field in a condition",
        '1. source()\n2. say("x") if $1.nothing == 1\n3. say($2?)\n',
        {"1": "done", "2": "failed", "3": "skipped"},
        {},
    ),
    (
        "a condition that raises",
        '1. source()\n2. say("x") if $1.word > 1\n',
        {"1": "done", "2": "failed"},
        {},
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("text", "expected", "outputs"), [pytest.param(*case[1:], id=case[0]) for case in RUNS]
)
async def test_maps_and_conditions_run(
    text: str, expected: dict[str, str], outputs: dict[str, Any]
) -> None:
    result = await run(text)
    assert statuses(result) == expected
    for task_id, output in outputs.items():
        assert result.tasks[TaskId(task_id)].output == output
    seqs = [e.seq for e in result.events]
    assert seqs == list(range(1, len(seqs) + 1))


ERRORS: list[tuple[str, str, type[Exception], str]] = [
    ("1. source()\n2. pair($1.names[*], $1.short[*])\n", "2", MapFailed, "differ in length"),
    ("1. source()\n2. city($1.word[*])\n", "2", MapFailed, "is a str, not a list"),
    ("1. source()\n2. city($1.nothing[*])\n", "2", MapFailed, "has no field 'nothing'"),
    ("1. source()\n2. city($1.names[*])\n", "2", MapFailed, "element 2.1 did not finish"),
    ("1. source()\n2. city($1.names[*])\n", "2.1", ToolFailed, "KeyError"),
    ("1. source()\n2. city($1.names[*])\n3. count($2)\n", "3", DependencyFailed, "task 2"),
    ('1. source()\n2. say("x") if $1.count > 5\n', "2", ConditionFalse, "condition false"),
    ('1. source()\n2. say("x") if $1.nothing\n', "2", ConditionError, "no field 'nothing'"),
    ('1. source()\n2. say("x") if $1.word > 1\n', "2", ConditionError, "TypeError"),
    ('1. source()\n2. say("x") if $1.count / 0\n', "2", ConditionError, "ZeroDivisionError"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("text", "task_id", "kind", "message"), ERRORS)
async def test_failures_and_skips_say_why(
    text: str, task_id: str, kind: type[Exception], message: str
) -> None:
    error = (await run(text)).tasks[TaskId(task_id)].error
    assert isinstance(error, kind)
    assert message in str(error)


@pytest.mark.anyio
async def test_a_skip_down_a_false_branch_names_the_condition_not_a_failure() -> None:
    result = await run('1. source()\n2. say("x") if $1.count > 5\n3. say($2)\n')
    error = result.tasks[TaskId("3")].error
    assert isinstance(error, ConditionFalse) and not isinstance(error, DependencyFailed)
    assert (error.guarded, error.condition) == ("2", "$1.count > 5")


@pytest.mark.anyio
async def test_a_false_condition_never_calls_its_tool() -> None:
    calls: list[str] = []

    @tool(name="say")
    async def recording(text: str) -> str:
        """Records its calls."""
        calls.append(text)
        return text

    plan = Plan.parse('1. source()\n2. say("no") if $1.count > 5\n3. say("yes") if $1.count\n')
    result = await execute(plan, tools=[source, recording])
    assert calls == ["yes"]
    assert not any(isinstance(e, ev.TaskStarted) and e.task_id == "2" for e in result.events)


@pytest.mark.anyio
async def test_elements_are_added_and_ready_in_the_turn_their_list_arrives() -> None:
    result = await run("1. source()\n2. city($1.good[*])\n3. count($2)\n")
    kinds = [(e.kind, getattr(e, "task_id", None)) for e in result.events]
    finished = kinds.index(("task_finished", "1"))
    assert kinds[finished + 1 : finished + 6] == [
        ("task_mapped", "2"),
        ("task_added", "2.0"),
        ("task_ready", "2.0"),
        ("task_added", "2.1"),
        ("task_ready", "2.1"),
    ]
    mapped = result.events[finished + 1]
    assert isinstance(mapped, ev.TaskMapped) and mapped.elements == ("2.0", "2.1")
    # The map finishes (and its dependent is ready) as its last element finishes.
    last = max(kinds.index(("task_finished", i)) for i in ("2.0", "2.1"))
    assert kinds[last + 1 : last + 3] == [("task_finished", "2"), ("task_ready", "3")]
    assert result.tasks[TaskId("2")].dependencies == ("1", "2.0", "2.1")
    assert result.tasks[TaskId("2.0")].dependencies == ("1",)


@pytest.mark.anyio
async def test_each_element_has_its_own_retries() -> None:
    attempts: dict[str, int] = {}

    @tool(name="flaky", idempotent=True, retries=2, backoff=0)
    async def flaky(name: str) -> str:
        """Fails the first time for Lyon."""
        attempts[name] = attempts.get(name, 0) + 1
        if name == "Lyon" and attempts[name] == 1:
            raise RuntimeError("once")
        return name

    plan = Plan.parse("1. source()\n2. flaky($1.good[*])\n")
    result = await execute(plan, tools=[source, flaky], max_concurrency=1)
    assert result.tasks[TaskId("2")].output == ["Paris", "Lyon"]
    assert (result.tasks[TaskId("2.0")].attempts, result.tasks[TaskId("2.1")].attempts) == (1, 2)


@pytest.mark.anyio
async def test_cancelling_a_map_cancels_its_elements_and_a_started_map_is_not_rewritten() -> None:
    release = anyio.Event()

    @tool(name="slow")
    async def slow(name: str) -> str:
        """Waits."""
        await release.wait()
        return name

    async with open_run(tools=[source, slow]) as live:
        live.add_all(Plan.parse("1. source()\n2. slow($1.good[*])\n"))
        live.close()
        await anyio.wait_all_tasks_blocked()
        assert live.status("2.0") == "running"
        with pytest.raises(EditError):
            live.rewrite("2", args=["x"])
        live.cancel("2")
    result = live.result()
    assert statuses(result) == {
        "1": "done",
        "2": "cancelled",
        "2.0": "cancelled",
        "2.1": "cancelled",
    }


# -- resuming -----------------------------------------------------------------


def crash_tools(
    calls: list[tuple[str, Any]], hang: set[int], entered: Callable[[], None]
) -> list[Any]:
    @tool(idempotent=True, name="numbers")
    async def numbers() -> list[int]:
        """1 to 4."""
        calls.append(("numbers", None))
        return [1, 2, 3, 4]

    @tool(idempotent=True, name="fetch")
    async def fetch(x: int) -> int:
        """x * 10."""
        calls.append(("fetch", x))
        if x in hang:
            entered()
            await anyio.sleep_forever()
        return x * 10

    @tool(name="send")
    async def send(x: int) -> int:
        """x + 100, a side effect."""
        calls.append(("send", x))
        if x + 100 in hang:
            entered()
            await anyio.sleep_forever()
        return x + 100

    @tool(name="total")
    async def total(xs: list[int] | None) -> int:
        """Their sum (-1 for None)."""
        calls.append(("total", None))
        return -1 if xs is None else sum(xs)

    return [numbers, fetch, send, total]


RESUME_PLAN = (
    "1. numbers()\n"
    "2. fetch($1[*])\n"  # element 2.2 (3) hangs: idempotent, called again
    "3. send($1[*])\n"  # element 3.1 (2) hangs: a side effect, interrupted
    "4. total($2)\n"  # waits for 2, runs after the resume
    "5. total($3)\n"  # skipped: an element of 3 was interrupted
    "6. total($1) if $1[0] > 5\n"  # condition false, before the crash
    "7. total($6?)\n"  # runs with None
)


@pytest.mark.anyio
async def test_a_map_running_at_a_crash_resumes_without_calling_an_element_twice(
    tmp_path: Path,
) -> None:
    path, crashed = tmp_path / "s.sqlite3", tmp_path / "crashed.sqlite3"
    calls: list[tuple[str, Any]] = []
    entered = 0
    both_inside = anyio.Event()

    def inside() -> None:
        nonlocal entered
        entered += 1
        if entered == 2:
            both_inside.set()

    plan = Plan.parse(RESUME_PLAN)
    settled: set[str] = set()
    quiet = anyio.Event()
    wanted = {"1", "2.0", "2.1", "2.3", "3.0", "3.2", "3.3", "6", "7"}

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.TaskFinished | ev.TaskSkipped | ev.TaskFailed):
            settled.add(event.task_id)
            if settled >= wanted:
                quiet.set()

    with Store.open(path) as store:
        journal = store.journal(request="crash", plan=plan)
        tools = crash_tools(calls, {3, 102}, inside)
        with anyio.fail_after(10):
            async with open_run(tools=tools, journal=journal, on_event=on_event) as live:
                await live.add_plan(plan)
                await both_inside.wait()
                await quiet.wait()
                await journal.flush()
                with (
                    closing(sqlite3.connect(path)) as src,
                    closing(sqlite3.connect(crashed)) as dst,
                ):
                    src.backup(dst)
                live.cancel()
        run_id = journal.run_id

    with Store.open(crashed) as store:
        before = {t.id: t.status for t in store.load(run_id).tasks}
        assert before["2"] == before["3"] == "pending"
        assert (before["2.2"], before["3.1"], before["6"]) == ("running", "running", "skipped")
        again: list[tuple[str, Any]] = []
        result = await taskloom.resume(run_id, store=store, tools=crash_tools(again, set(), inside))
        after = {t.id: t.status for t in store.load(run_id).tasks}

    # Only the idempotent element that was running is called again; then what waited on it.
    assert sorted(again, key=str) == [("fetch", 3), ("total", None)]
    assert statuses(result) == after
    assert after == {
        "1": "done",
        "2": "done",
        "3": "failed",
        "4": "done",
        "5": "skipped",
        "6": "skipped",
        "7": "done",
        "2.0": "done",
        "2.1": "done",
        "2.2": "done",
        "2.3": "done",
        "3.0": "done",
        "3.1": "interrupted",
        "3.2": "done",
        "3.3": "done",
    }
    assert result.tasks[TaskId("2")].output == [10, 20, 30, 40]
    assert result.tasks[TaskId("4")].output == 100
    assert result.tasks[TaskId("7")].output == -1
    error = result.tasks[TaskId("3")].error
    assert isinstance(error, MapFailed) and error.element == "3.1"


# -- the Python builder -------------------------------------------------------


def test_the_builder_writes_maps_conditions_and_optional_references_as_text_does() -> None:
    g = taskloom.Graph()
    src = g.call(source)
    cities = g.call(city, src.good.each())
    g.call(say, src.people.each().name)
    g.call(say, f"hi {src.good.each()}")
    g.call(say, "page", when=f"{src.status} != 'ok'")
    g.call(either, cities.maybe(), src.maybe().status)
    written = (
        "1. source()\n"
        "2. city($1.good[*])\n"
        "3. say($1.people[*].name)\n"
        '4. say("hi ${1.good[*]}")\n'
        "5. say(\"page\") if $1.status != 'ok'\n"
        "6. either($2?, $1?.status)\n"
    )
    assert g.plan().to_text() == written
    assert Plan.parse(written).to_text() == written


@pytest.mark.anyio
async def test_a_built_map_and_condition_run() -> None:
    g = taskloom.Graph()
    src = g.call(source)
    cities = g.call(city, src.good.each())
    skipped = g.call(say, "up", when=f"{src.status} == 'ok'")
    g.call(either, cities, skipped.maybe())
    result = await execute(g.plan(), tools=g.tools)
    assert result.tasks[TaskId("4")].output == [["PARIS", "LYON"], None]


def test_builder_misuse_of_each_and_maybe_is_a_user_error() -> None:
    g = taskloom.Graph()
    src = g.call(source)
    with pytest.raises(taskloom.UserError):
        src.names.each().each()
    with pytest.raises(taskloom.UserError):
        src.names.each().maybe()
    with pytest.raises(taskloom.UserError):
        g.call(say, "x", when=3)  # type: ignore[arg-type]


# -- an agent's plans -----------------------------------------------------------


@pytest.mark.anyio
async def test_an_agent_plan_fans_out_over_a_list_it_has_not_seen_and_replans_after() -> None:
    from taskloom.agent import Agent
    from taskloom.testing import ScriptedModel

    model = ScriptedModel(
        [
            "1. source()\n2. city($1.good[*])\n3. join()",
            "Thought: one more.\nAction: Replan(count them)",
            "4. count($2)\n5. join()",
            "Thought: done.\nAction: Finish($4)",
        ]
    )
    result = await Agent(tools=TOOLS, model=model, grammar=True).run("how many cities?")
    assert result.answer == "2"
    assert [list(r.tasks) for r in result.rounds] == [["1", "2", "2.0", "2.1"], ["4"]]
    grammar = model.options[2].grammar
    # The next plan may map over the earlier results; element ids are no task numbers.
    assert grammar is not None and 'ref-3 ::= "$" ("1" | "2") path each?' in grammar


# -- maps among the run's other machinery ---------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [None, 1, 2])
async def test_a_map_of_maps_runs_under_any_concurrency_limit(limit: int | None) -> None:
    text = "1. source()\n2. say($1.good[*])\n3. pair($2[*], $1.good[*])\n4. count($3)\n"
    result = await run(text, max_concurrency=limit)
    assert result.tasks[TaskId("3")].output == ["Paris/Paris", "Lyon/Lyon"]
    assert result.tasks[TaskId("4")].output == 2
    assert len(result.tasks) == 8


@pytest.mark.anyio
async def test_a_map_added_after_its_list_exists_fans_out_at_once() -> None:
    async with open_run(tools=TOOLS) as live:
        live.add_all(Plan.parse("1. source()\n"))
        while live.status("1") != "done":
            await anyio.wait_all_tasks_blocked()
        live.add(PlanParser(known=[TaskId("1")]).feed("2. city($1.good[*])\n")[0])
        # Added, made ready and dispatched in the very call that added the map.
        assert live.status("2.0") == live.status("2.1") == "running"
        live.close()
    assert live.result().tasks[TaskId("2")].output == ["PARIS", "LYON"]


@pytest.mark.anyio
async def test_a_map_not_fanned_out_yet_may_be_rewritten() -> None:
    release = anyio.Event()

    @tool(name="gate")
    async def gate() -> list[str]:
        """Waits, then gives a list."""
        await release.wait()
        return ["a", "b", "c"]

    async with open_run(tools=[gate, say]) as live:
        live.add_all(Plan.parse("1. gate()\n2. say($1[0])\n", tools=[gate, say]))
        live.rewrite("2", args=[Ref(TaskId("1"), (), ())])
        live.close()
        release.set()
    assert live.result().tasks[TaskId("2")].output == ["a", "b", "c"]


@pytest.mark.anyio
async def test_each_element_counts_against_a_tool_call_budget() -> None:
    result = await run("1. source()\n2. city($1.good[*])\n", budget=taskloom.Budget(tool_calls=2))
    assert result.exhausted == "tool_calls"
    assert statuses(result) == {"1": "done", "2": "cancelled", "2.0": "done", "2.1": "cancelled"}


# -- the examples ----------------------------------------------------------------

EXAMPLES = Path(__file__).parents[2] / "examples"


def services_tools() -> list[taskloom.Tool]:
    """examples/services.py's tools, with the db down again (a restart sticks)."""
    from taskloom.tools._load import import_tools

    tools = import_tools(str(EXAMPLES / "services.py"))
    tools["check"].fn.__globals__["_STATUS"]["db"] = "down"
    return list(tools.values())


@pytest.mark.anyio
async def test_the_example_plans_run() -> None:
    tools = services_tools()
    checked = await execute(Plan.parse((EXAMPLES / "check_all.plan").read_text()), tools=tools)
    assert checked.tasks[TaskId("3")].output == {"ok": 3, "down": ["db"]}
    assert checked.tasks[TaskId("4")].output == 'paged oncall: down: ["db"]'
    fixed = await execute(Plan.parse((EXAMPLES / "troubleshoot.plan").read_text()), tools=tools)
    assert statuses(fixed) == {"1": "done", "2": "done", "3": "done", "4": "skipped", "5": "done"}
    assert fixed.tasks[TaskId("5")].output == "was down, now ok"
    again = await execute(Plan.parse((EXAMPLES / "troubleshoot.plan").read_text()), tools=tools)
    assert statuses(again) == {
        "1": "done",
        "2": "skipped",
        "3": "skipped",
        "4": "skipped",
        "5": "done",
    }
    assert again.tasks[TaskId("5")].output == "was ok"
    # One sub-plan, used twice (examples/fix_service.plan as the tool fix_service).
    from taskloom.plan import load_subplan

    tools[0].fn.__globals__["_STATUS"]["db"] = "down"
    fix = load_subplan(EXAMPLES / "fix_service.plan", {t.name: t for t in tools})
    twice = await execute(Plan.parse((EXAMPLES / "fix_two.plan").read_text()), tools=[*tools, fix])
    assert twice.tasks[TaskId("1/2")].output == "restarted db"
    assert twice.tasks[TaskId("3")].output == "paged ops: db was down, now ok; queue was ok"


@pytest.mark.parametrize(
    ("plan", "status"), [("troubleshoot.plan", 0), ("check_all.plan", 0), ("fix_two.plan", 0)]
)
def test_exec_exits_0_when_only_a_false_condition_skipped_tasks(plan: str, status: int) -> None:
    from typer.testing import CliRunner

    from taskloom.cli import app

    services_tools()  # the db down again
    args = ["exec", str(EXAMPLES / plan), "--tools", str(EXAMPLES / "services.py")]
    if plan == "fix_two.plan":  # it calls the sub-plan fix_service
        args += ["--tools", str(EXAMPLES / "fix_service.plan")]
    result = CliRunner().invoke(app, [*args, "--no-world", "--no-store", "--json"])
    assert result.exit_code == status, result.output
    if plan == "troubleshoot.plan":
        assert json.loads(result.output)["tasks"]["4"]["error_type"] == "ConditionFalse"
