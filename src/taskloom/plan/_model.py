"""Task, Ref and Template: the values a plan is made of."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskloom._ids import TaskId
from taskloom._text import clip, short_repr
from taskloom.errors import Position, UserError

__all__ = [
    "Guard",
    "Ref",
    "Task",
    "Template",
    "derived_task",
    "item_ref",
    "iter_refs",
    "render_value",
]


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to another task's output (`$1`), or to a field of it (`$1.population`).

    `$2.names[*]` is a map reference: the task runs once per item of the list
    `$2.names` (see `each`). `$5?` is an optional reference: where task 5 was
    skipped by a false condition it stands for None instead of skipping the
    task that holds it.
    """

    task: TaskId
    """The task whose output is meant."""
    path: tuple[str | int, ...] = ()
    """Keys and indexes to follow inside that output, outermost first (up to `[*]`)."""
    each: tuple[str | int, ...] | None = None
    """For a map reference, the path to follow inside each item after `[*]`
    (`()` for `$2.names[*]`); None for every other reference."""
    optional: bool = False
    """Written `$5?`: a task skipped by a false condition gives None."""

    def __str__(self) -> str:
        text = f"${self.task}?" if self.optional else f"${self.task}"
        text += _path_text(self.path)
        if self.each is not None:
            text += "[*]" + _path_text(self.each)
        return text


def _path_text(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)


@dataclass(frozen=True, slots=True)
class Guard:
    """The condition after `if` on a plan line: `5. page($4) if $3.status != "ok"`.

    The task runs only when the condition holds on the referenced outputs;
    otherwise it is skipped ("condition false"). The condition is a Python
    expression with references, evaluated by simpleeval (never `eval`).
    """

    text: str
    """The condition as written, references included."""
    source: str = field(compare=False)
    """The same expression with each reference replaced by its name in `names`."""
    names: tuple[str, ...] = field(compare=False)
    """The name standing for each reference in `source`, in the order of `refs`."""
    refs: tuple[Ref, ...] = field(compare=False)
    """The references, in the order they were written."""

    def __str__(self) -> str:
        return self.text


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
    if ref.each is not None:  # `${2.names[*].name}`: nor can a map's path
        return "${" + str(ref)[1:] + "}"
    if not ref.path:
        return "${" + ref.task + "}"
    if not ref.task.isdigit():  # `$city.name` in a string is text: an input is braced
        return "${" + str(ref)[1:] + "}"
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
    guard: Guard | None = None
    """The condition under which the task runs (`... if $3.ok`); None: always."""
    dependencies: frozenset[TaskId] = field(init=False, compare=False)
    """Ids of the tasks whose outputs this task's arguments (and guard) reference."""
    is_map: bool = field(init=False, compare=False)
    """Whether an argument holds a map reference (`$2.names[*]`): one call per item."""

    def __post_init__(self) -> None:
        _check_fields(self)
        if isinstance(self.args, list):  # a list is as good as a tuple; keep one kind
            object.__setattr__(self, "args", tuple(self.args))
        refs = list(iter_refs((self.args, self.kwargs)))
        deps = frozenset(ref.task for ref in refs)
        is_map = False
        for ref in refs:  # a loop, not any(): most tasks have a reference or two
            if ref.each is not None:
                is_map = True
                break
        if self.guard is not None:
            deps |= {ref.task for ref in self.guard.refs}
        object.__setattr__(self, "dependencies", deps)
        object.__setattr__(self, "is_map", is_map)

    def accepts_skipped(self, dependency: TaskId) -> bool:
        """Whether every reference to `dependency` is optional (`$5?`).

        Such a task still runs when `dependency` was skipped by a false
        condition, and reads None for it.
        """
        refs = list(iter_refs((self.args, self.kwargs)))
        if self.guard is not None:
            refs += self.guard.refs
        mine = [ref for ref in refs if ref.task == dependency]
        return bool(mine) and all(ref.optional for ref in mine)

    def call_text(self) -> str:
        """The call as the plan language writes it: `city("Paris", limit=3)`."""
        parts = [render_value(a) for a in self.args]
        parts += [f"{k}={render_value(v)}" for k, v in self.kwargs.items()]
        return f"{self.tool}({', '.join(parts)})"

    def __str__(self) -> str:
        if self.guard is not None:
            return f"{self.id}. {self.call_text()} if {self.guard.text}"
        return f"{self.id}. {self.call_text()}"


def derived_task(
    template: Task, task_id: TaskId, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Task:
    """`template`'s call under another id, its references moved within the same tasks.

    A map's element (`3.0`) is one: its references name the tasks the map's
    arguments name, so the checks and the walk over its arguments that
    `Task()` does are skipped (10,000 elements are added in one loop turn).
    It has no condition (the map's was judged) and is no map.
    """
    task = _new(Task)
    _TASK_ID(task, task_id)
    _TASK_TOOL(task, template.tool)
    _TASK_ARGS(task, args)
    _TASK_KWARGS(task, kwargs)
    _TASK_THOUGHT(task, None)
    _TASK_POSITION(task, template.position)
    _TASK_GUARD(task, None)
    dependencies = template.dependencies
    if template.guard is not None:  # the condition's references are not the element's
        dependencies = frozenset(ref.task for ref in iter_refs((args, kwargs)))
    _TASK_DEPENDENCIES(task, dependencies)
    _TASK_IS_MAP(task, False)
    return task


def item_ref(task: TaskId, path: tuple[str | int, ...]) -> Ref:
    """`Ref(task, path)`, made in half the time: a map makes one per element."""
    ref = _new(Ref)
    _REF_TASK(ref, task)
    _REF_PATH(ref, path)
    _REF_EACH(ref, None)
    _REF_OPTIONAL(ref, False)
    return ref


def _slot(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The setter of a slot of `cls`: a frozen dataclass's field set without `__setattr__`."""
    setter: Callable[[Any, Any], None] = vars(cls)[name].__set__
    return setter


_new = object.__new__
_TASK_ID = _slot(Task, "id")
_TASK_TOOL = _slot(Task, "tool")
_TASK_ARGS = _slot(Task, "args")
_TASK_KWARGS = _slot(Task, "kwargs")
_TASK_THOUGHT = _slot(Task, "thought")
_TASK_POSITION = _slot(Task, "position")
_TASK_GUARD = _slot(Task, "guard")
_TASK_DEPENDENCIES = _slot(Task, "dependencies")
_TASK_IS_MAP = _slot(Task, "is_map")
_REF_TASK = _slot(Ref, "task")
_REF_PATH = _slot(Ref, "path")
_REF_EACH = _slot(Ref, "each")
_REF_OPTIONAL = _slot(Ref, "optional")


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
    if task.guard is not None and not isinstance(task.guard, Guard):
        raise UserError(
            f"task {clip(task.id)}: guard is a Guard (taskloom.plan.parse_guard makes one), "
            f"not {short_repr(task.guard)}"
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
