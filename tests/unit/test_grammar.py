"""Plan and joiner grammars, checked by llama.cpp's own grammar engine.

Only the bundled model's vocabulary is loaded (no weights), so this is fast.
`GrammarOracle.accepts` asks the grammar sampler, token by token, whether a
text is in the grammar's language, without ever feeding it a token it forbids
(that would abort the process).
"""

from __future__ import annotations

import ctypes
import enum
import math
from collections.abc import Iterator
from typing import Any, Literal

import pydantic
import pytest

from taskloom import Plan
from taskloom.agent import GrammarLimits
from taskloom.agent._grammar import joiner_grammar, plan_grammar, react_grammar
from taskloom.errors import ConfigError, PlanError, UserError
from taskloom.llm import bundled_model_path
from taskloom.plan import PlanParser
from taskloom.tools import Tool, tool
from taskloom.tools.world import WORLD_TOOLS

llama_cpp = pytest.importorskip("llama_cpp")


class GrammarOracle:
    """llama.cpp's GBNF parser and sampler over one vocabulary."""

    def __init__(self, model_path: str) -> None:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
        assert self.model
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)

    def close(self) -> None:
        llama_cpp.llama_model_free(self.model)

    def valid(self, grammar: str) -> bool:
        # The same check `Local` makes before handing a grammar to llama.cpp.
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
        return bool(sampler)

    def accepts(self, grammar: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        assert sampler, "invalid grammar"
        try:
            for token in [*self.tokenize(text), self.eos]:
                if not self._allowed(sampler, token):
                    return False
                if token != self.eos:
                    llama_cpp.llama_sampler_accept(sampler, token)
            return True
        finally:
            llama_cpp.llama_sampler_free(sampler)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        tokens = (llama_cpp.llama_token * (len(data) + 8))()
        count = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), tokens, len(tokens), False, False
        )
        assert count >= 0
        return list(tokens[:count])

    def _allowed(self, sampler: Any, token: int) -> bool:
        candidate = (llama_cpp.llama_token_data * 1)()
        candidate[0].id, candidate[0].logit, candidate[0].p = token, 0.0, 0.0
        array = llama_cpp.llama_token_data_array(candidate, 1, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return math.isfinite(candidate[0].logit)


@pytest.fixture(scope="module")
def oracle() -> Iterator[GrammarOracle]:
    try:
        path = bundled_model_path()
    except ConfigError as exc:
        pytest.skip(f"no bundled model vocabulary: {exc}")
    checker = GrammarOracle(str(path))
    yield checker
    checker.close()


@pytest.fixture(scope="module")
def world() -> str:
    return plan_grammar(WORLD_TOOLS, max_tasks=4)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(pydantic.BaseModel):
    x: float
    y: float = 0.0
    tag: str | None = None


@tool
def every(
    s: str,
    i: int,
    f: float,
    b: bool,
    words: list[str],
    d: dict[str, Any],
    o: str | None = None,
    lit: Literal["a", 'say "hi"', "5$"] = "a",
    color: Color = Color.RED,
    point: Point | None = None,
    pair: tuple[int, str] = (1, "x"),
    anything: Any = None,
    counts: dict[str, int] | None = None,
) -> str:
    return ""


@tool
def optional_only(a: int = 1, b: str = "") -> str:
    return ""


@tool
def no_args() -> str:
    return ""


ALL_TYPES: list[Tool] = [*WORLD_TOOLS, every, optional_only, no_args]


def test_each_step_offers_every_tool(world: str) -> None:
    for number in range(1, 5):
        call = f"call-{number} ::= " + " | ".join(f"tool-{t.name}-{number}" for t in WORLD_TOOLS)
        assert call + "\n" in world
    assert "tool-country-1 ::= " in world


def test_ids_are_enumerated_and_references_only_point_back(world: str) -> None:
    assert "root ::= step-1\n" in world
    assert "ref-1 ::=" not in world  # the first task has nothing to refer to
    assert 'ref-3 ::= "$" ("1" | "2") path each?\n' in world
    assert 'step-5 ::= thought? "5. join()" end\n' in world
    assert "step-6" not in world
    # At least one task before join() by default.
    assert "join" not in world.split("step-1 ::= ")[1].split("\n")[0]


def test_known_ids_can_be_referred_to() -> None:
    grammar = plan_grammar(WORLD_TOOLS, first_id=4, max_tasks=2, known_ids=["1", 3])
    assert "root ::= step-4\n" in grammar
    assert 'ref-4 ::= "$" ("1" | "3") path each?\n' in grammar
    assert 'ref-5 ::= "$" ("1" | "3" | "4") path each?\n' in grammar


def test_grammars_are_valid_gbnf(oracle: GrammarOracle, world: str) -> None:
    assert oracle.valid(world)
    assert oracle.valid(plan_grammar(WORLD_TOOLS))
    assert oracle.valid(plan_grammar(ALL_TYPES, first_id=3, known_ids=[1, 2], min_tasks=0))
    assert oracle.valid(joiner_grammar())
    assert oracle.valid(react_grammar(ALL_TYPES))
    assert not oracle.valid('root ::= ("unclosed"')  # the check itself works


GOOD_PLANS = [
    '1. country("France")\n2. join()<END_OF_PLAN>',
    # The plan language's own example, with a thought and a keyword argument.
    "Thought: Look both countries up at once, then add.\n"
    '1. country("France")\n'
    '2. country(name="Germany")\n'
    '3. math("$1.population + $2.population")\n'
    "4. join()<END_OF_PLAN>",
    '1. city("Paris", country=None)\n'
    '2. city(name="Paris", country="USA")\n'
    "3. distance($1.name, $2.name)\n"
    '4. convert($3.km, "km", "mile")\n'
    "Thought: done\n"
    "5. join()<END_OF_PLAN>",
    '1. distance("Lyon", "Milan")\n2. convert(-12.5, "degC", "degF")\n3. join()<END_OF_PLAN>',
    '1. math("2 * 3")\n2. math("$1 / 2, \\$5, $1.x[0]: <ok>")\n3. join()<END_OF_PLAN>',
    '1. convert(value=3, from_unit="km", to_unit="mile")\n2. join()<END_OF_PLAN>',
    # Conditions: the scheduler compares, the model only writes the form.
    '1. country("Iceland")\n2. country("Chile")\n'
    "3. city($1.capital) if $1.population > $2.population\n"
    "4. city($2.capital) if $2.population >= $1.population and $2.area_km2 != 0\n"
    "5. join()<END_OF_PLAN>",
    '1. distance("Rome", "Oslo")\n2. convert($1.km, "km", "mile") if $1.km < 2000.5\n'
    "3. join()<END_OF_PLAN>",
]


@pytest.mark.parametrize("text", GOOD_PLANS, ids=range(len(GOOD_PLANS)))
def test_accepted_plans_parse(oracle: GrammarOracle, world: str, text: str) -> None:
    assert oracle.accepts(world, text)
    plan = Plan.parse(text, tools=WORLD_TOOLS)
    assert plan.joined


BAD_PLANS = {
    "forward reference": '1. country("France")\n2. math("$3")\n3. join()<END_OF_PLAN>',
    "self reference": '1. country("France")\n2. math($2.x)\n3. join()<END_OF_PLAN>',
    "reference digit run": '1. country("France")\n2. math("$12")\n3. join()<END_OF_PLAN>',
    "skipped number": '1. country("France")\n3. join()<END_OF_PLAN>',
    "repeated number": '1. country("France")\n1. country("Spain")\n2. join()<END_OF_PLAN>',
    "unknown tool": '1. capital("France")\n2. join()<END_OF_PLAN>',
    "wrong type": '1. convert("ten", "km", "mile")\n2. join()<END_OF_PLAN>',
    "missing argument": '1. distance("Paris")\n2. join()<END_OF_PLAN>',
    "unknown keyword": '1. country(nation="France")\n2. join()<END_OF_PLAN>',
    "positional after keyword": '1. city(name="Paris", "FR")\n2. join()<END_OF_PLAN>',
    "unquoted text": "1. country(France)\n2. join()<END_OF_PLAN>",
    "single quotes": "1. country('France')\n2. join()<END_OF_PLAN>",
    "raw dollar": '1. math("$x")\n2. join()<END_OF_PLAN>',
    "no end marker": '1. country("France")\n2. join()',
    "text after the end": '1. country("France")\n2. join()<END_OF_PLAN>\nmore',
    "no tasks": "1. join()<END_OF_PLAN>",
    "too many tasks": "".join(f'{i}. country("X")\n' for i in range(1, 6))
    + "6. join()<END_OF_PLAN>",
    "end marker in a string": '1. math("<END_OF_PLAN>")\n2. join()<END_OF_PLAN>',
    "newline in a string": '1. math("1\n")\n2. join()<END_OF_PLAN>',
    "thought too long": "Thought: " + "x" * 201 + '\n1. country("F")\n2. join()<END_OF_PLAN>',
    "prose line": 'Sure!\n1. country("France")\n2. join()<END_OF_PLAN>',
    "condition on a later task": '1. country("F")\n2. country("G") if $3.x > 1\n'
    "3. join()<END_OF_PLAN>",
    "condition on the first task": '1. country("F") if 1 > 0\n2. join()<END_OF_PLAN>',
    "condition with prose": '1. country("F")\n2. country("G") if it is big\n3. join()<END_OF_PLAN>',
}


@pytest.mark.parametrize("text", BAD_PLANS.values(), ids=BAD_PLANS.keys())
def test_plans_outside_the_grammar_are_rejected(
    oracle: GrammarOracle, world: str, text: str
) -> None:
    assert not oracle.accepts(world, text)


def test_rejected_plans_are_mostly_ones_the_parser_refuses() -> None:
    # Why the rules matter: these would reach the scheduler as PlanErrors.
    for name in ("forward reference", "self reference", "reference digit run", "wrong type"):
        with pytest.raises(PlanError):
            Plan.parse(BAD_PLANS[name], tools=WORLD_TOOLS)


def test_conditions_can_be_left_out_of_the_grammar(oracle: GrammarOracle) -> None:
    plain = plan_grammar(WORLD_TOOLS, guards=False)
    guarded = '1. country("F")\n2. country("G") if $1.population > 3\n3. join()<END_OF_PLAN>'
    assert not oracle.accepts(plain, guarded)
    assert oracle.accepts(plain, '1. country("F")\n2. country("G")\n3. join()<END_OF_PLAN>')


def test_every_kind_of_parameter(oracle: GrammarOracle) -> None:
    grammar = plan_grammar(ALL_TYPES, max_tasks=3)
    text = (
        "1. no_args()\n"
        '2. every("s $1.a", -3, 2.5, True, ["a", $1], {"k": [1, None, "v"]}, o=None, '
        'lit="say \\"hi\\"", color="blue", point={"x": 1, "tag": "t"}, pair=[2, "y"], '
        'anything={"a": [True]}, counts={"n": $1.n})\n'
        '3. optional_only(b="x")\n'
        "4. join()<END_OF_PLAN>"
    )
    assert oracle.accepts(grammar, text)
    plan = Plan.parse(text, tools=ALL_TYPES)
    assert [t.tool for t in plan] == ["no_args", "every", "optional_only"]
    dollar = '1. every("", 1, 1, False, [], {}, lit="5\\$")\n2. join()<END_OF_PLAN>'
    assert oracle.accepts(grammar, dollar)
    assert next(iter(Plan.parse(dollar, tools=ALL_TYPES))).kwargs["lit"] == "5$"
    bad_arguments = [
        '"", 1.5, 1, False, [], {}',
        '"", 1, 1, 0, [], {}',
        '"", 1, 1, False, [], {}, lit="b"',
        '"", 1, 1, False, [], {}, color="green"',
        '"", 1, 1, False, [], {}, point={"y": 1}',
        '"", 1, 1, False, [], {}, o=None, o=None',
    ]
    for arguments in bad_arguments:
        text = f"1. every({arguments})\n2. join()<END_OF_PLAN>"
        assert not oracle.accepts(grammar, text), arguments


def test_references_from_earlier_plans(oracle: GrammarOracle) -> None:
    grammar = plan_grammar(WORLD_TOOLS, first_id=3, known_ids=["1", "2"], max_tasks=2)
    text = '3. math("$1.population + $2.population")\n4. math($3)\n5. join()<END_OF_PLAN>'
    assert oracle.accepts(grammar, text)
    parser = PlanParser(tools=WORLD_TOOLS, known={"1", "2"})
    assert len(parser.feed(text)) == 2
    assert not oracle.accepts(grammar, '3. math("$4")\n4. join()<END_OF_PLAN>')


def test_min_tasks_zero_allows_an_empty_plan(oracle: GrammarOracle) -> None:
    grammar = plan_grammar(WORLD_TOOLS, min_tasks=0, max_tasks=1)
    assert oracle.accepts(grammar, "Thought: nothing to do\n1. join()<END_OF_PLAN>")
    assert not oracle.accepts(grammar, '1. math("1")\n2. math("2")\n3. join()<END_OF_PLAN>')


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("Thought: It is Paris.\nAction: Finish(Paris (France), pop. 2.1 million)", True),
        ("Thought: not found\nAction: Replan(city 'Atlantis' is unknown)", True),
        ("Thought: x\nAction: Finish(a) b)", False),
        ("Thought: x\nAction: Finish(two\nlines)", False),
        ("Thought: x\nAction: Finish()", False),
        ("Thought: x\nAction: Answer(x)", False),
        ("Action: Finish(x)", False),
        ("Thought: x\nAction: Finish(x)\n", False),
    ],
)
def test_joiner_grammar(oracle: GrammarOracle, text: str, accepted: bool) -> None:
    assert oracle.accepts(joiner_grammar(), text) is accepted


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("Thought: sum\nAction: Finish(149915166)", True),
        ("Thought: both\nAction: Finish(Kenya, 51393010)", True),
        ("Thought: x\nAction: Finish(Congo (Kinshasa))", True),
        ("Thought: missing\nAction: Replan(look up Nairobi)", True),
        ("Thought: copied\nAction: Finish(1154308)", False),  # not in the results
        ("Thought: x\nAction: Finish(149915166 people)", False),
        ("Thought: x\nAction: Finish(two\nlines)", False),
    ],
)
def test_a_grounded_joiner_grammar_finishes_only_with_values_from_the_results(
    oracle: GrammarOracle, text: str, accepted: bool
) -> None:
    values = ["149915166", "Kenya", "51393010", "Congo (Kinshasa)", "two\nlines", "a) (b"]
    assert oracle.accepts(joiner_grammar(answers=values), text) is accepted


