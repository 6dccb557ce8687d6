import pytest

from taskloom import Plan, PlanParser, Ref, Template, tool
from taskloom.plan.text import END_OF_PLAN

PLAN = """Thought: Look both countries up at once, then add.
1. country("France")
2. country(name="Germany")
Thought: Add them.
3. math("$1.population + $2.population")
4. join()<END_OF_PLAN>
"""


def test_parses_tasks_thoughts_and_join() -> None:
    plan = Plan.parse(PLAN)
    assert list(plan.tasks) == ["1", "2", "3"]
    assert plan["1"].args == ("France",)
    assert plan["2"].kwargs == {"name": "Germany"}
    assert plan["1"].thought == "Look both countries up at once, then add."
    assert plan["3"].thought == "Add them."
    assert plan["3"].dependencies == {"1", "2"}
    assert plan.joined
    assert plan["3"].args == (
        Template((Ref("1", ("population",)), " + ", Ref("2", ("population",)))),
    )


def test_each_task_arrives_the_moment_its_line_is_complete() -> None:
    parser = PlanParser()
    seen: list[tuple[int, str]] = []
    for i, char in enumerate(PLAN):
        for task in parser.feed(char):
            seen.append((i, task.id))
    ends = [i for i, c in enumerate(PLAN) if c == "\n"]
    # Task 1 is on line 2, task 2 on line 3, task 3 on line 5.
    assert seen == [(ends[1], "1"), (ends[2], "2"), (ends[4], "3")]
    assert parser.done and parser.joined


def test_several_lines_in_one_chunk_and_lines_split_across_chunks() -> None:
    parser = PlanParser()
    first = parser.feed("1. a(1)\n2. a(2)\n3. a(")
    assert [t.id for t in first] == ["1", "2"]
    assert parser.feed("3") == []
    assert [t.id for t in parser.feed(")\n")] == ["3"]


def test_last_line_without_newline_arrives_on_close() -> None:
    parser = PlanParser()
    assert parser.feed('1. a("x")') == []
    assert [t.id for t in parser.close()] == ["1"]


def test_parentheses_quotes_and_escapes_inside_strings() -> None:
    plan = Plan.parse(
        '1. search("f(x) = (a, b)", note=\'it\\\'s "quoted"\')\n'
        '2. search("a \\\\ backslash, a \\n newline, \\u00e9")\n'
    )
    assert plan["1"].args == ("f(x) = (a, b)",)
    assert plan["1"].kwargs == {"note": 'it\'s "quoted"'}
    assert plan["2"].args == ("a \\ backslash, a \n newline, \u00e9",)


def test_money_in_strings_is_not_a_reference() -> None:
    plan = Plan.parse('1. a("x")\n2. note("costs $1,000 or $2.50, not $1")\n')
    (value,) = plan["2"].args
    assert value == Template(("costs $1,000 or $2.50, not ", Ref("1")))
    assert plan["2"].dependencies == {"1"}


def test_escaped_dollar_is_literal() -> None:
    plan = Plan.parse('1. note("price: \\$1")\n')
    assert plan["1"].args == ("price: $1",)
    assert plan["1"].dependencies == frozenset()


def test_reference_forms() -> None:
    plan = Plan.parse(
        '1. a(1)\n2. b($1, ${1}, $1.population, $1.cities[0], $1["key"], "$1", "${1}x")\n'
    )
    assert plan["2"].args == (
        Ref("1"),
        Ref("1"),
        Ref("1", ("population",)),
        Ref("1", ("cities", 0)),
        Ref("1", ("key",)),
        Template((Ref("1"),)),  # a string: text or the value, by the parameter's type
        Template((Ref("1"), "x")),
    )


def test_numbering_gaps_and_out_of_order_ids() -> None:
    plan = Plan.parse("1. a(1)\n5. a(2)\n3. a($5)\n")
    assert list(plan.tasks) == ["1", "5", "3"]
    assert plan["3"].dependencies == {"5"}


def test_literals() -> None:
    plan = Plan.parse(
        '1. f(1, -2.5, 3e2, True, false, None, null, [1, [2]], (1,), {"k": [1, 2]}, 1_000)\n'
    )
    assert plan["1"].args == (
        1,
        -2.5,
        300.0,
        True,
        False,
        None,
        None,
        [1, [2]],
        (1,),
        {"k": [1, 2]},
        1000,
    )


