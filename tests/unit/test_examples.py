import json
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom.agent import Agent, Example, load_examples
from taskloom.agent._notional import NOTIONAL_EXAMPLES, NOTIONAL_TOOLS
from taskloom.agent._shown import closest, example_observations, pick_anchors, react_steps
from taskloom.agent.prompts import joiner_messages, planner_messages, react_messages
from taskloom.agent.react import ReActAgent
from taskloom.errors import UserError
from taskloom.testing import ScriptedModel
from taskloom.tools.world import EXAMPLES_PATH, WORLD_TOOLS

WORLD_NAMES = [t.name for t in WORLD_TOOLS]


@taskloom.tool
def book(isbn: str) -> dict[str, Any]:
    """A book by its ISBN: title, author, year, pages."""
    return {"title": "T", "author": "A", "year": 1999, "pages": 320}


@taskloom.tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


USER_TOOLS = [book, add]


def _agent(**kwargs: Any) -> Agent:
    return Agent(model=ScriptedModel([]), **{"tools": USER_TOOLS, **kwargs})


def test_the_world_bank_loads_and_fits_the_world_tools() -> None:
    bank = load_examples(EXAMPLES_PATH)
    agent = Agent(tools=WORLD_TOOLS, model=ScriptedModel([]), examples=bank)
    assert len(agent.examples) == len(bank) >= 100
    assert all(e.results is not None and e.reply is not None for e in bank)


def test_no_prompt_built_for_user_tools_names_a_world_tool() -> None:
    question = "How many pages have the books 0-19-852663-6 and 0-14-044913-6 together?"
    agent = _agent()
    plan = planner_messages(question, USER_TOOLS, examples=agent._plan_shots.for_question(question))
    join = joiner_messages(
        question, [], force_finish=False, examples=agent._join_shots.for_question(question)
    )
    react = ReActAgent(tools=USER_TOOLS, model=ScriptedModel([]))
    steps = react_messages(question, USER_TOOLS, [], examples=react._shots.for_question(question))
    for messages in (plan, join, steps):
        text = "\n".join(m.content for m in messages)
        assert not [name for name in WORLD_NAMES if f"{name}(" in text], text
    text = "\n".join(m.content for m in plan)
    assert "book(isbn: string)" in text and "weather(city: string)" in text


def test_notional_examples_come_with_their_tools_in_the_catalogue_form() -> None:
    question = "Which book is longer?"
    messages = planner_messages(question, USER_TOOLS, examples=NOTIONAL_EXAMPLES)
    assert "Tools:" not in messages[0].content  # each question brings its own
    assert messages[1].content.startswith("Tools:\n- stock_quote(symbol: string): ")
    assert messages[-1].content == (
        "Tools:\n- book(isbn: string): A book by its ISBN: title, author, year, pages.\n"
        "- add(a: number, b: number): Add two numbers.\n\nQuestion: Which book is longer?"
    )


def test_user_examples_share_the_catalogue_in_the_system_text() -> None:
    example = Example(question="How long is book 1?", plan='1. book("1")')
    messages = planner_messages("How long is book 2?", USER_TOOLS, examples=[example])
    assert "Tools:\n- book(isbn: string)" in messages[0].content
    assert [m.content for m in messages[1:]] == [
        "Question: How long is book 1?",
        '1. book("1")\n2. join()<END_OF_PLAN>',
        "Question: How long is book 2?",
    ]


def test_prompts_for_different_questions_share_the_notional_examples() -> None:
    agent = _agent()

    def prompt(question: str) -> list[Any]:
        return planner_messages(
            question, USER_TOOLS, examples=agent._plan_shots.for_question(question)
        )[:-1]

    assert prompt("How long is book 1?") == prompt("Who wrote book 2 and 3?")


def test_a_large_bank_starts_every_prompt_with_the_same_anchors() -> None:
    bank = load_examples(EXAMPLES_PATH)
    agent = Agent(tools=WORLD_TOOLS, model=ScriptedModel([]), examples=bank)
    questions = [
        "What is the capital of Peru?",
        "What is the total population of Chile, Spain and Kenya?",
        "How far is Lima from Quito in miles?",
    ]
    for shots in (agent._plan_shots, agent._join_shots):
        anchors = shots.anchors
        assert len(anchors) >= 1 and len({id(a) for a in anchors}) == len(anchors)
        chosen = [shots.examples(q) for q in questions]
        # The same start for every question (what a model's saved state can resume), ...
        assert all(c[: len(anchors)] == anchors for c in chosen)
        # ... then examples of the question's own kind, never an anchor twice.
        assert all(len({id(e) for e in c}) == len(c) > len(anchors) for c in chosen)
    capital = agent._plan_shots.examples(questions[0])[-1]
    assert capital.question.startswith("What is the capital of ")
    # Chosen once per bank, deterministically.
    again = Agent(tools=WORLD_TOOLS, model=ScriptedModel([]), examples=bank)
    assert again._plan_shots.anchors == agent._plan_shots.anchors


