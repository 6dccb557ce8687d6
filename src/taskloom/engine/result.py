"""What a finished run hands back: every task's status, output or error, and timings."""

from __future__ import annotations

import collections
import enum
import functools
import graphlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom._ids import RunId, TaskId
from taskloom.engine.events import Event
from taskloom.errors import PlanError, RunError

__all__ = ["RunResult", "RunStatus", "TaskResult", "TaskStatus"]


class TaskStatus(enum.StrEnum):
    """Where a task is in its life. The last five are final."""

    PENDING = "pending"
    """Waiting for a dependency to finish (a map task that fanned out: for its elements)."""
    READY = "ready"
    """Every dependency finished; waiting for a free slot."""
    RUNNING = "running"
    """Its tool is being called."""
    DONE = "done"
    """It produced an output."""
    FAILED = "failed"
    """Its tool raised, timed out, got bad arguments or returned a bad output."""
    SKIPPED = "skipped"
    """A dependency did not finish, or a condition was false, so it never ran."""
    CANCELLED = "cancelled"
    """It, an ancestor, or the run was cancelled (or ran out of budget)."""
    INTERRUPTED = "interrupted"
    """It was running when the process died and its tool is not idempotent."""

    @property
    def is_final(self) -> bool:
        """True for done, failed, skipped, cancelled and interrupted."""
        return self in _FINAL


_FINAL = frozenset(
    {
        TaskStatus.DONE,
        TaskStatus.FAILED,
        TaskStatus.SKIPPED,
        TaskStatus.CANCELLED,
        TaskStatus.INTERRUPTED,
    }
)


