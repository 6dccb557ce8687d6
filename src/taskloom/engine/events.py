"""What a run reports: one event per state change, numbered within the run.

Each event has `seq` (1, 2, 3... within one run, no gaps) and `at` (seconds
on the monotonic clock). Events are slotted records, read-only by contract;
they are not frozen because a frozen dataclass costs twice as much to build,
and a 10,000-task run builds 40,000 of them. The store, telemetry, the CLI and the web page are
all consumers of these; the scheduler imports none of them.

An agent's request is one sequence across its rounds: the scheduler's events
and the agent's own (`AgentEvent`: its model calls, plan attempts and
decisions) share one numbering, whether they happen while a round's run is
open (`Run.emit`) or between rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from taskloom._ids import RunId, TaskId
from taskloom.errors import ConditionFalse, DependencyFailed, RunError, TaskCancelled
from taskloom.plan import Task

__all__ = [
    "AgentEvent",
    "Decided",
    "Event",
    "LLMCallFinished",
    "PlanAttempted",
    "RunFinished",
    "TaskAdded",
    "TaskCancelledEvent",
    "TaskEvent",
    "TaskFailed",
    "TaskFinished",
    "TaskMapped",
    "TaskReady",
    "TaskRestored",
    "TaskRetried",
    "TaskRewritten",
    "TaskSkipped",
    "TaskStarted",
]


@dataclass(kw_only=True, slots=True)
class Event:
    """Something that happened in a run."""

    kind: ClassVar[str] = "event"
    seq: int
    """Position in the run's event sequence, from 1."""
    at: float
    """When it happened, in monotonic seconds."""
    run_id: RunId
    """The run it happened in."""


@dataclass(kw_only=True, slots=True)
class TaskEvent(Event):
    """Something that happened to one task."""

    task_id: TaskId
    """The task."""


@dataclass(kw_only=True, slots=True)
class TaskAdded(TaskEvent):
    """A task joined the run's plan (the plan grows while it runs)."""

    kind: ClassVar[str] = "task_added"
    tool: str
    """The tool it will call."""
    dependencies: tuple[TaskId, ...]
    """The tasks whose outputs it needs."""
    task: Task
    """The task itself, as added (a store keeps it to resume the run)."""


@dataclass(kw_only=True, slots=True)
class TaskRewritten(TaskEvent):
    """A task that had not started was changed while the run went on (`Run.rewrite`).

    It replaces the task as added: a store keeps the new version, so a
    resumed run calls what the run was going to call, not what it began with.
    """

    kind: ClassVar[str] = "task_rewritten"
    tool: str
    """The tool it will call now."""
    dependencies: tuple[TaskId, ...]
    """The tasks whose outputs it needs now."""
    task: Task
    """The new version of the task."""


@dataclass(kw_only=True, slots=True)
class TaskReady(TaskEvent):
    """Every dependency of the task has finished; it waits only for a free slot."""

    kind: ClassVar[str] = "task_ready"


@dataclass(kw_only=True, slots=True)
class TaskStarted(TaskEvent):
    """The task's tool call began."""

    kind: ClassVar[str] = "task_started"
    tool: str
    """The tool being called."""
    arguments: dict[str, Any]
    """The resolved arguments, by parameter name."""


@dataclass(kw_only=True, slots=True)
class TaskRetried(TaskEvent):
    """An attempt failed and another will follow after a delay."""

    kind: ClassVar[str] = "task_retried"
    attempt: int
    """The attempt that failed, from 1."""
    delay: float
    """Seconds until the next attempt."""
    error: RunError
    """Why the attempt failed."""


@dataclass(kw_only=True, slots=True)
class TaskFinished(TaskEvent):
    """The task produced its output."""

    kind: ClassVar[str] = "task_finished"
    output: Any
    """The tool's output, JSON-able."""


