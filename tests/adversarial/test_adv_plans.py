"""Bad plans, tool modules, batch files and stores through `taskloom exec` and `batch`.

Each row asserts the exit code, one short clear paragraph on stderr (never a
traceback) and a store left intact.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the `cli` fixture's class; conftest modules are not imported by name
    from conftest import Cli

HUGE_WORD = "x" * 5_000_000

BAD_PLANS: list[tuple[str, str | bytes, list[str]]] = [
    # (case, plan file content, words the message must contain)
    ("huge task number", "9" * 5000 + '. country("France")\n', ["at most 9 digits", "line 1"]),
    ("huge reference", '1. country("France")\n2. math($' + "9" * 5000 + ")\n", ["9 digits"]),
    ("huge index", '1. country("France")\n2. math($1.a[' + "9" * 5000 + "])\n", ["9 digits"]),
    ("negative task number", '-1. country("France")\n', ["'-1' is not a task number"]),
    ("task number zero", '0. country("France")\n', ["whole numbers from 1"]),
    ("nested 10,000 deep", "1. math(" + "[" * 10_000 + "\n", ["nested more than 64 deep"]),
    ("non-UTF-8 bytes", b'1. country("Fr\xff")\n', ["not valid UTF-8", "line 1"]),
    ("truncated UTF-8 at the end", b'1. country("Fr\xc3', ["not valid UTF-8"]),
    ("5 MB unquoted word", "1. country(" + HUGE_WORD + ")\n", ["unquoted text", "characters"]),
    ("5 MB tool name", "1. " + HUGE_WORD + '("a")\n', ["unknown tool", "characters"]),
    ("5 MB bad argument", '1. convert("' + HUGE_WORD + '", "km", "m")\n', ["bad argument"]),
    ("empty file", "", ["no tasks"]),
    ("only prose", "Here is my plan.\n\n", ["no tasks"]),
    ("only join", "1. join()\n", ["no tasks"]),
    # siblings found by the second sweep
    ("fullwidth task number", '１. country("France")\n', ["'１'", "digits 0-9", "line 1"]),
    ("arabic-indic task number", '١. country("France")\n', ["digits 0-9"]),
    ("half a surrogate pair", '1. country("\\ud800")\n', ["half of a surrogate pair", "line 1"]),
    ("a low surrogate", '1. country("\\udc00x")\n', ["half of a surrogate pair"]),
    ("a number that reads as 0.0", '1. convert(1e-400, "km", "m")\n', ["'1e-400' is too small"]),
]


@pytest.mark.parametrize(
    ("content", "mentions"),
    [case[1:] for case in BAD_PLANS],
    ids=[case[0] for case in BAD_PLANS],
)
def test_a_bad_plan_file_is_a_clear_error(
    cli: Cli, content: str | bytes, mentions: list[str]
) -> None:
    plan = cli.write("bad.plan", content)
    outcome = cli("exec", plan)
    cli.assert_clear_error(outcome, 2, mentions=mentions)
    cli.assert_store_intact()
    assert cli.statuses() == {}  # nothing was started


TOOL_MODULES: list[tuple[str, str, list[str]]] = [
    (
        "a built-in name",
        "@taskloom.tool\ndef math(expression: str) -> float:\n    return 0.0\n",
        ["'math'", "built-in tool"],
    ),
    (
        "two tools with one name",
        "@taskloom.tool(name='shout')\ndef a(text: str) -> str:\n    return text\n\n"
        "@taskloom.tool(name='shout')\ndef b(text: str) -> str:\n    return text\n",
        ["two different tools are named 'shout'"],
    ),
    (
        "the name join",
        "@taskloom.tool\ndef join(text: str) -> str:\n    return text\n",
        ["'join'", "ends the plan"],
    ),
    (
        "a Callable hint",
        "from collections.abc import Callable\n\n"
        "@taskloom.tool\ndef apply(fn: Callable[[int], int]) -> int:\n    return fn(1)\n",
        ["parameter 'fn' of tool apply"],
    ),
    (
        "a plain class hint",
        "class Box:\n    pass\n\n@taskloom.tool\ndef open_box(box: Box) -> int:\n    return 1\n",
        ["parameter 'box' of tool open_box", "Box"],
    ),
]


@pytest.mark.parametrize(
    ("source", "mentions"),
    [case[1:] for case in TOOL_MODULES],
    ids=[case[0] for case in TOOL_MODULES],
)
def test_a_bad_tool_module_is_a_clear_error(cli: Cli, source: str, mentions: list[str]) -> None:
    tools = cli.write("mytools.py", "import taskloom\n\n" + source)
    plan = cli.write("p.plan", '1. country("France")\n')
    outcome = cli("exec", plan, "--tools", tools)
    cli.assert_clear_error(outcome, 2, mentions=mentions)
    cli.assert_store_intact()
    assert cli.statuses() == {}


def test_markup_in_arguments_and_errors_is_printed_as_it_is(cli: Cli) -> None:
    cli.env["COLUMNS"] = "400"  # wide enough that the table shows whole errors
    plan = cli.write("p.plan", '1. country("[/]")\n2. country("[red]alarm[/red]")\n')
    outcome = cli("exec", plan)
    assert outcome.code == 1, outcome.stderr[-2000:]  # the tasks fail: no such countries
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert "[/]" in outcome.stdout and "[red]alarm[/red]" in outcome.stdout
    run_id = _run_id(outcome.stdout + outcome.stderr)
    shown = cli("show", run_id)
    assert shown.code == 0, shown.stderr[-2000:]
    assert "[/]" in shown.stdout and "[red]alarm[/red]" in shown.stdout
    listed = cli("runs")
    assert listed.code == 0, listed.stderr[-2000:]
    cli.assert_store_intact()


def test_markup_in_a_tool_output_is_printed_as_it_is(cli: Cli) -> None:
    tools = cli.write(
        "mytools.py",
        "import taskloom\n\n@taskloom.tool\ndef styled(text: str) -> str:\n"
        "    return '[bold red]' + text + '[/]'\n",
    )
    cli.env["COLUMNS"] = "400"
    plan = cli.write("p.plan", '1. styled("hi")\n')
    outcome = cli("exec", plan, "--tools", tools)
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert "[bold red]hi[/]" in outcome.stdout
    shown = cli("show", _run_id(outcome.stdout + outcome.stderr))
    assert shown.code == 0 and "[bold red]hi[/]" in shown.stdout
    cli.assert_store_intact()


def test_a_quoted_lone_reference_to_a_number_is_text_for_math(cli: Cli) -> None:
    plan = cli.write("p.plan", '1. country("France")\n2. math("$1.population")\n')
    outcome = cli("exec", plan, "--json")
    assert outcome.code == 0, outcome.stderr[-2000:]
    tasks = json.loads(outcome.stdout)["tasks"]
    assert tasks["2"]["output"] == tasks["1"]["output"]["population"]
    cli.assert_store_intact()


def test_converting_between_huge_powers_of_units_fails_that_task_clearly(cli: Cli) -> None:
    plan = cli.write("p.plan", '1. convert(1, "km**999999999", "m**999999999")\n')
    outcome = cli("exec", plan, "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr
    error = json.loads(outcome.stdout)["tasks"]["1"]["error"]
    assert "UnitError" in str(error) and "too large" in str(error)
    cli.assert_store_intact()


@pytest.mark.parametrize("where", ["/dev/null", "folder"])
def test_a_store_that_is_not_a_regular_file_is_named_so(cli: Cli, where: str) -> None:
    path = where if where.startswith("/") else str(cli.root)
    plan = cli.write("p.plan", '1. country("France")\n')
    outcome = cli("exec", plan, "--store", path)
    cli.assert_clear_error(outcome, 2, mentions=[path])
    message = outcome.stderr
    assert "not a regular file" in message or "is a folder" in message, message
    assert "disk is full" not in message


BAD_BATCHES: list[tuple[str, str | bytes, list[str]]] = [
    ("non-UTF-8 bytes", b'"fine"\n"caf\xe9"\n', ["line 2", "not valid UTF-8"]),
    ("duplicate ids", '{"id": "a", "question": "x"}\n{"id": "a", "question": "y"}\n', ["'a'"]),
    ("auto id collides", '"x"\n{"id": "1", "question": "y"}\n', ["line 2", "already used"]),
    ("object id", '{"id": {"k": 1}, "question": "x"}\n', ["line 1", "the id must be"]),
    ("huge integer", '{"id": ' + "9" * 5000 + ', "question": "x"}\n', ["line 1"]),
]


@pytest.mark.parametrize(
    ("content", "mentions"),
    [case[1:] for case in BAD_BATCHES],
    ids=[case[0] for case in BAD_BATCHES],
)
def test_a_bad_batch_file_is_a_clear_error(
    cli: Cli, content: str | bytes, mentions: list[str]
) -> None:
    requests = cli.write("q.jsonl", content)
    outcome = cli("batch", requests)
    cli.assert_clear_error(outcome, 2, mentions=mentions)
    cli.assert_store_intact()
    assert cli.statuses() == {}


def _run_id(output: str) -> str:
    match = re.search(r"run ([0-9a-f]{12})", output)
    assert match, output[-2000:]
    return match.group(1)
