"""What `--json` prints is strict JSON, and only JSON: tools' prints go to stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taskloom._cli_io import json_text
from taskloom.cli import app

runner = CliRunner()

TOOLS = '''
import math
import sys

import taskloom


@taskloom.tool
def odd(kind: str) -> float:
    """A float that JSON has no number for."""
    return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[kind]


@taskloom.tool
def record(kind: str) -> dict:
    """Non-finite floats inside a record."""
    return {"value": odd.fn(kind), "values": [odd.fn(kind), 1.5]}


@taskloom.tool
def chatty(text: str) -> str:
    """Prints while it works (sync: in a worker thread)."""
    print("chatty says", text)
    sys.stdout.write("and writes\\n")
    return text


@taskloom.tool
async def chatty_async(text: str) -> str:
    """Prints while it works (async: on the event loop)."""
    print("chatty_async says", text)
    return text
'''


def strict_loads(text: str) -> Any:
    """json.loads that refuses NaN and Infinity, as every other JSON reader does."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "jtools.py").write_text(TOOLS)
    return tmp_path


def exec_json(files: Path, plan: str) -> tuple[Any, str]:
    plan_file = files / "p.plan"
    plan_file.write_text(plan)
    store = files / "s.sqlite3"
    result = runner.invoke(
        app,
        [
            "exec",
            str(plan_file),
            "--tools",
            str(files / "jtools.py"),
            "--json",
            "--store",
            str(store),
        ],
    )
    assert result.exit_code == 0, result.output
    return strict_loads(result.stdout), result.stderr


def test_non_finite_floats_are_written_as_strings_in_exec_show_and_runs(files: Path) -> None:
    plan = '1. odd("nan")\n2. odd("inf")\n3. odd("-inf")\n4. record("inf")\n'
    out, stderr = exec_json(files, plan)
    outputs = [out["tasks"][i]["output"] for i in "1234"]
    assert outputs == [
        "NaN",
        "Infinity",
        "-Infinity",
        {"value": "Infinity", "values": ["Infinity", 1.5]},
    ]
    run_id = out["run_id"]
    shown = runner.invoke(app, ["show", run_id, "--json", "--store", str(files / "s.sqlite3")])
    assert shown.exit_code == 0, shown.output
    data = strict_loads(shown.stdout)
    assert [t["output"] for t in data["tasks"]] == outputs
    runs = runner.invoke(app, ["runs", "--json", "--store", str(files / "s.sqlite3")])
    assert strict_loads(runs.stdout)[0]["id"] == run_id


def test_what_tools_print_goes_to_stderr_and_stdout_is_only_json(files: Path) -> None:
    out, stderr = exec_json(files, '1. chatty("a")\n2. chatty_async("b")\n3. chatty($1)\n')
    assert [out["tasks"][i]["output"] for i in "123"] == ["a", "b", "a"]
    assert "chatty says a" in stderr and "and writes" in stderr
    assert "chatty_async says b" in stderr


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (float("nan"), '"NaN"'),
        ({"k": [float("-inf"), {"x": float("inf")}]}, '{"k": ["-Infinity", {"x": "Infinity"}]}'),
        ((1.0, 2), "[1.0, 2]"),
        ({float("inf"): 1}, '{"Infinity": 1}'),
        ("caf\udce9", '"caf\\udce9"'),
        (object, "\"<class 'object'>\""),
    ],
    ids=["nan", "nested", "tuple", "key", "lone surrogate", "no JSON form"],
)
def test_json_text_is_strict(value: Any, text: str) -> None:
    written = json_text(value, indent=None)
    assert written == text
    written.encode("utf-8")  # printable on any UTF-8 stdout
    strict_loads(written)


def scripted(monkeypatch: pytest.MonkeyPatch, *replies: str) -> None:
    """Make `run` and `batch` use a scripted model instead of building one."""
    from taskloom.testing import ScriptedModel

    model = ScriptedModel(list(replies))
    monkeypatch.setattr("taskloom.llm.model_from_config", lambda *_, **__: model)


def test_run_json_keeps_tool_prints_off_stdout(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(
        monkeypatch,
        '1. chatty("a")\n2. odd("inf")\n3. join()\n',
        "Thought: done.\nAction: Finish(a)",
    )
    result = runner.invoke(
        app,
        ["run", "say a", "--tools", str(files / "jtools.py"), "--json", "--grammar"],
    )
    assert result.exit_code == 0, result.output
    out = strict_loads(result.stdout)
    assert out["answer"] == "a"
    assert "chatty says a" in result.stderr
    assert "Infinity" in result.stdout


def test_batch_lines_on_stdout_are_strict_json_and_only_json(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(
        monkeypatch,
        '1. chatty_async("b")\n2. odd("nan")\n3. join()\n',
        "Thought: done.\nAction: Finish(b)",
    )
    questions = files / "q.jsonl"
    questions.write_text('{"id": "q1", "question": "say b"}\n')
    result = runner.invoke(
        app,
        ["batch", str(questions), "--tools", str(files / "jtools.py"), "--concurrency", "1"],
    )
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert strict_loads(line)["answer"] == "b"
    assert "chatty_async says b" in result.stderr
