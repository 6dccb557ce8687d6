"""Maps and conditions: the pure parts of what stands between a task's inputs and its call.

A map task (`3. city($2.names[*])`) fans out into one element task per item
of its list, `3.0`, `3.1`, ...: each an ordinary task whose map reference is
replaced by a reference to its item (`$2.names[0]`). A condition
(`... if $3.status != "ok"`) is evaluated by simpleeval on the outputs it
references. The scheduler (`Run._through_gate`) does the bookkeeping; this
module computes.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from typing import Any

import simpleeval

from taskloom._ids import TaskId
from taskloom.plan import Guard, Ref, Task, Template
from taskloom.plan._args import GUARD_FUNCTIONS
from taskloom.plan._model import iter_refs
from taskloom.plan._resolve import HasOutput, ResolveError, resolve

__all__ = [
    "BranchProblem",
    "element_id",
    "element_task",
    "element_value",
    "guard_holds",
    "map_size",
]


class BranchProblem(Exception):
    """A map cannot fan out, or a condition cannot be evaluated; the message says why."""


def element_id(task_id: TaskId, index: int) -> TaskId:
    """The id of a map's element: `3.0` is the first element of map task 3."""
    return TaskId(f"{task_id}.{index}")


def map_size(bound: Mapping[str, Any], outputs: Mapping[TaskId, HasOutput]) -> int:
    """How many elements a map has: the length of the list(s) its `[*]` references name.

    Raises:
        BranchProblem: if a list is missing or is no list, or the lists zipped
            by several `[*]` references differ in length.

    """
    sizes: dict[str, int] = {}
    for ref in iter_refs(list(bound.values())):
        if ref.each is None:
            continue
        whole = Ref(ref.task, ref.path)
        name = str(whole)
        if name in sizes:
            continue
        try:
            items = resolve(whole, outputs)
        except ResolveError as exc:
            raise BranchProblem(str(exc)) from None
        if not isinstance(items, list | tuple):
            raise BranchProblem(
                f"{name} is {_kind(items)}, not a list; [*] maps over the items of a list"
            )
        sizes[name] = len(items)
    if len(set(sizes.values())) > 1:
        told = ", ".join(f"{name} has {n}" for name, n in sorted(sizes.items()))
        raise BranchProblem(
            f"the lists it maps over differ in length ({told}); "
            "several [*] in one call pair their items one by one"
        )
    return next(iter(sizes.values()), 0)


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def element_value(value: Any, index: int) -> Any:
    """`value` with each map reference (`$2.names[*].x`) made the reference to item `index`."""
    if isinstance(value, Ref):
        if value.each is None:
            return value
        return Ref(value.task, (*value.path, index, *value.each))
    if isinstance(value, Template):
        return Template(tuple(element_value(part, index) for part in value.parts))
    if isinstance(value, list):
        return [element_value(v, index) for v in value]
    if isinstance(value, tuple):
        return tuple(element_value(v, index) for v in value)
    if isinstance(value, Mapping):
        return {k: element_value(v, index) for k, v in value.items()}
    return value


def element_task(task: Task, index: int) -> Task:
    """Element `index` of map task `task`: the same call on item `index` of its list(s)."""
    return Task(
        id=element_id(task.id, index),
        tool=task.tool,
        args=element_value(task.args, index),
        kwargs={k: element_value(v, index) for k, v in task.kwargs.items()},
        position=task.position,
    )


@functools.lru_cache(maxsize=256)
def _parsed(source: str) -> ast.expr:
    return ast.parse(source, mode="eval").body


def guard_holds(guard: Guard, outputs: Mapping[TaskId, HasOutput]) -> bool:
    """Whether the condition is true on the referenced outputs (Python's truth).

    Raises:
        BranchProblem: if a reference's path is missing from its output, or
            evaluating raised (a comparison of a number with text, say).

    """
    names: dict[str, Any] = {}
    for name, ref in zip(guard.names, guard.refs, strict=True):
        try:
            names[name] = resolve(ref, outputs)
        except ResolveError as exc:
            raise BranchProblem(str(exc)) from None
    evaluator = simpleeval.SimpleEval(functions=GUARD_FUNCTIONS, names=names)
    try:
        return bool(evaluator.eval(guard.source, previously_parsed=_parsed(guard.source)))
    except Exception as exc:  # anything the condition does wrong is its task's failure
        raise BranchProblem(f"{type(exc).__name__}: {exc}") from None
