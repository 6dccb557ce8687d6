r"""Sub-plans: a plan with inputs, called as one tool of a larger plan.

    report = Plan.parse('1. city($name)\\n2. weather($1.capital)').as_tool("report")
    1. report("France")            # in the larger plan: tasks 1/1, 1/2 run in its run

A sub-plan's tasks refer to its inputs by name (`$name`, `${name}` inside a
string). A call runs them in the caller's own run (the same scheduler, its
slots, limits, journal and events), each with an id under the caller's:
`4/in` holds the call's arguments, `4/1`, `4/2`, ... are the sub-plan's
tasks. A `/` is never part of a plan's own ids nor of a map's elements
(`4.0`), so the ids cannot collide; calls nest (`4/2/1`), and a map over a
sub-plan gives `4.0/1`, `4.1/1`, ...

This module is the plan side (the tool, and a task moved under a scope);
`taskloom.engine._subplan` is the scheduler's part.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from taskloom._ids import TaskId
from taskloom._text import quoted, short_repr
from taskloom.errors import (
    ConditionFalse,
    PlanError,
    SubplanFailed,
    ToolDefinitionError,
    UserError,
)
from taskloom.plan._model import Guard, Ref, Task, Template
from taskloom.plan._plan import tool_map
from taskloom.tools import CallPolicy, Tool
from taskloom.tools._schema import SchemaTool

if TYPE_CHECKING:
    from taskloom.plan._plan import Plan

__all__ = [
    "INPUTS",
    "SubplanTool",
    "inner_id",
    "load_subplan",
    "scoped_task",
    "subplan_tools",
]

INPUTS = "in"
"""The id, under a call's, of the task that holds the call's arguments (`4/in`)."""

_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list": {"type": "array"},
    "dict": {"type": "object"},
    "any": {},
}
"""The types a `.plan` file's `# inputs:` line may name, as JSON Schema."""

_HEADER = re.compile(r"#\s*(name|description|inputs|output)\s*:(.*)", re.IGNORECASE)


def inner_id(scope: str, task_id: str) -> TaskId:
    """The id of a sub-plan's task `task_id` in the call `scope`: `4/2`."""
    return TaskId(f"{scope}/{task_id}" if scope else task_id)


