"""Finish a run whose process died, without repeating a side effect.

What a resumed run does with each recorded task:

- done, failed, cancelled or skipped by a failure: kept as recorded, never re-run;
- running at the crash: called again if its tool is idempotent, otherwise
  marked `interrupted` (its dependents are skipped, and an agent's joiner
  sees it and may replan);
- pending or ready: run as usual; so are tasks of the recorded plan that
  the crash came too early to record one by one.

Live edits are recorded from their events, so the plan resumed is the plan
as edited: a task added with `Run.add` is there, a task changed with
`Run.rewrite` is its new version, and a task cancelled with `Run.cancel`
stays cancelled and is not called.

A map task that had fanned out but not finished fans out again over its
restored list: its elements (`3.0`, `3.1`, ...) get the same ids, and each
is restored as recorded under the rules above (done ones keep their output,
a non-idempotent one that was running ends `interrupted`); the rest run.
A call of a sub-plan that had not finished adds its tasks again (`4/1`,
`4/2`, ...) the same way: each recorded one is restored as it was.
"""

from __future__ import annotations

import contextlib
import graphlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from taskloom._held import is_held_text
from taskloom._ids import TaskId
from taskloom.engine import Run, RunResult, TaskStatus, open_run
from taskloom.engine._execute import ToolsLike, as_tools
from taskloom.engine._executor import Executor
from taskloom.errors import RecordedFailure, RunError, TaskInterrupted, UserError
from taskloom.plan import Task
from taskloom.plan._subplan import SubplanTool
from taskloom.store._codec import task_from_json
from taskloom.store._records import TaskRecord
from taskloom.store._store import Store
from taskloom.telemetry._setup import traced
from taskloom.tools import Tool

if TYPE_CHECKING:
    from taskloom.telemetry._spans import RunTracer

__all__ = ["restore_tasks", "resume"]

_KEPT = {
    "done": TaskStatus.DONE,
    "failed": TaskStatus.FAILED,
    "cancelled": TaskStatus.CANCELLED,
    "interrupted": TaskStatus.INTERRUPTED,
}


def restore_tasks(
    run: Run,
    records: Sequence[TaskRecord],
    tools: Mapping[str, Tool],
    planned: Sequence[Task] = (),
) -> None:
    """Put recorded tasks back into `run`: settled ones as they were, the rest to run.

    Tasks of `planned` that have no record are added to run as well.

    Raises:
        PlanError: if a task to run again no longer fits the tools.

    """
    recorded = {r.id for r in records}
    # Elements of a map that will fan out again, and tasks of a sub-plan call
    # that will add them again, are handed over first: the map fans out (the
    # call adds its tasks) the moment it is added (see the module's docstring).
    refanned = {
        r.id
        for r in records
        if (r.task.is_map or isinstance(tools.get(r.task.tool), SubplanTool))
        and r.status not in _KEPT
    }
    parts = {r.id for r in records if refanned and not refanned.isdisjoint(_enclosing(r.id))}
    for record in records:
        status = _kept(record, tools) if record.id in parts else None
        if status is not None:
            run.restore_element(
                record.id, status, output=record.output, error=_error(record, status)
            )
    lost = _lost_outputs(records, tools, parts)
    for record in _dependencies_first(records):
        if record.id in parts:
            continue
        if record.id in lost:
            _restore_lost(run, record, tools)
            continue
        status = _kept(record, tools)
        if status is None:
            run.add(record.task)
        else:
            run.restore(record.task, status, output=record.output, error=_error(record, status))
    run.add_all(t for t in planned if t.id not in recorded)


def _lost_outputs(
    records: Sequence[TaskRecord], tools: Mapping[str, Tool], parts: set[TaskId]
) -> set[TaskId]:
    """Done tasks whose output was held by an executor (a Ray object store) and is gone.

    Only those that a task still to run takes: the store has their
    placeholder, not their value, and the process that held it has ended.
    """
    held = {
        r.id for r in records if r.status == "done" and r.id not in parts and is_held_text(r.output)
    }
    if not held:
        return set()
    return {
        d
        for r in records
        if r.id not in parts and _kept(r, tools) is None
        for d in r.task.dependencies
        if d in held
    }


