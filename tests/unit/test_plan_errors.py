"""Malformed plans: each gives a PlanError with a position, never a hang or another error."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskloom import Plan, PlanError, PlanParser, Ref, parse_stream, tool


@tool
def city(name: str) -> dict[str, Any]:
    """City facts."""
    return {}


@tool
def add(a: float, b: float) -> float:
    """Add."""
    return a + b


TOOLS = [city, add]

CASES: list[tuple[str, str | bytes, str, int | None, int | None]] = [
    # (case, plan, message fragment, line, column)
    ("cycle", "1. add($2, 1)\n2. add($1, 1)\n", "cycle: task 1 -> task 2 -> task 1", 1, 1),
    ("self reference", "1. add($1, 1)\n", "refers to its own result", 1, 8),
    ("unknown tool", '1. town("Paris")\n', "unknown tool 'town'; the tools are: add, city", 1, 1),
    ("wrong argument type", '1. add("one", 2)\n', "a='one': Input should be a valid number", 1, 1),
    ("too many arguments", "1. add(1, 2, 3)\n", "at most 2 positional", 1, 1),
    ("unknown keyword", "1. add(1, c=2)\n", "no parameter 'c'", 1, 1),
    ("missing argument", "1. add(1)\n", "missing required argument(s): b", 1, 1),
    ("missing reference", '1. city("Paris")\n2. add($7, 1)\n', "$7 refers to task 7", 2, 1),
    ("duplicate id", '1. city("A")\n1. city("B")\n', "task id 1 is used twice", 2, 1),
    ("truncated line", '1. city("Par', "never closed", 1, 9),
    ("truncated call", "1. add(1, 2", "the line ends", 1, 12),
    ("unbalanced quotes", "1. city(\"Paris')\n", "never closed", 1, 9),
    ("unbalanced brackets", "1. add([1, 2, 3)\n", "expected ',' or ']'", 1, 16),
    ("non-UTF-8 bytes", b'1. city("ok")\n2. city("\xff\xfe")\n', "not valid UTF-8", 2, 10),
    ("unquoted text", "1. city(Paris)\n", "unquoted text 'Paris'", 1, 9),
    ("junk after call", '1. city("Paris") and more\n', "after the call's closing", 1, 18),
    ("numbered prose", "1. look up the city\n", "expected a tool call", 1, 1),
    ("bad reference", "1. add($-1, 1)\n", "'$' must be followed by a task number", 1, 8),
    ("positional after keyword", "1. add(a=1, 2)\n", "positional argument may not follow", 1, 13),
    ("deep nesting", "1. add(" + "[" * 200 + ")\n", "nested more than 64 deep", 1, None),
    ("huge number", "1. add(" + "9" * 5000 + ", 1)\n", "not a usable number", 1, 8),
    ("1 MB line", '1. city("' + "x" * (1 << 20) + "\n", "never closed", 1, 9),
    ("huge task number", "9" * 5000 + '. city("x")\n', "has at most 9 digits", 1, 1),
    ("huge numbered prose", "9" * 5000 + ". look it up\n", "has at most 9 digits", 1, 1),
    (
        "huge reference",
        '1. city("x")\n2. add($' + "9" * 5000 + ", 1)\n",
        "more than 9 digits",
        2,
        8,
    ),
    ("huge reference in a string", '1. city("$' + "9" * 5000 + '")\n', "more than 9 digits", 1, 10),
    ("huge index", '1. city("x")\n2. add($1.a[' + "9" * 5000 + "], 1)\n", "an index has", 2, 13),
    (
        "huge dotted index",
        '1. city("x")\n2. add($1.' + "9" * 5000 + ", 1)\n",
        "an index has",
        2,
        11,
    ),
    ("negative task number", '-1. city("x")\n', "'-1' is not a task number", 1, 1),
    ("task number zero", '0. city("x")\n', "whole numbers from 1", 1, 1),
    ("nested 10,000 deep", "1. add(" + "[" * 10_000 + ")\n", "nested more than 64 deep", 1, None),
    ("dicts nested deep", "1. add(" + '{"k": ' * 10_000 + ")\n", "nested more than 64", 1, None),
    ("infinite number", "1. add(1e999, 1)\n", "too large for a number", 1, 8),
]


@pytest.mark.parametrize(
    ("text", "fragment", "line", "column"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_malformed_plans_raise_plan_error_with_position(
    text: str | bytes, fragment: str, line: int | None, column: int | None
) -> None:
    with pytest.raises(PlanError) as caught:
        Plan.parse(text, tools=TOOLS)
    error = caught.value
    assert fragment in str(error)
    assert error.position is not None
    assert error.position.line == line
    if column is not None:
        assert error.position.column == column


def test_plan_error_message_names_task_position_and_line() -> None:
    with pytest.raises(PlanError) as caught:
        Plan.parse('1. city("Paris")\n2. city(Paris)\n', tools=TOOLS)
    assert str(caught.value) == (
        "task 2, line 2, column 9: unquoted text 'Paris'; write strings in quotes, "
        'like "Paris"\n    2. city(Paris)'
    )
    assert caught.value.task_id == "2"


def test_streaming_parser_rejects_forward_references() -> None:
    parser = PlanParser()
    with pytest.raises(PlanError, match="does not exist yet"):
        parser.feed("1. add($2, 1)\n")


def test_valid_tasks_before_an_error_are_kept() -> None:
    parser = PlanParser(tools=TOOLS)
    good = parser.feed('1. city("Paris")\n')
    with pytest.raises(PlanError):
        parser.feed("2. city(\n")
    assert [t.id for t in good] == ["1"]


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_parser_raises_nothing_but_plan_error_on_any_text(text: str) -> None:
    try:
        Plan.parse(text, tools=TOOLS)
    except PlanError:
        pass


PLAN_ALPHABET = st.sampled_from(list("0123456789.()[]{},:=$\"'\\ \nabcxyz_-+eE#") + ["city", "add"])


@settings(max_examples=400, deadline=None)
@given(st.lists(PLAN_ALPHABET, max_size=80).map("".join))
def test_parser_raises_nothing_but_plan_error_on_plan_like_text(text: str) -> None:
    try:
        Plan.parse(text, tools=TOOLS)
    except PlanError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=7))
def test_incremental_bytes_raise_nothing_but_plan_error(data: bytes, step: int) -> None:
    parser = PlanParser(tools=TOOLS)
    try:
        for i in range(0, len(data), step):
            parser.feed(data[i : i + step])
        parser.close()
    except PlanError:
        pass


HUGE = 5_000_000


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("1. city(" + "x" * HUGE + ")\n", 9),
        ("1. " + "y" * HUGE + '("a")\n', 1),
        ('1. add("' + "z" * HUGE + '", 1)\n', 1),
        ("1. add(1, " + "w" * HUGE + "=2)\n", 1),
        ("1. add(a=1, " + "v" * HUGE + "=1, " + "v" * HUGE + "=2)\n", None),
    ],
    ids=["unquoted word", "tool name", "bad argument", "unknown keyword", "keyword twice"],
)
def test_messages_quote_a_short_excerpt_of_huge_text(text: str, column: int | None) -> None:
    with pytest.raises(PlanError) as caught:
        Plan.parse(text, tools=TOOLS)
    message = str(caught.value)
    assert len(message) < 1000, message[:2000]
    assert "characters)" in message  # the excerpt says how long the text was
    assert caught.value.position is not None
    if column is not None:
        assert caught.value.position.column == column


def test_the_line_shown_is_the_part_around_the_error() -> None:
    text = '1. add("' + "a" * 10_000 + '", b=zzz)\n'
    with pytest.raises(PlanError) as caught:
        Plan.parse(text, tools=TOOLS)
    error = caught.value
    assert error.position is not None and error.position.column == 10_014
    assert error.line_text is not None and "b=zzz)" in error.line_text
    assert len(error.line_text) < 200 and error.line_text.startswith("...")
    assert len(str(error)) < 400


async def _chunks(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


@pytest.mark.anyio
async def test_a_streamed_plan_with_a_huge_task_number_raises_plan_error() -> None:
    seen = []
    with pytest.raises(PlanError, match="at most 9 digits"):
        async for task in parse_stream(_chunks('1. city("a")\n', "9" * 5000, '. city("b")\n')):
            seen.append(task.id)
    assert seen == ["1"]


def test_python_built_tasks_with_huge_ids_give_short_messages() -> None:
    from taskloom import Task

    huge = "7" * 1_000_000
    with pytest.raises(PlanError) as twice:
        Plan([Task(id=huge, tool="city"), Task(id=huge, tool="city")])
    with pytest.raises(PlanError) as missing:
        Plan([Task(id="1", tool="add", args=(Ref(huge), 1))])
    for caught in (twice, missing):
        assert len(str(caught.value)) < 600


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"id": "", "tool": "f"}, "a task id is a non-empty str, like '1'; got ''"),
        ({"id": 1, "tool": "f"}, "a task id is a non-empty str, like '1'; got 1"),
        ({"id": "1", "tool": ""}, "task 1: the tool is named by a non-empty str"),
        ({"id": "1", "tool": "f", "args": "ab"}, "task 1: args is a tuple of arguments, not 'ab'"),
        ({"id": "1", "tool": "f", "kwargs": {3: 4}}, "task 1: kwargs maps parameter names"),
        ({"id": "1", "tool": "f", "kwargs": [("a", 1)]}, "task 1: kwargs maps parameter names"),
    ],
    ids=["empty id", "int id", "empty tool", "str args", "int keyword", "list kwargs"],
)
def test_a_task_built_in_python_with_fields_of_the_wrong_type_is_a_user_error(
    fields: dict[str, Any], words: str
) -> None:
    from taskloom import Task, UserError

    with pytest.raises(UserError) as caught:
        Task(**fields)
    assert str(caught.value).startswith(words)


def test_a_task_given_args_as_a_list_keeps_them_as_a_tuple() -> None:
    from taskloom import Task

    task = Task(id="2", tool="f", args=[Ref("1"), 2])  # type: ignore[arg-type]
    assert task.args == (Ref("1"), 2) and task.dependencies == {"1"}


@pytest.mark.parametrize("literal", ["1e-400", "2e-324", "-3.5e-999"])
def test_a_number_too_small_for_a_float_is_a_plan_error_not_zero(literal: str) -> None:
    with pytest.raises(PlanError, match=f"'{literal}' is too small for a number"):
        Plan.parse(f"1. f({literal})\n")


@pytest.mark.parametrize("literal", ["0e5", "0.0", "-0.0", "0.000e-999", "5e-324"])
def test_zero_and_the_smallest_floats_are_numbers(literal: str) -> None:
    assert Plan.parse(f"1. f({literal})\n")["1"].args == (float(literal),)