def test_a_joiner_grammar_with_no_usable_values_takes_any_answer(oracle: GrammarOracle) -> None:
    grammar = joiner_grammar(answers=["", "x)", "two\nlines"])
    assert oracle.accepts(grammar, "Thought: x\nAction: Finish(anything at all)")


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ('Thought: look it up\nAction: city("Paris", country="FR")', True),
        ("Thought: known\nAction: Finish(Paris (France))", True),
        ('Thought: x\nAction: math("$1 + 1")', False),  # no results to refer to
        ("Thought: x\nAction: distance($1, $2)", False),
        ('Thought: x\nAction: 1. country("France")', False),
        ("Thought: x\nAction: Replan(more)", False),
        ('Thought: x\nAction: country("France")\nObservation: {}', False),
    ],
)
def test_react_grammar(oracle: GrammarOracle, text: str, accepted: bool) -> None:
    assert oracle.accepts(react_grammar(WORLD_TOOLS), text) is accepted
    if accepted and "Finish" not in text:
        action = text.split("Action: ", 1)[1]
        assert PlanParser(tools=WORLD_TOOLS).feed(f"1. {action}\n")


def test_usage_mistakes() -> None:
    with pytest.raises(UserError, match="at least one tool"):
        plan_grammar([])
    with pytest.raises(UserError, match="'join'"):  # no tool can take the name
        plan_grammar([Tool(lambda: None, name="join")])
    with pytest.raises(UserError, match="collide"):
        plan_grammar(WORLD_TOOLS, first_id=2, known_ids=["5"], max_tasks=4)
    with pytest.raises(UserError, match="task numbers"):
        plan_grammar(WORLD_TOOLS, known_ids=["a"])
    with pytest.raises(UserError, match="min_tasks"):
        plan_grammar(WORLD_TOOLS, min_tasks=3, max_tasks=2)
    with pytest.raises(UserError):
        joiner_grammar(max_answer=0)
    with pytest.raises(UserError, match="at least one tool"):
        react_grammar([])


