"""Answers by reference: the joiner's `Finish($1.capital)`, rendered from the results.

References in an answer are written as in plan strings: `$3`, `$1.capital`,
`$2.items[0].name`, `${4}`; a dollar before an amount (`$1,000`, `$2.50`) is
plain text, and a dot that ends a sentence ends the reference. The engine
renders each from the recorded output, so the answer is the exact value: the
model copies no digits and picks no field by chance.

How values read in an answer:

- text as it is, quotes inside kept;
- whole numbers without a decimal point (`66987244`, also for `66987244.0`);
  other floats with at most 15 significant digits, so no float noise
  (`0.1 + 0.2` reads `0.3`);
- booleans as `yes` and `no`: the answer to a question, not a literal;
- None as `none`;
- records and lists as compact JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from taskloom._ids import TaskId
from taskloom.agent._decision import Finish
from taskloom.errors import PlanError
from taskloom.plan._args import parse_string
from taskloom.plan._model import Ref
from taskloom.plan._resolve import ResolveError, resolve

__all__ = ["UnresolvedAnswer", "answer_references", "answer_text", "render_finish"]

_MAX_DEPTH = 3
"""Most `.field` / `[index]` steps in a reference a grammar offers (as in plans)."""
_MAX_INDEX = 5
"""List items a grammar offers references to: `[0]` to `[4]`."""
_MAX_PER_TASK = 64
"""References a grammar offers into one task's output, the shallowest first."""
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


class UnresolvedAnswer(Exception):
    """An answer refers to something that has no result: the joiner's mistake."""

    def __init__(self, written: str, problem: str) -> None:
        self.written = written
        """The answer as the model wrote it."""
        self.problem = problem
        """What is wrong with its reference."""
        super().__init__(f"the answer {written!r} refers to {problem}")


def answer_text(value: Any) -> str:
    """A value as it reads in an answer (see the module's docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, float) and math.isfinite(value):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def render_finish(finish: Finish, outputs: Mapping[TaskId, Any]) -> Finish:
    """The Finish with the references in its answer replaced by the values they name.

    Args:
        finish: the joiner's decision as parsed, its answer as the model wrote it.
        outputs: the output of every task that is done, by id.

    Returns:
        `finish` itself when its answer holds no reference; else a Finish
        whose `answer` is rendered and `written` is what the model wrote,
        with `reference` and `value` set when the answer is one reference.

    Raises:
        UnresolvedAnswer: if a reference names a task without a result
            (failed, skipped or unknown) or a field or index its output
            does not have, or is malformed.

    """
    written = finish.answer
    if "$" not in written:
        return finish
    try:
        parsed = parse_string(written, task_id="answer")
    except PlanError as exc:
        raise UnresolvedAnswer(written, f"a malformed reference ({exc.reason})") from exc
    if isinstance(parsed, str):
        return finish  # a dollar that is plain text ("$1,000")
    refs = [p for p in parsed.parts if isinstance(p, Ref)]
    for ref in refs:
        if ref.task not in outputs:
            raise UnresolvedAnswer(written, f"${ref.task}, which has no result")
    done = {task: _Done(outputs[task]) for task in {r.task for r in refs}}
    try:
        lone = parsed.lone_ref
        if lone is not None:
            value = resolve(lone, done)
            return _rendered(finish, answer_text(value), reference=str(lone), value=value)
        text = "".join(
            p if isinstance(p, str) else answer_text(resolve(p, done)) for p in parsed.parts
        )
    except ResolveError as exc:
        raise UnresolvedAnswer(written, str(exc)) from exc
    return _rendered(finish, text)


def _rendered(
    finish: Finish, answer: str, *, reference: str | None = None, value: Any = None
) -> Finish:
    return Finish(
        answer=answer,
        thought=finish.thought,
        written=finish.answer,
        reference=reference,
        value=value,
    )


class _Done:
    """An output, as `resolve` reads it."""

    __slots__ = ("output",)

    def __init__(self, output: Any) -> None:
        self.output = output


def answer_references(outputs: Iterable[tuple[TaskId, Any]]) -> list[str]:
    """Every reference an answer may name in these outputs: `$N` and its paths.

    Fields (those named like identifiers) and list items are followed
    breadth first, down to a few steps and the first few items of a list,
    and at most a few dozen references per task, so the grammar stays small
    and every reference it offers names a real value.

    Args:
        outputs: (task id, output) of the tasks that are done, in order.

    Returns:
        The references as written (`$1`, `$1.capital`, `$2.items[0].name`).

    """
    found: list[str] = []
    for task, output in outputs:
        queue: deque[tuple[str, Any, int]] = deque([(f"${task}", output, 0)])
        count = 0
        while queue and count < _MAX_PER_TASK:
            text, value, depth = queue.popleft()
            found.append(text)
            count += 1
            if depth < _MAX_DEPTH:
                queue.extend((f"{text}{step}", item, depth + 1) for step, item in _steps(value))
    return found


def _steps(value: Any) -> Iterable[tuple[str, Any]]:
    """The one-step paths into a value, written as in a reference."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _FIELD.fullmatch(key):
                yield f".{key}", item
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value[:_MAX_INDEX]):
            yield f"[{index}]", item
