"""What an agent run hands back: the answer, every plan, every task, timings, tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskloom.agent._decision import Decision, Finish
from taskloom.engine import RunResult
from taskloom.llm import Usage

__all__ = ["AgentResult", "LLMCall", "PlanAttempt", "Timings"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanAttempt:
    """One piece of plan text the planner wrote."""

    round: int
    """Which plan of the run it belongs to, from 1 (replans count up)."""
    text: str
    """Exactly what the model wrote."""
    valid: bool
    """Whether it parsed and validated."""
    error: str | None = None
    """The PlanError (or model error) that ended it, if any."""
    tasks: int = 0
    """How many tasks it contributed to the run."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LLMCall:
    """One request to the chat model."""

    purpose: str
    """"planner", "joiner" or "react"."""
    usage: Usage | None
    """Tokens and timings; None if the call failed before the model answered."""


@dataclass(kw_only=True, slots=True)
class Timings:
    """Where the time of a run went, in seconds."""

    planner_s: float = 0.0
    """Time spent generating plans (all rounds and repairs)."""
    first_dispatch_s: float | None = None
    """From the planner's start to the first tool call starting."""
    makespan_s: float = 0.0
    """Time during which tasks ran, summed over rounds."""
    joiner_s: float = 0.0
    """Time spent deciding (all rounds)."""
    total_s: float = 0.0
    """The whole run."""


@dataclass(frozen=True, kw_only=True)
class AgentResult:
    """The outcome of one request to an agent."""

    question: str
    """What was asked."""
    answer: str | None
    """The final answer; None if the run failed before answering."""
    value: Any = None
    """The exact value of the answer when the joiner answered with one reference
    (`Finish($1.capital)`): a number stays a number, a record a record. None
    otherwise (the answer is text)."""
    status: str
    """"answered"; "failed" with `error` saying why; or "budget_exceeded"."""
    agent: str
    """"llmcompiler" or "react"."""
    rounds: Sequence[RunResult] = ()
    """The execution of each plan (ReAct: of each step)."""
    plan_attempts: Sequence[PlanAttempt] = ()
    """Every piece of plan text, valid or not."""
    decisions: Sequence[Decision] = ()
    """The joiner's decision after each round."""
    llm_calls: Sequence[LLMCall] = ()
    """Every model request."""
    timings: Timings = field(default_factory=Timings)
    """Where the time went."""
    error: str | None = None
    """Why the run failed, when it did."""
    model_failed: bool = False
    """Whether it failed because the model could not be used (unreachable,
    too slow, or its replies unreadable), not because of the plan or tools."""
    exhausted: str | None = None
    """Which budget ran out ("tool_calls", "deadline", "tokens", "cost"), if one did."""
    started_at: float = 0.0
    """When the run began, in monotonic seconds; task times are relative to it."""

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens over every model request."""
        return sum(c.usage.prompt_tokens for c in self.llm_calls if c.usage)

    @property
    def completion_tokens(self) -> int:
        """Completion tokens over every model request."""
        return sum(c.usage.completion_tokens for c in self.llm_calls if c.usage)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form scripts read (`taskloom run --json`)."""
        tasks = []
        for number, run in enumerate(self.rounds, start=1):
            for task in run.tasks.values():
                tasks.append(
                    {
                        "round": number,
                        "id": task.id,
                        "tool": task.tool,
                        "args": task.arguments,
                        "status": str(task.status),
                        "output": task.output,
                        "error": None if task.error is None else str(task.error),
                        "started": _rel(task.started_at, self.started_at),
                        "finished": _rel(task.finished_at, self.started_at),
                    }
                )
        return {
            "question": self.question,
            "answer": self.answer,
            "value": self.value,
            "status": self.status,
            "error": self.error,
            "budget_exceeded": self.exhausted,
            "agent": self.agent,
            "plan_attempts": [
                {
                    "round": a.round,
                    "text": a.text,
                    "valid": a.valid,
                    "error": a.error,
                    "tasks": a.tasks,
                }
                for a in self.plan_attempts
            ],
            "decisions": [
                {
                    "action": "finish",
                    "answer": d.answer,
                    "written": d.answer if d.written is None else d.written,
                    "reference": d.reference,
                    "thought": d.thought,
                }
                if isinstance(d, Finish)
                else {"action": "replan", "reason": d.reason, "thought": d.thought}
                for d in self.decisions
            ],
            "tasks": tasks,
            "timings": {
                "planner_s": self.timings.planner_s,
                "first_dispatch_s": self.timings.first_dispatch_s,
                "makespan_s": self.timings.makespan_s,
                "joiner_s": self.timings.joiner_s,
                "total_s": self.timings.total_s,
            },
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "llm_calls": len(self.llm_calls),
            },
        }


def _rel(at: float | None, origin: float) -> float | None:
    return None if at is None else at - origin
