"""Task, Ref and Template: the values a plan is made of."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskloom._ids import TaskId
from taskloom._text import clip, short_repr
from taskloom.errors import Position, UserError

__all__ = ["Ref", "Task", "Template", "iter_refs", "render_value"]


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to another task's output (`$1`), or to a field of it (`$1.population`)."""

    task: TaskId
    """The task whose output is meant."""
    path: tuple[str | int, ...] = ()
    """Keys and indexes to follow inside that output, outermost first."""

    def __str__(self) -> str:
        text = f"${self.task}"
        for step in self.path:
            text += f"[{step}]" if isinstance(step, int) else f".{step}"
        return text


@dataclass(frozen=True, slots=True)
class Template:
    """A string with references inside it: `"population of $1"`.

    A string that is exactly one reference (`"$1"`) is a Template too, since
    it was written as text. Checked against a tool (`bind_task`), it stays
    text where the parameter wants text (`str`) and becomes the plain Ref,
    the output itself, everywhere else.
    """

    parts: tuple[str | Ref, ...]
    """Literal text and references, in order; references are rendered as text."""

    @property
    def lone_ref(self) -> Ref | None:
        """The reference, when the string is exactly one reference; else None."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Ref):
            return self.parts[0]
        return None

    def __str__(self) -> str:
        return "".join(p if isinstance(p, str) else _braced(p) for p in self.parts)


def _braced(ref: Ref) -> str:
    # Inside a string `${1}` cannot run into the text that follows it.
    if not ref.path:
        return "${" + ref.task + "}"
    return str(ref)


@dataclass(frozen=True, kw_only=True, slots=True)
class Task:
    """One tool call in a plan."""

    id: TaskId
    """Unique within the plan; the number the planner wrote."""
    tool: str
    """Name of the tool to call."""
    args: tuple[Any, ...] = ()
    """Positional arguments; may hold Refs, Templates, lists and dicts of them."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments, likewise."""
    thought: str | None = None
    """The planner's reasoning written just before this task, if any."""
    position: Position | None = None
    """Where the task was written in the plan's text, if it came from text."""
    dependencies: frozenset[TaskId] = field(init=False, compare=False)
    """Ids of the tasks whose outputs this task's arguments reference."""

    def __post_init__(self) -> None:
        _check_fields(self)
        if isinstance(self.args, list):  # a list is as good as a tuple; keep one kind
            object.__setattr__(self, "args", tuple(self.args))
        deps = frozenset(ref.task for ref in iter_refs((self.args, self.kwargs)))
        object.__setattr__(self, "dependencies", deps)

    def call_text(self) -> str:
        """The call as the plan language writes it: `city("Paris", limit=3)`."""
        parts = [render_value(a) for a in self.args]
        parts += [f"{k}={render_value(v)}" for k, v in self.kwargs.items()]
        return f"{self.tool}({', '.join(parts)})"

    def __str__(self) -> str:
        return f"{self.id}. {self.call_text()}"


def _check_fields(task: Task) -> None:
    """A Task built in Python has the field types the parsers give it.

    References name tasks by str id, so `id=1` would never be found; a str
    as `args` would pass one letter per parameter.

    Raises:
        UserError: for an id or tool name that is no non-empty str, args that
            are no tuple or list, or kwargs that are no mapping by str name.

    """
    if not isinstance(task.id, str) or not task.id:
        raise UserError(f"a task id is a non-empty str, like '1'; got {short_repr(task.id)}")
    if not isinstance(task.tool, str) or not task.tool:
        raise UserError(f"task {clip(task.id)}: the tool is named by a non-empty str")
    if not isinstance(task.args, tuple | list):
        raise UserError(
            f"task {clip(task.id)}: args is a tuple of arguments, not {short_repr(task.args)}"
        )
    if not isinstance(task.kwargs, Mapping) or not all(isinstance(k, str) for k in task.kwargs):
        raise UserError(
            f"task {clip(task.id)}: kwargs maps parameter names (str) to arguments, "
            f"not {short_repr(task.kwargs)}"
        )


def iter_refs(value: Any) -> Iterator[Ref]:
    """Yield every Ref inside an argument value, however deeply nested."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Ref):
            yield item
        elif isinstance(item, Template):
            stack.extend(p for p in item.parts if isinstance(p, Ref))
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())


def render_value(value: Any) -> str:
    """Write an argument value back in the plan language."""
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, Template):
        return (
            '"'
            + "".join(_escape(p) if isinstance(p, str) else _braced(p) for p in value.parts)
            + '"'
        )
    if isinstance(value, str):
        return '"' + _escape(value) + '"'
    if value is None:
        return "None"
    if isinstance(value, list):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(render_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, Mapping):
        items = (f"{render_value(k)}: {render_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return repr(value)


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("$", "\\$")
    )
