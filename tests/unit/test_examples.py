import anyio
import pytest

from taskloom import Plan, execute
from taskloom.agent._examples import JOIN_EXAMPLES, PLAN_EXAMPLES, closest
from taskloom.agent.prompts import planner_messages
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
    joins = closest("What is the distance between Oslo and Rome in miles?", JOIN_EXAMPLES, 2)
    assert joins[-1].question == "What is the distance between Madrid and Rome in miles?"


def test_planner_prompt_shows_the_closest_examples_before_the_question() -> None:
    messages = planner_messages("How far is Oslo from Rome in miles?", WORLD_TOOLS)
    assert messages[0].role == "system" and "distance(city_a: string, city_b: string)" in (
        messages[0].content
    )
    assert messages[-2].content.startswith("Thought:") and "distance(" in messages[-2].content
    assert messages[-1].content == "Question: How far is Oslo from Rome in miles?"
