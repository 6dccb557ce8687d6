"""The joiner's decision, and reading it out of whatever a model wrote."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Decision", "Finish", "Replan", "parse_decision"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Finish:
    """Answer the question.

    The joiner may answer by reference (`Finish($1.capital)`, or text with
    references in it); the agent then renders the answer from the results
    (`taskloom.agent._answer`) and keeps what the model wrote beside it.
    """

    answer: str
    """The answer: as the model wrote it, or with its references rendered."""
    thought: str | None = None
    """The model's reasoning, if it gave one."""
    written: str | None = None
    """What the model wrote, when the answer is not that (references were
    rendered, or a reference that named no result was replaced); None: the
    answer is as written."""
    reference: str | None = None
    """The one reference the whole answer was (`$1.capital`), if it was one."""
    value: Any = None
    """The exact value `reference` names (a number, a record...); None without one."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Replan:
    """Ask for another plan."""

    reason: str
    """What is still missing."""
    thought: str | None = None
    """The model's reasoning, if it gave one."""


Decision = Finish | Replan
"""What the joiner decides after a plan has run."""

_ACTION = re.compile(r"(?:Action\s*:\s*)?\b(Finish|Replan)\s*\(", re.IGNORECASE)
_THOUGHT = re.compile(r"Thought\s*:\s*(.*)", re.IGNORECASE)


def parse_decision(text: str) -> Decision:
    """Read `Thought: ...` / `Action: Finish(...)` or `Action: Replan(...)` from model text.

    Tolerant by design: the answer may hold parentheses and newlines, the
    closing parenthesis may be missing, and text with no action at all is
    taken as the answer itself. An empty reply is an empty Finish; the caller
    decides what to do with it.

    Returns:
        Finish or Replan.

    """
    thought_match = _THOUGHT.search(text)
    thought = thought_match.group(1).strip() if thought_match else None
    actions = list(_ACTION.finditer(text))
    if not actions:
        body = _THOUGHT.sub("", text).strip() if thought_match else text.strip()
        return Finish(answer=body, thought=thought)
    action = actions[-1]
    inner = _balanced(text[action.end() :]).strip()
    if action.group(1).lower() == "replan":
        return Replan(reason=inner, thought=thought)
    return Finish(answer=inner, thought=thought)


def _balanced(rest: str) -> str:
    """The text up to the parenthesis that closes the action's `(`."""
    depth = 1
    for i, char in enumerate(rest):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return rest[:i]
    # Unbalanced: the model forgot the close, or the answer holds a stray ")".
    rest = rest.rstrip()
    return rest[:-1] if rest.endswith(")") else rest