def _restore_lost(run: Run, record: TaskRecord, tools: Mapping[str, Tool]) -> None:
    """A task whose held output is gone: called again if idempotent, else failed saying why."""
    tool = tools.get(record.task.tool)
    if tool is not None and tool.policy.idempotent:
        run.add(record.task)
        return
    error = RecordedFailure(
        record.id,
        "OutputLost",
        f"its output ({record.output}) was kept by the process that ran it, which has "
        "ended; it is not idempotent, so it was not called again",
    )
    run.restore(record.task, TaskStatus.FAILED, output=None, error=error)


def _enclosing(task_id: str) -> list[str]:
    """The maps and sub-plan calls a task's id is under: `4.0/2` is under `4.0` and `4`."""
    return [task_id[:i] for i, char in enumerate(task_id) if char in "./" and i]


def _dependencies_first(records: Sequence[TaskRecord]) -> Sequence[TaskRecord]:
    """The records, each after the recorded tasks it references.

    Tasks are recorded in the order they were added, which is such an order
    unless a live rewrite made a task use one added after it.
    """
    by_id = {r.id: r for r in records}
    seen: set[TaskId] = set()
    for record in records:
        if any(d in by_id and d not in seen for d in record.task.dependencies):
            break
        seen.add(record.id)
    else:
        return records
    graph = {r.id: [d for d in r.task.dependencies if d in by_id] for r in records}
    return [by_id[i] for i in graphlib.TopologicalSorter(graph).static_order()]


def _kept(record: TaskRecord, tools: Mapping[str, Tool]) -> TaskStatus | None:
    """The final status a recorded task keeps; None for one to run (again)."""
    status = _KEPT.get(record.status)
    tool = tools.get(record.task.tool)
    if status is None and record.status == "running" and tool is not None:
        if not tool.policy.idempotent:
            status = TaskStatus.INTERRUPTED
    return status


def _error(record: TaskRecord, status: TaskStatus) -> RunError | None:
    """The error a recorded task is restored with (None for a done one)."""
    if status is TaskStatus.DONE:
        return None
    if status is TaskStatus.INTERRUPTED:
        if record.status == "interrupted" and record.error:  # settled so in its run (Ray)
            return RecordedFailure(record.id, "TaskInterrupted", record.error)
        return TaskInterrupted(record.id, record.task.tool)
    return RecordedFailure(record.id, record.error_type or "", record.error or "")


async def resume(
    run_id: str,
    *,
    store: Store,
    tools: ToolsLike,
    max_concurrency: int | None = None,
    executor: Executor | None = None,
) -> RunResult:
    """Finish a plan run (`execute`) recorded in `store` whose process stopped.

    Finished tasks are not run again; a task that was running is re-run only
    if its tool is idempotent, otherwise it ends `interrupted`. A run that had
    already ended is rebuilt from the store and nothing is run or written.

    Args:
        run_id: the run, or a unique prefix of its id.
        store: the store it was recorded in.
        tools: the tools it used (looked up by name).
        max_concurrency: tasks running at once; the recorded limit by default.
        executor: where the tool calls still to run go (`taskloom.ray.RayExecutor`,
            say); None runs them in this process.

    Returns:
        The run's result, recorded tasks included.

    Raises:
        UserError: if there is no such run, or it is an agent run.
        StoreError: if the store cannot be read or written.
        PlanError: if a task still to run no longer fits the tools.

    """
    record = store.load(run_id)
    if record.kind != "exec":
        raise UserError(f"run {record.id} is an agent run; resume it with Agent.resume()")
    tool_index = as_tools(tools)
    if max_concurrency is None:
        max_concurrency = record.config.get("max_concurrency")
    finished = not record.unfinished
    journal = None if finished else store.resume_journal(record)
    # What runs again is traced like any run (when tracing is on); a rebuilt one is not.
    tracing: contextlib.AbstractAsyncContextManager[RunTracer | None] = (
        contextlib.nullcontext()
        if finished
        else traced("invoke_workflow", started_at=time.monotonic(), run_id=record.id)
    )
    async with (
        tracing as trace,
        open_run(
            tools=tool_index,
            max_concurrency=max_concurrency,
            run_id=record.id,
            on_event=None if trace is None else trace.on_event,
            journal=journal,
            first_seq=record.last_seq,
            executor=executor,
        ) as run,
    ):
        planned = [task_from_json(t) for t in record.config.get("plan", ())]
        restore_tasks(run, record.tasks, tool_index, planned)
        if finished and record.exhausted:
            run.exceed(record.exhausted)  # rebuilt as it ended
        elif finished and record.status == "cancelled":
            run.cancel()
    return run.result()
