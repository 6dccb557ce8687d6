"""The plan as JSON, with its JSON Schema for constrained decoding.

    {"thought": "...", "tasks": [
        {"id": 1, "tool": "country", "args": {"name": "France"}},
        {"id": 2, "tool": "math", "args": {"expression": "$1.population * 2"}}]}

Strings in `args` carry references exactly as in the text form: `"$1"` is
task 1's output, `"$1.population"` a field of it, `"total: ${1}"` a string
with it inside. `"$2.names[*]"` maps the task over the list `$2.names` (one
call per item), and a string that is exactly an optional reference, `"$5?"`,
stands for None where task 5 was skipped by its condition. A task's
`condition` is the text after `if` in the text form:

    {"id": 5, "tool": "page", "args": {"who": "oncall"}, "condition": "$3.status != 'ok'"}
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from taskloom._ids import TaskId
from taskloom._text import SURROGATE, clip, quoted
from taskloom.errors import PlanError
from taskloom.plan._args import (
    MAX_DEPTH,
    MAX_ID_DIGITS,
    parse_bare_ref,
    parse_guard,
    parse_string,
)
from taskloom.plan._model import Task
from taskloom.tools import Tool

__all__ = ["PlanModel", "TaskModel", "plan_json_schema", "tasks_from_json"]

REF_PATTERN = r"^\$\{?\d+"


class TaskModel(pydantic.BaseModel):
    """One task of a JSON plan."""

    model_config = pydantic.ConfigDict(extra="forbid")

    id: int = pydantic.Field(ge=1, lt=10**MAX_ID_DIGITS)
    """The task's number."""
    tool: str
    """Name of the tool to call."""
    args: dict[str, Any] = pydantic.Field(default_factory=dict)
    """Arguments by parameter name; strings may hold references."""
    thought: str | None = None
    """Why this task is here."""
    condition: str | None = None
    """Run the task only if this holds (`"$3.status != 'ok'"`); else it is skipped."""


class PlanModel(pydantic.BaseModel):
    """A whole JSON plan."""

    model_config = pydantic.ConfigDict(extra="forbid")

    thought: str | None = None
    """The planner's reasoning about the whole plan."""
    tasks: list[TaskModel]
    """The tool calls, each with its own id."""


def tasks_from_json(data: str | bytes | Mapping[str, Any] | PlanModel) -> list[Task]:
    """Read the tasks of a JSON plan, finding the references in its strings.

    Raises:
        PlanError: if the data does not fit `PlanModel`.

    """
    try:
        if isinstance(data, PlanModel):
            model = data
        elif isinstance(data, str | bytes):
            # A byte order mark (Windows editors write one) is no part of the JSON.
            bom = "\ufeff" if isinstance(data, str) else b"\xef\xbb\xbf"
            model = PlanModel.model_validate_json(data.removeprefix(bom))  # type: ignore[arg-type]
        else:
            model = PlanModel.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = clip(".".join(str(p) for p in first["loc"]) or "plan")
        raise PlanError(
            f"the JSON plan does not fit its schema at {where}: {first['msg']}"
        ) from None
    except (ValueError, RecursionError) as exc:  # pydantic's own limits on huge input
        raise PlanError(f"the JSON plan cannot be read: {clip(str(exc))}") from None
    tasks = []
    for item in model.tasks:
        task_id = TaskId(str(item.id))
        kwargs = {k: _with_refs(v, task_id, 1) for k, v in item.args.items()}
        guard = None if item.condition is None else parse_guard(item.condition, task_id=task_id)
        tasks.append(
            Task(id=task_id, tool=item.tool, kwargs=kwargs, thought=item.thought, guard=guard)
        )
    return tasks


def _with_refs(value: Any, task_id: str, depth: int) -> Any:
    if isinstance(value, str):
        if SURROGATE.search(value):  # a Python str may hold one; no store or output can
            raise PlanError(
                f"the string {quoted(value)} holds half of a surrogate pair "
                "(U+D800-U+DFFF), which is no character",
                task_id=task_id,
            )
        if "$" not in value:
            return value
        if "?" in value:
            optional = parse_bare_ref(value, task_id=task_id)
            if optional is not None:
                return optional
        return parse_string(value, task_id=task_id)
    if isinstance(value, list | dict) and depth > MAX_DEPTH:
        # The same bound as the text form: deeper values are a mistake or an attack.
        raise PlanError(f"values are nested more than {MAX_DEPTH} deep", task_id=task_id)
    if isinstance(value, list):
        return [_with_refs(v, task_id, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _with_refs(v, task_id, depth + 1) for k, v in value.items()}
    return value


def plan_json_schema(tools: Iterable[Tool] | None = None) -> dict[str, Any]:
    """The JSON Schema of a plan; with tools, each task's `args` is tied to its tool.

    Any argument may instead be a reference string (`"$1"`, `"$1.population"`,
    a map over a list `"$1.names[*]"`, an optional `"$5?"`).
    """
    schema = PlanModel.model_json_schema()
    if tools is None:
        return schema
    variants = []
    for tool in tools:
        args = copy.deepcopy(tool.schema)
        defs = args.pop("$defs", None)
        if defs:
            schema.setdefault("$defs", {}).update(defs)
        for name, prop in args.get("properties", {}).items():
            args["properties"][name] = {"anyOf": [prop, {"type": "string", "pattern": REF_PATTERN}]}
        variants.append(
            {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "tool": {"const": tool.name},
                    "args": args,
                    "thought": {"type": "string"},
                    "condition": {"type": "string"},
                },
                "required": ["id", "tool", "args"],
                "additionalProperties": False,
            }
        )
    schema["properties"]["tasks"] = {"type": "array", "items": {"anyOf": variants}}
    return schema