def test_text_between_references_in_a_string_is_short_under_tight_limits(
    oracle: GrammarOracle,
) -> None:
    # A model looping inside an expression ("+ 1.area + 2.area + ...") must close it.
    grammar = plan_grammar(WORLD_TOOLS, limits=GrammarLimits(max_text=40, max_parts=3))
    head = '1. country("Chad")\n2. math("$1.area_km2'
    short = head + ' / 1000")\n3. join()<END_OF_PLAN>'
    looping = head + " + 1.area_km2 + 2.area_km2 + 3.area_km2 + 4" + '")\n3. join()<END_OF_PLAN>'
    assert oracle.accepts(grammar, short)
    assert not oracle.accepts(grammar, looping)
    wordy = head + " and then " + "x" * 40 + '")\n3. join()<END_OF_PLAN>'
    assert not oracle.accepts(grammar, wordy)


def test_a_react_step_finishes_with_an_observed_value(oracle: GrammarOracle) -> None:
    grammar = react_grammar(WORLD_TOOLS, answers=["Nairobi", "51393010"])
    assert oracle.accepts(grammar, "Thought: seen\nAction: Finish(Nairobi)")
    assert oracle.accepts(grammar, 'Thought: more\nAction: city("Nairobi")')
    assert not oracle.accepts(grammar, "Thought: copied\nAction: Finish(386662.006672)")


