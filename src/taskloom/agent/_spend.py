"""One request's bookkeeping: what it spent and may spend, and its one event sequence.

A request is many runs (one per round) but one sequence of events. The
scheduler numbers the events of an open round, the agent's own among them
(`Run.emit`); between rounds the agent numbers its events itself, after the
round's last, and the next round's run goes on from there (`first_seq`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskloom._ids import RunId
from taskloom.agent._decision import Decision, Finish, Replan
from taskloom.engine import Budget, Run
from taskloom.engine import events as ev
from taskloom.engine._scheduler import EventListener
from taskloom.llm import ChatStream, Message

if TYPE_CHECKING:
    from taskloom.store import RunJournal

__all__ = ["Spend"]


@dataclass(kw_only=True, slots=True)
class Spend:
    """One request's bookkeeping: its journal, what it spent, and what it may."""

    run_id: RunId
    """The request's id: every round's run, and every event, has it."""
    journal: RunJournal | None = None
    listener: EventListener | None = None
    """The agent's `on_event`: every event of the request, in order."""
    budget: Budget | None = None
    deadline_at: float | None = None
    tokens: int = 0
    cost: float = 0.0
    tool_calls: int = 0
    seq: int = 0
    """The last event number, so the next round goes on counting."""
    round: int = 0
    """The round under way (or, between rounds, the one that just ran)."""
    run: Run | None = None
    """The round's run while it is open."""
    attempts: int = 0
    """Plan attempts so far, over all rounds."""
    exhausted: str | None = None
    model_failed: bool = False
    """Whether the model's error ended the request."""

    def seen(self, event: ev.Event) -> None:
        """Note an event of a round's run (its number) and pass it to the agent's listener."""
        self.seq = event.seq
        if self.listener is not None:
            self.listener(event)

    def emit(self, kind: type[ev.AgentEvent], **fields: Any) -> None:
        """Put one of the agent's events into the request's sequence.

        While the round's run is open, the run numbers and delivers it (its
        listeners: the journal, and `seen`); else it is numbered here, after
        the last, and given to the journal and the agent's listener.
        """
        run = self.run
        if run is not None and not run.finished:
            run.emit(kind, round=self.round, **fields)
            return
        self.seq += 1
        event = kind(
            seq=self.seq, at=time.monotonic(), run_id=self.run_id, round=self.round, **fields
        )
        if self.journal is not None:
            self.journal.on_event(event)
        if self.listener is not None:
            self.listener(event)

    def decided(self, decision: Decision) -> None:
        """Record the joiner's decision (an event), after the round it judged."""
        answer = decision.answer if isinstance(decision, Finish) else None
        reason = decision.reason if isinstance(decision, Replan) else None
        action = "finish" if isinstance(decision, Finish) else "replan"
        self.emit(ev.Decided, action=action, answer=answer, reason=reason, thought=decision.thought)

    def charge(self, purpose: str, messages: Sequence[Message], stream: ChatStream) -> None:
        """Record one finished model call (an event) and check the token and cost budgets."""
        usage = stream.usage
        if usage is None:
            return
        self.tokens += usage.total_tokens
        self.emit(
            ev.LLMCallFinished,
            purpose=purpose,
            model=usage.model,
            prompt="\n".join(f"{m.role}: {m.content}" for m in messages),
            completion=stream.text,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_s=usage.duration_s,
        )
        budget = self.budget
        if budget is None:
            return
        self.cost += budget.price(usage.model, usage.prompt_tokens, usage.completion_tokens)
        if budget.tokens is not None and self.tokens > budget.tokens:
            self.exhausted = self.exhausted or "tokens"
        if budget.cost is not None and self.cost > budget.cost:
            self.exhausted = self.exhausted or "cost"

    def time_left(self) -> float | None:
        """Seconds until the deadline, or None without one."""
        if self.deadline_at is None:
            return None
        return max(0.0, self.deadline_at - time.monotonic())

    def round_budget(self) -> Budget | None:
        """The budget left for the next round's tool calls."""
        if self.budget is None or self.budget.tool_calls is None:
            return self.budget
        left = max(0, self.budget.tool_calls - self.tool_calls)
        return dataclasses.replace(self.budget, tool_calls=left)
