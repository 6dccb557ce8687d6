"""A second sweep of bad input through the real command line: siblings of the first.

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


def test_a_plan_file_that_starts_with_a_byte_order_mark_runs_every_task(cli: Cli) -> None:
    plan = cli.write("bom.plan", b'\xef\xbb\xbf1. math("1 + 1")\n2. math("2 + 2")\n')
    outcome = cli("exec", plan, "--json")
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert sorted(json.loads(outcome.stdout)["tasks"]) == ["1", "2"]
    cli.assert_store_intact()


BAD_POLICIES: list[tuple[str, str, list[str]]] = [
    ("timeout NaN", "timeout=float('nan')", ["tool shout", "timeout must be a number"]),
    ("timeout text", "timeout='3'", ["tool shout", "timeout must be a number", "'3'"]),
    ("fractional retries", "retries=2.5, idempotent=True", ["tool shout", "retries", "2.5"]),
    ("retries True", "retries=True", ["tool shout", "retries must be a whole number"]),
    ("negative timeout", "timeout=-1", ["tool shout", "timeout must be > 0"]),
    ("a name that is no str", "name=3", ["name must be a str"]),
]


@pytest.mark.parametrize(
    ("options", "mentions"),
    [case[1:] for case in BAD_POLICIES],
    ids=[case[0] for case in BAD_POLICIES],
)
def test_a_tool_with_a_bad_call_policy_is_a_clear_error(
    cli: Cli, options: str, mentions: list[str]
) -> None:
    tools = cli.write(
        "mytools.py",
        f"import taskloom\n\n@taskloom.tool({options})\n"
        "def shout(text: str) -> str:\n    return text.upper()\n",
    )
    plan = cli.write("p.plan", '1. shout("hi")\n')
    outcome = cli("exec", plan, "--tools", tools)
    cli.assert_clear_error(outcome, 2, mentions=mentions)
    cli.assert_store_intact()
    assert cli.statuses() == {}


def test_control_characters_in_outputs_and_calls_reach_the_terminal_as_escapes(cli: Cli) -> None:
    tools = cli.write(
        "mytools.py",
        "import taskloom\n\n@taskloom.tool\ndef paint(text: str) -> str:\n"
        "    return '\\x1b[31m' + text + '\\x1b]0;pwned\\x07'\n",
    )
    cli.env["COLUMNS"] = "400"
    plan = cli.write("p.plan", '1. paint("hi")\n2. country("\\u001b[2J")\n')
    outcome = cli("exec", plan, "--tools", tools)
    assert outcome.code == 1, outcome.stderr[-2000:]  # task 2 fails: no such country
    assert "\x1b" not in outcome.stdout
    assert "\\x1b[31mhi\\x1b]0;pwned\\x07" in outcome.stdout
    shown = cli("show", _run_id(outcome.stdout))
    assert shown.code == 0, shown.stderr[-2000:]
    assert "\x1b" not in shown.stdout and 'country("\\x1b[2J")' in shown.stdout
    cli.assert_store_intact()


def test_a_nul_byte_in_a_plan_line_is_shown_as_an_escape(cli: Cli) -> None:
    plan = cli.write("p.plan", b'1. country("France")\x00\n')
    outcome = cli("exec", plan)
    cli.assert_clear_error(outcome, 2, mentions=["after the call", "\\x00"])
    assert "\x00" not in outcome.stderr


def _run_id(output: str) -> str:
    match = re.search(r"run ([0-9a-f]{12})", output)
    assert match, output[-2000:]
    return match.group(1)


@pytest.mark.parametrize("command", ["show", "resume"])
@pytest.mark.parametrize(
    ("run_id", "mentions"),
    [("", ["give a run id"]), (" ", ["give a run id"]), ("f" * 100_000, ["no run", "100,000"])],
    ids=["empty", "blank", "100,000 characters"],
)
def test_an_empty_or_huge_run_id_is_a_clear_error(
    cli: Cli, command: str, run_id: str, mentions: list[str]
) -> None:
    plan = cli.write("p.plan", '1. math("1 + 1")\n')
    assert cli("exec", plan).code == 0  # one run, which an empty prefix would have picked
    outcome = cli(command, run_id)
    cli.assert_clear_error(outcome, 2, mentions=mentions)
    cli.assert_store_intact()


def test_runs_with_a_limit_past_sqlite_integers_lists_every_run(cli: Cli) -> None:
    plan = cli.write("p.plan", '1. math("1 + 1")\n')
    assert cli("exec", plan).code == 0
    outcome = cli("runs", "--limit", "9" * 30, "--json")
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert len(json.loads(outcome.stdout)) == 1


BAD_BATCHES: list[tuple[str, str | bytes, list[str]]] = [
    ("empty file", "", ["no requests"]),
    ("only blank lines", "\n   \n\n", ["no requests"]),
    ("half a surrogate pair", '"caf\\ud800"\n', ["line 1", "half of a surrogate pair"]),
    ("surrogate id", '{"id": "\\udc00", "question": "x"}\n', ["line 1", "the id holds half"]),
    ("byte order mark, then a list", b"\xef\xbb\xbf[1]\n", ["line 1", '{"question": "..."}']),
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


@pytest.mark.parametrize("code", ["sys.exit(3)", "raise SystemExit('bye')"])
def test_a_tool_module_that_exits_while_imported_is_a_clear_error(cli: Cli, code: str) -> None:
    tools = cli.write("quits.py", f"import sys\n{code}\n")
    plan = cli.write("p.plan", '1. math("1 + 1")\n')
    outcome = cli("exec", plan, "--tools", tools)
    cli.assert_clear_error(outcome, 2, mentions=["quits.py", "sys.exit", "while imported"])
    cli.assert_store_intact()
    assert cli.statuses() == {}


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        (["--price", "m=nan,1"], ["--price 'm=nan,1'", "finite numbers >= 0"]),
        (["--price", "m=-1,2"], ["--price 'm=-1,2'", "finite numbers >= 0"]),
        (["--tool-latency", "inf"], ["latency must be a finite number"]),
    ],
    ids=["price NaN", "negative price", "infinite tool latency"],
)
def test_an_option_value_that_makes_no_sense_is_a_clear_error(
    cli: Cli, options: list[str], mentions: list[str]
) -> None:
    # The server is never reached: the options are refused first.
    outcome = cli("run", "q", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", *options)
    cli.assert_clear_error(outcome, 2, mentions=mentions)
    cli.assert_store_intact()
    assert cli.statuses() == {}


def test_a_tool_exception_whose_str_raises_fails_only_its_task(cli: Cli) -> None:
    tools = cli.write(
        "mytools.py",
        "import taskloom\n\nclass Nasty(Exception):\n    def __str__(self):\n"
        "        raise RuntimeError('no str')\n\n"
        "@taskloom.tool\ndef nasty(n: int) -> int:\n    raise Nasty()\n",
    )
    plan = cli.write("p.plan", '1. nasty(1)\n2. math("1 + 1")\n')
    outcome = cli("exec", plan, "--tools", tools, "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr
    tasks = json.loads(outcome.stdout)["tasks"]
    assert tasks["2"]["status"] == "done"
    assert "nasty raised Nasty: (its message could not be read" in tasks["1"]["error"]
    cli.assert_store_intact()


@pytest.mark.parametrize(
    ("source", "mentions"),
    [
        ("", ["give a .py file or a module name"]),
        (".", ["give a .py file or a module name"]),
        ("folder", ["it is a folder"]),
    ],
    ids=["empty", "a dot", "a plain folder"],
)
def test_tools_that_name_no_module_are_a_clear_error(
    cli: Cli, source: str, mentions: list[str]
) -> None:
    if source == "folder":
        (cli.root / "folder").mkdir()
    plan = cli.write("p.plan", '1. math("1 + 1")\n')
    outcome = cli("exec", plan, "--tools", source)
    cli.assert_clear_error(outcome, 2, mentions=mentions)
    assert cli.statuses() == {}


def test_a_unit_with_unbalanced_parentheses_fails_that_task_in_words(cli: Cli) -> None:
    plan = cli.write("p.plan", '1. convert(1, "(km", "m")\n2. math("1 + 1")\n')
    outcome = cli("exec", plan, "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]
    tasks = json.loads(outcome.stdout)["tasks"]
    assert "its parentheses do not match" in tasks["1"]["error"]
    assert "EOF" not in tasks["1"]["error"]
    assert tasks["2"]["status"] == "done"
    cli.assert_store_intact()


def test_converting_to_a_value_too_small_for_a_float_fails_that_task_not_zero(cli: Cli) -> None:
    plan = cli.write("p.plan", '1. convert(1, "mm**300", "km**300")\n')
    outcome = cli("exec", plan, "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]
    task = json.loads(outcome.stdout)["tasks"]["1"]
    assert task["output"] is None and "too small to be written as a number" in task["error"]
    cli.assert_store_intact()


def test_a_plan_file_that_never_ends_is_a_clear_error(cli: Cli) -> None:
    outcome = cli("exec", "/dev/zero")
    cli.assert_clear_error(outcome, 2, mentions=["/dev/zero", "the plan is larger than"])
    assert cli.statuses() == {}


def test_math_of_a_number_too_small_for_a_float_fails_that_task(cli: Cli) -> None:
    plan = cli.write("p.plan", '1. math("1e-400 + 1")\n2. math("1 + 1")\n')
    outcome = cli("exec", plan, "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]
    tasks = json.loads(outcome.stdout)["tasks"]
    assert "'1e-400' is too small for a number" in tasks["1"]["error"]
    assert tasks["2"]["output"] == 2.0
    cli.assert_store_intact()
