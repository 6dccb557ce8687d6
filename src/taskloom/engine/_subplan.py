"""The scheduler's part of sub-plans: a call adds the sub-plan's tasks to its own run.

A task whose tool is a `SubplanTool` is gated like a map (`Node.gated`).
Once its arguments exist, `expand` checks them against the tool's inputs and
adds, in the same loop turn, a finished task `4/in` holding them and the
sub-plan's tasks `4/1`, `4/2`, ... (see `taskloom.plan._subplan`). Each is
an ordinary task of the run: its own status, retries, limits, events and
journal rows; a non-idempotent one is journaled before it is called, so a
resumed run never repeats its side effect. The call waits for all of them
as a map waits for its elements (`Node.elements`), then takes the output
of the sub-plan's `output` task (`collect`).

The first task of the sub-plan that fails, is cancelled, or is skipped
because something failed fails the call (`SubplanFailed`, naming it); the
others go on, as a map's elements do. A task skipped by a false condition
is no failure: the call waits for the rest.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from taskloom._ids import TaskId
from taskloom.engine import events as ev
from taskloom.engine._node import Node
from taskloom.engine.result import TaskStatus
from taskloom.errors import BadArguments, ConditionFalse, PlanError, SubplanFailed
from taskloom.plan import Task
from taskloom.plan._check import bind_task
from taskloom.plan._subplan import INPUTS, SubplanTool, inner_id

if TYPE_CHECKING:
    from taskloom.engine._scheduler import Run

__all__ = ["MAX_DEPTH", "collect", "expand", "inner_unfinished"]

MAX_DEPTH = 32
"""How deeply calls of sub-plans may nest (`4/2/1/...`) before the call fails."""


def expand(run: Run, node: Node) -> None:
    """The call `node` has its arguments: add the sub-plan's tasks under its id.

    A call whose arguments do not fit the inputs fails (`BadArguments`); one
    that would call itself, or whose ids are taken, fails (`SubplanFailed`).
    """
    tool = node.tool
    assert isinstance(tool, SubplanTool)
    task = node.task
    arguments = run._arguments(node)
    if isinstance(arguments, BadArguments):
        run._settle_unrun(node, arguments)
        return
    problem = _loop(run, task.id, tool.name)
    inputs_id = inner_id(task.id, INPUTS)
    tasks = tool.scoped_tasks(task.id)
    bound: list[dict[str, Any]] = []
    if problem is None:
        problem = _unfit(run, tool, tasks, bound)
    if problem is None:
        taken = next(
            (t.id for t in tasks if t.id in run._nodes or t.id in run._earlier),
            inputs_id if inputs_id in run._nodes else None,
        )
        if taken is not None:
            problem = f"the id {taken} of one of its tasks is taken by another task"
    if problem is not None:
        run._settle_unrun(node, SubplanFailed(task.id, tool.name, problem))
        return
    inner: list[Node] = [_add_inputs(run, node, inputs_id, arguments)]
    node.elements, node.waiting = inner, 0
    run._ranks = None
    failed: Node | None = None
    for part, arguments_of in zip(tasks, bound, strict=True):
        child = _add_inner(run, part, arguments_of)
        inner.append(child)
        if child.status is TaskStatus.DONE or _not_taken(child):
            continue
        if child.status.is_final:  # restored so by a resumed run, or skipped at once
            failed = failed or child
            continue
        child.dependents.append(node)
        node.waiting += 1
    if failed is not None:
        run._settle_unrun(node, _failure(node, failed))
    elif node.waiting == 0:
        collect(run, node)


def _loop(run: Run, task_id: TaskId, name: str) -> str | None:
    """Why the call `task_id` may not expand: it calls itself, or nests too deeply."""
    depth = task_id.count("/")
    if depth >= MAX_DEPTH:
        return f"calls of sub-plans nest more than {MAX_DEPTH} deep"
    scope: str = task_id
    while "/" in scope:
        scope = scope.rpartition("/")[0]
        # A map's element (`4.0`) is called by the map (`4`): either may be the caller.
        for caller in (scope, scope.rpartition(".")[0]):
            outer = run._nodes.get(TaskId(caller))
            if outer is not None and outer.tool.name == name:
                return f"it calls itself (through task {caller})"
    return None


def _unfit(
    run: Run, tool: SubplanTool, tasks: list[Task], bound: list[dict[str, Any]]
) -> str | None:
    """Why the sub-plan's tasks do not fit the run's tools; None when all do (bound then)."""
    missing = sorted({t.tool for t in tasks if t.tool not in run._tools})
    if missing:
        return (
            f"the run has no tool {', '.join(missing)}, which it calls; "
            f"give it to the run, or to {tool.name} (as_tool(tools=...))"
        )
    try:
        bound.extend(bind_task(t, run._tools) for t in tasks)
    except PlanError as exc:
        return str(exc)
    return None


def _add_inputs(run: Run, node: Node, inputs_id: TaskId, arguments: dict[str, object]) -> Node:
    """The finished task that holds the call's arguments, for the sub-plan's `$name`."""
    task = Task(id=inputs_id, tool=node.tool.name)
    run._plan.add(task)
    holder = Node(task, node.tool, {})
    holder.gated = False
    holder.arguments = holder.output = arguments
    holder.status = TaskStatus.DONE
    holder.started_at = holder.finished_at = time.monotonic()
    run._nodes[inputs_id] = holder
    if run._recorded:
        run._recorded.pop(inputs_id, None)  # made again from the same restored inputs
    run._emit(ev.TaskAdded, task_id=inputs_id, tool=task.tool, dependencies=(), task=task)
    run._emit(ev.TaskFinished, task_id=inputs_id, output=arguments)
    return holder


def _add_inner(run: Run, task: Task, bound: dict[str, Any]) -> Node:
    """Add one task of the sub-plan to the run (restored as recorded, if a resumed run has it)."""
    run._plan.add(task)
    child = Node(task, run._tools[task.tool], bound)
    run._nodes[task.id] = child
    recorded = run._recorded.pop(task.id, None) if run._recorded else None
    if recorded is not None:
        child.status, child.output, child.error, child.attempts = recorded
        run._emit(ev.TaskRestored, task_id=task.id, status=str(child.status), error=child.error)
        return child
    run._open += 1
    dependencies = tuple(sorted(task.dependencies))
    run._emit(ev.TaskAdded, task_id=task.id, tool=task.tool, dependencies=dependencies, task=task)
    run._link(child)
    return child


def _not_taken(node: Node) -> bool:
    return node.status is TaskStatus.SKIPPED and isinstance(node.error, ConditionFalse)


def _failure(call: Node, inner: Node) -> SubplanFailed:
    assert isinstance(call.tool, SubplanTool)
    why = f"task {inner.task.id} did not finish: {inner.error or inner.status}"
    return SubplanFailed(call.task.id, call.tool.name, why, inner=inner.task.id)


def inner_unfinished(run: Run, call: Node, inner: Node) -> None:
    """A task of the call's sub-plan settled without an output.

    Skipped by a false condition, it only stops being waited for; anything
    else fails the call, naming it.
    """
    if _not_taken(inner):
        if call.status is TaskStatus.PENDING:
            call.waiting -= 1
            if call.waiting == 0:
                run._make_ready(call)  # through the gate: `collect`
        return
    run._settle_unrun(call, _failure(call, inner))


def collect(run: Run, node: Node) -> None:
    """Every task of the call's sub-plan is final: its output is the `output` task's."""
    tool = node.tool
    assert isinstance(tool, SubplanTool) and node.elements is not None
    last = run._nodes[inner_id(node.task.id, tool.output)]
    node.output = last.output if last.status is TaskStatus.DONE else None
    node.status = TaskStatus.DONE
    node.finished_at = time.monotonic()
    run._open -= 1
    run._emit(ev.TaskFinished, task_id=node.task.id, output=node.output)
    for child in node.dependents:
        if child.status is TaskStatus.PENDING:
            child.waiting -= 1
            if child.waiting == 0:
                run._make_ready(child)