def _one_call(expression: str) -> str:
    return f'1. math("{expression}")\n2. join()<END_OF_PLAN>'


def test_numbers_inside_a_string_are_short_and_few_under_tight_limits(
    oracle: GrammarOracle,
) -> None:
    # The 270M model can loop inside a number; each digit is one token.
    grammar = plan_grammar(WORLD_TOOLS, limits=GrammarLimits(max_digits=12, max_parts=6))
    assert oracle.accepts(grammar, _one_call("(1000 + 2500) * 3 / 4 - 5.25"))
    assert oracle.accepts(grammar, _one_call("123456789012 / 7"))
    assert oracle.accepts(grammar, _one_call("a<5 and b"))
    assert not oracle.accepts(grammar, _one_call("1" + "0" * 12))
    assert not oracle.accepts(grammar, _one_call(" + ".join(["1"] * 7)))
    head = '1. country("Chad")\n2. math("$1.area_km2'
    assert oracle.accepts(grammar, head + ' / 1000 * 100")\n3. join()<END_OF_PLAN>')
    # A reference is a part too: $1.area_km2 and five numbers make six.
    assert oracle.accepts(grammar, head + ' / 10 * 100 + 5 - 6 + 7")\n3. join()<END_OF_PLAN>')
    assert not oracle.accepts(
        grammar, head + ' / 10 * 100 + 5 - 6 + 7 + 8")\n3. join()<END_OF_PLAN>'
    )


