"""Checking one task against the tools: known tool, arguments that fit its schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskloom.errors import PlanError
from taskloom.plan._model import Ref, Task, Template
from taskloom.tools import Tool

__all__ = ["bind_task"]


def bind_task(task: Task, tools: Mapping[str, Tool]) -> dict[str, Any]:
    """Check a task against its tool and name its arguments.

    Literal arguments are validated now; arguments holding references are
    validated when the referenced outputs exist.

    Returns:
        The task's arguments by parameter name.

    Raises:
        PlanError: unknown tool, wrong arity or keyword, or a literal argument
            that does not fit the tool's schema.

    """
    tool = tools.get(task.tool)
    if tool is None:
        known = ", ".join(sorted(tools)) or "none"
        raise PlanError(
            f"unknown tool {task.tool!r}; the tools are: {known}",
            task_id=task.id,
            position=task.position,
        )
    try:
        bound = tool.bind(task.args, task.kwargs)
    except ValueError as exc:
        raise PlanError(str(exc), task_id=task.id, position=task.position) from exc
    referencing = bool(task.dependencies)
    for name, value in bound.items():
        if referencing and _holds_refs(value):
            continue
        problem = tool.check_value(name, value)
        if problem is not None:
            raise PlanError(
                f"bad argument for {tool.signature()}: {problem}",
                task_id=task.id,
                position=task.position,
            )
    return bound


def _holds_refs(value: Any) -> bool:
    if isinstance(value, Ref | Template):
        return True
    if isinstance(value, list | tuple):
        for item in value:  # a loop, not any(): this runs once per argument of every task
            if _holds_refs(item):
                return True
        return False
    if isinstance(value, dict):
        return _holds_refs(list(value.values()))
    return False
