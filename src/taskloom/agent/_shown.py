"""Which worked examples a prompt shows for a question, and how the joiner and ReAct see them.

A prompt shows a few anchors, the same examples for every question, and
then the examples whose questions look most like the user's (same kind of
request, same number of names), the closest last: a small model copies the
nearest example's shape. The anchors make every prompt start alike, so a
model that keeps earlier prompts' state (the embedded one) reads them once
and then only the examples chosen for the question. A few examples (the
notional ones, or a user's three) are all shown, in their order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from taskloom._ids import TaskId
from taskloom.agent._decision import Finish, Replan, parse_decision
from taskloom.agent._example import Example
from taskloom.agent._observations import call_text, fields_used
from taskloom.agent.prompts import Observation, ReplanShot, result_text
from taskloom.errors import ConditionFalse
from taskloom.plan import Plan, Ref
from taskloom.plan._model import render_value
from taskloom.plan._resolve import resolve
from taskloom.tools import Tool

__all__ = [
    "Shots",
    "choose",
    "closest",
    "example_observations",
    "pick_anchors",
    "react_steps",
    "replan_shot",
]

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_TOKEN = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
"""Words, and the punctuation between them that ends a name ("Chile, Peru")."""
_STOP = frozenset(
    "a an and are as at be by do does for from has have how in is it its of on or "
    "than that the their there these this to was what which who with".split()
)
_ANSWER_REF = re.compile(r"\$\{?(\d+)\}?((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)")


def _profile(question: str) -> tuple[frozenset[str], int]:
    """The question's kind (its common words) and how many names it holds.

    A name is a run of capitalised words after the first word ("South
    Korea", "New York"), or a word with a digit in it (an id, a year).
    """
    words = _WORD.findall(question)
    names, in_name = 0, False
    for i, word in enumerate(_TOKEN.findall(question)):
        named = (
            i > 0 and word[0].isalnum() and (word[0].isupper() or any(c.isdigit() for c in word))
        )
        names += named and not in_name
        in_name = named
    kind = frozenset(
        w.lower()
        for i, w in enumerate(words)
        if (i == 0 or not w[0].isupper()) and w.lower() not in _STOP
    )
    return kind, names


_Profile = tuple[frozenset[str], int]


def _alike(a: _Profile, b: _Profile) -> float:
    kind_a, names_a = a
    kind_b, names_b = b
    union = kind_a | kind_b
    overlap = len(kind_a & kind_b) / len(union) if union else 0.0
    # As many names means as wide a plan, and a small model copies the width
    # of the example it is shown: worth as much as half the words in common.
    return overlap + 0.5 / (1 + abs(names_a - names_b))


def _similarity(a: str, b: str) -> float:
    return _alike(_profile(a), _profile(b))


_S = TypeVar("_S")


def closest(question: str, examples: Sequence[Example], k: int) -> list[Example]:
    """The `k` examples most like `question`, least alike first (the closest is last)."""
    ranked = sorted(examples, key=lambda e: _similarity(question, e.question), reverse=True)
    return list(reversed(ranked[:k]))


def pick_anchors(examples: Sequence[Example], k: int) -> list[Example]:
    """`k` examples to show before every question's own: typical of the set, unlike each other.

    The first is the example most like all the others; each next one is the
    most typical of those least like the anchors already chosen, so the
    anchors between them show the set's main shapes. Deterministic: the same
    set gives the same anchors, hence the same prompt start for every question.
    """
    profiles = [_profile(e.question) for e in examples]
    n = len(examples)
    if n == 0 or k <= 0:
        return []
    typical = [sum(_alike(p, q) for q in profiles) / n for p in profiles]
    chosen: list[int] = []
    nearest = [0.0] * n
    """Per example, its likeness to the closest anchor chosen so far."""
    for _ in range(min(k, n)):
        best = max((i for i in range(n) if i not in chosen), key=lambda i: typical[i] - nearest[i])
        chosen.append(best)
        nearest = [max(nearest[i], _alike(profiles[i], profiles[best])) for i in range(n)]
    return [examples[i] for i in chosen]


def choose(
    question: str,
    examples: Sequence[Example],
    k: int,
    *,
    fixed: bool = False,
    first: Sequence[Example] = (),
) -> list[Example]:
    """`first` (the anchors), then the `k` other examples closest to `question`, the closest last.

    `fixed`: all the examples, in their order. Fixed examples (the notional
    ones) are the same text for every question. Without anchors, a user's
    few are all shown too, but ordered by likeness: a small model copies
    the shape of the last example it read.
    """
    if fixed:
        return list(examples)
    shown = {id(e) for e in first}
    rest = [e for e in examples if id(e) not in shown]
    return [*first, *closest(question, rest, min(k, len(rest)))]


class Shots(Generic[_S]):
    """A bank of worked examples, each with what a prompt shows of it, and the choice per question.

    A bank larger than `anchors + closest` shows its anchors first, then the
    closest others; a smaller one is all shown, by likeness (or in its order
    when `fixed`).
    """

    def __init__(
        self, bank: Sequence[tuple[Example, _S]], *, closest: int, anchors: int, fixed: bool
    ) -> None:
        """Choose the anchors of `bank` once: (example, what the prompt shows of it) pairs."""
        self._shown = {id(e): shot for e, shot in bank}
        self._examples = [e for e, _ in bank]
        self._fixed = fixed
        large = not fixed and len(self._examples) > anchors + closest
        self.anchors: list[Example] = pick_anchors(self._examples, anchors) if large else []
        self._closest = closest if large else anchors + closest
        """The examples every prompt shows first."""

    def __len__(self) -> int:
        return len(self._examples)

    def examples(self, question: str) -> list[Example]:
        """The examples to show for `question`, in order."""
        return choose(
            question, self._examples, self._closest, fixed=self._fixed, first=self.anchors
        )

    def for_question(self, question: str) -> list[_S]:
        """What to show for `question`: the anchors' shots, then the closest, the closest last."""
        return [self._shown[id(e)] for e in self.examples(question)]


def example_observations(example: Example, tools: Sequence[Tool]) -> list[Observation]:
    """The example's results as the joiner sees a real round's: calls with their values.

    Intermediate records are cut to the fields later calls read, as
    `observations()` does for a real round.
    """
    results = example.results or {}
    by_name = {t.name: t for t in (example.tools or tools)}
    plan = Plan.parse(example.calls, tools=list(by_name.values()))
    used = fields_used(plan)
    readers: dict[TaskId, list[TaskId]] = {}
    for task in plan:
        for dep in task.dependencies:
            readers.setdefault(dep, []).append(task.id)
    outputs: dict[TaskId, _Output] = {}
    seen: list[Observation] = []
    for task, arguments in _resolved(plan, by_name, results, outputs):
        if arguments is None:  # its condition was false
            assert task.guard is not None
            seen.append((task.id, call_text(task.tool, None), f"error: {skipped(task)}"))
            continue
        output, fields = results[task.id], used.get(task.id)
        # Cut, as a real round's is, only once every task that read it ran.
        complete = all(r in results for r in readers.get(task.id, ()))
        if fields and isinstance(output, Mapping) and complete:
            output = {k: v for k, v in output.items() if k == "name" or k in fields}
        seen.append((task.id, call_text(task.tool, arguments), result_text(output)))
    return seen


def replan_shot(example: Example, tools: Sequence[Tool]) -> ReplanShot:
    """The example's second round as a replanning planner is shown it."""
    assert example.next_calls is not None and example.decision is not None
    decision = parse_decision(example.decision)
    reason = decision.reason if isinstance(decision, Replan) else None
    first = len(Plan.parse(example.calls, tools=list(example.tools or tools))) + 1
    return ReplanShot(
        example.question,
        example_observations(example, tools),
        reason or "the rest of the answer",
        first,
        example.next_calls,
    )


def react_steps(example: Example, tools: Sequence[Tool]) -> tuple[list[tuple[str, str]], str]:
    """The example as one call at a time: (call with values, observation) steps, and the answer."""
    results = example.results or {}
    by_name = {t.name: t for t in (example.tools or tools)}
    plan = Plan.parse(example.calls, tools=list(by_name.values()))
    outputs: dict[TaskId, _Output] = {}
    steps = []
    for task, arguments in _resolved(plan, by_name, results, outputs):
        if arguments is None:  # its condition was false: ReAct would not have called it
            continue
        call = f"{task.tool}({', '.join(render_value(v) for v in arguments.values())})"
        steps.append((call, result_text(results[task.id])))
    decision = parse_decision(example.decision or "")
    answer = _fill(decision.answer, outputs) if isinstance(decision, Finish) else ""
    return steps, answer


def _resolved(
    plan: Plan,
    by_name: Mapping[str, Tool],
    results: Mapping[str, Any],
    outputs: dict[TaskId, _Output],
) -> list[tuple[Any, dict[str, Any] | None]]:
    """Each task that has a result, with its arguments resolved from earlier results.

    A task with a condition and no result was skipped by it: its arguments are None.
    """
    done: list[tuple[Any, dict[str, Any] | None]] = []
    for task in plan:
        if task.id not in results:
            if task.guard is not None:
                done.append((task, None))
                continue
            break
        bound = by_name[task.tool].bind(task.args, task.kwargs)
        arguments = {k: resolve(v, outputs) for k, v in bound.items()}
        outputs[task.id] = _Output(results[task.id])
        done.append((task, arguments))
    return done


def skipped(task: Any) -> str:
    """Why a task whose condition was false did not run, as the scheduler records it."""
    return str(ConditionFalse(task.id, task.id, task.guard.text))


def _fill(answer: str, outputs: Mapping[TaskId, _Output]) -> str:
    """The answer with each `$N.path` replaced by the value it names (for ReAct's examples)."""

    def value(match: re.Match[str]) -> str:
        path = tuple(
            int(step[1:-1]) if step.startswith("[") else step.lstrip(".")
            for step in re.findall(r"\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\]", match[2])
        )
        found = resolve(Ref(TaskId(match[1]), path), outputs)
        return found if isinstance(found, str) else result_text(found)

    return _ANSWER_REF.sub(value, answer)


class _Output:
    __slots__ = ("output",)

    def __init__(self, output: object) -> None:
        self.output = output
