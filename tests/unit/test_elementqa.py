"""ElementQA: its tools, its generated question set and its three worked examples."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import taskloom
from taskloom.agent import Agent, load_examples
from taskloom.testing import ScriptedModel
from taskloom.tools._load import import_tools
from taskloom.tools.world import WORLD_TOOLS

BENCH = Path(__file__).resolve().parents[2] / "bench"
ELEMENTQA = BENCH / "elementqa"
if str(BENCH) not in sys.path:
    # bench/ is not a package: its folders import as namespace packages from here.
    sys.path.append(str(BENCH))  # last: bench/mcp.py must not hide the MCP SDK

tools = importlib.import_module("elementqa.tools")
generate = importlib.import_module("elementqa.generate")
from worldqa.score import score  # noqa: E402

element, molar_mass, calculate = tools.element.fn, tools.molar_mass.fn, tools.calculate.fn


# ---------------------------------------------------------------- the tools


@pytest.mark.parametrize("name", ["iron", "Iron", "IRON", "Fe", "fe", " 26 "])
def test_element_by_name_symbol_or_number(name: str) -> None:
    iron = element(name)
    assert iron["name"] == "Iron" and iron["symbol"] == "Fe" and iron["number"] == 26
    assert iron["mass"] == pytest.approx(55.845, abs=0.01)
    assert iron["density"] == pytest.approx(7.87, abs=0.05)


def test_element_knows_british_spellings() -> None:
    assert element("aluminium")["symbol"] == "Al"
    assert element("sulphur")["symbol"] == "S"
    assert element("caesium")["symbol"] == "Cs"


@pytest.mark.parametrize("name", ["unobtainium", "neutron", "", "   ", "0", "200", "x" * 300])
def test_unknown_elements_are_a_clear_error(name: str) -> None:
    with pytest.raises(tools.UnknownElement, match="element"):
        element(name)


@pytest.mark.parametrize(
    ("formula", "mass", "atoms"),
    [("H2O", 18.015, 3), ("NaCl", 58.44, 2), ("Ca(OH)2", 74.09, 5), ("C6H12O6", 180.16, 24)],
)
def test_molar_mass(formula: str, mass: float, atoms: int) -> None:
    result = molar_mass(formula)
    assert result == {"formula": formula, "mass": pytest.approx(mass, abs=0.01), "atoms": atoms}


@pytest.mark.parametrize("formula", ["", "  ", "H2O!", "Xx2", "h2o", "123", "H2O; rm", "(((", "Q"])
def test_bad_formulas_are_a_clear_error(formula: str) -> None:
    with pytest.raises(tools.FormulaError, match="formula"):
        molar_mass(formula)


def test_errors_point_from_a_name_to_the_element_tool() -> None:
    with pytest.raises(tools.FormulaError, match=r"element\('iron'\) looks it up.*'Fe'"):
        molar_mass("iron")
    with pytest.raises(tools.CalculationError, match=r"element\('nickel'\)"):
        calculate("nickel")


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(55.845 + 63.546) / 2", 59.6955),
        ("max(1, 5, 3) - min(2, 4)", 3),
        ("2 ^ 10", 1024),
        ("-abs(-2.5) + sqrt(16) + round(2.567, 2)", 4.07),
        ("10 % 4", 2),
    ],
)
def test_calculate(expression: str, value: float) -> None:
    assert calculate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "1 / 0",
        "__import__('os')",
        "x + 1",
        "1,000",
        "2 ** 100000",
        "'a' * 3",
        "max()",
        "(" * 400 + "1" + ")" * 400,
        "1 +",
        "9" * 600,
        "sqrt(-1)",
    ],
)
def test_bad_expressions_are_a_clear_error(expression: str) -> None:
    with pytest.raises(tools.CalculationError):
        calculate(expression)


def test_the_tools_load_from_their_file_and_share_no_name_with_the_world_tools() -> None:
    loaded = import_tools(str(ELEMENTQA / "tools.py"))
    assert sorted(loaded) == ["calculate", "element", "molar_mass"]
    assert not set(loaded) & {t.name for t in WORLD_TOOLS}
    for tool in loaded.values():
        assert tool.description, tool.name


def test_a_tool_error_is_a_failed_task_with_its_message() -> None:
    plan = taskloom.Plan.parse('1. element("unobtainium")\n2. join()\n', tools=tools.ELEMENT_TOOLS)
    result = anyio.run(lambda: taskloom.execute(plan, tools=tools.ELEMENT_TOOLS))
    task = result.tasks[taskloom.TaskId("1")]
    assert task.status == "failed"
    assert "no element is called 'unobtainium'" in str(task.error)


# ---------------------------------------------------------------- the question set


@pytest.fixture(scope="module")
def questions() -> list[dict[str, Any]]:
    lines = (ELEMENTQA / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_question_set_has_the_promised_mix(questions: list[dict[str, Any]]) -> None:
    assert len(questions) >= 40
    ids = [q["id"] for q in questions]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"e\d{3}", i) for i in ids)
    assert len({q["question"] for q in questions}) == len(questions)
    assert set(range(1, 7)) <= set(Counter(q["width"] for q in questions))
    assert {q["kind"] for q in questions} == {"lookup", "aggregate", "derived", "compare"}
    assert any(isinstance(q["answer"], str) and q["width"] > 1 for q in questions)


def test_the_file_is_what_the_generator_writes(questions: list[dict[str, Any]]) -> None:
    drafts = generate.draw(generate.DEFAULT_SEED)
    assert [generate.to_record(i, d) for i, d in enumerate(drafts, start=1)] == questions


def test_every_reference_plan_runs_and_gives_its_answer(questions: list[dict[str, Any]]) -> None:
    async def check_all() -> None:
        for q in questions:
            outputs = await generate.run_reference(q["question"], q["reference_plan"])
            last = str(len(outputs))
            value = generate.answer_of(outputs, last, q["answer_field"], q["answer_pick"])
            assert score(value, q["answer"], q["tolerance"]), (q["id"], value, q["answer"])
            lookups = [o for o in outputs if not isinstance(outputs[o], float)]
            assert len(lookups) == q["width"], q["id"]

    anyio.run(check_all)


def test_records_are_well_formed(questions: list[dict[str, Any]]) -> None:
    for q in questions:
        assert q["question"].endswith("?"), q["id"]
        assert not q["needs_replan"], q["id"]
        if isinstance(q["answer"], str):
            assert q["tolerance"] == 0 and q["answer"], q["id"]
        else:
            assert isinstance(q["answer"], int | float) and q["tolerance"] > 0, q["id"]
        assert (q["answer_pick"] is not None) == (q["kind"] == "compare"), q["id"]


# ---------------------------------------------------------------- the worked examples


@pytest.fixture(scope="module")
def examples() -> list[taskloom.agent.Example]:
    return load_examples(ELEMENTQA / "examples.jsonl")


def test_three_examples_that_check_against_the_tools(examples: list[Any]) -> None:
    assert len(examples) == 3
    agent = Agent(tools=list(tools.ELEMENT_TOOLS), model=ScriptedModel([]), examples=examples)
    assert len(agent.examples) == 3
    assert all(e.results and e.decision for e in examples)


def test_no_example_is_a_benchmark_question(
    examples: list[Any], questions: list[dict[str, Any]]
) -> None:
    asked = {q["question"].casefold() for q in questions}
    assert not {e.question.casefold() for e in examples} & asked


def test_example_results_are_what_the_tools_return(examples: list[Any]) -> None:
    for example in examples:
        outputs = anyio.run(generate.run_reference, example.question, example.calls)
        assert outputs == example.results, example.question


def test_examples_answer_by_reference(examples: list[Any]) -> None:
    for example in examples:
        assert re.search(r"Finish\(\$\d+(\.\w+)?\)", example.decision), example.question
