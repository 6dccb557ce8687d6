"""A string that is exactly one reference ("$1"): text where the parameter wants text.

`$1` outside quotes passes the output itself; `"$1"` is text where the
parameter's type is text and the output itself everywhere else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

import pydantic
import pytest

from taskloom import Plan, Ref, Template, execute, tool
from taskloom.plan._check import bind_task, wants_text
from taskloom.tools.world import WORLD_TOOLS

pytestmark = pytest.mark.anyio


@tool
async def number(value: float) -> float:
    """A number."""
    return value


@tool
async def facts() -> dict[str, Any]:
    """A record with a number, a list and a dict in it."""
    return {"population": 67_000_000, "sizes": [1, 2], "nested": {"a": 1}}


@tool
async def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@tool
async def keep(value: Any) -> Any:
    """Return the value as it came."""
    return value


@tool
async def count(value: int) -> int:
    """An int."""
    return value


@tool
async def join_texts(parts: list[str], sep: str | None = None) -> str:
    """Join texts."""
    return (sep or "+").join(parts)


@tool
async def table(rows: dict[str, str]) -> dict[str, str]:
    """A dict of texts."""
    return rows


TOOLS = [number, facts, shout, keep, count, join_texts, table, *WORLD_TOOLS]


async def outputs(text: str) -> dict[str, Any]:
    result = await execute(Plan.parse(text), tools=TOOLS)
    errors = {i: str(t.error) for i, t in result.tasks.items() if t.error is not None}
    assert not errors, errors
    return {i: t.output for i, t in result.tasks.items()}


def test_a_lone_quoted_reference_is_kept_as_written_text() -> None:
    plan = Plan.parse('1. number(3)\n2. shout("$1")\n')
    assert plan["2"].args == (Template((Ref("1"),)),)
    assert plan["2"].dependencies == {"1"}
    assert Plan.parse(plan.to_text())["2"].args == plan["2"].args


async def test_quoted_reference_to_a_number_passed_to_a_str_parameter_is_its_text() -> None:
    out = await outputs('1. number(3)\n2. shout("$1")\n3. shout("${1}")\n')
    assert out["2"] == "3"
    assert out["3"] == "3"


async def test_quoted_field_reference_to_a_number_in_math_is_its_text() -> None:
    out = await outputs('1. country("France")\n2. math("$1.population")\n')
    assert out["2"] == float(out["1"]["population"])


async def test_quoted_reference_to_a_record_passed_to_text_is_json() -> None:
    out = await outputs('1. facts()\n2. shout("$1.nested")\n')
    assert out["2"] == '{"A": 1}'


async def test_where_the_parameter_wants_a_value_the_quoted_reference_is_the_value() -> None:
    out = await outputs(
        '1. facts()\n2. keep("$1")\n3. count("$1.population")\n4. keep("$1.sizes")\n'
    )
    assert out["2"] == out["1"]
    assert out["3"] == 67_000_000
    assert out["4"] == [1, 2]


async def test_unquoted_reference_is_always_the_value() -> None:
    out = await outputs("1. facts()\n2. keep($1.population)\n")
    assert out["2"] == 67_000_000
    result = await execute(Plan.parse("1. number(3)\n2. shout($1)\n"), tools=TOOLS)
    assert result.tasks["2"].error is not None
    assert "valid string" in str(result.tasks["2"].error)


async def test_inside_lists_and_dicts_the_item_type_decides() -> None:
    out = await outputs(
        '1. number(2)\n2. join_texts(["$1", "x"], sep="$1")\n3. table({"k": "$1"})\n'
        '4. keep(["$1", {"k": "$1"}])\n'
    )
    assert out["2"] == "22x"
    assert out["3"] == {"k": "2"}
    assert out["4"] == [2.0, {"k": 2.0}]


async def test_json_plans_follow_the_same_rule() -> None:
    plan = Plan.from_json(
        {
            "tasks": [
                {"id": 1, "tool": "facts"},
                {"id": 2, "tool": "math", "args": {"expression": "$1.population"}},
                {"id": 3, "tool": "keep", "args": {"value": "$1.nested"}},
            ]
        }
    )
    result = await execute(plan, tools=TOOLS)
    assert result.tasks["2"].output == 67_000_000.0
    assert result.tasks["3"].output == {"a": 1}


def test_bind_task_decides_once_by_the_parameter_type() -> None:
    plan = Plan.parse('1. facts()\n2. keep("$1")\n3. shout("$1")\n')
    tools = {t.name: t for t in TOOLS}
    assert bind_task(plan["2"], tools) == {"value": Ref("1")}
    assert bind_task(plan["3"], tools) == {"text": Template((Ref("1"),))}


class Color(StrEnum):
    RED = "red"


class Model(pydantic.BaseModel):
    name: str


@pytest.mark.parametrize(
    ("hint", "text"),
    [
        (str, True),
        (str | None, True),
        (Annotated[str, "doc"], True),
        (Literal["a", "b"], True),
        (Color, True),
        (Literal["a", 1], False),
        (str | int, False),
        (Any, False),
        (int, False),
        (dict[str, Any], False),
        (list[str], False),
        (Model, False),
    ],
)
def test_which_types_want_text(hint: Any, text: bool) -> None:
    assert wants_text(hint) is text


async def test_a_missing_field_with_a_huge_name_is_quoted_short() -> None:
    @tool
    async def wide() -> dict[str, int]:
        return {f"{'k' * 100_000}{i}": i for i in range(30)}

    plan = Plan.parse(f"1. wide()\n2. keep($1.{'f' * 1_000_000})\n")
    result = await execute(plan, tools=[wide, keep])
    error = str(result.tasks["2"].error)
    assert "has no field" in error and "and 10 more" in error
    assert len(error) < 2000


def test_a_python_built_task_nested_too_deeply_is_a_plan_error() -> None:
    from taskloom import PlanError, Task

    value: Any = [Ref("1")]
    for _ in range(10_000):
        value = [value]
    tasks = [Task(id="1", tool="facts"), Task(id="2", tool="keep", args=(value,))]
    with pytest.raises(PlanError, match="nested too deeply"):
        Plan(tasks, tools=TOOLS)
