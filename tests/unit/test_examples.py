from typing import Any

import anyio
import pytest

from taskloom import Plan, execute
from taskloom.agent._examples import PLAN_EXAMPLES, closest, join_examples, react_examples
from taskloom.agent.prompts import joiner_messages, planner_messages, react_messages
from taskloom.tools.world import WORLD_TOOLS


@pytest.mark.parametrize("example", PLAN_EXAMPLES, ids=lambda e: e.question[:40])
def test_every_example_plan_runs_on_the_world_tools(example: object) -> None:
    plan = Plan.parse(example.plan, tools=WORLD_TOOLS)  # type: ignore[attr-defined]
    assert plan.joined
    result = anyio.run(lambda: execute(plan, tools=WORLD_TOOLS))
    assert all(t.status == "done" for t in result.tasks.values()), result.to_dict()


def test_the_closest_examples_come_last() -> None:
    chosen = closest("What is the combined population of France and Germany?", PLAN_EXAMPLES, 3)
    assert chosen[-1].question == "What is the combined population of Italy and Spain?"
    joins = closest("What is the distance between Oslo and Rome in miles?", join_examples(), 2)
    assert joins[-1].question == "What is the distance between Madrid and Rome in miles?"


def test_planner_prompt_shows_the_anchors_then_the_closest_example_before_the_question() -> None:
    question = "What is the combined population of France and Germany?"
    messages = planner_messages(question, WORLD_TOOLS)
    assert messages[0].role == "system" and "distance(city_a: string, city_b: string)" in (
        messages[0].content
    )
    assert messages[1].content == "Question: What is the distance between Madrid and Rome in miles?"
    assert messages[-3].content == "Question: What is the combined population of Italy and Spain?"
    assert messages[-1].content == f"Question: {question}"


@pytest.mark.parametrize(
    ("build", "anchor_turns"),
    [
        (lambda q: planner_messages(q, WORLD_TOOLS), 2 * 2),
        (lambda q: joiner_messages(q, [], force_finish=False), 1 * 2),
        # question, three (action, observation) steps, finish
        (lambda q: react_messages(q, WORLD_TOOLS, []), 1 + 3 * 2 + 1),
    ],
    ids=["planner", "joiner", "react"],
)
def test_prompts_for_different_questions_share_the_system_text_and_anchors(
    build: Any, anchor_turns: int
) -> None:
    # A model that keeps the state of earlier prompts reads the shared start once.
    one = build("What is the average population of the cities Lima, Quito and Bogota?")
    other = build("How far is Oslo from Rome in miles?")
    first_difference = next(i for i, (a, b) in enumerate(zip(one, other, strict=False)) if a != b)
    assert first_difference == 1 + anchor_turns


def test_react_and_join_examples_replay_the_plans_with_real_results() -> None:
    react = {e.question: e for e in react_examples()}
    trip = react["What is the distance between Madrid and Rome in miles?"]
    assert [a.split("Action: ")[1] for a, _ in trip.steps] == [
        'distance("Madrid", "Rome")',
        'convert(1365.3, "km", "mile")',
    ]
    assert trip.finish.endswith("Action: Finish(848.36)") or "Finish(848" in trip.finish
    joins = {e.question: e for e in join_examples()}
    assert joins["What is the capital of Kenya?"].decision.endswith("Finish(Nairobi)")
    assert (
        "Replan("
        in joins[
            "Which is more populous, Kenya or Uganda, and how many people live in its capital?"
        ].decision
    )
