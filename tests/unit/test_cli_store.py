"""The CLI and the run store: exec --store/--no-store, runs, show, resume, store errors."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from taskloom import Plan, Store
from taskloom.cli import app

runner = CliRunner()

PLAN = '1. country("France")\n2. math("$1.population * 2")\n3. city("Rome")\n'


def flat(text: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(text.split())


def run_id_line(stderr: str) -> str:
    match = re.match(r"run ([0-9a-f]{12})\n", stderr)
    assert match, stderr
    return match.group(1)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dump(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        return list(db.iterdump())


def exec_json(tmp_path: Path, store: Path, plan: str = PLAN) -> tuple[str, dict[str, Any]]:
    plan_file = tmp_path / "p.plan"
    plan_file.write_text(plan)
    result = runner.invoke(app, ["exec", str(plan_file), "--json", "--store", str(store)])
    assert result.exit_code == 0, result.output
    return run_id_line(result.stderr), json.loads(result.stdout)


def test_exec_records_the_run_and_names_it_on_stderr(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    run_id, out = exec_json(tmp_path, store)
    assert out["status"] == "completed"
    with Store.open(store) as opened:
        record = opened.load(run_id)
    assert (record.kind, record.status, record.request) == (
        "exec",
        "completed",
        str(tmp_path / "p.plan"),
    )
    assert record.config["tools"] is None and record.config["max_concurrency"] is None
    assert [t.status for t in record.tasks] == ["done", "done", "done"]
    assert record.tasks[0].output["capital"] == "Paris"
    assert record.tasks[1].output == out["tasks"]["2"]["output"]


def test_exec_without_json_prints_the_run_id_first(tmp_path: Path) -> None:
    plan_file = tmp_path / "p.plan"
    plan_file.write_text(PLAN)
    store = tmp_path / "s.sqlite3"
    result = runner.invoke(app, ["exec", str(plan_file), "--store", str(store)])
    assert result.exit_code == 0, result.output
    run_id = run_id_line(result.output)
    with Store.open(store) as opened:
        assert opened.load(run_id).status == "completed"


def test_exec_uses_the_store_named_by_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    store = tmp_path / "env.sqlite3"
    monkeypatch.setenv("TASKLOOM_STORE", str(store))
    plan_file = tmp_path / "p.plan"
    plan_file.write_text(PLAN)
    result = runner.invoke(app, ["exec", str(plan_file), "--json"])
    assert result.exit_code == 0, result.output
    with Store.open(store) as opened:
        assert [r.id for r in opened.runs()] == [run_id_line(result.stderr)]


def test_runs_json_lists_runs_newest_first(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    first, _ = exec_json(tmp_path, store)
    second, _ = exec_json(tmp_path, store, '1. city("Oslo")\n')
    result = runner.invoke(app, ["runs", "--json", "--store", str(store)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [second, first]
    assert rows[0]["kind"] == "exec" and rows[0]["status"] == "completed"
    assert rows[0]["request"] == str(tmp_path / "p.plan")
    assert rows[0]["started"] >= rows[1]["started"]
    limited = runner.invoke(app, ["runs", "--json", "--limit", "1", "--store", str(store)])
    assert [r["id"] for r in json.loads(limited.stdout)] == [second]
    table = runner.invoke(app, ["runs", "--store", str(store)])
    assert table.exit_code == 0 and first in table.output and second in table.output


def test_runs_where_there_is_no_store_lists_none_and_creates_none(tmp_path: Path) -> None:
    store = tmp_path / "not" / "there.sqlite3"
    assert json.loads(runner.invoke(app, ["runs", "--json", "--store", str(store)]).stdout) == []
    result = runner.invoke(app, ["runs", "--store", str(store)])
    assert result.exit_code == 0 and "no runs recorded yet" in result.output
    assert not (tmp_path / "not").exists()


def test_runs_on_an_empty_store(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    Store.open(store).close()
    assert json.loads(runner.invoke(app, ["runs", "--json", "--store", str(store)]).stdout) == []


def test_show_where_there_is_no_store_says_so_and_creates_none(tmp_path: Path) -> None:
    store = tmp_path / "typo.sqlite3"
    result = runner.invoke(app, ["show", "abc", "--store", str(store)])
    assert result.exit_code == 2
    assert f"error: no run store at {store}" in flat(result.output)
    assert not store.exists()


def test_show_json_has_every_task(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    run_id, out = exec_json(tmp_path, store)
    result = runner.invoke(app, ["show", run_id[:5], "--json", "--store", str(store)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["id"] == run_id and data["status"] == "completed"
    assert "task_index" not in data
    assert [t["id"] for t in data["tasks"]] == ["1", "2", "3"]
    assert [t["task"] for t in data["tasks"]] == [
        '1. country("France")',
        '2. math("$1.population * 2")',
        '3. city("Rome")',
    ]
    assert all(t["status"] == "done" for t in data["tasks"])
    assert data["tasks"][1]["output"] == out["tasks"]["2"]["output"]
    assert data["tasks"][2]["arguments"] == {"name": "Rome", "country": None}
    assert data["last_seq"] > 0 and data["resumes"] == 0


def test_show_without_json_renders_the_record(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    run_id, _ = exec_json(tmp_path, store)
    result = runner.invoke(app, ["show", run_id, "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert f"run {run_id} · exec · completed" in result.output
    assert "country" in result.output and "done" in result.output


def test_show_a_missing_run_exits_2_with_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    exec_json(tmp_path, store)
    result = runner.invoke(app, ["show", "nope", "--store", str(store)])
    assert result.exit_code == 2
    assert f"error: no run 'nope' in {store}" in flat(result.output)
    assert "Traceback" not in result.output


def test_resume_of_a_missing_run_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["resume", "nope", "--store", str(tmp_path / "s.sqlite3")])
    assert result.exit_code == 2
    assert "error: no run 'nope'" in flat(result.output)


def test_resume_of_a_finished_run_prints_its_result_and_records_nothing(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    run_id, out = exec_json(tmp_path, store)
    rows = dump(store)
    result = runner.invoke(app, ["resume", run_id, "--json", "--store", str(store)])
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["run_id"] == run_id and again["status"] == "completed"
    assert {i: t["output"] for i, t in again["tasks"].items()} == {
        i: t["output"] for i, t in out["tasks"].items()
    }
    assert dump(store) == rows
    text = runner.invoke(app, ["resume", run_id[:4], "--store", str(store)])
    assert text.exit_code == 0, text.output
    assert "completed" in text.output


def test_resume_finishes_a_run_that_stopped_before_its_first_task(tmp_path: Path) -> None:
    tools = tmp_path / "cli_store_tools.py"
    tools.write_text(
        "import taskloom\n\n"
        "@taskloom.tool\n"
        "def shout(text: str) -> str:\n"
        '    """Upper-case (not idempotent)."""\n'
        "    return text.upper()\n"
    )
    store = tmp_path / "s.sqlite3"
    plan = Plan.parse('1. country("Japan")\n2. shout($1.capital)\n')
    with Store.open(store) as opened:  # the process died right after recording the run
        journal = opened.journal(
            request="p.plan", config={"tools": str(tools), "max_concurrency": None}, plan=plan
        )
    result = runner.invoke(app, ["resume", journal.run_id, "--json", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tasks"]["2"]["output"] == "TOKYO"
    with Store.open(store) as opened:
        record = opened.load(journal.run_id)
    assert record.status == "completed" and record.resumes == 1
    assert [t.output for t in record.tasks][1] == "TOKYO"


def test_no_store_records_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    env_store = tmp_path / "env.sqlite3"
    monkeypatch.setenv("TASKLOOM_STORE", str(env_store))
    store = tmp_path / "s.sqlite3"
    plan_file = tmp_path / "p.plan"
    plan_file.write_text(PLAN)
    result = runner.invoke(
        app, ["exec", str(plan_file), "--json", "--no-store", "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"
    assert not result.stderr.startswith("run ")
    assert not store.exists() and not env_store.exists()


def test_a_corrupted_store_is_a_clear_error_and_stays_as_it_was(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    store.write_bytes(random.Random(3).randbytes(8192))
    before = digest(store)
    plan_file = tmp_path / "p.plan"
    plan_file.write_text(PLAN)
    for args in (
        ["exec", str(plan_file)],
        ["exec", str(plan_file), "--json"],
        ["runs"],
        ["show", "abc"],
        ["resume", "abc"],
    ):
        result = runner.invoke(app, [*args, "--store", str(store)])
        assert result.exit_code == 2, (args, result.output)
        message = flat(result.output)
        assert f"error: run store {store}: cannot open it: the file is corrupted" in message
        assert "not a taskloom store" in message
        assert "Traceback" not in result.output
    assert digest(store) == before


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "notes.db"
    with closing(sqlite3.connect(store)) as db, db:
        db.execute("CREATE TABLE notes (body TEXT)")
    before = digest(store)
    result = runner.invoke(app, ["runs", "--store", str(store)])
    assert result.exit_code == 2
    assert "it is a SQLite database, but not a taskloom store" in flat(result.output)
    assert digest(store) == before


FULL_DISK = """
import resource
import signal
import sys

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