def test_prose_and_fences_are_ignored_but_numbered_lines_must_be_calls() -> None:
    plan = Plan.parse("Here is the plan:\n```\n1. a(1)\n```\nThat is all.\n")
    assert list(plan.tasks) == ["1"]


def test_text_after_end_of_plan_is_ignored() -> None:
    plan = Plan.parse(f"1. a(1){END_OF_PLAN}\n2. this is not parsed(\n")
    assert list(plan.tasks) == ["1"]


def test_round_trip_through_text() -> None:
    plan = Plan.parse(PLAN)
    again = Plan.parse(plan.to_text())
    assert [t.call_text() for t in again] == [t.call_text() for t in plan]
    assert again.joined


def test_bytes_are_decoded_incrementally() -> None:
    data = '1. city("Zürich")\n'.encode()
    parser = PlanParser()
    tasks = []
    for i in range(len(data)):
        tasks += parser.feed(data[i : i + 1])
    assert tasks[0].args == ("Zürich",)


def test_validation_against_tools_happens_per_line() -> None:
    @tool
    def city(name: str) -> dict[str, str]:
        """City."""
        return {}

    parser = PlanParser(tools=[city])
    assert [t.id for t in parser.feed('1. city("Paris")\n')] == ["1"]
    from taskloom import PlanError

    with pytest.raises(PlanError, match="unknown tool 'town'"):
        parser.feed('2. town("Lyon")\n')


def test_known_ids_allow_references_to_earlier_plans() -> None:
    parser = PlanParser(known={"1", "2"})
    (task,) = parser.feed("3. f($2)\n")
    assert task.dependencies == {"2"}


@pytest.mark.parametrize(
    "text", ['\ufeff1. f("a")\n2. f("b")\n', b'\xef\xbb\xbf1. f("a")\n2. f("b")\n']
)
def test_a_byte_order_mark_before_the_first_task_is_not_text(text: str | bytes) -> None:
    assert list(Plan.parse(text).tasks) == ["1", "2"]


def test_a_byte_order_mark_split_over_chunks_is_skipped() -> None:
    parser = PlanParser()
    assert parser.feed(b"\xef") == []
    assert parser.feed(b"\xbb\xbf") == []
    assert [t.id for t in parser.feed(b'1. f("a")\n')] == ["1"]


@pytest.mark.parametrize("number", ["１", "١", "٣"])
def test_a_task_numbered_with_other_digits_than_0_to_9_is_an_error(number: str) -> None:
    from taskloom import PlanError

    with pytest.raises(PlanError, match="written with the digits 0-9"):
        Plan.parse(f'{number}. f("a")\n')


@pytest.mark.parametrize("digit", ["１", "١"])
def test_a_dollar_before_other_digits_is_text_not_a_reference(digit: str) -> None:
    plan = Plan.parse(f'1. f("a")\n2. f("costs ${digit}")\n')
    assert plan["2"].args == (f"costs ${digit}",)
    assert plan["2"].dependencies == set()


def test_numbers_in_arguments_are_written_with_0_to_9() -> None:
    from taskloom import PlanError

    with pytest.raises(PlanError, match="expected a value"):
        Plan.parse("1. f(١٢)\n")


@pytest.mark.parametrize(
    "line",
    ['1. f("\\ud800")', '1. f("\\udfff x")', '1. f("\ud800")', 'Thought: \udc00\n1. f("a")'],
    ids=["high escape", "low escape", "raw in a string", "raw in a thought"],
)
def test_half_a_surrogate_pair_is_a_plan_error(line: str) -> None:
    from taskloom import PlanError

    with pytest.raises(PlanError, match="half of a surrogate pair"):
        Plan.parse(line + "\n")


def test_a_surrogate_pair_of_escapes_is_one_character() -> None:
    plan = Plan.parse('1. f("\\ud83d\\ude00")\n')
    assert plan["1"].args == ("\U0001f600",)


@pytest.mark.parametrize("text", [None, 5, ['1. f("a")']])
def test_plan_text_that_is_not_str_or_bytes_is_a_user_error(text: object) -> None:
    from taskloom import UserError

    with pytest.raises(UserError, match="str or bytes"):
        Plan.parse(text)  # type: ignore[arg-type]


def test_tools_given_as_a_string_are_a_user_error() -> None:
    from taskloom import UserError

    with pytest.raises(UserError, match="tools must be Tools"):
        Plan.parse('1. f("a")\n', tools="math")  # type: ignore[arg-type]