class SubplanTool(SchemaTool):
    """A plan with inputs as a tool: `Plan.as_tool(name, inputs=...)` makes one.

    In a run, a call of it does not run a function: once its arguments
    exist, the sub-plan's tasks are added to the caller's run under the
    caller's id, and the call's output is the `output` task's (None when a
    false condition skipped that task). The first of its tasks that fails
    fails the call (`SubplanFailed`, naming it); the others go on. Called
    outside a run (`Tool.call`, a ReAct agent), it runs the sub-plan in a
    run of its own with the tools it brought (`tools`).
    """

    def __init__(
        self,
        plan: Plan,
        *,
        name: str,
        inputs: Mapping[str, Any] | Sequence[str] | None = None,
        output: str | None = None,
        description: str | None = None,
        tools: Iterable[Tool] | Mapping[str, Tool] | None = None,
    ) -> None:
        """Make `plan` a tool; see `Plan.as_tool`.

        Raises:
            UserError: if the plan is empty, `output` is no task of it, a task
                has the reserved id `in`, or an input the tasks use is not declared.
            ToolDefinitionError: if the name is unusable or a type has no JSON form.

        """
        if not len(plan):
            raise UserError(f"sub-plan {name}: the plan has no tasks")
        if INPUTS in plan.tasks:
            raise UserError(
                f"sub-plan {name}: the task id {INPUTS!r} is kept for a call's arguments"
            )
        properties = _input_schemas(name, plan.inputs if inputs is None else inputs)
        undeclared = [n for n in plan.inputs if n not in properties]
        if undeclared:
            raise UserError(
                f"sub-plan {name}: its tasks use the input(s) "
                f"{', '.join('$' + n for n in undeclared)}, which inputs= does not declare"
            )
        last = list(plan.tasks)[-1]
        if output is not None and output not in plan.tasks:
            raise UserError(f"sub-plan {name}: output {short_repr(output)} is no task of the plan")
        self.plan = plan
        """The sub-plan."""
        self.output = TaskId(output) if output is not None else last
        """The task whose output is the call's output."""
        self.tools = tool_map(tools)
        """The tools its tasks call, brought into every run that has this tool."""
        calls = sorted({t.tool for t in plan})
        schema = {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }
        super().__init__(
            self._run_alone,
            name=name,
            description=description
            or f"A sub-plan of {len(plan)} task(s) calling {', '.join(calls)}.",
            input_schema=schema,
            policy=CallPolicy(),
        )

    @property
    def inputs(self) -> tuple[str, ...]:
        """The parameters' names, in order."""
        return self.parameters

    def __repr__(self) -> str:
        return f"<SubplanTool {self.name} of {len(self.plan)} task(s)>"

    def scoped_tasks(self, scope: str) -> list[Task]:
        """The sub-plan's tasks as the call `scope` runs them, in dependency order."""
        own = frozenset(self.plan.tasks)
        inputs_id = inner_id(scope, INPUTS)
        return [scoped_task(t, scope, inputs_id, own) for t in self.plan.in_dependency_order()]

    async def _run_alone(self, **arguments: Any) -> Any:
        """Run the sub-plan in a run of its own: a call outside any run.

        Raises:
            SubplanFailed: if a task of it did not finish.

        """
        # The engine imports the plan package: it is imported here, when called.
        from taskloom.engine._execute import open_run
        from taskloom.engine.result import TaskStatus

        inputs_id = TaskId(INPUTS)
        async with open_run(tools=self.tools, earlier={inputs_id: arguments}) as run:
            run.add_all(self.scoped_tasks(""))
        result = run.result()
        for task_id, task in result.tasks.items():
            taken = task.status is TaskStatus.DONE or isinstance(task.error, ConditionFalse)
            if not taken:
                why = f"task {task_id} did not finish: {task.error or task.status}"
                raise SubplanFailed(task_id, self.name, why, inner=task_id)
        return result.tasks[self.output].output


