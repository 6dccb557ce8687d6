"""Bad tool outputs and tools that try to end the process, through the real CLI.

Each row runs `python -m taskloom` in a subprocess with a private store. A
bad output or a tool that raises SystemExit fails its own task (exit 1, the
run recorded as completed); a tool that kills the process with `os._exit`
leaves a run that `runs` and `show` report `abandoned` and `resume` finishes;
`--json` prints strict JSON and nothing else on stdout.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

Cli = Any  # the `cli` fixture of conftest.py (a rootdir conftest is not importable)
Outcome = Any

TOOLS = '''
import math
import os
import sys
from pathlib import Path

import taskloom


@taskloom.tool
def huge() -> int:
    """An int of 5,001 digits: no JSON writer of Python can write it."""
    return 10**5000


@taskloom.tool
async def huge_async() -> dict:
    """The same, inside a record, from an async tool."""
    return {"n": 10**5000}


@taskloom.tool
def cycle() -> dict:
    """A record that contains itself."""
    loop = {}
    loop["self"] = loop
    return loop


@taskloom.tool
def not_finite(kind: str) -> float:
    """NaN or an infinity."""
    return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[kind]


@taskloom.tool
def exits(code: int) -> int:
    """Calls sys.exit: raises SystemExit in a worker thread."""
    sys.exit(code)


@taskloom.tool
async def exits_async(code: int) -> int:
    """Raises SystemExit on the event loop."""
    raise SystemExit(code)


@taskloom.tool
def interrupts() -> int:
    """Raises KeyboardInterrupt itself (no signal was sent)."""
    raise KeyboardInterrupt


@taskloom.tool(idempotent=True)
def dies_once(x: int) -> int:
    """Ends the process with os._exit the first time; returns x after that."""
    marker = Path(os.environ["TASKLOOM_DIE_MARKER"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(3)
    return x


@taskloom.tool
def chatty(text: str) -> str:
    """Prints through sys.stdout and straight to file descriptor 1."""
    print(f"chatty prints {text}")  # one write: threads may interleave writes
    os.write(1, b"chatty writes to fd 1\\n")
    return text


@taskloom.tool
async def chatty_async(text: str) -> str:
    """Prints from the event loop."""
    print(f"chatty_async prints {text}", flush=True)
    return text
'''


def strict(text: str) -> Any:
    """Parse JSON as any other language would: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def tools(cli: Cli) -> str:
    return str(cli.write("adv_tools.py", TOOLS))


def exec_json(cli: Cli, tools: str, plan: str) -> tuple[Outcome, Any]:
    plan_file = cli.write("p.plan", plan)
    outcome = cli("exec", plan_file, "--tools", tools, "--json")
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    return outcome, strict(outcome.stdout)


@pytest.mark.parametrize(
    ("tool", "why"),
    [
        ("huge()", "more than 4300 digits"),
        ("huge_async()", "more than 4300 digits"),
        ("cycle()", "contains itself"),
    ],
)
def test_an_output_no_store_can_hold_fails_its_task_and_the_run_ends(
    cli: Cli, tools: str, tool: str, why: str
) -> None:
    plan = f'1. {tool}\n2. math("$1 + 1")\n3. city("Oslo")\n'
    outcome, out = exec_json(cli, tools, plan)
    assert outcome.code == 1, outcome.stderr[-2000:]
    first, second, third = (out["tasks"][i] for i in "123")
    assert first["status"] == "failed" and first["error_type"] == "BadOutput"
    assert why in first["error"]
    assert second["status"] == "skipped" and why in second["error"]
    assert third["status"] == "done"
    cli.assert_store_intact()
    assert list(cli.statuses().values()) == ["completed"]
    shown = cli("show", out["run_id"])  # the summary of the stored run prints too
    assert shown.code == 0 and "Traceback" not in shown.stderr
    assert "failed" in shown.stdout and "skipped" in shown.stdout


def test_the_summary_without_a_store_prints_a_bad_output(cli: Cli, tools: str) -> None:
    plan_file = cli.write("p.plan", '1. huge()\n2. math("$1 * 2")\n')
    outcome = cli("exec", plan_file, "--tools", tools, "--no-store")
    assert outcome.code == 1
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert "failed" in outcome.stdout and "skipped" in outcome.stdout
    assert not cli.store.exists()


@pytest.mark.parametrize(
    ("tool", "cause"),
    [
        ("exits(3)", "SystemExit"),
        ("exits_async(4)", "SystemExit"),
        ("interrupts()", "KeyboardInterrupt"),
    ],
)
def test_a_tool_that_raises_system_exit_fails_its_task_not_the_process(
    cli: Cli, tools: str, tool: str, cause: str
) -> None:
    outcome, out = exec_json(cli, tools, f'1. {tool}\n2. math("$1 + 1")\n3. city("Oslo")\n')
    assert outcome.code == 1, outcome.stderr[-2000:]
    first = out["tasks"]["1"]
    assert first["status"] == "failed" and first["error_type"] == "ToolFailed"
    assert cause in first["error"] and "may not stop the process" in first["error"]
    assert out["tasks"]["2"]["status"] == "skipped"
    assert out["tasks"]["3"]["status"] == "done"
    cli.assert_store_intact()
    assert list(cli.statuses().values()) == ["completed"]
    assert set(cli.task_statuses().values()) == {"failed", "skipped", "done"}


