"""Plan: a DAG of tasks that may grow while it runs."""

from __future__ import annotations

import graphlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskloom._ids import TaskId
from taskloom._text import clip, quoted, short_repr
from taskloom.errors import PlanError
from taskloom.plan._check import bind_task
from taskloom.plan._model import Ref, Task, Template
from taskloom.tools import Tool

if TYPE_CHECKING:
    from taskloom.plan._subplan import SubplanTool
    from taskloom.plan.json import PlanModel

__all__ = ["Plan", "add_checked", "is_input_name", "tool_map"]


def tool_map(tools: Iterable[Tool] | Mapping[str, Tool] | None) -> dict[str, Tool]:
    """Index tools by name.

    The same tool given twice counts once; two different tools may not share
    a name, since a plan could not say which one it means.

    Raises:
        UserError: if two different tools share a name, an item is not a Tool,
            or a mapping files a tool under a name that is not its own.

    """
    from taskloom.errors import UserError

    if tools is None:
        return {}
    if isinstance(tools, str | bytes) or not isinstance(tools, Iterable | Mapping):
        # A str is iterable too, and would be read one letter at a time.
        raise UserError(
            f"tools must be Tools (a list or a mapping by name), not {short_repr(tools)}"
        )
    if isinstance(tools, Mapping):
        for key, item in tools.items():
            if not isinstance(item, Tool):
                raise UserError(
                    f"{short_repr(item)} is not a Tool; decorate it with @taskloom.tool"
                )
            if key != item.name:
                raise UserError(
                    f"the tool named {quoted(item.name)} is given under the name "
                    f"{short_repr(key)}; a mapping of tools must use each tool's own name"
                )
        return dict(tools)
    by_name: dict[str, Tool] = {}
    for item in tools:
        if not isinstance(item, Tool):
            raise UserError(f"{short_repr(item)} is not a Tool; decorate it with @taskloom.tool")
        known = by_name.get(item.name)
        if known is not None and not _same_tool(known, item):
            raise UserError(
                f"two different tools are named {quoted(item.name)}; "
                "give one of them another name (@taskloom.tool(name=...))"
            )
        by_name[item.name] = item
    return by_name


def _same_tool(a: Tool, b: Tool) -> bool:
    """One function wrapped twice the same way (a plain function passed twice, say)."""
    return a is b or (
        a.fn is b.fn
        and a.policy == b.policy
        and a.version == b.version
        and a.description == b.description
    )