class RunStatus(enum.StrEnum):
    """How a run ended."""

    COMPLETED = "completed"
    """Every task reached a final state on its own (some may have failed)."""
    CANCELLED = "cancelled"
    """The run was cancelled; unfinished tasks are marked cancelled."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """A budget ran out: nothing new started and running tasks were cancelled."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskResult:
    """One task at the end of a run."""

    id: TaskId
    """The task's id."""
    tool: str
    """The tool it called (or would have called)."""
    arguments: dict[str, Any] | None
    """The resolved arguments it was called with; None if it never started."""
    dependencies: tuple[TaskId, ...]
    """The tasks whose outputs it used."""
    status: TaskStatus
    """Its final status."""
    output: Any = None
    """The tool's output (JSON-able) when status is done."""
    error: RunError | None = None
    """Why it did not finish, when it did not."""
    attempts: int = 0
    """How many times the tool was called."""
    started_at: float | None = None
    """When its tool was first really called, in monotonic seconds: after its
    arguments were resolved, its start committed and any rate-limit wait; for
    a sync tool, when a worker thread picked the call up. None if never called."""
    finished_at: float | None = None
    """When it reached its final status (for a sync tool: when its function
    returned), in monotonic seconds."""

    @property
    def duration(self) -> float:
        """Seconds from start to finish; 0 if it never started."""
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view of the task."""
        return {
            "id": self.id,
            "tool": self.tool,
            "args": self.arguments,
            "dependencies": list(self.dependencies),
            "status": str(self.status),
            "output": self.output,
            "error": None if self.error is None else str(self.error),
            "error_type": None if self.error is None else type(self.error).__name__,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """The outcome of one run: statuses, outputs, errors, events and timings."""

    run_id: RunId
    """The run's id."""
    status: RunStatus
    """How the run ended."""
    tasks: Mapping[TaskId, TaskResult]
    """Every task, in the order it was added."""
    events: Sequence[Event]
    """Every event of the run, in sequence order."""
    started_at: float
    """When the run began, in monotonic seconds."""
    finished_at: float
    """When the last task reached its final status, in monotonic seconds."""
    plan_error: PlanError | None = None
    """Why the plan stream stopped early, when it did; the tasks before it still ran."""
    exhausted: str | None = None
    """Which budget ran out ("tool_calls", "deadline", "tokens", "cost"), if one did."""

    def __repr__(self) -> str:
        # A summary: a whole run's repr grows with its tasks, and asyncio may
        # take one of a finished task's result (anyio.run does, to restore a
        # signal handler), which for 10,000 tasks would cost half a second.
        statuses = getattr(self.tasks, "statuses", None)  # a finished run's: no TaskResults made
        seen = statuses() if statuses else (t.status for t in self.tasks.values())
        counts = collections.Counter(str(status) for status in seen)
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return (
            f"RunResult(run_id={self.run_id!r}, status={str(self.status)!r}, "
            f"tasks=<{len(self.tasks)}: {summary or 'none'}>, makespan={self.makespan:.3f}s)"
        )

    @functools.cached_property
    def _critical(self) -> tuple[tuple[TaskId, ...], float]:
        return _critical_path(self.tasks)

    @property
    def outputs(self) -> dict[TaskId, Any]:
        """Outputs of the tasks that are done."""
        return {i: t.output for i, t in self.tasks.items() if t.status is TaskStatus.DONE}

    @property
    def makespan(self) -> float:
        """Seconds from the run's start to its end."""
        return self.finished_at - self.started_at

    @property
    def work(self) -> float:
        """Sum of every task's duration, in seconds."""
        return sum(t.duration for t in self.tasks.values())

    @property
    def parallelism(self) -> float:
        """Achieved parallelism: work divided by makespan."""
        return self.work / self.makespan if self.makespan > 0 else 0.0

    @property
    def critical_path(self) -> tuple[TaskId, ...]:
        """The chain of dependent tasks with the largest total duration."""
        return self._critical[0]

    @property
    def critical_path_s(self) -> float:
        """Total duration of the critical path, in seconds: a lower bound on makespan."""
        return self._critical[1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view of the whole run (events excluded).

        Outputs are as the tools returned them, so a float may be NaN or
        infinite: `json.dumps` writes those as `NaN`/`Infinity`, which is not
        JSON; the CLI's `--json` writes them as the strings "NaN", "Infinity"
        and "-Infinity".
        """
        return {
            "run_id": self.run_id,
            "status": str(self.status),
            "plan_error": None if self.plan_error is None else str(self.plan_error),
            "budget_exceeded": self.exhausted,
            "tasks": {i: t.to_dict() for i, t in self.tasks.items()},
            "timings": {
                "makespan_s": self.makespan,
                "critical_path_s": self.critical_path_s,
                "critical_path": list(self.critical_path),
                "work_s": self.work,
                "parallelism": self.parallelism,
            },
        }


def _critical_path(tasks: Mapping[TaskId, TaskResult]) -> tuple[tuple[TaskId, ...], float]:
    best: dict[TaskId, tuple[float, TaskId | None]] = {}
    for task in _dependency_order(tasks):
        parent: TaskId | None = None
        longest = 0.0
        for dep in task.dependencies:
            if dep in best and best[dep][0] > longest:
                longest, parent = best[dep][0], dep
        best[task.id] = (longest + task.duration, parent)
    if not best:
        return (), 0.0
    end = max(best, key=lambda i: best[i][0])
    total = best[end][0]
    chain: list[TaskId] = []
    cursor: TaskId | None = end
    while cursor is not None:
        chain.append(cursor)
        cursor = best[cursor][1]
    return tuple(reversed(chain)), total


def _dependency_order(tasks: Mapping[TaskId, TaskResult]) -> list[TaskResult]:
    # Runs add tasks after the tasks they reference, so the stored order is
    # usually already a dependency order; a live rewrite can break that.
    seen: set[TaskId] = set()
    for task in tasks.values():
        if not seen.issuperset(task.dependencies):
            order = graphlib.TopologicalSorter(
                {i: [d for d in t.dependencies if d in tasks] for i, t in tasks.items()}
            ).static_order()
            return [tasks[i] for i in order]
        seen.add(task.id)
    return list(tasks.values())