def test_anchors_are_typical_and_unlike_each_other() -> None:
    def example(question: str) -> Example:
        return Example(question=question, plan='1. book("1")')

    sums = [example(f"What is the total of book {n} and book {n + 1}?") for n in range(5)]
    odd = example("Which author wrote Emma?")
    picked = pick_anchors([*sums, odd], 2)
    assert picked[0] in sums  # the most typical first
    assert picked[1] is odd  # then the least like it
    assert pick_anchors(sums, 0) == [] and pick_anchors([], 2) == []


def test_the_closest_examples_come_last() -> None:
    bank = load_examples(EXAMPLES_PATH)
    chosen = closest("What is the capital of Peru?", bank, 3)
    assert len(chosen) == 3
    assert chosen[-1].question.startswith("What is the capital of ")


def test_joiner_and_react_examples_replay_the_plans_with_their_results() -> None:
    example = next(e for e in NOTIONAL_EXAMPLES if e.question.startswith("What is the total"))
    seen = example_observations(example, [])
    assert seen[-1] == ("3", 'calculator(expression="30 * 41.5 + 12 * 120.25")', "2688")
    # A record that fed a later call shows only the fields it was read for.
    assert seen[0][2] == '{"price": 41.5}'
    steps, answer = react_steps(example, [])
    assert [call for call, _ in steps][-1] == 'calculator("30 * 41.5 + 12 * 120.25")'
    assert answer == "2688"
    boolean = next(e for e in NOTIONAL_EXAMPLES if "active" in e.question)
    assert react_steps(boolean, [])[1] == "true"


def _then(next_plan: str, *, decision: str = "Replan(more)", plan: str = '1. book("1")') -> Example:
    """An example of one call with a result, a decision, and the next round's plan."""
    return Example(
        question="q", plan=plan, results={"1": {}}, decision=decision, next_plan=next_plan
    )


@pytest.mark.parametrize(
    ("example", "problem"),
    [
        (Example(question="q", plan='1. nope("x")'), "nope"),
        (Example(question="q", plan="1. book(3)"), "isbn"),
        (Example(question="q", plan='1. book("1")\n3. book("2")'), "numbered 1, 2, 3"),
        (Example(question="q", plan='1. book("1")', decision="Finish($1)"), "results"),
        (
            Example(question="q", plan='1. book("1")', results={"2": 1}, decision="Finish(x)"),
            "tasks the plan does not have",
        ),
        (
            Example(question="q", plan='1. book("1")', results={"1": {}}, decision="Finish($4)"),
            "without results",
        ),
        (
            Example(question="q", plan='1. book("1")', results={"1": {}}, decision="maybe"),
            "Finish(...) or Replan(...)",
        ),
        (Example(question="q", plan="1. join()"), "no tool calls"),
        (
            Example(question="q", plan='1. book("1")', next_plan='2. book("2")'),
            "follows a Replan decision",
        ),
        (_then('2. book("2")', decision="Finish($1)"), "not a Finish"),
        (_then('3. book("2")'), "numbered 2, 3"),
        (_then("3. book($2.title)", plan='1. book("1")\n2. book("2")'), "without results: ['2']"),
        (_then("2. book($1.title"), "next_plan"),
    ],
)
def test_a_bad_example_is_rejected_when_the_agent_is_built(example: Example, problem: str) -> None:
    with pytest.raises(UserError, match="example 1") as caught:
        _agent(examples=[example])
    assert problem in str(caught.value)


def test_an_example_is_checked_for_react_too() -> None:
    with pytest.raises(UserError, match="nope"):
        ReActAgent(
            tools=USER_TOOLS,
            model=ScriptedModel([]),
            examples=[Example(question="q", plan='1. nope("x")')],
        )


