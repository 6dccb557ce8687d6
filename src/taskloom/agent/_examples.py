"""Worked examples for the prompts, and choosing the ones to show for a question.

A small model copies the shape of the examples it is shown far more reliably
than it follows instructions, so every prompt ends with the worked example
whose question looks most like the user's (same kind of request, same number
of places). Before it come a few anchors, the same for every question: they
show the shapes the closest example may not (a dependent chain, a comparison,
a replan), and, being the same text every time, they are read once by a
model that keeps earlier prompts' state (the embedded one does), not once
per request. The examples use the built-in world tools; every plan here is
run by the test suite.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from taskloom._ids import TaskId

__all__ = [
    "PLAN_EXAMPLES",
    "JoinExample",
    "PlanExample",
    "ReActExample",
    "closest",
    "shown",
    "join_examples",
    "react_examples",
    "traces",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanExample:
    """A question and a good plan for it."""

    question: str
    """The question."""
    plan: str
    """The plan, in the plan language, ending with join() and <END_OF_PLAN>."""
    answer: str | None = None
    """The final answer as the joiner should write it; None: the last call's result."""

    @property
    def calls(self) -> str:
        """The plan from its first call: what the planner is shown.

        Without the Thought line the embedded model starts its plans with a
        call too, and the first tool starts about 12 tokens (0.15 s) sooner.
        """
        lines = self.plan.splitlines()
        return "\n".join(line for line in lines if not line.startswith("Thought: "))


@dataclass(frozen=True, kw_only=True, slots=True)
class JoinExample:
    """A question, the results of its plan, and the right decision."""

    question: str
    """The question."""
    results: tuple[tuple[str, str, str], ...]
    """(task id, call, result text) for each finished call."""
    decision: str
    """`Thought: ...` and `Action: Finish(...)` or `Action: Replan(...)`."""


def _plan(question: str, *lines: str, answer: str | None = None) -> PlanExample:
    numbered = [f"{i}. {line}" for i, line in enumerate(lines[1:], start=1)]
    numbered.append(f"{len(lines)}. join()<END_OF_PLAN>")
    plan = "\n".join([f"Thought: {lines[0]}", *numbered])
    return PlanExample(question=question, plan=plan, answer=answer)


PLAN_EXAMPLES: tuple[PlanExample, ...] = (
    _plan(
        "What is the capital of Kenya?",
        "One lookup answers it.",
        'country("Kenya")',
        answer="Nairobi",
    ),
    _plan(
        "How many people live in the city of Lagos?",
        "One city lookup.",
        'city("Lagos")',
        answer="15388000",
    ),
    _plan(
        "What is the area of Mongolia in km2?",
        "One lookup.",
        'country("Mongolia")',
        answer="1565000 km2",
    ),
    _plan(
        "What is the combined population of Italy and Spain?",
        "Look up both at once, then add.",
        'country("Italy")',
        'country("Spain")',
        'math("$1.population + $2.population")',
    ),
    _plan(
        "What is the total population of Peru, Chile and Bolivia?",
        "Look up all three at once, then add.",
        'country("Peru")',
        'country("Chile")',
        'country("Bolivia")',
        'math("$1.population + $2.population + $3.population")',
    ),
    _plan(
        "What is the total area of Sweden, Norway, Finland and Denmark in km2?",
        "Look up all four at once, then add.",
        'country("Sweden")',
        'country("Norway")',
        'country("Finland")',
        'country("Denmark")',
        'math("$1.area_km2 + $2.area_km2 + $3.area_km2 + $4.area_km2")',
    ),
    _plan(
        "How many more people live in Mexico than in Canada?",
        "Look up both, then subtract.",
        'country("Mexico")',
        'country("Canada")',
        'math("$1.population - $2.population")',
    ),
    _plan(
        "What is the average population of the cities Madrid, Rome, Vienna and Prague?",
        "Look up the four cities at once, then average.",
        'city("Madrid")',
        'city("Rome")',
        'city("Vienna")',
        'city("Prague")',
        'math("($1.population + $2.population + $3.population + $4.population) / 4")',
    ),
    _plan(
        "What is the distance between Madrid and Rome in miles?",
        "Get the distance, then convert it.",
        'distance("Madrid", "Rome")',
        'convert($1.km, "km", "mile")',
    ),
    _plan(
        "What is the population density of Nigeria in people per km2?",
        "Look up the country, then divide.",
        'country("Nigeria")',
        'math("$1.population / $1.area_km2")',
    ),
    _plan(
        "What percentage of the population of Japan lives in the city of Osaka?",
        "Look up the city and the country at once, then divide.",
        'city("Osaka")',
        'country("Japan")',
        'math("$1.population / $2.population * 100")',
    ),
    _plan(
        "Which has the most people: Iran, Turkey or Thailand?",
        "Look up all three at once, then take the largest.",
        'country("Iran")',
        'country("Turkey")',
        'country("Thailand")',
        'math("max($1.population, $2.population, $3.population)")',
        answer="Turkey",
    ),
    _plan(
        "How long is the route from Paris to Berlin to Warsaw in km?",
        "Both legs at once, then add.",
        'distance("Paris", "Berlin")',
        'distance("Berlin", "Warsaw")',
        'math("$1.km + $2.km")',
    ),
    _plan(
        "How many times as many people live in Brazil as in Argentina?",
        "Look up both, then divide.",
        'country("Brazil")',
        'country("Argentina")',
        'math("$1.population / $2.population")',
    ),
    _plan(
        "What is the area of Egypt in square miles?",
        "Look up the country, then convert.",
        'country("Egypt")',
        'convert($1.area_km2, "km**2", "mile**2")',
    ),
    _plan(
        "Which is more populous, Kenya or Uganda, and how many people live in its capital?",
        "First compare the two countries; the capital comes in a second plan.",
        'country("Kenya")',
        'country("Uganda")',
    ),
)

