"""`taskloom batch` end to end with the embedded model, and `runs`/`show` on what it recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskloom.cli import app

pytest.importorskip("llama_cpp")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
runner = CliRunner()


def test_batch_answers_every_request_and_shares_lookups(tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        '{"id": "fr-de", "question": "What is the combined population of France and Germany?"}\n'
        '{"id": "fr", "question": "What is the population of France?"}\n'
        '"What is the capital of Germany?"\n'
    )
    out, store = tmp_path / "answers.jsonl", tmp_path / "store.sqlite3"
    result = runner.invoke(
        app,
        ["batch", str(questions), "--concurrency", "3", "-o", str(out), "--store", str(store)],
    )
    assert result.exit_code in (0, 1), result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == ["3", "fr", "fr-de"]
    for line in lines:
        assert set(line) >= {"answer", "status", "timings", "usage"}
        assert line["usage"]["llm_calls"] >= 1
    assert sum(line["status"] == "answered" for line in lines) >= 2
    summary = result.output.strip().splitlines()[-1]
    requested, executed = (int(n) for n in summary.split(":")[-1].split() if n.isdigit())
    assert executed <= requested

    listed = runner.invoke(app, ["runs", "--json", "--store", str(store)])
    runs = json.loads(listed.stdout)
    assert len(runs) == 3 and {r["kind"] for r in runs} == {"agent"}
    shown = runner.invoke(app, ["show", runs[0]["id"], "--json", "--store", str(store)])
    record = json.loads(shown.stdout)
    assert record["plan_attempts"] and record["llm_calls"]