@tool
def summarize(text: str, words: int = 50) -> str:
    """Summarise a text."""
    return text[:words]


@tool
def order(order_id: int) -> dict[str, Any]:
    """An order by its id."""
    return {"id": order_id}


GENERAL = [*WORLD_TOOLS, summarize, order]


def test_a_long_string_with_references_anywhere_and_long_numbers_is_in_the_default_grammar(
    oracle: GrammarOracle,
) -> None:
    grammar = plan_grammar(GENERAL, max_tasks=4)
    assert oracle.valid(grammar)
    long_text = (
        "Summarise $1 for a ten-year-old reader: first what $2.name is and where it lies, "
        "then why order 4111111111111111 (placed on 2024-05-17 at 10:42) matters to $1.city; "
        "keep it under 120 words, friendly and plain, with one example from $2.items[0] and "
        "a closing line that names $3.status. Mention that invoice 98765432109876543210 "
        "was paid, and end with $1."
    )
    assert len(long_text) > 300
    plan = (
        "1. order(4111111111111111)\n"
        '2. country("Peru")\n'
        "3. order(98765432109876543210)\n"
        f'4. summarize("{long_text}", words=120)\n'
        "5. join()<END_OF_PLAN>"
    )
    assert oracle.accepts(grammar, plan)
    parsed = Plan.parse(plan, tools=GENERAL)
    assert [t.tool for t in parsed] == ["order", "country", "order", "summarize"]
    assert next(iter(parsed)).args == (4111111111111111,)
    for short in ("Summarise $1 for a ten-year-old reader", "$1 and $2.name, then $3"):
        text = f'1. order(1)\n2. order(2)\n3. order(3)\n4. summarize("{short}")\n'
        assert oracle.accepts(grammar, text + "5. join()<END_OF_PLAN>"), short


