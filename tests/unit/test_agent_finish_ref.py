"""The joiner answers by reference; grounded answers keep booleans and nested fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_grammar import GrammarOracle

from taskloom import UserError, tool
from taskloom.agent import Agent, Finish, Replan
from taskloom.agent._answer import answer_references, answer_text
from taskloom.agent.prompts import result_text, result_values
from taskloom.errors import ConfigError
from taskloom.llm import bundled_model_path
from taskloom.store import Store
from taskloom.testing import ScriptedModel
from taskloom.tools.world import WORLD_TOOLS

pytestmark = pytest.mark.anyio

MOTTO = 'Firme y "feliz" por la unión'


@tool
def lookup(name: str) -> dict[str, Any]:
    """A record with every kind of value in it."""
    return {
        "name": name,
        "capital": "Lima",
        "population": 33715471,
        "ratio": 0.1 + 0.2,
        "member": True,
        "landlocked": False,
        "motto": MOTTO,
        "leader": {"name": "Ana", "since": 2021, "party": "none", "age": 51},
        "items": [{"name": "first", "n": 1}, {"name": "second", "n": 2}],
    }


@tool
def broken(name: str) -> str:
    """Always fails."""
    raise ValueError(f"no data for {name}")


TOOLS = [lookup, broken]
PLAN = '1. lookup("Peru")\n2. join()<END_OF_PLAN>'


def finish(answer: str) -> str:
    return f"Thought: it is in the results.\nAction: Finish({answer})"


async def ask(answer: str, *, plan: str = PLAN, grammar: bool = False, **kw: Any) -> Any:
    model = ScriptedModel([plan, finish(answer)])
    return await Agent(tools=TOOLS, model=model, grammar=grammar, **kw).run("Tell me of Peru")


@pytest.mark.parametrize(
    ("written", "answer", "value"),
    [
        ("$1.capital", "Lima", "Lima"),
        ("$1.population", "33715471", 33715471),
        ("$1.ratio", "0.3", 0.1 + 0.2),
        ("$1.member", "yes", True),
        ("$1.landlocked", "no", False),
        ("$1.motto", MOTTO, MOTTO),
        ("$1.leader.name", "Ana", "Ana"),
        ("$1.items[1].name", "second", "second"),
        ("$1.items[0]", '{"name": "first", "n": 1}', {"name": "first", "n": 1}),
        ("${1.leader.since}", "2021", 2021),
    ],
)
async def test_a_reference_answer_is_the_exact_value(written: str, answer: str, value: Any) -> None:
    result = await ask(written)
    assert result.status == "answered"
    assert result.answer == answer
    assert result.value == value and type(result.value) is type(value)
    (decision,) = result.decisions
    assert isinstance(decision, Finish)
    assert (decision.written, decision.answer) == (written, answer)
    assert decision.reference == written.replace("${", "$").rstrip("}")


async def test_text_with_references_is_rendered_and_has_no_single_value() -> None:
    result = await ask("The capital of $1.name is $1.capital ($1.population people).")
    assert result.answer == "The capital of Peru is Lima (33715471 people)."
    assert result.value is None
    data = result.to_dict()
    assert data["value"] is None
    (decision,) = data["decisions"]
    assert decision["written"] == "The capital of $1.name is $1.capital ($1.population people)."
    assert decision["answer"] == result.answer and decision["reference"] is None


async def test_the_json_form_carries_the_exact_value() -> None:
    data = (await ask("$1.leader")).to_dict()
    assert data["value"] == {"name": "Ana", "since": 2021, "party": "none", "age": 51}
    assert data["answer"] == '{"name": "Ana", "since": 2021, "party": "none", "age": 51}'
    assert data["decisions"][0]["reference"] == "$1.leader"


async def test_an_answer_without_references_is_kept_as_written() -> None:
    result = await ask("It costs $1,000 or $2.50, says Lima")
    assert result.answer == "It costs $1,000 or $2.50, says Lima"
    (decision,) = result.decisions
    assert isinstance(decision, Finish) and decision.written is None


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("$9.capital", "$9, which has no result"),
        ("$2", "$2, which has no result"),  # the task failed
        ("$1.mayor", "no field 'mayor'"),
        ("$1.items[5].name", "no item 5"),
    ],
)
async def test_a_reference_to_no_result_asks_for_a_new_plan(written: str, problem: str) -> None:
    plan = '1. lookup("Peru")\n2. broken("Peru")\n3. join()<END_OF_PLAN>'
    second = '4. lookup("Chile")\n5. join()<END_OF_PLAN>'
    model = ScriptedModel([plan, finish(written), second, finish("$4.capital")])
    result = await Agent(tools=TOOLS, model=model, grammar=False).run("Tell me of Peru")
    assert result.status == "answered" and result.answer == "Lima"
    first, last = result.decisions
    assert isinstance(first, Replan) and problem in first.reason and written in first.reason
    assert isinstance(last, Finish) and last.reference == "$4.capital"
    assert problem in model.calls[2][-1].content  # the planner is told what was missing


async def test_on_the_last_round_a_reference_to_no_result_gives_the_last_result() -> None:
    plan = '1. broken("Peru")\n2. lookup("Peru")\n3. join()<END_OF_PLAN>'
    result = await ask("$1.capital", plan=plan, max_replans=0)
    assert result.status == "answered"
    (decision,) = result.decisions
    assert isinstance(decision, Finish) and decision.written == "$1.capital"
    assert decision.answer == result_text(lookup.fn("Peru"))
    assert result.value is None


async def test_the_joiner_sees_nested_fields_in_short() -> None:
    model = ScriptedModel([PLAN, finish("$1.leader.name")])
    await Agent(tools=TOOLS, model=model, grammar=False).run("Who leads Peru?")
    seen = model.calls[1][-1].content
    # Three plain fields of a nested record, the first items of a list.
    assert '"leader": {"name": "Ana", "since": 2021, "party": "none"}' in seen
    assert '"items": [{"name": "first", "n": 1}, {"name": "second", "n": 2}]' in seen
    assert '"age"' not in seen


def test_answer_text_renders_values_for_an_answer() -> None:
    assert answer_text(66987244.0) == "66987244"
    assert answer_text(386662.006672) == "386662.006672"
    assert answer_text(1 / 3) == "0.333333333333333"
    assert answer_text(True) == "yes" and answer_text(False) == "no"
    assert answer_text(None) == "none"
    assert answer_text([1, "a", True]) == '[1, "a", true]'


def test_answer_references_are_bounded_and_name_real_values() -> None:
    refs = answer_references([("1", lookup.fn("Peru")), ("3", [{"x": 1}] * 9)])
    assert {"$1", "$1.capital", "$1.leader.name", "$1.items[1].name", "$3[4].x"} <= set(refs)
    assert "$3[5]" not in refs and "$3[5].x" not in refs
    deep = {"a": {"b": {"c": {"d": 1}}}}
    assert "$1.a.b.c" in answer_references([("1", deep)])
    assert "$1.a.b.c.d" not in answer_references([("1", deep)])
    wide = {f"f{i}": i for i in range(200)}
    assert len(answer_references([("1", wide)])) == 64
    assert answer_references([("1", {"not a name": 1})]) == ["$1"]


def test_result_values_keep_booleans_and_nested_fields() -> None:
    text = result_text(lookup.fn("Peru"))
    values = result_values([text, "error: nothing", "0.25"])
    assert {"Lima", "33715471", "yes", "no", "Ana", "2021", "second", MOTTO, "0.25"} <= set(values)
    assert len(values) == len(set(values))


# Grammars, checked by llama.cpp's own grammar engine over the bundled vocabulary.


@pytest.fixture(scope="module")
def oracle() -> Iterator[GrammarOracle]:
    try:
        path = bundled_model_path()
    except ConfigError as exc:
        pytest.fail(f"no bundled model vocabulary: {exc}")
    checker = GrammarOracle(str(path))
    yield checker
    checker.close()


async def joiner_grammar_of(answer: str, **kw: Any) -> str:
    model = ScriptedModel([PLAN, finish(answer)])
    await Agent(tools=TOOLS, model=model, grammar=True, **kw).run("Tell me of Peru")
    grammar = model.options[1].grammar
    assert grammar is not None
    return grammar


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        ("$1.capital", True),
        ("$1", True),
        ("$1.leader.name", True),
        ("$1.items[0].name", True),
        ("yes", True),  # a boolean in the results makes yes/no answers possible
        ("Ana", True),  # a value from a nested record
        ("Lima, $1.population", True),
        ("$9.x", False),  # no task 9
        ("$1.mayor", False),  # no such field
        ("$1.items[7]", False),
        ("Bogota", False),  # not in the results
        ("The capital is $1.capital", False),
    ],
)
async def test_the_grounded_joiner_grammar_offers_real_references_and_values(
    oracle: GrammarOracle, answer: str, accepted: bool
) -> None:
    grammar = await joiner_grammar_of("$1.capital")
    assert oracle.accepts(grammar, finish(answer)) is accepted


async def test_an_ungrounded_joiner_writes_free_text_with_references(
    oracle: GrammarOracle,
) -> None:
    grammar = await joiner_grammar_of("x", grounded=False)
    assert oracle.accepts(grammar, finish("The capital is $1.capital, I think"))
    assert oracle.accepts(grammar, finish("Bogota"))
    result = await ask("The capital is $1.capital, I think", grammar=True, grounded=False)
    assert result.answer == "The capital is Lima, I think"


def test_grounding_follows_the_grammar_and_needs_it() -> None:
    model = ScriptedModel([])
    assert Agent(tools=TOOLS, model=model, grammar=True).grounded is True
    assert Agent(tools=TOOLS, model=model, grammar=False).grounded is False
    assert Agent(tools=TOOLS, model=model, grammar=True, grounded=False).grounded is False
    with pytest.raises(UserError, match="grammar=True"):
        Agent(tools=TOOLS, model=model, grammar=False, grounded=True)


async def test_grounding_is_recorded_and_resumed(tmp_path: Path) -> None:
    plan = '1. math("1+1")\n2. join()<END_OF_PLAN>'
    with Store.open(tmp_path / "s.sqlite3") as store:
        model = ScriptedModel([plan, finish("$1")])
        agent = Agent(tools=WORLD_TOOLS, model=model, grammar=True, grounded=False, store=store)
        result = await agent.run("1+1?")
        assert (result.answer, result.value) == ("2", 2.0)
        (run,) = store.runs()
        assert store.load(run.id).config["grounded"] is False
        again = Agent.from_store(store, run.id, model=ScriptedModel([]))
    assert (again.grammar, again.grounded) == (True, False)
