"""Checking one task against the tools: known tool, arguments that fit its schema."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from taskloom._text import clip, quoted
from taskloom.errors import PlanError
from taskloom.plan._model import Ref, Task, Template
from taskloom.tools import Tool

__all__ = ["bind_task", "wants_text"]

_LISTED_TOOLS = 40
"""Tool names an unknown-tool message lists before it says how many more there are."""


def bind_task(task: Task, tools: Mapping[str, Tool]) -> dict[str, Any]:
    """Check a task against its tool and name its arguments.

    Literal arguments are validated now; arguments holding references are
    validated when the referenced outputs exist. A string that is exactly
    one reference (`"$1"`) stays text where the parameter wants text
    (`wants_text`) and becomes the output itself everywhere else.

    Returns:
        The task's arguments by parameter name.

    Raises:
        PlanError: unknown tool, wrong arity or keyword, or a literal argument
            that does not fit the tool's schema.

    """
    tool = tools.get(task.tool)
    if tool is None:
        raise PlanError(_unknown_tool(task.tool, tools), task_id=task.id, position=task.position)
    try:
        bound = tool.bind(task.args, task.kwargs)
    except ValueError as exc:
        raise PlanError(str(exc), task_id=task.id, position=task.position) from exc
    try:
        return _check_values(task, tool, bound)
    except RecursionError:  # a Task built in Python: the parsers already bound nesting
        raise PlanError(
            "an argument is nested too deeply to check", task_id=task.id, position=task.position
        ) from None


def _check_values(task: Task, tool: Tool, bound: dict[str, Any]) -> dict[str, Any]:
    referencing = bool(task.dependencies)
    for name, value in bound.items():
        if referencing and _holds_refs(value):
            if not isinstance(value, Ref):
                bound[name] = _fit_lone_refs(value, tool.parameter_type(name))
            continue
        problem = tool.check_value(name, value)
        if problem is not None:
            raise PlanError(
                f"bad argument for {clip(tool.signature(), 200)}: {problem}",
                task_id=task.id,
                position=task.position,
            )
    return bound


def _unknown_tool(name: str, tools: Mapping[str, Tool]) -> str:
    """Why a plan may not call `name`: no tool has it, or several servers offer it.

    MCP tools that two servers offer under one name are only known by their
    qualified names (`SERVER.TOOL`); the bare name then says which those are.
    """
    qualified = sorted(known for known in tools if known.endswith(f".{name}"))
    if len(qualified) > 1:
        return (
            f"tool {quoted(name)} is ambiguous: several MCP servers offer it; "
            f"call one of {', '.join(qualified)}"
        )
    return f"unknown tool {quoted(name)}; the tools are: {_names(tools)}"


def _names(tools: Mapping[str, Tool]) -> str:
    names = sorted(tools)
    shown = ", ".join(names[:_LISTED_TOOLS]) or "none"
    if len(names) > _LISTED_TOOLS:
        shown += f" and {len(names) - _LISTED_TOOLS} more"
    return shown


_REFS = (Ref, Template)
_SEQUENCES = (list, tuple)


def _holds_refs(value: Any) -> bool:
    if isinstance(value, _REFS):
        return True
    if isinstance(value, _SEQUENCES):
        for item in value:  # a loop, not any(): this runs once per argument of every task
            if _holds_refs(item):
                return True
        return False
    if isinstance(value, dict):
        return _holds_refs(list(value.values()))
    return False


def _fit_lone_refs(value: Any, wanted: Any) -> Any:
    """`value` with its lone-reference strings made plain Refs where no text is wanted.

    `wanted` is the type at this place in the argument; items of lists and
    values of dicts are matched with the item and value types.
    """
    if isinstance(value, Template):
        ref = value.lone_ref
        return ref if ref is not None and not wants_text(wanted) else value
    if isinstance(value, list):
        # A plain Ref or literal item stays as it is: its type is only looked up when needed.
        for v in value:
            if type(v) not in _AS_IS:
                break
        else:
            return value  # nothing to fit (a list of references, say): no copy
        return [
            v if type(v) in _AS_IS else _fit_lone_refs(v, _item_type(wanted, i))
            for i, v in enumerate(value)
        ]
    if isinstance(value, tuple):
        return tuple(
            v if type(v) in _AS_IS else _fit_lone_refs(v, _item_type(wanted, i))
            for i, v in enumerate(value)
        )
    if isinstance(value, dict):
        inner = _value_type(wanted)
        return {k: _fit_lone_refs(v, inner) for k, v in value.items()}
    return value


_AS_IS = frozenset({Ref, str, int, float, bool, type(None)})
"""Items that `_fit_lone_refs` returns unchanged, whatever the type wanted."""


def wants_text(wanted: Any) -> bool:
    """Whether a parameter of this type takes text and nothing else.

    True for `str` (and its subclasses, such as string enums), a `Literal`
    of strings, and unions of those with `None`; False for anything that may
    also take another kind of value (`Any`, `int`, `dict`, `str | int`).
    """
    wanted = _unwrapped(wanted)
    if isinstance(wanted, type):
        return issubclass(wanted, str)
    origin = typing.get_origin(wanted)
    args = typing.get_args(wanted)
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in args)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in args if a is not type(None)]
        return bool(members) and all(wants_text(a) for a in members)
    return False


def _unwrapped(wanted: Any) -> Any:
    """The type without `Annotated`, and without `None` when it is optional."""
    while typing.get_origin(wanted) is typing.Annotated:
        wanted = typing.get_args(wanted)[0]
    origin = typing.get_origin(wanted)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(wanted) if a is not type(None)]
        if len(members) == 1:
            return _unwrapped(members[0])
    return wanted


def _item_type(wanted: Any, index: int) -> Any:
    """The type of item `index` of a list, set or tuple of type `wanted` (Any if unknown)."""
    wanted = _unwrapped(wanted)
    args = typing.get_args(wanted)
    origin = typing.get_origin(wanted)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[index] if index < len(args) else Any
    if isinstance(origin, type) and issubclass(origin, Sequence | AbstractSet) and len(args) == 1:
        return args[0]
    return Any


def _value_type(wanted: Any) -> Any:
    """The type of the values of a dict of type `wanted` (Any if unknown)."""
    wanted = _unwrapped(wanted)
    args = typing.get_args(wanted)
    origin = typing.get_origin(wanted)
    if isinstance(origin, type) and issubclass(origin, Mapping) and len(args) == 2:
        return args[1]
    return Any
