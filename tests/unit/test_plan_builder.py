"""Graph: a plan built in Python equals the plan parsed from the same text."""

from __future__ import annotations

import dataclasses

import pytest

import taskloom
from taskloom import Graph, Plan, PlanError, UserError


@taskloom.tool
def country(name: str) -> dict[str, object]:
    """A country's facts."""
    return {"population": len(name) * 10, "names": [name.upper(), name.lower()]}


@taskloom.tool
def math(expr: str) -> str:
    """Echo an expression."""
    return expr


@taskloom.tool
def pair(a: object, b: object = None) -> list[object]:
    """Both arguments."""
    return [a, b]


def parsed(text: str) -> list[taskloom.Task]:
    return [dataclasses.replace(t, position=None) for t in Plan.parse(text)]


def test_fields_items_and_strings_match_the_text_plan() -> None:
    g = Graph()
    fr = g.call(country, "France")
    g.call(math, expr=f"{fr.population} * 2")
    g.call(pair, fr["names"][0], b=[fr, {"k": (fr.population,)}])
    g.call("math", f"{fr}")
    g.call(math, "costs $5")
    text = (
        '1. country("France")\n'
        '2. math(expr="$1.population * 2")\n'
        '3. pair($1.names[0], b=[$1, {"k": ($1.population,)}])\n'
        '4. math("$1")\n'
        '5. math("costs \\$5")\n'
    )
    assert list(g.plan()) == parsed(text)
    assert Plan.parse(g.plan().to_text()).to_text() == g.plan().to_text()


@pytest.mark.anyio
async def test_the_built_plan_runs() -> None:
    g = Graph()
    fr = g.call(country, "France")
    g.call(math, f"{fr.population} * 2")
    g.call(pair, fr["names"][1])
    result = await taskloom.execute(g.plan(), tools=g.tools)
    assert result.outputs["2"] == "60 * 2"
    assert result.outputs["3"] == ["france", None]


def test_bad_use_is_refused_clearly() -> None:
    g, other = Graph(), Graph()
    foreign = other.call(country, "Spain")
    with pytest.raises(UserError, match="another Graph"):
        g.call(pair, foreign)
    with pytest.raises(UserError, match="another Graph"):
        g.call(math, f"{foreign}")
    with pytest.raises(PlanError, match="no parameter 'nope'"):
        g.call(math, nope=1)
    with pytest.raises(UserError, match="no value yet"):
        bool(other.call(country, "Italy"))
    with pytest.raises(UserError, match="Tool or a tool's name"):
        g.call(42)  # type: ignore[arg-type]
