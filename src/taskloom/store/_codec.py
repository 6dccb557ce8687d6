"""Tasks as JSON, references and templates included, so a store can rebuild them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskloom._ids import TaskId
from taskloom.plan import Guard, Ref, Task, Template, parse_guard

__all__ = ["task_from_json", "task_to_json"]

# Markers are single keys no plain argument dict of ours would carry together.
_REF, _TEMPLATE, _TUPLE, _DICT = "$ref", "$template", "$tuple", "$dict"


def task_to_json(task: Task) -> dict[str, Any]:
    """The task as JSON-able data (its thought and position are dropped)."""
    data: dict[str, Any] = {
        "id": task.id,
        "tool": task.tool,
        "args": [_encode(a) for a in task.args],
        "kwargs": {k: _encode(v) for k, v in task.kwargs.items()},
    }
    if task.guard is not None:
        data["guard"] = task.guard.text
        written = parse_guard(task.guard.text, task_id=task.id).refs
        if written != task.guard.refs:  # a sub-plan's task: its text names the sub-plan's ids
            data["guard_refs"] = [_encode(r) for r in task.guard.refs]
    return data


def task_from_json(data: Mapping[str, Any]) -> Task:
    """Rebuild a task written by `task_to_json`.

    Raises:
        PlanError: if its recorded condition no longer parses.

    """
    text = data.get("guard")
    guard = None if text is None else parse_guard(text, task_id=data["id"])
    moved = data.get("guard_refs")
    if guard is not None and moved is not None:
        refs = tuple(_decode(r) for r in moved)
        guard = Guard(text=guard.text, source=guard.source, names=guard.names, refs=refs)
    return Task(
        id=TaskId(data["id"]),
        tool=data["tool"],
        args=tuple(_decode(a) for a in data["args"]),
        kwargs={k: _decode(v) for k, v in data["kwargs"].items()},
        guard=guard,
    )


def _encode(value: Any) -> Any:
    if isinstance(value, Ref):
        if value.each is None and not value.optional:
            return {_REF: [value.task, list(value.path)]}
        each = None if value.each is None else list(value.each)
        return {_REF: [value.task, list(value.path), each, value.optional]}
    if isinstance(value, Template):
        return {_TEMPLATE: [_encode(p) for p in value.parts]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {_DICT: [[_encode(k), _encode(v)] for k, v in value.items()]}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    ((marker, body),) = value.items()
    if marker == _REF:
        if len(body) == 2:
            return Ref(TaskId(body[0]), tuple(body[1]))
        each = None if body[2] is None else tuple(body[2])
        return Ref(TaskId(body[0]), tuple(body[1]), each, bool(body[3]))
    if marker == _TEMPLATE:
        return Template(tuple(_decode(p) for p in body))
    if marker == _TUPLE:
        return tuple(_decode(v) for v in body)
    return {_decode(k): _decode(v) for k, v in body}
