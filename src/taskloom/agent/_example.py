"""Worked examples: a question, a plan for it, and optionally its results and the decision.

A small model copies the shape of the examples it is shown far more reliably
than it follows instructions, so the prompts are built around them. The user
gives examples over their own tools (`Agent(examples=...)`, `--examples
FILE`); without them the prompts show notional ones (`_notional.py`). Every
example is checked against the tools when the agent is built, so a bad one
is a clear error then, not a bad plan later.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskloom._ids import TaskId
from taskloom.agent._decision import Finish, parse_decision
from taskloom.errors import PlanError, UserError
from taskloom.plan import Plan
from taskloom.plan.text import END_OF_PLAN, JOIN, PlanParser
from taskloom.tools import Tool

__all__ = ["Example", "ExampleFile", "check_examples", "load_examples"]

_JOIN_LINE = re.compile(rf"^\s*\d+\s*\.\s*{JOIN}\(\s*\)\s*(?:{re.escape(END_OF_PLAN)})?\s*$")
_REF = re.compile(r"\$\{?(\d+)")


@dataclass(frozen=True, kw_only=True, slots=True)
class Example:
    """A question answered well: what the planner (and, with results, the joiner) is shown.

    Example(
        question="Who wrote Dune?",
        plan='1. book("Dune")',
        results={"1": {"title": "Dune", "author": "Frank Herbert", "year": 1965}},
        decision="Finish($1.author)",
    )
    """

    question: str
    """The question."""
    plan: str
    """The plan in the plan language: numbered calls from 1; a closing `join()` is optional."""
    results: Mapping[str, Any] | None = None
    """Each task's output by task id (JSON values), for the joiner's example; None: none."""
    decision: str | None = None
    """The joiner's decision on those results: `Finish(...)` (`$N` and `$N.field`
    name a result) or `Replan(what is missing)`, optionally after a `Thought: ...`
    line. Needs `results`."""
    next_plan: str | None = None
    """After a `Replan` decision: the next round's calls, numbered on from the
    plan's, which may use its results (`3. city($2.capital)`). What a planner
    asked for a new plan is shown."""
    tools: tuple[Tool, ...] = field(default=(), compare=False)
    """The tools the plan calls, when they are not the agent's own (notional examples)."""
    origin: ExampleFile | None = field(default=None, compare=False, repr=False)
    """The file `load_examples` read the example from; None: made in code."""

    @property
    def calls(self) -> str:
        """The plan's calls, numbered, then the join line: what the planner is shown."""
        lines = [line.strip() for line in self.plan.strip().splitlines() if line.strip()]
        lines = [line for line in lines if not _JOIN_LINE.match(line)]
        lines = [line for line in lines if not line.startswith("Thought:")]
        lines.append(f"{_count_calls(lines) + 1}. {JOIN}(){END_OF_PLAN}")
        return "\n".join(lines)

    @property
    def next_calls(self) -> str | None:
        """The next round's calls, then the join line: what a replanning planner is shown."""
        if self.next_plan is None:
            return None
        lines = [line.strip() for line in self.next_plan.strip().splitlines() if line.strip()]
        lines = [line for line in lines if not _JOIN_LINE.match(line)]
        # The first plan's calls, its join line aside, then these.
        last = _count_calls(self.calls.splitlines()) - 1 + _count_calls(lines)
        lines.append(f"{last + 1}. {JOIN}(){END_OF_PLAN}")
        return "\n".join(lines)

    @property
    def reply(self) -> str | None:
        """The decision as the joiner writes it (`Thought: ...` then `Action: ...`)."""
        if self.decision is None:
            return None
        decision = parse_decision(self.decision)
        thought = decision.thought or (
            "The results answer the question."
            if isinstance(decision, Finish)
            else "Something is still missing."
        )
        action = self.decision.strip().splitlines()[-1].strip()
        action = action.removeprefix("Action:").strip()
        return f"Thought: {thought}\nAction: {action}"

    def to_json(self) -> dict[str, Any]:
        """The example as a JSON object, as `from_json` and `load_examples` read it."""
        data: dict[str, Any] = {"question": self.question, "plan": self.plan}
        if self.results is not None:
            data["results"] = dict(self.results)
        if self.decision is not None:
            data["decision"] = self.decision
        if self.next_plan is not None:
            data["next_plan"] = self.next_plan
        return data

    @classmethod
    def from_json(cls, data: object) -> Example:
        """An example from a JSON object with the fields of this class.

        Raises:
            UserError: if `data` is not such an object.

        """
        if not isinstance(data, dict):
            raise UserError(f"an example is a JSON object, not {type(data).__name__}")
        unknown = sorted(set(data) - {"question", "plan", "results", "decision", "next_plan"})
        if unknown:
            raise UserError(f"an example has unknown fields: {', '.join(unknown)}")
        for name in ("question", "plan"):
            if not isinstance(data.get(name), str) or not data[name].strip():
                raise UserError(f"an example needs {name!r}, a non-empty string")
        results = data.get("results")
        if results is not None and not isinstance(results, dict):
            raise UserError("an example's 'results' is an object: task id -> output")
        decision = data.get("decision")
        if decision is not None and not isinstance(decision, str):
            raise UserError("an example's 'decision' is a string: Finish(...) or Replan(...)")
        next_plan = data.get("next_plan")
        if next_plan is not None and (not isinstance(next_plan, str) or not next_plan.strip()):
            raise UserError(
                "an example's 'next_plan' is a non-empty string: the next round's calls"
            )
        return cls(
            question=data["question"].strip(),
            plan=data["plan"],
            results={str(k): v for k, v in results.items()} if results is not None else None,
            decision=decision,
            next_plan=next_plan,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ExampleFile:
    """A JSON lines file of examples as it was read: a large set is recorded by reference."""

    path: str
    """The file, by absolute path."""
    sha256: str
    """The digest of its bytes when it was read."""


def load_examples(path: str | Path) -> list[Example]:
    """Read examples from a JSON lines file: one `Example` object per line.

    Raises:
        UserError: if the file cannot be read, or a line is not a valid
            example (the message names the line).

    """
    source = Path(path)
    try:
        data = source.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read examples from {source}: {exc}") from exc
    origin = ExampleFile(path=str(source.resolve()), sha256=hashlib.sha256(data).hexdigest())
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = Example.from_json(json.loads(line))
            examples.append(dataclasses.replace(example, origin=origin))
        except (ValueError, UserError) as exc:
            raise UserError(f"{source}, line {number}: {exc}") from exc
    if not examples:
        raise UserError(f"{source} holds no examples")
    return examples


def check_examples(examples: Iterable[Example], tools: Sequence[Tool]) -> tuple[Example, ...]:
    """Check every example against the tools its plan calls.

    An example's plan must parse and call only those tools with fitting
    arguments, numbered from 1 without gaps; its results (if any) must be
    keyed by its task ids, and its decision must be Finish or Replan, naming
    only tasks that have results.

    Returns:
        The examples, in order.

    Raises:
        UserError: naming the example (by its number and question) and what is wrong.

    """
    checked = []
    for number, example in enumerate(examples, start=1):
        if not isinstance(example, Example):
            raise UserError(f"example {number} is a {type(example).__name__}, not an Example")
        try:
            _check(example, example.tools or tools)
        except (PlanError, UserError) as exc:
            raise UserError(f"example {number} ({example.question[:60]!r}): {exc}") from exc
        checked.append(example)
    return tuple(checked)


def _check(example: Example, tools: Sequence[Tool]) -> None:
    plan = Plan.parse(example.calls, tools=tools)
    ids = [str(t.id) for t in plan]
    if ids != [str(i) for i in range(1, len(ids) + 1)]:
        raise UserError(f"the plan's tasks must be numbered 1, 2, 3, ...; got {', '.join(ids)}")
    if not ids:
        raise UserError("the plan has no tool calls")
    if example.results is not None:
        extra = sorted(set(example.results) - set(ids))
        if extra:
            raise UserError(f"results are given for tasks the plan does not have: {extra}")
    if example.decision is None:
        if example.next_plan is not None:
            raise UserError("a next_plan follows a Replan decision, and there is no decision")
        return
    if example.results is None:
        raise UserError("a decision needs the results it was made on")
    text = example.decision.strip()
    if not re.search(r"\b(Finish|Replan)\s*\(", text):
        raise UserError(f"the decision must be Finish(...) or Replan(...), not {text[:40]!r}")
    decision = parse_decision(text)
    if example.next_plan is not None:
        if isinstance(decision, Finish):
            raise UserError("a next_plan follows a Replan decision, not a Finish")
        _check_next(example, tools, ids)
    if isinstance(decision, Finish):
        if not decision.answer:
            raise UserError("the decision finishes with an empty answer")
        missing = sorted({m for m in _REF.findall(decision.answer)} - set(example.results))
        if missing:
            raise UserError(f"the decision refers to tasks without results: {missing}")


def _check_next(example: Example, tools: Sequence[Tool], ids: Sequence[str]) -> None:
    """The next plan must parse over the first plan's results, numbered on from it."""
    assert example.next_calls is not None and example.results is not None
    known = [TaskId(i) for i in ids]
    try:
        parser = PlanParser(tools=tools, known=known)
        plan = [*parser.feed(example.next_calls), *parser.close()]
    except PlanError as exc:
        raise UserError(f"its next_plan: {exc}") from exc
    next_ids = [str(t.id) for t in plan]
    first = len(ids) + 1
    if not next_ids or next_ids != [str(i) for i in range(first, first + len(next_ids))]:
        raise UserError(f"its next_plan's calls must be numbered {first}, {first + 1}, ...")
    missing = sorted({str(d) for t in plan for d in t.dependencies} - set(example.results))
    if missing:
        raise UserError(f"its next_plan refers to tasks without results: {missing}")


def _count_calls(lines: Sequence[str]) -> int:
    return sum(1 for line in lines if re.match(r"^\d+\s*\.", line))