def _input_schemas(name: str, inputs: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
    """The JSON Schema of each input, by name.

    Raises:
        ToolDefinitionError: for a name that is no identifier, or a type with no JSON Schema.

    """
    if isinstance(inputs, str) or not isinstance(inputs, Mapping | Sequence):
        raise ToolDefinitionError(
            f"sub-plan {name}: inputs are names with types ({{'city': str}}) or names, "
            f"not {short_repr(inputs)}"
        )
    pairs = inputs.items() if isinstance(inputs, Mapping) else ((n, Any) for n in inputs)
    schemas: dict[str, Any] = {}
    for key, kind in pairs:
        if not isinstance(key, str) or not key.isidentifier():
            raise ToolDefinitionError(
                f"sub-plan {name}: an input's name is a Python-like name, not {short_repr(key)}"
            )
        schemas[key] = _schema_of(name, key, kind)
    return schemas


def _schema_of(name: str, key: str, kind: Any) -> dict[str, Any]:
    if kind is Any:
        return {}
    if isinstance(kind, str):
        known = _TYPES.get(kind.strip().lower())
        if known is None:
            raise ToolDefinitionError(
                f"sub-plan {name}: input {key} has the type {quoted(kind)}; "
                f"a .plan file's types are {', '.join(_TYPES)}"
            )
        return dict(known)
    try:
        schema: dict[str, Any] = pydantic.TypeAdapter(kind).json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as exc:
        raise ToolDefinitionError(
            f"sub-plan {name}: input {key} has the type {short_repr(kind)}, "
            "which JSON arguments cannot give"
        ) from exc
    schema.pop("title", None)
    return schema


def scoped_task(task: Task, scope: str, inputs_id: TaskId, own: frozenset[TaskId]) -> Task:
    """A sub-plan's task as the call `scope` runs it.

    Its id and its references to the sub-plan's tasks move under the call's
    id; a reference to an input (`$city.name`) becomes one into the task
    holding the call's arguments (`$4/in.city.name`). A condition keeps the
    text written in the sub-plan (what its messages quote) with its
    references moved.
    """

    def move(ref: Ref) -> Ref:
        if ref.task in own:
            return Ref(inner_id(scope, ref.task), ref.path, ref.each, ref.optional)
        return Ref(inputs_id, (ref.task, *ref.path), ref.each, ref.optional)

    guard = task.guard
    if guard is not None:
        refs = tuple(move(r) for r in guard.refs)
        guard = Guard(text=guard.text, source=guard.source, names=guard.names, refs=refs)
    return Task(
        id=inner_id(scope, task.id),
        tool=task.tool,
        args=_moved(task.args, move),
        kwargs={k: _moved(v, move) for k, v in task.kwargs.items()},
        thought=task.thought,
        position=task.position,
        guard=guard,
    )


def _moved(value: Any, move: Callable[[Ref], Ref]) -> Any:
    if isinstance(value, Ref):
        return move(value)
    if isinstance(value, Template):
        return Template(tuple(p if isinstance(p, str) else move(p) for p in value.parts))
    if isinstance(value, list):
        return [_moved(v, move) for v in value]
    if isinstance(value, tuple):
        return tuple(_moved(v, move) for v in value)
    if isinstance(value, Mapping):
        return {k: _moved(v, move) for k, v in value.items()}
    return value


def subplan_tools(tools: Mapping[str, Tool]) -> dict[str, Tool]:
    """`tools` with the tools every sub-plan tool among them brings (`as_tool(tools=...)`).

    Raises:
        UserError: if a tool a sub-plan brings has the name of another tool.

    """
    merged = dict(tools)
    pending = [t for t in tools.values() if isinstance(t, SubplanTool)]
    while pending:
        sub = pending.pop()
        for name, brought in sub.tools.items():
            known = merged.get(name)
            if known is None:
                merged[name] = brought
                if isinstance(brought, SubplanTool):
                    pending.append(brought)
            elif known is not brought and known.fn is not brought.fn:
                raise UserError(
                    f"sub-plan {sub.name} brings a tool named {quoted(name)}, and another "
                    "tool has that name; give one of them another name"
                )
    return merged


def load_subplan(path: str | Path, tools: Mapping[str, Tool]) -> SubplanTool:
    """Read a `.plan` file that declares itself a sub-plan, as a tool.

    The file starts with comment lines that say what the tool is (every
    line but `name` may be left out):

        # name: fix_service
        # description: Check a service, restart it if it is down, check again.
        # inputs: service: str, after: any
        # output: 5

    Input types are `str`, `int`, `float`, `bool`, `list`, `dict` or `any`
    (the default); the output is the last task unless named. Its tasks call
    the tools of `tools` (other sub-plans loaded before it included).

    Returns:
        The sub-plan tool, bringing the tools of `tools` that its tasks call.

    Raises:
        UserError: if the file cannot be read, has no `# name:` line, or its
            declarations do not fit the plan.
        PlanError: if the plan does not parse (the message names the file).

    """
    from taskloom.plan._plan import Plan

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the sub-plan {path}: {exc}") from exc
    header = _header(text)
    name = header.get("name")
    if not name:
        raise UserError(
            f"{path}: a sub-plan file starts with a '# name: TOOL_NAME' line "
            "(and '# inputs: a: str, b: int', '# output: N' if needed)"
        )
    try:
        plan = Plan.parse(text)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from exc
    inputs: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in header.get("inputs", "").split(","))):
        key, _, kind = item.partition(":")
        inputs[key.strip()] = kind.strip() or "any"
    unknown = sorted({t.tool for t in plan} - set(tools))
    if unknown:
        raise UserError(
            f"{path}: the sub-plan calls {', '.join(unknown)}, which no tool loaded before it "
            "provides; give those tools first (--tools)"
        )
    called = {t.tool: tools[t.tool] for t in plan}
    return plan.as_tool(
        name,
        inputs=inputs,
        output=header.get("output") or None,
        description=header.get("description") or None,
        tools=called,
    )


def _header(text: str) -> dict[str, str]:
    """The `# key: value` lines before the first line that is not a comment."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        match = _HEADER.fullmatch(stripped)
        if match is not None:
            found[match.group(1).lower()] = match.group(2).strip()
    return found
