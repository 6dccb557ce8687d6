"""What the store hands back when you look at a run: plain frozen records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from taskloom._ids import RunId, TaskId
from taskloom.plan import Task

__all__ = [
    "ABANDONED",
    "UNFINISHED",
    "EventRecord",
    "LlmCallRecord",
    "PlanAttemptRecord",
    "RunRecord",
    "RunSummary",
    "TaskRecord",
]

ABANDONED = "abandoned"
"""The status read for a run recorded `running` whose process is gone."""

UNFINISHED = frozenset({"running", ABANDONED})
"""Statuses of runs that have not ended, which `resume` finishes."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunSummary:
    """One line of `taskloom runs`."""

    id: RunId
    """The run's id."""
    kind: str
    """"exec" for a plan run by hand, "agent" for a question."""
    status: str
    """running, abandoned (its process is gone: resume it), completed, cancelled,
    budget_exceeded, failed, answered..."""
    started: float
    """Wall-clock start, unix seconds."""
    request: str
    """The question, or the plan's name."""
    finished: float | None = None
    """Wall-clock end, unix seconds, if it ended."""
    answer: str | None = None
    """The agent's answer, if it gave one."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanAttemptRecord:
    """One plan the planner wrote (or began to write)."""

    attempt: int
    """Counted from 1 over the whole run."""
    round: int
    """The planning round (0 for the first plan, then one per replan)."""
    text: str
    """The plan text as far as it was written."""
    valid: bool | None
    """Whether it parsed and validated; None if writing it was interrupted."""
    error: str | None
    """The PlanError, when it did not validate."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskRecord:
    """One task as the store last saw it."""

    id: TaskId
    """The task's id."""
    round: int
    """The planning round that added it."""
    task: Task
    """The task itself, references included."""
    status: str
    """Its last recorded status ("running" after a crash means it was interrupted)."""
    arguments: dict[str, Any] | None
    """The resolved arguments, once started."""
    output: Any
    """The output, when done."""
    error_type: str | None
    """The class name of its error, when it has one."""
    error: str | None
    """The error's message."""
    started: float | None
    """Seconds after the run's start when it started."""
    finished: float | None
    """Seconds after the run's start when it reached its final status."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LlmCallRecord:
    """One call to a chat model."""

    purpose: str
    """plan, join or react."""
    model: str
    """The model's name."""
    prompt_hash: str
    """sha256 of the prompt, to spot repeated prompts without storing them."""
    prompt_tokens: int
    """Tokens in the prompt."""
    completion_tokens: int
    """Tokens generated."""
    latency_s: float
    """Seconds from request to last token."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EventRecord:
    """One event of a run's log, as the store keeps it."""

    seq: int
    """Its number in the run's event sequence, from 1."""
    kind: str
    """The event's kind (`task_started`, `llm_call_finished`, ...)."""
    task_id: TaskId | None
    """The task it is about, for a task's event."""
    at: float
    """Seconds after the run's start when it happened."""
    data: dict[str, Any] | None
    """The fields the log keeps beside these (an error's message, a model call's usage...)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunRecord:
    """Everything the store knows about one run."""

    id: RunId
    """The run's id."""
    kind: str
    """"exec" or "agent"."""
    request: str
    """The question, or the plan's name."""
    status: str
    """Its last recorded status; "abandoned" for a run whose process stopped
    before it ended (computed on read: the row still says running)."""
    started: float
    """Wall-clock start, unix seconds."""
    finished: float | None
    """Wall-clock end, if it ended."""
    answer: str | None
    """The agent's answer, if it gave one."""
    exhausted: str | None
    """The budget that ran out, if one did."""
    config: dict[str, Any]
    """What resuming needs: tool source, limits, agent settings."""
    resumes: int
    """How many times it was resumed."""
    owner: str | None = None
    """The process that last ran it, as host:pid."""
    owner_start: str | None = None
    """That process's boot id and start time, which a reused pid does not share."""
    plan_attempts: tuple[PlanAttemptRecord, ...] = ()
    """Plans written for it, in order."""
    tasks: tuple[TaskRecord, ...] = ()
    """Its tasks, in the order they were added."""
    llm_calls: tuple[LlmCallRecord, ...] = ()
    """Its LLM calls, in order."""
    last_seq: int = 0
    """The sequence number of its last recorded event."""
    elapsed: float = 0.0
    """Seconds from its start to its last recorded event."""
    task_index: dict[TaskId, TaskRecord] = field(default_factory=dict, compare=False)
    """Its tasks by id."""

    @property
    def unfinished(self) -> bool:
        """Whether the run has not ended: it is running, or it was abandoned."""
        return self.status in UNFINISHED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view of the record (`taskloom show --json`); each task as its plan line."""
        data = asdict(self)
        data.pop("task_index")
        for task, source in zip(data["tasks"], self.tasks, strict=True):
            task["task"] = str(source.task)
        return data
