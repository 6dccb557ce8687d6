import json

import jsonschema
import pytest

from taskloom import Plan, PlanError, Ref, Template, tool
from taskloom.plan.json import plan_json_schema


@tool
def country(name: str) -> dict[str, object]:
    """Country facts."""
    return {}


@tool
def math(expression: str) -> float:
    """Arithmetic."""
    return 0.0


DOC = {
    "thought": "two lookups, then add",
    "tasks": [
        {"id": 1, "tool": "country", "args": {"name": "France"}},
        {"id": 2, "tool": "country", "args": {"name": "Germany"}},
        {"id": 3, "tool": "math", "args": {"expression": "$1.population + ${2}"}},
    ],
}


def test_json_plan_reads_references_in_strings() -> None:
    plan = Plan.from_json(json.dumps(DOC), tools=[country, math])
    assert plan["3"].kwargs == {
        "expression": Template((Ref("1", ("population",)), " + ", Ref("2")))
    }
    assert plan["3"].dependencies == {"1", "2"}


def test_json_plan_may_list_tasks_in_any_order_but_not_in_a_cycle() -> None:
    doc = {
        "tasks": [
            {"id": 2, "tool": "math", "args": {"expression": "$1"}},
            {"id": 1, "tool": "country", "args": {"name": "France"}},
        ]
    }
    plan = Plan.from_json(doc, tools=[country, math])
    assert [t.id for t in plan.in_dependency_order()] == ["1", "2"]
    cyclic = {
        "tasks": [
            {"id": 1, "tool": "math", "args": {"expression": "$2"}},
            {"id": 2, "tool": "math", "args": {"expression": "$1"}},
        ]
    }
    with pytest.raises(PlanError, match="cycle"):
        Plan.from_json(cyclic, tools=[country, math])


def test_json_that_does_not_fit_the_schema() -> None:
    with pytest.raises(PlanError, match="tasks.0.tool"):
        Plan.from_json({"tasks": [{"id": 1, "args": {}}]})
    with pytest.raises(PlanError, match="schema"):
        Plan.from_json("{not json")


def test_published_schema_accepts_plans_and_rejects_wrong_tools() -> None:
    schema = plan_json_schema([country, math])
    jsonschema.validate(DOC, schema)
    bad = {"tasks": [{"id": 1, "tool": "country", "args": {"nme": "France"}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    ref_arg = {"tasks": [{"id": 2, "tool": "country", "args": {"name": "$1.capital"}}]}
    jsonschema.validate(ref_arg, schema)
