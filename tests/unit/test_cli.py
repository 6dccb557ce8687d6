import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taskloom import UserError
from taskloom.cli import app, load_tools

runner = CliRunner()
EXAMPLE = Path(__file__).parents[2] / "examples" / "europe.plan"


def test_exec_runs_the_example_plan_and_summarises(tmp_path: Path) -> None:
    result = runner.invoke(app, ["exec", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "completed" in result.output
    assert "makespan" in result.output and "critical path" in result.output
    assert "sum of task times" in result.output


def test_exec_json_gives_the_run_result() -> None:
    result = runner.invoke(app, ["exec", str(EXAMPLE), "--json", "--max-concurrency", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "completed"
    assert data["tasks"]["1"]["output"]["capital"] == "Paris"
    assert (
        data["tasks"]["6"]["output"]
        == data["tasks"]["1"]["output"]["population"] + data["tasks"]["2"]["output"]["population"]
    )
    assert set(data["timings"]) >= {"makespan_s", "critical_path_s", "work_s", "parallelism"}


def _exec_with_tools(tmp_path: Path, tools_source: str, plan_text: str) -> dict[str, Any]:
    """Run `exec --json` on a plan with a tools file; the run's tasks by id."""
    tools = tmp_path / "mytools.py"
    tools.write_text(tools_source)
    plan = tmp_path / "p.plan"
    plan.write_text(plan_text)
    result = runner.invoke(app, ["exec", str(plan), "--tools", str(tools), "--json"])
    assert result.exit_code == 0, result.output
    tasks: dict[str, Any] = json.loads(result.stdout)["tasks"]
    return tasks


def test_exec_loads_extra_tools_from_a_file(tmp_path: Path) -> None:
    source = (
        "import taskloom\n\n"
        "@taskloom.tool\n"
        "def shout(text: str) -> str:\n"
        '    """Upper-case."""\n'
        "    return text.upper()\n"
    )
    tasks = _exec_with_tools(tmp_path, source, '1. country("Japan")\n2. shout($1.capital)\n')
    assert tasks["2"]["output"] == "TOKYO"


def test_the_command_line_runs_its_tools_on_uvloop(tmp_path: Path) -> None:
    source = (
        "import asyncio\nimport taskloom\n\n"
        "@taskloom.tool\n"
        "async def loop_kind() -> str:\n"
        '    """The running loop module."""\n'
        "    return type(asyncio.get_running_loop()).__module__\n"
    )
    tasks = _exec_with_tools(tmp_path, source, "1. loop_kind()\n")
    assert tasks["1"]["output"].startswith("uvloop")


def test_exec_reports_a_bad_plan_with_its_position(tmp_path: Path) -> None:
    plan = tmp_path / "bad.plan"
    plan.write_text('1. country("France")\n2. contry("Spain")\n')
    result = runner.invoke(app, ["exec", str(plan)])
    assert result.exit_code == 2
    assert "task 2, line 2, column 1: unknown tool 'contry'" in result.output
    assert "Traceback" not in result.output


def test_exec_exits_1_when_a_task_fails(tmp_path: Path) -> None:
    plan = tmp_path / "p.plan"
    plan.write_text('1. country("Atlantis")\n2. math("$1.population * 2")\n3. city("Rome")\n')
    result = runner.invoke(app, ["exec", str(plan), "--json"])
    assert result.exit_code == 1
    tasks = json.loads(result.stdout)["tasks"]
    assert tasks["1"]["status"] == "failed" and "Atlantis" in tasks["1"]["error"]
    assert tasks["2"]["status"] == "skipped"
    assert tasks["3"]["status"] == "done"


def test_exec_missing_file_and_bad_tools_module(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["exec", str(tmp_path / "nope.plan")])
    assert missing.exit_code == 2 and "cannot read" in missing.output
    plan = tmp_path / "p.plan"
    plan.write_text('1. city("Rome")\n')
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no')\n")
    result = runner.invoke(app, ["exec", str(plan), "--tools", str(broken)])
    assert result.exit_code == 2
    assert "cannot load tools from" in result.output and "RuntimeError: no" in result.output


def test_error_messages_keep_their_square_brackets(tmp_path: Path) -> None:
    plan = tmp_path / "p.plan"
    plan.write_text('1. city("[bold]Paris[/bold]"\n')
    result = runner.invoke(app, ["exec", str(plan)])
    assert result.exit_code == 2
    assert '1. city("[bold]Paris[/bold]"' in result.output


def test_a_plan_with_no_tasks_is_an_error(tmp_path: Path) -> None:
    for content in ("", "Nothing to do here.\n", "1. join()\n"):
        plan = tmp_path / "empty.plan"
        plan.write_text(content)
        result = runner.invoke(app, ["exec", str(plan), "--no-store"])
        assert result.exit_code == 2, (content, result.output)
        assert "the plan has no tasks" in result.stderr


def test_a_tool_named_like_a_built_in_tool_is_an_error(tmp_path: Path) -> None:
    tools = tmp_path / "mine.py"
    tools.write_text(
        "import taskloom\n\n@taskloom.tool\ndef city(name: str) -> str:\n    return name\n"
    )
    with pytest.raises(UserError, match="'city', the name of a built-in tool"):
        load_tools(str(tools))
    reuse = tmp_path / "reuse.py"
    reuse.write_text(
        "import taskloom\nfrom taskloom.tools.world import city\n\n"
        "@taskloom.tool\ndef shout(text: str) -> str:\n    return text.upper()\n"
    )
    assert set(load_tools(str(reuse))) >= {"city", "shout"}  # the built-in itself is fine


def test_a_batch_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    requests = tmp_path / "q.jsonl"
    requests.write_bytes(b'"ok"\n"caf\xe9"\n')
    result = runner.invoke(app, ["batch", str(requests), "--no-store"])
    assert result.exit_code == 2, result.output
    assert "line 2 is not valid UTF-8" in result.stderr
    assert "Traceback" not in result.output


def test_errors_are_one_unwrapped_line_on_stderr(tmp_path: Path) -> None:
    plan = tmp_path / "bad.plan"
    plan.write_text("1. country(" + "word " * 100 + ")\n")
    result = runner.invoke(app, ["exec", str(plan), "--no-store"])
    assert result.exit_code == 2
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: ") and "unquoted text 'word'" in first


@pytest.mark.parametrize("content", ["", "\n  \n\n"], ids=["empty", "blank lines"])
def test_a_batch_file_with_no_requests_is_an_error(tmp_path: Path, content: str) -> None:
    requests = tmp_path / "q.jsonl"
    requests.write_text(content)
    result = runner.invoke(app, ["batch", str(requests), "--no-store"])
    assert result.exit_code == 2, result.output
    assert "no requests" in result.stderr


def test_a_byte_order_mark_is_no_part_of_a_batch_files_first_line(tmp_path: Path) -> None:
    requests = tmp_path / "q.jsonl"
    requests.write_bytes(b"\xef\xbb\xbf[1]\n")  # read past the mark, the line is a list
    result = runner.invoke(app, ["batch", str(requests), "--no-store"])
    assert result.exit_code == 2, result.output
    assert 'line 1: expected {"question": "..."}' in result.stderr
    assert "BOM" not in result.stderr


@pytest.mark.parametrize("code", ["sys.exit(3)", "sys.exit('bye')", "raise SystemExit"])
def test_a_tool_module_that_exits_while_imported_is_a_user_error(tmp_path: Path, code: str) -> None:
    tools = tmp_path / "quits.py"
    tools.write_text(f"import sys\n{code}\n")
    with pytest.raises(UserError, match=r"quits.py: it called sys.exit\(.*\) while imported"):
        load_tools(str(tools))


@pytest.mark.parametrize("price", ["m=nan,1", "m=-1,2", "m=1,inf"])
def test_a_price_that_is_no_amount_of_money_is_an_error(price: str) -> None:
    result = runner.invoke(
        app,
        ["run", "q", "--no-store", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
        + ["--price", price],
    )
    assert result.exit_code == 2, result.output
    assert f"--price '{price}': prices are finite numbers >= 0" in result.stderr


def test_an_infinite_tool_latency_is_an_error() -> None:
    result = runner.invoke(
        app,
        ["run", "q", "--no-store", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
        + ["--tool-latency", "inf"],
    )
    assert result.exit_code == 2, result.output
    assert "latency must be a finite number >= 0, got inf" in result.stderr


def test_a_tool_module_raising_an_exception_whose_str_raises_is_a_user_error(
    tmp_path: Path,
) -> None:
    tools = tmp_path / "nasty.py"
    tools.write_text(
        "class Nasty(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n\n"
        "raise Nasty()\n"
    )
    with pytest.raises(UserError, match=r"Nasty: \(its message could not be read"):
        load_tools(str(tools))


@pytest.mark.parametrize("source", ["", " ", ".", "..tools"])
def test_tools_named_by_no_file_or_module_name_are_a_user_error(source: str) -> None:
    with pytest.raises(UserError, match="give a .py file or a module name"):
        load_tools(source)


def test_tools_given_as_a_plain_folder_are_a_user_error_and_a_package_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    with pytest.raises(UserError, match="it is a folder"):
        load_tools(str(folder))
    package = tmp_path / "sweep_tools_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import taskloom\n\n@taskloom.tool\ndef shout(text: str) -> str:\n    return text\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "shout" in load_tools("sweep_tools_pkg")


def test_a_plan_file_past_the_size_bound_is_an_error_and_read_no_further(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import taskloom.cli

    monkeypatch.setattr(taskloom.cli, "MAX_PLAN_BYTES", 1024)
    plan = tmp_path / "big.plan"
    plan.write_text('1. math("1 + 1")\n' * 100)
    result = runner.invoke(app, ["exec", str(plan), "--no-store"])
    assert result.exit_code == 2, result.output
    assert "the plan is larger than" in result.stderr
    small = tmp_path / "small.plan"
    small.write_text('1. math("1 + 1")\n')
    assert runner.invoke(app, ["exec", str(small), "--no-store"]).exit_code == 0


def test_a_batch_file_past_the_size_bound_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import taskloom._cli_agent

    monkeypatch.setattr(taskloom._cli_agent, "MAX_BATCH_BYTES", 1024)
    requests = tmp_path / "q.jsonl"
    requests.write_text('"a question?"\n' * 100)
    result = runner.invoke(app, ["batch", str(requests), "--no-store"])
    assert result.exit_code == 2, result.output
    assert f"{requests}: the batch file is larger than 1,024 bytes" in result.stderr
