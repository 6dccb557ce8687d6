"""What the HTTP API answers about runs: the store's records as the contract's JSON."""

from __future__ import annotations

from typing import Any

from taskloom.plan import Task
from taskloom.store import RunRecord, RunSummary, TaskRecord
from taskloom.store._codec import task_from_json

__all__ = ["run_detail", "run_summary", "task_fields"]

_KINDS = {"exec": "plan", "agent": "agent"}
"""The store's kinds as the API names them."""


def _status(recorded: str, live: bool) -> str:
    # A run this server is resuming reads `running` even before its new start is committed.
    return "running" if live else recorded


def run_summary(run: RunSummary, *, live: bool) -> dict[str, Any]:
    """One run of `GET /v1/runs`."""
    return {
        "id": run.id,
        "kind": _KINDS.get(run.kind, run.kind),
        "status": _status(run.status, live),
        "request": run.request,
        "answer": run.answer,
        "started_at": run.started,
        "finished_at": None if live else run.finished,
    }


def run_detail(record: RunRecord, retries: dict[str, int], *, live: bool) -> dict[str, Any]:
    """`GET /v1/runs/{id}`: the run, its plan's text and its tasks (times in unix seconds)."""
    return {
        "id": record.id,
        "kind": _KINDS.get(record.kind, record.kind),
        "status": _status(record.status, live),
        "request": record.request,
        "answer": record.answer,
        "plan": _plan_text(record),
        "tasks": [_task(t, record.started, retries.get(t.id, 0)) for t in record.tasks],
        "started_at": record.started,
        "finished_at": None if live else record.finished,
    }


def task_fields(task: Task) -> dict[str, Any]:
    """A task's call as a client draws it: its tool, its arguments' text, its inputs."""
    call, tool = task.call_text(), task.tool
    args = call[len(tool) + 1 : -1] if call.startswith(tool + "(") else call
    return {"tool": tool, "args": args, "deps": sorted(task.dependencies)}


def _task(task: TaskRecord, started: float, retries: int) -> dict[str, Any]:
    return {
        "id": task.id,
        **task_fields(task.task),
        "status": task.status,
        "output": task.output,
        "error": task.error,
        "attempts": (retries + 1) if task.started is not None else 0,
        "started_at": None if task.started is None else started + task.started,
        "finished_at": None if task.finished is None else started + task.finished,
    }


def _plan_text(record: RunRecord) -> str | None:
    """The plan as written: a plan run's own; for a question, each round's last attempt."""
    if record.kind == "exec":
        planned = record.config.get("plan")
        if planned:
            return "\n".join(str(_task_of(t)) for t in planned)
        top = [t.task for t in record.tasks if "." not in t.id]  # map elements are not plan lines
        return "\n".join(str(t) for t in top) or None
    last: dict[int, str] = {}
    for attempt in record.plan_attempts:
        last[attempt.round] = attempt.text
    return "\n\n".join(last[r] for r in sorted(last)) or None


def _task_of(data: Any) -> Task:
    return task_from_json(data)
