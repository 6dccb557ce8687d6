"""What the models read of finished calls: each call with its result or error."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from taskloom._ids import TaskId
from taskloom.agent.prompts import Observation, result_text
from taskloom.engine import RunResult, TaskStatus
from taskloom.plan import Plan
from taskloom.plan._model import iter_refs
from taskloom.store import TaskRecord

__all__ = ["call_text", "fields_used", "observations", "recorded_observation", "run_call_text"]


def recorded_observation(record: TaskRecord) -> Observation:
    """What the joiner sees of a task from an earlier round of a resumed request."""
    call = call_text(record.task.tool, record.arguments)
    if record.status == "done":
        return (record.id, call, result_text(record.output))
    return (record.id, call, f"error: {record.error or record.status}")


def fields_used(plan: Plan) -> dict[TaskId, frozenset[str] | None]:
    """Per referenced task, the top-level fields its dependents read; None for all of it.

    A condition reads the fields it compares, as arguments do.
    """
    used: dict[TaskId, frozenset[str] | None] = {}
    for task in plan:
        guard = task.guard.refs if task.guard is not None else ()
        for ref in (*iter_refs((task.args, task.kwargs)), *guard):
            known = used.get(ref.task, frozenset())
            if known is None:
                continue
            field_ = ref.path[0] if ref.path and isinstance(ref.path[0], str) else None
            used[ref.task] = None if field_ is None else known | {field_}
    return used


def observations(
    run: RunResult,
    used: Mapping[TaskId, frozenset[str] | None] | None = None,
    *,
    settled_prefix: bool = False,
) -> list[Observation]:
    """What the joiner reads of a round: each call and its result or error.

    An intermediate record (a country whose population fed a sum) is shown
    with only its name and the fields the round used, once every task that
    used it is done: the joiner answers from the final results, and full
    records would make most of its prompt.

    With `settled_prefix` (a round still running) only the leading tasks that
    have settled are shown, written as they will be once the round ends if
    their readers still running succeed: the start of the joiner's prompt,
    for the model to read ahead.
    """
    used = used or {}
    lost = {
        i for i, t in run.tasks.items() if t.status.is_final and t.status is not TaskStatus.DONE
    }
    readers: dict[TaskId, list[TaskId]] = {}
    for task in run.tasks.values():
        for dep in task.dependencies:
            readers.setdefault(dep, []).append(task.id)
    seen: list[Observation] = []
    for task in run.tasks.values():
        if not task.status.is_final:
            if settled_prefix:
                break
            continue  # only a snapshot of a running round has these
        call = run_call_text(run, task.id)
        if task.status is not TaskStatus.DONE:
            seen.append((task.id, call, f"error: {task.error}"))
            continue
        output, fields = task.output, used.get(task.id)
        its_readers = readers.get(task.id, ())
        if settled_prefix:  # a reader still running is assumed to succeed
            complete = lost.isdisjoint(its_readers)
        else:
            complete = all(run.tasks[r].status is TaskStatus.DONE for r in its_readers)
        if fields and isinstance(output, Mapping) and complete:
            output = {k: v for k, v in output.items() if k == "name" or k in fields}
        seen.append((task.id, call, result_text(output)))
    return seen


def run_call_text(run: RunResult, task_id: str) -> str:
    """The call of a finished task, written with its resolved arguments."""
    task = run.tasks[TaskId(task_id)]
    return call_text(task.tool, task.arguments)


def call_text(tool: str, arguments: Mapping[str, Any] | None) -> str:
    inner = ", ".join(
        f"{k}={json.dumps(v, ensure_ascii=False, default=str)}"
        for k, v in (arguments or {}).items()
    )
    return f"{tool}({inner})"