def test_a_tool_that_calls_os_exit_leaves_a_run_that_reads_abandoned_and_resumes(
    cli: Cli, tools: str
) -> None:
    cli.env["TASKLOOM_DIE_MARKER"] = str(cli.root / "died")
    plan_file = cli.write("p.plan", '1. city("Oslo")\n2. dies_once(7)\n3. math("$2 * 2")\n')
    outcome = cli("exec", plan_file, "--tools", tools)
    assert outcome.code == 3  # nothing in-process can stop os._exit
    (run_id,) = cli.statuses()
    cli.assert_store_intact(allow_running=True)  # the row says running: the process died

    listed = cli("runs", "--json")
    assert listed.code == 0, listed.stderr
    assert [(r["id"], r["status"]) for r in strict(listed.stdout)] == [(run_id, "abandoned")]
    shown = cli("show", run_id, "--json")
    assert shown.code == 0 and strict(shown.stdout)["status"] == "abandoned"

    resumed = cli("resume", run_id, "--json")
    assert resumed.code == 0, resumed.stderr[-2000:]
    out = strict(resumed.stdout)
    assert out["status"] == "completed"
    assert out["tasks"]["3"]["output"] == 14
    cli.assert_store_intact()
    assert cli.statuses() == {run_id: "completed"}


def test_json_output_is_strict_for_exec_show_and_runs(cli: Cli, tools: str) -> None:
    plan = '1. not_finite("nan")\n2. not_finite("inf")\n3. not_finite("-inf")\n'
    outcome, out = exec_json(cli, tools, plan)
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert [out["tasks"][i]["output"] for i in "123"] == ["NaN", "Infinity", "-Infinity"]
    shown = cli("show", out["run_id"], "--json")
    assert [t["output"] for t in strict(shown.stdout)["tasks"]] == ["NaN", "Infinity", "-Infinity"]
    assert strict(cli("runs", "--json").stdout)[0]["status"] == "completed"
    cli.assert_store_intact()


def test_what_tools_print_does_not_corrupt_json_output(cli: Cli, tools: str) -> None:
    plan = '1. chatty("a")\n2. chatty_async("b")\n3. chatty($2)\n'
    outcome, out = exec_json(cli, tools, plan)  # strict(stdout): stdout is only the JSON
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert [out["tasks"][i]["output"] for i in "123"] == ["a", "b", "b"]
    assert "chatty prints a" in outcome.stderr
    assert "chatty writes to fd 1" in outcome.stderr
    assert "chatty_async prints b" in outcome.stderr
    cli.assert_store_intact()


def test_resume_json_keeps_tool_prints_off_stdout(cli: Cli, tools: str) -> None:
    cli.env["TASKLOOM_DIE_MARKER"] = str(cli.root / "died")
    plan_file = cli.write("p.plan", '1. dies_once(1)\n2. chatty("after $1")\n')
    assert cli("exec", plan_file, "--tools", tools).code == 3
    (run_id,) = cli.statuses()
    resumed = cli("resume", run_id, "--json")
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert strict(resumed.stdout)["tasks"]["2"]["output"] == "after 1"
    assert "chatty prints after 1" in resumed.stderr
    cli.assert_store_intact()


SURROGATE_TOOLS = """
import taskloom


@taskloom.tool
def undecodable(name: str) -> str:
    "Fails with a message holding a lone surrogate (an undecodable file name, say)."
    raise FileNotFoundError(name + "\\udcc3")
"""


def test_text_that_is_not_valid_unicode_prints_escaped(cli: Cli) -> None:
    """A lone surrogate in a tool's error: printing it once raised in `exec` and `show`."""
    tools = cli.write("surrogate_tools.py", SURROGATE_TOOLS)
    plan_file = cli.write("p.plan", '1. undecodable("Os")\n2. country("France")\n')
    outcome = cli("exec", plan_file, "--tools", tools)
    assert outcome.code == 1, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr
    (run_id,) = cli.statuses()
    shown = cli("show", run_id)
    assert shown.code == 0, shown.stderr[-2000:]
    assert "Traceback" not in shown.stderr
    assert "FileNotFoundError" in shown.stdout or "undecodable" in shown.stdout
    as_json = cli("show", run_id, "--json")
    assert "Os\\udcc3" in strict(as_json.stdout)["tasks"][0]["error"]
    cli.assert_store_intact()
    assert list(cli.statuses().values()) == ["completed"]


def test_half_a_surrogate_pair_in_a_plan_is_a_clear_error(cli: Cli) -> None:
    plan_file = cli.write("p.plan", '1. city("Os\\ud800lo")\n')
    outcome = cli("exec", plan_file)
    cli.assert_clear_error(outcome, 2, mentions=["surrogate"])
    cli.assert_store_intact()