@dataclass(kw_only=True, slots=True)
class TaskFailed(TaskEvent):
    """The task's last attempt failed; the error is recorded on the task."""

    kind: ClassVar[str] = "task_failed"
    error: RunError
    """Why."""


@dataclass(kw_only=True, slots=True)
class TaskSkipped(TaskEvent):
    """The task will never run: a dependency did not finish, or a condition was false."""

    kind: ClassVar[str] = "task_skipped"
    error: DependencyFailed | ConditionFalse
    """Which dependency did not finish and why, or which condition was false."""


@dataclass(kw_only=True, slots=True)
class TaskMapped(TaskEvent):
    """A map task's list arrived and it fanned out: one element task per item.

    Each element is then added like any task (`task_added`, ids `3.0`,
    `3.1`, ...); the map task finishes with their outputs, in order, once
    all of them are done.
    """

    kind: ClassVar[str] = "task_mapped"
    elements: tuple[TaskId, ...]
    """The ids of its element tasks, in the order of the list (empty for an empty list)."""


@dataclass(kw_only=True, slots=True)
class TaskCancelledEvent(TaskEvent):
    """The task was cancelled before or while it ran (`Run.cancel`, a budget, the caller).

    It is final: a resumed run keeps it cancelled and does not call it.
    """

    kind: ClassVar[str] = "task_cancelled"
    error: TaskCancelled
    """What cancelled it, and whether a worker thread was abandoned."""


@dataclass(kw_only=True, slots=True)
class TaskRestored(TaskEvent):
    """A resumed run took over a task that settled before the process stopped.

    Its status is the recorded one, or `interrupted` for a task that was
    running and may not be called twice.
    """

    kind: ClassVar[str] = "task_restored"
    status: str
    """Its final status."""
    error: RunError | None
    """Why it did not finish, when it did not."""


@dataclass(kw_only=True, slots=True)
class RunFinished(Event):
    """Every task of the run reached a final state; nothing more will happen."""

    kind: ClassVar[str] = "run_finished"
    status: str
    """The run's final status (see `RunStatus`)."""


@dataclass(kw_only=True, slots=True)
class AgentEvent(Event):
    """Something an agent did around the scheduler: a model call, a plan, a decision."""

    round: int
    """The planning round it belongs to, from 1."""


@dataclass(kw_only=True, slots=True)
class LLMCallFinished(AgentEvent):
    """A chat-model call of the agent ended (its usage known)."""

    kind: ClassVar[str] = "llm_call_finished"
    purpose: str
    """What the call was for: "plan" or "join"."""
    model: str
    """The model that answered, as it names itself."""
    prompt: str
    """The messages sent, one `role: content` block each (a store keeps only its hash)."""
    completion: str
    """What the model wrote."""
    prompt_tokens: int
    """Tokens read."""
    completion_tokens: int
    """Tokens written."""
    latency_s: float
    """Seconds from the request to the last token."""


@dataclass(kw_only=True, slots=True)
class PlanAttempted(AgentEvent):
    """A plan as far as the model has written it, or an attempt at a plan that ended.

    While the plan is written the event comes each time calls from it were
    added to the run, with `valid` None, so a crash keeps the text so far;
    once the attempt ends it comes with `valid` set.
    """

    kind: ClassVar[str] = "plan_attempt"
    attempt: int
    """The attempt's number over the whole request, from 1."""
    text: str
    """The plan text written so far (all of it, once the attempt ended)."""
    valid: bool | None
    """Whether the plan was valid; None while it is still being written."""
    error: str | None
    """Why it was not valid, if it was not."""


@dataclass(kw_only=True, slots=True)
class Decided(AgentEvent):
    """The joiner decided, after a round ran: answer (finish) or plan again (replan)."""

    kind: ClassVar[str] = "decided"
    action: str
    """"finish" or "replan"."""
    answer: str | None
    """The answer, for finish."""
    reason: str | None
    """What is still missing, for replan."""
    thought: str | None
    """The joiner's reasoning, if it gave one."""