class Plan:
    """A DAG of tasks. Tasks may reference the outputs of other tasks.

    A plan built from a complete list (`Plan(tasks)`, `Plan.parse`,
    `Plan.from_json`) may list tasks in any order and is checked as a whole;
    `add()` grows a plan one task at a time, and then a task may only
    reference tasks already in it, so a growing plan can never hold a cycle.
    """

    def __init__(
        self,
        tasks: Iterable[Task] = (),
        *,
        tools: Iterable[Tool] | Mapping[str, Tool] | None = None,
        external: Collection[TaskId] = (),
        inputs: Collection[str] | None = None,
    ) -> None:
        """Build and check a plan.

        Args:
            tasks: the tasks, in any order.
            tools: when given, every task is also checked against its tool.
            external: ids of tasks outside this plan (from an earlier plan of
                the same run) that references may point to.
            inputs: the names a reference may give instead of a task number
                (`$city`), the inputs of a plan called as a tool
                (`as_tool`); None (the default) takes every such name that
                is no task's id as an input.

        Raises:
            PlanError: duplicate ids, references to missing tasks or to the
                task itself, cycles, or (with tools) unknown tools and bad
                arguments.
            UserError: if an item of `tasks` is not a Task, or `tools` are not Tools.

        """
        from taskloom.errors import UserError

        self._tools = tool_map(tools)
        self._external = frozenset(external)
        self._inputs: frozenset[str] | None = None if inputs is None else frozenset(inputs)
        self._tasks: dict[TaskId, Task] = {}
        self.joined = False
        """The planner closed the plan with `join()`: nothing more will be added."""
        if isinstance(tasks, str | bytes):  # iterable too, one letter at a time
            raise UserError("a Plan is built from Tasks; parse plan text with Plan.parse()")
        pending = list(tasks)
        for task in pending:
            if not isinstance(task, Task):
                raise UserError(
                    f"a Plan is built from Tasks, not {short_repr(task)}; "
                    "parse plan text with Plan.parse()"
                )
        for task in pending:
            self._check_own(task)
            self._tasks[task.id] = task
        for task in pending:
            self._check_refs(task)
        if not _written_in_order(pending, self._external):
            _check_acyclic(self._tasks)

    @classmethod
    def parse(
        cls,
        text: str | bytes,
        *,
        tools: Iterable[Tool] | Mapping[str, Tool] | None = None,
    ) -> Plan:
        """Parse a whole plan written in the plan language.

        Returns:
            The plan; `joined` is set when it ends with `join()`.

        Raises:
            PlanError: naming the task, the line and column, and what is wrong.
            UserError: if `text` is neither str nor bytes, or `tools` are not Tools.

        """
        from taskloom.plan.text import PlanParser

        parser = PlanParser(forward_refs=True)
        tasks = parser.feed(text)
        tasks += parser.close()
        plan = cls(tasks, tools=tools)
        plan.joined = parser.joined
        return plan

    @classmethod
    def from_json(
        cls,
        data: str | bytes | Mapping[str, Any] | PlanModel,
        *,
        tools: Iterable[Tool] | Mapping[str, Tool] | None = None,
    ) -> Plan:
        """Build a plan from its JSON form (see `taskloom.plan.json`).

        Raises:
            PlanError: if the JSON does not fit the schema or the plan is invalid.

        """
        from taskloom.plan.json import tasks_from_json

        return cls(tasks_from_json(data), tools=tools)

    # -- reading --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __getitem__(self, task_id: str) -> Task:
        return self._tasks[TaskId(task_id)]

    def __repr__(self) -> str:
        return f"<Plan of {len(self._tasks)} task(s)>"

    @property
    def tasks(self) -> Mapping[TaskId, Task]:
        """The tasks by id, in the order they were written."""
        return self._tasks

    @property
    def inputs(self) -> tuple[str, ...]:
        """The names referenced as inputs (`$city`), in the order first written.

        A plan with inputs runs as a tool of a larger plan (`as_tool`), not by itself.
        """
        seen: dict[str, None] = {}
        for task in self._tasks.values():
            for dep in task.dependencies:  # loops, not any(): this runs over every task
                if is_input_name(dep):
                    break
            else:
                continue
            written = (task.args, task.kwargs, task.guard.refs if task.guard else ())
            for ref in _refs_in_order(written):
                dep = ref.task
                if is_input_name(dep) and dep not in self._tasks and dep not in self._external:
                    seen[dep] = None
        return tuple(seen)

    def as_tool(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any] | Sequence[str] | None = None,
        output: str | None = None,
        description: str | None = None,
        tools: Iterable[Tool] | Mapping[str, Tool] | None = None,
    ) -> SubplanTool:
        """This plan as a tool that a larger plan calls: a sub-plan.

        A call runs the plan's tasks in the caller's run, each with an id
        under the caller's (`4/1`, `4/2`, ...), and its output is that of
        the `output` task (see `SubplanTool`).

        Args:
            name: the tool's name.
            inputs: the parameters, by name with a type (`{"city": str}`) or
                by name alone (any value); by default the plan's `inputs`.
            output: the id of the task whose output the call returns; by
                default the last task written.
            description: what the tool does, for a planner's catalogue.
            tools: the tools its tasks call, brought along into any run
                that has the sub-plan tool (and used when it is called alone).

        Returns:
            The tool.

        Raises:
            UserError: if the plan is empty, `output` is no task of it, or an
                input the tasks reference is not among `inputs`.
            ToolDefinitionError: if the name is unusable or a type has no JSON form.

        """
        from taskloom.plan._subplan import SubplanTool

        return SubplanTool(
            self, name=name, inputs=inputs, output=output, description=description, tools=tools
        )

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The tools this plan was checked against (empty if none)."""
        return self._tools

    def in_dependency_order(self) -> list[Task]:
        """The tasks ordered so that every task comes after those it references.

        Tasks keep the order they were written in wherever that order allows.
        """
        if _written_in_order(self._tasks.values(), self._external):
            return list(self._tasks.values())
        sorter = graphlib.TopologicalSorter(
            {t.id: [d for d in t.dependencies if d in self._tasks] for t in self._tasks.values()}
        )
        return [self._tasks[i] for i in sorter.static_order()]

    def to_text(self) -> str:
        """Write the plan in the plan language; `Plan.parse` reads it back."""
        lines = []
        for task in self._tasks.values():
            if task.thought:
                lines.append(f"Thought: {task.thought}")
            lines.append(str(task))
        if self.joined:
            last = max((int(i) for i in self._tasks if i.isdigit() and len(i) < 19), default=0)
            lines.append(f"{last + 1}. join()")
        return "\n".join(lines) + "\n"

    # -- growing --------------------------------------------------------------

    def add(self, task: Task) -> None:
        """Add one task; it may only reference tasks already in the plan.

        Raises:
            PlanError: duplicate id, self-reference, a reference to a task
                that does not exist yet, or (with tools) a bad tool call.

        """
        self._check_own(task)
        self._check_refs(task, growing=True)
        self._tasks[task.id] = task

    def replace(self, task: Task) -> None:
        """Swap in a new version of a task with the same id.

        Raises:
            KeyError: if no task has that id.
            PlanError: if the new version is invalid or would close a cycle.

        """
        if task.id not in self._tasks:
            raise KeyError(task.id)
        if self._tools:
            bind_task(task, self._tools)
        self._check_refs(task)
        previous = self._tasks[task.id]
        self._tasks[task.id] = task
        try:
            _check_acyclic(self._tasks)
        except PlanError:
            self._tasks[task.id] = previous
            raise

    def _is_input(self, name: str) -> bool:
        if self._inputs is None:
            return is_input_name(name)
        return name in self._inputs

    def _check_own(self, task: Task) -> None:
        if task.id in self._tasks or task.id in self._external:
            raise PlanError(
                f"task id {clip(task.id)} is used twice; every task needs its own number",
                task_id=task.id,
                position=task.position,
            )
        if task.id in task.dependencies:
            raise PlanError(
                f"task {clip(task.id)} refers to its own result (${clip(task.id)})",
                task_id=task.id,
                position=task.position,
            )
        if self._tools:
            bind_task(task, self._tools)

    def _check_refs(self, task: Task, *, growing: bool = False) -> None:
        missing = [
            d
            for d in task.dependencies
            if d not in self._tasks and d not in self._external and not self._is_input(d)
        ]
        for dep in sorted(missing, key=_numeric):
            if is_input_name(dep):
                raise PlanError(
                    f"${clip(dep)} names an input, and this plan has no input {clip(dep)}; "
                    "a plan with inputs runs as a tool of another plan (Plan.as_tool)",
                    task_id=task.id,
                    position=task.position,
                )
            why = (
                "which does not exist yet; a task may only use the results of tasks before it"
                if growing
                else "which is not in the plan"
            )
            raise PlanError(
                f"${clip(dep)} refers to task {clip(dep)}, {why}",
                task_id=task.id,
                position=task.position,
            )


def add_checked(plan: Plan, task: Task) -> None:
    """Add a task that its maker has checked: a free id, references to tasks in the plan.

    A map's 10,000 elements are added in one loop turn; each would repeat the checks
    made once for the map.
    """
    plan._tasks[task.id] = task


def _refs_in_order(value: Any) -> Iterator[Ref]:
    """Every Ref inside a value, in the order written."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, Template):
        yield from (p for p in value.parts if isinstance(p, Ref))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _refs_in_order(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _refs_in_order(item)


def is_input_name(name: str) -> bool:
    """Whether a reference's target is an input's name (`$city`), not a task number."""
    return name.isidentifier() and not name.isdigit()


def _written_in_order(tasks: Iterable[Task], external: Collection[TaskId]) -> bool:
    """True when every task comes after the tasks it references (so no cycle)."""
    seen = set(external)
    for task in tasks:
        if not seen.issuperset(task.dependencies):
            return False
        seen.add(task.id)
    return True


def _numeric(task_id: str) -> tuple[int, int, str]:
    # Numbers in numeric order without int(): an id may be too long to convert.
    digits = task_id.lstrip("0")
    return (1, len(digits), digits) if task_id.isdigit() else (0, 0, task_id)


def _check_acyclic(tasks: Mapping[TaskId, Task]) -> None:
    graph = {t.id: [d for d in t.dependencies if d in tasks] for t in tasks.values()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        cycle: list[str] = exc.args[1]
        first = tasks[TaskId(cycle[0])]
        raise PlanError(
            "the references form a cycle: " + " -> ".join(f"task {i}" for i in reversed(cycle)),
            task_id=first.id,
            position=first.position,
        ) from None
