"""`--no-world` and `--examples` on the command line, and what a request records of them."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskloom.agent import Agent
from taskloom.cli import app
from taskloom.store import Store
from taskloom.testing import ScriptedModel
from taskloom.tools.world import WORLD_TOOLS

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
BOOKS = ROOT / "examples" / "books.py"
BOOK_EXAMPLES = ROOT / "examples" / "books.jsonl"
PLAN = '1. book("Dune")\n2. author($1.author)\n3. join()\n'
FINISH = "Thought: He was born in 1920.\nAction: Finish(1920)"
WORLD_NAMES = [t.name for t in WORLD_TOOLS]


def scripted(monkeypatch: pytest.MonkeyPatch, *replies: str) -> ScriptedModel:
    """Make the commands use a scripted model instead of building one."""
    model = ScriptedModel(list(replies))
    monkeypatch.setattr("taskloom.llm.model_from_config", lambda *_, **__: model)
    monkeypatch.setattr("taskloom.agent._settings.model_from_config", lambda *_, **__: model)
    return model


def only_run(store_path: Path) -> tuple[str, dict[str, object]]:
    with Store.open(store_path) as store:
        (summary,) = store.runs()
        return summary.id, store.load(summary.id).config


def test_the_readme_command_runs_over_the_books_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if "--examples examples/books.jsonl" in line]
    args = shlex.split(line)
    assert args[:2] == [".venv/bin/taskloom", "run"]
    monkeypatch.chdir(ROOT)
    model = scripted(monkeypatch, PLAN, FINISH)
    store_path = tmp_path / "s.sqlite3"
    result = runner.invoke(app, [*args[1:], "--store", str(store_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "answered"
    assert [t["output"] for t in out["tasks"]][1]["born"] == 1920
    planner_prompt = "\n".join(m.content for m in model.calls[0])
    assert "book(title: string)" in planner_prompt
    assert "Where was the author of Solaris from?" in planner_prompt  # the closest example
    assert not any(re.search(rf"\b{name}\(", planner_prompt) for name in WORLD_NAMES)
    _, config = only_run(store_path)
    assert config["no_world"] is True
    assert config["tools"] == ["book", "author"]
    recorded = config["examples"]
    assert isinstance(recorded, list)
    assert [e["question"] for e in recorded] == [
        json.loads(line)["question"] for line in BOOK_EXAMPLES.read_text().splitlines()
    ]


@pytest.mark.parametrize("command", ["run", "batch", "mcp-serve", "exec"])
def test_no_world_with_no_other_tool_is_a_usage_error(command: str, tmp_path: Path) -> None:
    arguments = {
        "run": ["run", "q", "--no-store"],
        "batch": ["batch", str(tmp_path / "q.jsonl"), "--no-store"],
        "mcp-serve": ["mcp-serve", "--no-store"],
        "exec": ["exec", str(tmp_path / "p.plan"), "--no-store"],
    }[command]
    (tmp_path / "q.jsonl").write_text('"q"\n')
    (tmp_path / "p.plan").write_text('1. country("Peru")\n')
    result = runner.invoke(app, [*arguments, "--no-world"])
    assert result.exit_code == 2, result.output
    assert "--no-world leaves no tools: bring yours with --tools" in result.stderr
    assert "Traceback" not in result.output


def test_exec_without_the_world_knows_only_the_given_tools(tmp_path: Path) -> None:
    plan = tmp_path / "p.plan"
    plan.write_text('1. country("Peru")\n')
    result = runner.invoke(app, ["exec", str(plan), "--no-world", "--tools", str(BOOKS)])
    assert result.exit_code == 2
    assert "unknown tool 'country'" in result.stderr
    plan.write_text('1. book("Emma")\n2. author($1.author)\n')
    store_path = tmp_path / "s.sqlite3"
    result = runner.invoke(
        app, ["exec", str(plan), "--no-world", "--tools", str(BOOKS), "--store", str(store_path)]
    )
    assert result.exit_code == 0, result.output
    _, config = only_run(store_path)
    assert config["no_world"] is True


def test_resume_leaves_the_world_out_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A request whose process stopped before its plan was written: resume plans it again.
    store_path = tmp_path / "s.sqlite3"
    with Store.open(store_path) as store:
        journal = store.journal(
            kind="agent",
            request="When was the author of Dune born?",
            config={
                "no_world": True,
                "tools": ["book", "author"],
                "tool_sources": [],
                "examples": [json.loads(BOOK_EXAMPLES.read_text().splitlines()[0])],
                "grammar_limits": {"max_text": 100},
            },
        )
        run_id = journal.run_id
    model = scripted(monkeypatch, PLAN, FINISH)
    result = runner.invoke(
        app,
        ["resume", run_id, "--tools", str(BOOKS), "--store", str(store_path), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["answer"] == "1920"
    planner_prompt = "\n".join(m.content for m in model.calls[0])
    assert "Who wrote Emma?" in planner_prompt  # the recorded example, shown again
    assert not any(re.search(rf"\b{name}\(", planner_prompt) for name in WORLD_NAMES)


def test_without_examples_the_world_tools_bring_their_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bank = tmp_path / "world.jsonl"
    example = {
        "question": "What is the capital of Kenya?",
        "plan": '1. country("Kenya")',
        "results": {"1": {"capital": "Nairobi"}},
        "decision": "Finish($1.capital)",
    }
    bank.write_text(json.dumps(example) + "\n")
    monkeypatch.setattr("taskloom._cli_common.EXAMPLES_PATH", bank)
    scripted(monkeypatch, '1. country("Peru")\n2. join()\n', "Thought: x\nAction: Finish(Lima)")
    store_path = tmp_path / "s.sqlite3"
    result = runner.invoke(app, ["run", "Capital of Peru?", "--store", str(store_path)])
    assert result.exit_code == 0, result.output
    _, config = only_run(store_path)
    assert config["examples"] == [example]
    assert "no_world" not in config


def test_with_no_world_and_no_examples_the_agent_shows_notional_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scripted(monkeypatch, PLAN, FINISH)
    store_path = tmp_path / "s.sqlite3"
    result = runner.invoke(
        app,
        ["run", "Dune's author's birth year?", "--no-world", "--tools", str(BOOKS)]
        + ["--store", str(store_path)],
    )
    assert result.exit_code == 0, result.output
    _, config = only_run(store_path)
    assert config["examples"] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "q", "plan": "1. book(\\"Emma\\")"}\n{"question": \n', "line 2"),
        ('{"question": "q", "plan": "1. shelf(\\"Emma\\")"}\n', "unknown tool 'shelf'"),
        ("\n", "holds no examples"),
        ('{"question": "q", "plan": "1. book(\\"Emma\\")", "answer": "x"}\n', "unknown fields"),
    ],
)
def test_a_bad_examples_file_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, message: str
) -> None:
    scripted(monkeypatch)
    examples = tmp_path / "ex.jsonl"
    examples.write_text(content)
    for command in (["run", "q"], ["batch", str(tmp_path / "q.jsonl")]):
        (tmp_path / "q.jsonl").write_text('"q"\n')
        result = runner.invoke(
            app,
            [*command, "--no-store", "--no-world", "--tools", str(BOOKS)]
            + ["--examples", str(examples)],
        )
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert "Traceback" not in result.output


def test_a_missing_examples_file_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", "q", "--no-store", "--examples", str(tmp_path / "none.jsonl")]
    )
    assert result.exit_code == 2
    assert "cannot read examples from" in result.stderr


def test_the_world_bank_is_the_default_with_the_world_tools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from taskloom.agent import load_examples
    from taskloom.tools.world import EXAMPLES_PATH

    scripted(monkeypatch, '1. country("Peru")\n2. join()\n', "Thought: x\nAction: Finish(Lima)")
    store_path = tmp_path / "s.sqlite3"
    result = runner.invoke(app, ["run", "Capital of Peru?", "--store", str(store_path)])
    assert result.exit_code == 0, result.output
    _, config = only_run(store_path)
    # The bank is large: recorded by its file and digest, not copied into every request.
    assert "examples" not in config
    recorded = config["examples_file"]
    assert isinstance(recorded, dict)
    assert recorded["path"] == str(EXAMPLES_PATH.resolve())
    with Store.open(store_path) as store:
        (run,) = store.runs()
        again = Agent.from_store(store, run.id, model=ScriptedModel([]))
    assert list(again.examples) == load_examples(EXAMPLES_PATH)