def test_the_default_grammar_still_bounds_every_run(oracle: GrammarOracle) -> None:
    limits = GrammarLimits()
    grammar = plan_grammar(GENERAL, max_tasks=2)
    head = '1. country("Peru")\n2. summarize("'
    tail = '")\n3. join()<END_OF_PLAN>'
    assert oracle.accepts(grammar, _one_call("9" * limits.max_digits))
    assert not oracle.accepts(grammar, _one_call("9" * (limits.max_digits + 1)))
    assert not oracle.accepts(grammar, "1. order(" + "1" * 200 + ")\n2. join()<END_OF_PLAN>")
    assert oracle.accepts(grammar, head + "a" * limits.max_text + tail)
    assert not oracle.accepts(grammar, head + "a" * (limits.max_text + 1) + tail)
    parts = " ".join(["$1"] * limits.max_parts)
    assert oracle.accepts(grammar, head + parts + tail)
    assert not oracle.accepts(grammar, head + parts + " $1" + tail)
    numbers = " + ".join(["1"] * limits.max_parts)
    assert oracle.accepts(grammar, _one_call(numbers))
    assert not oracle.accepts(grammar, _one_call(numbers + " + 1"))


def test_custom_limits_are_honoured(oracle: GrammarOracle) -> None:
    limits = GrammarLimits(max_thought=10, max_text=8, max_digits=3, max_parts=2, max_path=1)
    grammar = plan_grammar(GENERAL, max_tasks=2, limits=limits)
    assert oracle.valid(grammar)
    assert oracle.accepts(grammar, _one_call("12 + 345"))
    assert not oracle.accepts(grammar, _one_call("1234"))
    assert not oracle.accepts(grammar, _one_call("1 + 2 + 3"))
    assert not oracle.accepts(grammar, _one_call("a" * 9))
    assert not oracle.accepts(grammar, "Thought: " + "t" * 11 + "\n" + _one_call("1"))
    head = '1. country("Peru")\n2. summarize('
    assert oracle.accepts(grammar, head + "$1.capital)\n3. join()<END_OF_PLAN>")
    assert not oracle.accepts(grammar, head + "$1.capital.name)\n3. join()<END_OF_PLAN>")
    assert not oracle.accepts(grammar, "1. order(1234)\n2. join()<END_OF_PLAN>")
    react = react_grammar(GENERAL, limits=limits)
    assert oracle.accepts(react, 'Thought: x\nAction: math("1 + 2")')
    assert not oracle.accepts(react, 'Thought: x\nAction: math("1234")')


def test_limits_with_no_parts_leave_strings_plain_text(oracle: GrammarOracle) -> None:
    grammar = plan_grammar(GENERAL, max_tasks=2, limits=GrammarLimits(max_parts=0, max_path=0))
    assert oracle.valid(grammar)
    assert oracle.accepts(grammar, _one_call("one plus two"))
    assert not oracle.accepts(grammar, _one_call("1 + 2"))
    head = '1. country("Peru")\n2. '
    assert oracle.accepts(grammar, head + "summarize($1)\n3. join()<END_OF_PLAN>")
    assert not oracle.accepts(grammar, head + 'summarize("$1")\n3. join()<END_OF_PLAN>')
    assert not oracle.accepts(grammar, head + "summarize($1.name)\n3. join()<END_OF_PLAN>")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_text": 0}, "max_text must be between 1 and 4000, got 0"),
        ({"max_digits": 101}, "max_digits must be between 1 and 100"),
        ({"max_parts": -1}, "max_parts must be between 0 and 200"),
        ({"max_thought": True}, "max_thought must be an int"),
        ({"max_path": 2.0}, "max_path must be an int"),
    ],
)
def test_bad_limits_are_a_usage_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        GrammarLimits(**fields)


def test_limits_round_trip_through_json() -> None:
    limits = GrammarLimits(max_text=500, max_parts=0)
    assert GrammarLimits.from_json(limits.to_json()) == limits
    assert GrammarLimits.from_json({}) == GrammarLimits()
    with pytest.raises(UserError, match="unknown grammar limits: max_lines"):
        GrammarLimits.from_json({"max_lines": 3})
    with pytest.raises(UserError, match="JSON object"):
        GrammarLimits.from_json([1])


def test_grammar_size_grows_with_the_limits_not_beyond() -> None:
    # The embedded model compiles the grammar for every plan: it stays a few hundred KB.
    default = plan_grammar(GENERAL)
    tight = plan_grammar(GENERAL, limits=GrammarLimits(max_parts=4))
    assert len(tight) < len(default) < 400_000