from taskloom.cli import main

main()
"""

BIG_TOOLS = '''
import taskloom


@taskloom.tool(idempotent=True)
def blob(n: int) -> str:
    """A large output."""
    return str(n % 10) * 100_000
'''


def test_exec_on_a_full_disk_exits_2_with_a_store_error(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    earlier, _ = exec_json(tmp_path, store)
    (tmp_path / "big_cli_tools.py").write_text(BIG_TOOLS)
    plan_file = tmp_path / "big.plan"
    plan_file.write_text("".join(f"{i}. blob({i})\n" for i in range(1, 31)))
    args = ["exec", str(plan_file), "--tools", str(tmp_path / "big_cli_tools.py")]
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "400000", *args, "--json", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: run store {store}: cannot write: the disk is full" in flat(proc.stderr), (
        proc.stderr
    )
    with Store.open(store) as opened:
        assert opened.load(earlier).status == "completed"


# -- regressions: each of these once failed --------------------------------


def test_exec_json_names_the_run_id_show_finds(tmp_path: Path) -> None:
    """`exec --json` prints RunResult.run_id, a fresh id made by open_run(), not the
    journal's id that the store recorded and `run <id>` printed."""
    store = tmp_path / "s.sqlite3"
    printed, out = exec_json(tmp_path, store)
    assert out["run_id"] == printed
    shown = runner.invoke(app, ["show", out["run_id"], "--json", "--store", str(store)])
    assert shown.exit_code == 0, shown.output


def test_batch_with_a_malformed_requests_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"fine"\n{oops\n')
    result = runner.invoke(app, ["batch", str(bad), "--no-store"])
    assert result.exit_code == 2
    assert "line 2: not JSON" in flat(result.output)