def test_notional_examples_fit_their_tools() -> None:
    agent = Agent(tools=NOTIONAL_TOOLS, model=ScriptedModel([]), examples=NOTIONAL_EXAMPLES)
    assert len(agent.examples) == len(NOTIONAL_EXAMPLES)


def test_examples_load_from_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    lines = [
        {"question": "How long is book 1?", "plan": '1. book("1")'},
        {
            "question": "How long are books 1 and 2 together?",
            "plan": '1. book("1")\n2. book("2")\n3. add($1.pages, $2.pages)\n4. join()',
            "results": {"1": {"pages": 3}, "2": {"pages": 4}, "3": 7},
            "decision": "Finish($3)",
        },
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    examples = load_examples(path)
    assert [e.question for e in examples] == [line["question"] for line in lines]
    assert _agent(examples=examples).examples == tuple(examples)
    assert examples[1].reply == "Thought: The results answer the question.\nAction: Finish($3)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "line 1"),
        ('["a list"]', "JSON object"),
        ('{"question": "q"}', "'plan'"),
        ('{"question": "q", "plan": "1. book(\\"1\\")", "extra": 1}', "unknown fields: extra"),
        ('{"question": "q", "plan": "p", "results": [1]}', "'results'"),
        ("", "no examples"),
    ],
)
def test_a_bad_examples_file_is_a_clear_error(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text(text)
    with (
        pytest.raises(UserError, match="examples")
        if problem == "no examples"
        else pytest.raises(UserError, match="line 1") as caught
    ):
        load_examples(path)
    assert problem in str(caught.value)


def test_a_missing_examples_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read examples"):
        load_examples(tmp_path / "none.jsonl")


REPLANNED = Example(
    question="Which book is longer, A or B? Who wrote it?",
    plan='1. book("A")\n2. book("B")',
    results={"1": {"title": "A", "pages": 100}, "2": {"title": "B", "pages": 300}},
    decision="Replan(the longer book's author)",
    next_plan="3. book($2.title)",
)


def test_an_example_of_a_new_plan_round_trips_through_json(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text(json.dumps(REPLANNED.to_json()) + "\n")
    (loaded,) = load_examples(path)
    assert loaded == REPLANNED
    assert loaded.next_calls == "3. book($2.title)\n4. join()<END_OF_PLAN>"


@pytest.mark.anyio
async def test_a_new_plan_is_shown_examples_of_new_plans() -> None:
    first = Example(question="Who wrote A?", plan='1. book("A")')
    model = ScriptedModel(
        [
            '1. book("C")\n2. book("D")\n3. join()',
            "Thought: need more.\nAction: Replan(the longer book's author)",
            "3. book($1.title)\n4. join()",
            "Thought: done.\nAction: Finish($3.author)",
        ]
    )
    agent = Agent(tools=USER_TOOLS, model=model, examples=[first, REPLANNED], grammar=False)
    result = await agent.run("Which book is longer, C or D? Who wrote it?")
    assert result.answer == "A"
    first_plan, replan = model.calls[0], model.calls[2]
    shown = "\n".join(m.content for m in replan)
    # The new plan's prompt shows the example's second round, in the request's own form ...
    assert "3. book($2.title)\n4. join()" in shown
    assert shown.count("Results so far (usable as $N):") == 2
    assert "Still needed: the longer book's author." in shown
    # ... and no first-round example; the first plan was shown those, and not this one's.
    assert "Who wrote A?" not in shown
    assert "book($2.title)" not in "\n".join(m.content for m in first_plan)


def test_a_condition_that_skipped_a_call_is_shown_as_the_run_shows_it() -> None:
    example = Example(
        question="Which is longer, A or B? Its author?",
        plan='1. book("A")\n2. book("B")\n3. book($1.title) if $1.pages > $2.pages\n'
        "4. book($2.title) if $2.pages > $1.pages",
        results={
            "1": {"title": "A", "pages": 100, "author": "X"},
            "2": {"title": "B", "pages": 300, "author": "Y"},
            "4": {"title": "B", "author": "Y"},
        },
        decision="Finish($4.author)",
    )
    seen = example_observations(example, USER_TOOLS)
    assert [i for i, _, _ in seen] == ["1", "2", "3", "4"]
    assert seen[2] == ("3", "book()", "error: condition false: $1.pages > $2.pages")
    # A record some reader of did not run is shown whole, as in a real round.
    assert '"author": "X"' in seen[0][2]
    steps, answer = react_steps(example, USER_TOOLS)
    assert len(steps) == 3 and answer == "Y"