_REPLAN = JoinExample(
    question="Which is more populous, Kenya or Uganda, and how many people live in its capital?",
    results=(
        ("1", 'country("Kenya")', '{"population": 51393010, "capital": "Nairobi"}'),
        ("2", 'country("Uganda")', '{"population": 42723139, "capital": "Kampala"}'),
    ),
    decision="Thought: Kenya is more populous, but Nairobi has not been looked up.\n"
    "Action: Replan(look up the city of Nairobi)",
)


def join_examples() -> tuple[JoinExample, ...]:
    """The plan examples with their real results and final answers, and one replan."""
    examples = [_REPLAN]
    for example, seen in traces():
        if example.question == _REPLAN.question:
            continue
        answer = example.answer or seen[-1][2]
        decision = f"Thought: The results answer the question.\nAction: Finish({answer})"
        examples.append(JoinExample(question=example.question, results=seen, decision=decision))
    return tuple(examples)


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_STOP = frozenset(
    "a an and are as at be by do does for from has have how in is it its of on or "
    "than that the their there these this to was what which who with".split()
)


def _profile(question: str) -> tuple[frozenset[str], int]:
    """The question's kind (its common words) and how many places it names."""
    words = _WORD.findall(question)
    places = sum(1 for i, w in enumerate(words) if w[0].isupper() and i > 0)
    kind = frozenset(w.lower() for w in words if not w[0].isupper() and w.lower() not in _STOP)
    return kind, places


def _similarity(a: str, b: str) -> float:
    kind_a, places_a = _profile(a)
    kind_b, places_b = _profile(b)
    union = kind_a | kind_b
    overlap = len(kind_a & kind_b) / len(union) if union else 0.0
    # Same number of places means the same width of plan: worth half a word match.
    return overlap + (0.15 if places_a == places_b else 0.0)


_Example = TypeVar("_Example", "PlanExample", "JoinExample", "ReActExample")


def closest(question: str, examples: Sequence[_Example], k: int) -> list[_Example]:
    """The `k` examples most like `question`, least alike first (the closest is last)."""
    ranked = sorted(examples, key=lambda e: _similarity(question, e.question), reverse=True)
    return list(reversed(ranked[:k]))


def shown(question: str, examples: Sequence[_Example], anchors: Sequence[str]) -> list[_Example]:
    """The anchor examples (named by question) in their fixed order, then the closest other one.

    Only the last example depends on the question, so prompts for different
    questions share everything before it.
    """
    fixed = [e for a in anchors for e in examples if e.question == a]
    rest = [e for e in examples if e.question not in anchors]
    return fixed + closest(question, rest, 1)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReActExample:
    """A question answered one call at a time: (action, observation) steps, then Finish."""

    question: str
    """The question."""
    steps: tuple[tuple[str, str], ...]
    """Each step's `Thought: ...\\nAction: call(...)` and the call's observation."""
    finish: str
    """The final `Thought: ...\\nAction: Finish(...)`."""


@functools.cache
def traces() -> tuple[tuple[PlanExample, tuple[tuple[str, str, str], ...]], ...]:
    """Every plan example with its calls' real results: (id, call with values, result).

    Computed once, on first use, by running each plan on the world tools
    (offline data, no network). References are replaced by the values they
    stood for, which is how a one-call-at-a-time agent must write them.
    """
    from taskloom.agent.prompts import result_text
    from taskloom.plan import Plan
    from taskloom.plan._resolve import resolve
    from taskloom.tools.world import WORLD_TOOLS

    tools = {t.name: t for t in WORLD_TOOLS}
    done = []
    for example in PLAN_EXAMPLES:
        outputs: dict[TaskId, _Output] = {}
        seen = []
        for task in Plan.parse(example.plan, tools=WORLD_TOOLS):
            tool = tools[task.tool]
            arguments = {
                k: resolve(v, outputs) for k, v in tool.bind(task.args, task.kwargs).items()
            }
            output = tool.fn(**tool.validate(arguments))
            outputs[task.id] = _Output(output)
            call = ", ".join(_literal(v) for v in arguments.values())
            seen.append((task.id, f"{task.tool}({call})", result_text(output)))
        done.append((example, tuple(seen)))
    return tuple(done)


def react_examples() -> tuple[ReActExample, ...]:
    """The plan examples replayed one call at a time, with their real observations."""
    examples = []
    for example, seen in traces():
        if example.question == _REPLAN.question:
            continue  # answered in two plans; a ReAct trace would need the second one
        thought = example.plan.splitlines()[0]
        steps = tuple(
            (f"{thought if i == 0 else 'Thought: Next call.'}\nAction: {call}", result)
            for i, (_, call, result) in enumerate(seen)
        )
        answer = example.answer or seen[-1][2]
        finish = f"Thought: That answers it.\nAction: Finish({answer})"
        examples.append(ReActExample(question=example.question, steps=steps, finish=finish))
    return tuple(examples)


class _Output:
    __slots__ = ("output",)

    def __init__(self, output: object) -> None:
        self.output = output


def _literal(value: object) -> str:
    from taskloom.plan._model import render_value

    return render_value(value)
