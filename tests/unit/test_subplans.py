"""Sub-plans: a plan with inputs (`$name`) called as one tool of a larger plan."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest

import taskloom
from taskloom import (
    BadArguments,
    ConditionFalse,
    DependencyFailed,
    Graph,
    MapFailed,
    Plan,
    PlanError,
    Store,
    SubplanFailed,
    SubplanTool,
    TaskId,
    UserError,
    execute,
    open_run,
    tool,
)
from taskloom.engine import events as ev
from taskloom.plan import load_subplan
from taskloom.store._codec import task_from_json, task_to_json

EXAMPLES = Path(__file__).parents[2] / "examples"


@tool(name="lookup")
async def lookup(name: str) -> dict[str, Any]:
    """A city's record; there is no Atlantis."""
    if name == "Atlantis":
        raise LookupError(f"no city {name}")
    return {"name": name, "capital": name.upper()}


@tool(name="names")
async def names() -> list[str]:
    """Cities to look up."""
    return ["Paris", "Lyon"]


@tool(name="bad_names")
async def bad_names() -> list[str]:
    """Cities, one of them missing."""
    return ["Paris", "Atlantis", "Lyon"]


@tool(name="shout")
async def shout(text: str) -> str:
    """The text in capitals, with a bang."""
    return text.upper() + "!"


REPORT = Plan.parse('1. lookup($name)\n2. shout("${name}: $1.capital")\n').as_tool(
    "report", inputs={"name": str}, tools=[lookup, shout]
)
MAYBE = Plan.parse('1. lookup($name)\n2. shout($1.capital) if $1.capital != "PARIS"\n').as_tool(
    "maybe", tools=[lookup, shout]
)
OUTER = Plan.parse("1. report($city)\n2. shout($1)\n").as_tool("outer", tools=[REPORT, shout])
ALL = [REPORT, MAYBE, OUTER, names, bad_names]


def statuses(result: taskloom.RunResult) -> dict[str, str]:
    return {i: str(t.status) for i, t in result.tasks.items()}


