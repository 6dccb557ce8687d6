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


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("as_text", [False, True], ids=["mapping", "json text"])
def test_json_values_nested_10000_deep_are_a_plan_error(as_text: bool) -> None:
    doc = {"tasks": [{"id": 1, "tool": "math", "args": {"expression": _nested(10_000)}}]}
    deep = "[" * 10_000 + '"x"' + "]" * 10_000
    text = '{"tasks": [{"id": 1, "tool": "math", "args": {"expression": ' + deep + "}}]}"
    data = text if as_text else doc
    with pytest.raises(PlanError, match="nested|cannot be read|recursion"):
        Plan.from_json(data)  # type: ignore[arg-type]


def test_json_values_nested_64_deep_are_fine() -> None:
    doc = {"tasks": [{"id": 1, "tool": "math", "args": {"expression": _nested(60)}}]}
    assert len(Plan.from_json(doc)) == 1


@pytest.mark.parametrize("digits", ["1" + "0" * 9, "9" * 5000], ids=["ten digits", "5000 digits"])
def test_json_task_ids_have_at_most_nine_digits(digits: str) -> None:
    text = '{"tasks": [{"id": ' + digits + ', "tool": "math", "args": {}}]}'
    with pytest.raises(PlanError, match=r"tasks\.0\.id|out of range") as caught:
        Plan.from_json(text)
    assert len(str(caught.value)) < 300


def test_an_unknown_json_field_with_a_huge_name_is_quoted_short() -> None:
    doc = {"tasks": [{"id": 1, "tool": "math", "x" * 1_000_000: 1}]}
    with pytest.raises(PlanError) as caught:
        Plan.from_json(doc)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    "data",
    [
        '\ufeff{"tasks": [{"id": 1, "tool": "f", "args": {"x": "a"}}]}',
        b'\xef\xbb\xbf{"tasks": [{"id": 1, "tool": "f", "args": {"x": "a"}}]}',
    ],
    ids=["str", "bytes"],
)
def test_a_byte_order_mark_before_a_json_plan_is_skipped(data: str | bytes) -> None:
    assert list(Plan.from_json(data).tasks) == ["1"]


@pytest.mark.parametrize("value", ["\ud800", ["ok", "x\udc00"], {"k": "\ud83d"}])
def test_half_a_surrogate_pair_in_a_json_plan_built_in_python_is_a_plan_error(
    value: object,
) -> None:
    data = {"tasks": [{"id": 1, "tool": "f", "args": {"x": value}}]}
    with pytest.raises(PlanError, match="half of a surrogate pair"):
        Plan.from_json(data)