CASES: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
    # name, plan, outputs of some tasks, statuses of some tasks
    (
        "one call",
        '1. report("Paris")\n',
        {
            "1": "PARIS: PARIS!",
            "1/in": {"name": "Paris"},
            "1/1": {"name": "Paris", "capital": "PARIS"},
        },
        {"1": "done", "1/1": "done", "1/2": "done"},
    ),
    (
        "a call on another's output",
        '1. report("Lyon")\n2. report($1)\n',
        {"2": "LYON: LYON!: LYON: LYON!!"},
        {"2/1": "done", "2/2": "done"},
    ),
    (
        "a map over a sub-plan",
        "1. names()\n2. report($1[*])\n",
        {"2": ["PARIS: PARIS!", "LYON: LYON!"], "2.1/in": {"name": "Lyon"}},
        {"2.0/1": "done", "2.1/2": "done"},
    ),
    (
        "a failed task fails the call, naming it",
        '1. report("Atlantis")\n2. shout($1)\n',
        {},
        {"1": "failed", "1/1": "failed", "1/2": "skipped", "2": "skipped"},
    ),
    (
        "a failed call fails its map's element",
        "1. bad_names()\n2. report($1[*])\n",
        {"2.0": "PARIS: PARIS!", "2.2": "LYON: LYON!"},
        {"2": "failed", "2.1": "failed", "2.1/1": "failed"},
    ),
    (
        "a false condition on the call adds none of its tasks",
        '1. names()\n2. report("Paris") if len($1) > 5\n',
        {"2": None},
        {"2": "skipped", "2/1": None},
    ),
    (
        "a false condition inside: the output task skipped gives None",
        '1. maybe("Paris")\n2. maybe("Lyon")\n',
        {"1": None, "2": "LYON!"},
        {"1": "done", "1/2": "skipped", "2/2": "done"},
    ),
    (
        "calls nest",
        '1. outer("Lyon")\n',
        {"1": "LYON: LYON!!", "1/1/1": {"name": "Lyon", "capital": "LYON"}},
        {"1/1": "done", "1/1/2": "done", "1/2": "done"},
    ),
    (
        "arguments that do not fit the inputs fail the call",
        "1. names()\n2. report($1)\n",
        {},
        {"2": "failed", "2/1": None},
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("text", "outputs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_sub_plan_calls(text: str, outputs: dict[str, Any], expected: dict[str, str]) -> None:
    with anyio.fail_after(10):
        result = await execute(Plan.parse(text), tools=ALL)
    for task_id, output in outputs.items():
        assert result.tasks[TaskId(task_id)].output == output, task_id
    got = statuses(result)
    assert {i: got.get(i) for i in expected} == expected


@pytest.mark.anyio
async def test_a_failed_call_says_which_task_failed_and_why() -> None:
    result = await execute(Plan.parse('1. report("Atlantis")\n2. shout($1)\n'), tools=ALL)
    error = result.tasks[TaskId("1")].error
    assert isinstance(error, SubplanFailed)
    assert error.inner == "1/1" and error.tool == "report"
    assert "task 1/1 did not finish: lookup raised LookupError: no city Atlantis" in str(error)
    assert isinstance(result.tasks[TaskId("2")].error, DependencyFailed)
    mapped = await execute(Plan.parse("1. bad_names()\n2. report($1[*])\n"), tools=ALL)
    assert isinstance(mapped.tasks[TaskId("2")].error, MapFailed)
    assert isinstance(mapped.tasks[TaskId("2.1")].error, SubplanFailed)
    bad = await execute(Plan.parse("1. names()\n2. report($1)\n"), tools=ALL)
    assert isinstance(bad.tasks[TaskId("2")].error, BadArguments)
    skipped = await execute(Plan.parse('1. names()\n2. report("P") if len($1) > 5\n'), tools=ALL)
    assert isinstance(skipped.tasks[TaskId("2")].error, ConditionFalse)
    assert "2/1" not in skipped.tasks


@pytest.mark.anyio
async def test_a_sub_plan_that_calls_itself_fails_instead_of_growing() -> None:
    loop = Plan.parse("1. again($x)\n").as_tool("again")
    result = await execute(Plan.parse("1. again(1)\n"), tools=[loop])
    error = result.tasks[TaskId("1/1")].error
    assert isinstance(error, SubplanFailed) and "it calls itself (through task 1)" in str(error)
    assert isinstance(result.tasks[TaskId("1")].error, SubplanFailed)


@pytest.mark.anyio
async def test_a_tool_the_run_lacks_fails_the_call_naming_it() -> None:
    bare = Plan.parse("1. lookup($name)\n").as_tool("bare")
    result = await execute(Plan.parse('1. bare("Paris")\n'), tools=[bare])
    assert "the run has no tool lookup" in str(result.tasks[TaskId("1")].error)


@pytest.mark.anyio
async def test_each_task_of_a_call_is_a_task_of_the_run_with_its_own_events() -> None:
    seen: list[tuple[str, str]] = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.TaskEvent) and event.task_id.startswith("1"):
            seen.append((event.kind, event.task_id))

    await execute(Plan.parse('1. report("Paris")\n'), tools=ALL, on_event=on_event)
    assert seen[:4] == [
        ("task_added", "1"),
        ("task_added", "1/in"),
        ("task_finished", "1/in"),
        ("task_added", "1/1"),
    ]
    for inner in ("1/1", "1/2"):
        assert ("task_started", inner) in seen and ("task_finished", inner) in seen
    assert seen[-1] == ("task_finished", "1")  # the call ends after its last task


@pytest.mark.anyio
async def test_cancelling_a_call_cancels_its_running_tasks() -> None:
    entered = anyio.Event()

    @tool(name="hang")
    async def hang(x: int) -> int:
        entered.set()
        await anyio.sleep_forever()
        return x

    waits = Plan.parse("1. hang($x)\n2. hang($1)\n").as_tool("waits", tools=[hang])
    with anyio.fail_after(10):
        async with open_run(tools=[waits]) as run:
            run.add(Plan.parse("1. waits(1)\n")["1"])
            await entered.wait()
            run.cancel("1")
    result = run.result()
    assert statuses(result) == {
        "1": "cancelled",
        "1/in": "done",
        "1/1": "cancelled",
        "1/2": "cancelled",
    }


@pytest.mark.anyio
async def test_called_alone_a_sub_plan_runs_in_a_run_of_its_own() -> None:
    assert await REPORT.call({"name": "Lyon"}) == "LYON: LYON!"
    with pytest.raises(SubplanFailed, match="lookup raised LookupError"):
        await REPORT.call({"name": "Atlantis"})


@pytest.mark.anyio
async def test_the_builder_calls_a_sub_plan_like_any_tool() -> None:
    g = Graph()
    first = g.call(REPORT, "Paris")
    g.call(REPORT, name=first)
    assert g.plan().to_text() == '1. report("Paris")\n2. report(name=$1)\n'
    result = await execute(g.plan(), tools=g.tools)
    assert result.tasks[TaskId("2")].output == "PARIS: PARIS!: PARIS: PARIS!!"


def test_a_sub_plan_is_a_tool_in_the_catalogue() -> None:
    from taskloom.agent.prompts import planner_messages

    assert REPORT.signature() == "report(name: string)"
    assert MAYBE.signature() == "maybe(name: any)"
    text = "\n".join(m.content for m in planner_messages("Report on Paris", [REPORT, shout]))
    assert "- report(name: string): A sub-plan of 2 task(s) calling lookup, shout." in text


def test_the_planner_grammar_offers_a_sub_plan_like_any_tool() -> None:
    from taskloom.agent._grammar import plan_grammar

    grammar = plan_grammar([REPORT, shout], max_tasks=2)
    assert "call-1 ::= tool-report-1 | tool-shout-1\n" in grammar
    assert 'tool-report-1 ::= "report("' in grammar


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, "has no tasks"),
        ("1. lookup($name)\n", {"inputs": ["city"]}, "use the input(s) $name"),
        ("1. lookup($name)\n", {"output": "7"}, "output '7' is no task"),
        (
            "1. lookup($name)\n",
            {"inputs": {"name": Callable[[int], int]}},
            "which JSON arguments cannot give",
        ),
        ("1. lookup($name)\n", {"inputs": {"1x": str}}, "Python-like name"),
    ],
)
def test_bad_sub_plans_are_refused_when_made(
    text: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        Plan.parse(text).as_tool("bad", **kwargs)


@pytest.mark.anyio
async def test_a_plan_with_inputs_does_not_run_alone() -> None:
    with pytest.raises(PlanError, match=r"the plan has inputs \(\$name\)"):
        await execute(Plan.parse("1. lookup($name)\n"), tools=[lookup])
    with pytest.raises(PlanError, match="names an input, and this plan has no input"):
        async with open_run(tools=[lookup]) as run:
            run.add(Plan.parse("1. lookup($name)\n")["1"])


def test_inputs_are_written_as_names_and_braced_inside_strings() -> None:
    plan = Plan.parse('1. lookup($city.name)\n2. shout("$USD ${city} ${city.name} $1")\n')
    assert plan.inputs == ("city",)
    assert plan.to_text() == '1. lookup($city.name)\n2. shout("\\$USD ${city} ${city.name} ${1}")\n'
    assert Plan.parse(plan.to_text()).tasks == plan.tasks


def test_a_moved_condition_survives_the_store() -> None:
    (task,) = [t for t in MAYBE.scoped_tasks("4.1") if t.guard is not None]
    assert task.id == "4.1/2" and task.guard is not None
    assert task.guard.text == '$1.capital != "PARIS"'  # as written in the sub-plan
    assert [str(r) for r in task.guard.refs] == ["$4.1/1.capital"]
    again = task_from_json(json.loads(json.dumps(task_to_json(task))))
    assert (again.id, again.args, again.guard) == (task.id, task.args, task.guard)
    assert again.guard is not None and again.guard.refs == task.guard.refs


def test_a_plan_file_declares_its_name_inputs_and_output(tmp_path: Path) -> None:
    tools = {t.name: t for t in (lookup, shout)}
    path = tmp_path / "r.plan"
    path.write_text(
        "# name: city_report\n# description: One city, shouted.\n"
        "# inputs: city: str, loud: bool\n# output: 1\n"
        "1. lookup($city)\n2. shout($1.name) if $loud\n"
    )
    made = load_subplan(path, tools)
    assert isinstance(made, SubplanTool)
    assert (made.name, made.inputs, made.output) == ("city_report", ("city", "loud"), "1")
    assert made.signature() == "city_report(city: string, loud: boolean)"
    assert made.description == "One city, shouted."
    path.write_text("1. lookup($city)\n")
    with pytest.raises(UserError, match="starts with a '# name: TOOL_NAME' line"):
        load_subplan(path, tools)
    path.write_text("# name: x\n1. nothing($city)\n")
    with pytest.raises(UserError, match="calls nothing, which no tool loaded before it"):
        load_subplan(path, tools)
    path.write_text("# name: x\n# inputs: city: town\n1. lookup($city)\n")
    with pytest.raises(UserError, match="has the type 'town'"):
        load_subplan(path, tools)


# -- the example: one sub-plan used twice ------------------------------------------


def test_the_sub_plan_example_runs_from_the_command_line() -> None:
    from typer.testing import CliRunner

    from taskloom.cli import app
    from taskloom.tools._load import import_tools

    services = import_tools(str(EXAMPLES / "services.py"))
    services["check"].fn.__globals__["_STATUS"]["db"] = "down"
    args = ["exec", str(EXAMPLES / "fix_two.plan"), "--tools", str(EXAMPLES / "services.py")]
    args += ["--tools", str(EXAMPLES / "fix_service.plan"), "--no-world", "--no-store", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.output)["tasks"]
    assert tasks["1"]["output"] == "was down, now ok"
    assert tasks["2"]["output"] == "was ok"
    assert tasks["2/2"]["error_type"] == "ConditionFalse"
    assert tasks["3"]["output"] == "paged ops: db was down, now ok; queue was ok"


# -- a crash in the middle of a call -------------------------------------------------

CRASH_PLAN = "1. twice(1)\n2. twice(2)\n3. record($1)\n"


@pytest.mark.anyio
async def test_a_call_running_at_a_crash_resumes_without_a_side_effect_twice(
    tmp_path: Path,
) -> None:
    path, crashed = tmp_path / "s.sqlite3", tmp_path / "crashed.sqlite3"

    def crash_tools(calls: list[tuple[str, int]], hang: bool) -> list[taskloom.Tool]:
        async def called(name: str, x: int, hangs: bool) -> None:
            calls.append((name, x))
            if hang and hangs:
                await anyio.sleep_forever()

        @tool(name="send")
        async def send(x: int) -> int:
            """A side effect: never twice."""
            await called("send", x, x == 20)
            return x

        @tool(name="fetch", idempotent=True)
        async def fetch(x: int) -> int:
            await called("fetch", x, x == 1)
            return x * 10

        @tool(name="record")
        async def record(x: int) -> int:
            await called("record", x, False)
            return x

        twice = Plan.parse("1. send($x)\n2. fetch($1)\n3. send($2)\n").as_tool(
            "twice", tools=[send, fetch]
        )
        return [twice, record]

    calls: list[tuple[str, int]] = []
    with Store.open(path) as store:
        plan = Plan.parse(CRASH_PLAN)
        journal = store.journal(request="crash", plan=plan)
        # Call 1 hangs in its idempotent fetch; call 2 in its second send.
        tools = crash_tools(calls, hang=True)
        started: set[str] = set()
        quiet = anyio.Event()

        def on_event(event: ev.Event) -> None:
            if isinstance(event, ev.TaskStarted):
                started.add(event.task_id)
                if {"1/2", "2/3"} <= started:
                    quiet.set()

        with anyio.fail_after(10):
            async with open_run(tools=tools, journal=journal, on_event=on_event) as live:
                await live.add_plan(plan)
                await quiet.wait()
                await anyio.wait_all_tasks_blocked()
                await journal.flush()
                with (
                    closing(sqlite3.connect(path)) as src,
                    closing(sqlite3.connect(crashed)) as dst,
                ):
                    src.backup(dst)
                live.cancel()
        run_id = journal.run_id
    assert sorted(calls) == [("fetch", 1), ("fetch", 2), ("send", 1), ("send", 2), ("send", 20)]

    with Store.open(crashed) as store:
        before = {t.id: t.status for t in store.load(run_id).tasks}
        assert (before["1"], before["1/2"], before["2/3"]) == ("pending", "running", "running")
        again: list[tuple[str, int]] = []
        result = await taskloom.resume(run_id, store=store, tools=crash_tools(again, hang=False))
    # The idempotent fetch runs again and what waited on it; no send is repeated.
    assert sorted(again, key=str) == [("fetch", 1), ("record", 10), ("send", 10)]
    assert statuses(result) == {
        "1": "done",
        "1/in": "done",
        "1/1": "done",
        "1/2": "done",
        "1/3": "done",
        "2": "failed",
        "2/in": "done",
        "2/1": "done",
        "2/2": "done",
        "2/3": "interrupted",
        "3": "done",
    }
    assert result.tasks[TaskId("3")].output == 10
    error = result.tasks[TaskId("2")].error
    assert isinstance(error, SubplanFailed) and error.inner == "2/3"
