"""One run's events as OpenTelemetry spans, after the GenAI semantic conventions.

invoke_workflow | invoke_agent        the run (a plan) or the request (an agent)
├ plan                                one per planner round (its repairs included)
│ └ chat {model}                      each model call that wrote the plan
├ execute_tool {tool}  ×N             one per task that ran; siblings, so parallel
│                                     calls overlap in a trace viewer
└ chat {model}                        the joiner's call of each round

Spans are built as the events come, with the events' own times (monotonic
seconds, turned into wall-clock nanoseconds). While a tool runs, its span is
the current one in the task that calls it, so a traced call inside the tool
(an MCP server's, through `traceparent` in the request's `_meta`) joins the
trace under it.

`error.type` is the taskloom error's class name on a tool span (ToolFailed,
ToolTimedOut, BadArguments, BadOutput, TaskCancelled, ...); PlanError on a
plan whose last attempt was invalid; on the run's span, the run's status
(`cancelled`, `budget_exceeded`, `failed`) or the escaping exception's class.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from taskloom._ids import TaskId
from taskloom._text import clip
from taskloom.engine import events as ev
from taskloom.errors import ToolFailed

__all__ = ["RunTracer"]

_MAX_DESCRIPTION = 500
"""Characters of an error message kept as a span's status description."""
_FINE = frozenset({"completed", "answered"})
"""Run statuses that are no error."""

EventListener = Callable[[ev.Event], None]


@dataclass(kw_only=True, slots=True)
class _Planning:
    """One round's planner, while its span may still grow."""

    span: Span | None = None
    context: Context | None = None
    first_at: float | None = None
    """When the round's plan first showed (its first calls were added)."""
    end_at: float | None = None
    """When its latest attempt or model call ended."""
    attempts: int = 0
    error: str | None = None
    """Why the latest attempt was invalid, if it was."""


class RunTracer:
    """Turns one run's events into spans (see the module's docstring).

    Subscribe `on_event` to a run (or pass `chained(listener)` as its
    `on_event`), then call `close()` when the run or request has ended. Made
    by `execute()` and `Agent` when tracing is on; make one yourself for a
    live run (`open_run`): `RunTracer(tracer, operation="invoke_workflow",
    started_at=time.monotonic())`.
    """

    def __init__(
        self,
        tracer: Tracer,
        *,
        operation: str,
        started_at: float,
        run_id: str | None = None,
        request: str | None = None,
        capture_content: bool = False,
    ) -> None:
        """Open the run's span, starting at `started_at` (monotonic seconds)."""
        self._tracer = tracer
        self._capture = capture_content
        self._agent = operation == "invoke_agent"
        # One reading of both clocks maps every monotonic time to wall-clock time.
        self._offset = time.time_ns() - time.monotonic_ns()
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
        if run_id is not None:
            attributes["taskloom.run.id"] = run_id
        if request is not None and capture_content:
            attributes["gen_ai.input.messages"] = _messages("user", request)
        self._root = tracer.start_span(
            operation,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=self._ns(started_at),
        )
        self._named = run_id is not None
        self._context = trace.set_span_in_context(self._root)
        self._tools: dict[TaskId, Span] = {}
        self._plans: dict[int, _Planning] = {}
        self._finished: ev.RunFinished | None = None
        self._answer: str | None = None
        self._broken = False
        self._closed = False

    @property
    def span(self) -> Span:
        """The run's own span (`invoke_workflow` or `invoke_agent`)."""
        return self._root

    def chained(self, listener: EventListener | None) -> EventListener:
        """An event listener that traces each event, then passes it to `listener`."""
        on_event = self.on_event
        if listener is None:
            return on_event

        def both(event: ev.Event) -> None:
            on_event(event)
            listener(event)

        return both

    def on_event(self, event: ev.Event) -> None:
        """Turn one event into span changes; never raises (a trace must not stop a run)."""
        if self._broken or self._closed:
            return
        try:
            self._on_event(event)
        except Exception as exc:  # an OpenTelemetry SDK or exporter bug, say
            self._broken = True
            warnings.warn(
                f"taskloom stopped tracing run {event.run_id}: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )

    def close(self, *, status: str | None = None, error: BaseException | str | None = None) -> None:
        """End every span still open, the run's last; later calls do nothing.

        Args:
            status: how the run or request ended (`RunStatus`, `AgentResult.status`);
                by default the one its `run_finished` event gave.
            error: what stopped it: an exception that escaped, or the request's
                error message.

        """
        if self._closed:
            return
        self._closed = True
        now = time.monotonic()
        for task_id in list(self._tools):
            self._end_tool(task_id, now, error_type="TaskCancelled", message="the run ended first")
        for number in list(self._plans):
            self._end_plan(number, now)
        root = self._root
        if status is None and self._finished is not None:
            status = self._finished.status
        if status is not None:
            root.set_attribute("taskloom.run.status", status)
        if self._answer is not None and self._capture:
            root.set_attribute("gen_ai.output.messages", _messages("assistant", self._answer))
        if isinstance(error, BaseException):
            _failed(root, type(error).__name__, str(error) or type(error).__name__)
        elif status is not None and status not in _FINE:
            _failed(root, status, error or status)
        end = self._finished.at if self._finished is not None and not self._agent else now
        root.end(end_time=self._ns(end))

    # -- events ---------------------------------------------------------------

    def _on_event(self, event: ev.Event) -> None:
        if not self._named:
            self._named = True
            self._root.set_attribute("taskloom.run.id", event.run_id)
        match event:
            case ev.TaskStarted():
                self._start_tool(event)
            case ev.TaskRetried():
                self._retried(event)
            case ev.TaskFinished():
                span = self._tools.get(event.task_id)
                if span is not None and self._capture:
                    span.set_attribute("gen_ai.tool.call.result", _json(event.output))
                self._end_tool(event.task_id, event.at)
            case ev.TaskFailed() | ev.TaskCancelledEvent():
                error = event.error
                cause = error.cause_type if isinstance(error, ToolFailed) else None
                self._end_tool(
                    event.task_id, event.at, type(error).__name__, str(error), cause=cause
                )
            case ev.RunFinished():
                if self._agent:  # a round's run: its planner is done
                    for number in list(self._plans):
                        self._end_plan(number, event.at)
                else:
                    self._finished = event
            case ev.PlanAttempted():
                self._plan_attempted(event)
            case ev.LLMCallFinished():
                self._llm_call(event)
            case ev.Decided():
                self._decided(event)

    def _start_tool(self, event: ev.TaskStarted) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": event.tool,
            "gen_ai.tool.call.id": event.task_id,
            "gen_ai.tool.type": "function",
        }
        if self._capture:
            attributes["gen_ai.tool.call.arguments"] = _json(event.arguments)
        span = self._tools[event.task_id] = self._tracer.start_span(
            f"execute_tool {event.tool}",
            context=self._context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=self._ns(event.at),
        )
        _current_in_host(event.task_id, span)

    def _retried(self, event: ev.TaskRetried) -> None:
        span = self._tools.get(event.task_id)
        if span is None:
            return
        span.add_event(
            "retry",
            {
                "taskloom.attempt": event.attempt,
                "taskloom.retry.delay_s": event.delay,
                "error.type": type(event.error).__name__,
            },
            timestamp=self._ns(event.at),
        )

    def _end_tool(
        self,
        task_id: TaskId,
        at: float,
        error_type: str | None = None,
        message: str | None = None,
        *,
        cause: str | None = None,
    ) -> None:
        span = self._tools.pop(task_id, None)
        if span is None:  # it never started (skipped, cancelled while waiting)
            return
        if error_type is not None:
            _failed(span, error_type, message or error_type)
            if cause is not None:
                span.set_attribute("taskloom.error.cause", cause)
        span.end(end_time=self._ns(at))

    # -- the agent's own events ---------------------------------------------

    def _planning(self, number: int) -> _Planning:
        for older in [n for n in self._plans if n < number]:
            self._end_plan(older, None)  # a new round: the old planner is done
        planning = self._plans.get(number)
        if planning is None:
            planning = self._plans[number] = _Planning()
        return planning

    def _open_plan(self, number: int, planning: _Planning, at: float) -> Span:
        if planning.span is None:
            span = self._tracer.start_span(
                "plan",
                context=self._context,
                kind=SpanKind.INTERNAL,
                attributes={"gen_ai.operation.name": "plan", "taskloom.round": number},
                start_time=self._ns(at),
            )
            planning.span, planning.context = span, trace.set_span_in_context(span)
        return planning.span

    def _plan_attempted(self, event: ev.PlanAttempted) -> None:
        planning = self._planning(event.round)
        if planning.first_at is None:
            planning.first_at = event.at
        if event.valid is None:
            return  # the plan so far: its end comes with valid set
        span = self._open_plan(event.round, planning, planning.first_at)
        attributes: dict[str, Any] = {
            "taskloom.attempt": event.attempt,
            "taskloom.valid": event.valid,
        }
        if event.error is not None:
            attributes["taskloom.error"] = clip(event.error, _MAX_DESCRIPTION)
        span.add_event("plan_attempt", attributes, timestamp=self._ns(event.at))
        planning.attempts += 1
        planning.error = None if event.valid else (event.error or "invalid plan")
        planning.end_at = max(planning.end_at or event.at, event.at)

    def _llm_call(self, event: ev.LLMCallFinished) -> None:
        began = event.at - event.latency_s
        if event.purpose == "plan":
            planning = self._planning(event.round)
            self._open_plan(event.round, planning, began)
            planning.end_at = max(planning.end_at or event.at, event.at)
            self._chat(event, began, planning.context)
            return
        for number in list(self._plans):  # the joiner reads what the planner wrote
            self._end_plan(number, None)
        self._chat(event, began, self._context)

    def _chat(self, event: ev.LLMCallFinished, began: float, parent: Context | None) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": event.model,
            "gen_ai.response.model": event.model,
            "gen_ai.usage.input_tokens": event.prompt_tokens,
            "gen_ai.usage.output_tokens": event.completion_tokens,
            "taskloom.llm.purpose": event.purpose,
            "taskloom.round": event.round,
        }
        if self._capture:
            attributes["gen_ai.output.messages"] = _messages("assistant", event.completion)
        span = self._tracer.start_span(
            f"chat {event.model}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=self._ns(began),
        )
        span.end(end_time=self._ns(event.at))

    def _end_plan(self, number: int, at: float | None) -> None:
        planning = self._plans.pop(number)
        span = planning.span
        if span is None:
            return
        span.set_attribute("taskloom.plan.attempts", planning.attempts)
        if planning.error is not None:
            _failed(span, "PlanError", planning.error)
        end = planning.end_at if planning.end_at is not None else at
        span.end(end_time=None if end is None else self._ns(end))

    def _decided(self, event: ev.Decided) -> None:
        for number in list(self._plans):
            self._end_plan(number, None)
        attributes: dict[str, Any] = {
            "taskloom.action": event.action,
            "taskloom.round": event.round,
        }
        if event.reason is not None:
            attributes["taskloom.reason"] = clip(event.reason, _MAX_DESCRIPTION)
        if event.action == "finish":
            self._answer = event.answer
        self._root.add_event("decided", attributes, timestamp=self._ns(event.at))

    def _ns(self, at: float) -> int:
        return round(at * 1e9) + self._offset


def _current_in_host(task_id: TaskId, span: Span) -> None:
    """Make `span` current in the asyncio task that calls the tool, for the rest of that task.

    The scheduler emits `task_started` from the task's host (an asyncio task
    named by the task id), just before the call; what the tool does then (an
    MCP request's `traceparent`, an instrumented HTTP client's spans) nests
    under its `execute_tool` span. Delivered anywhere else, the event changes
    no context.
    """
    try:
        host = asyncio.current_task()
    except RuntimeError:  # not on an event loop
        return
    if host is not None and host.get_name() == task_id:
        # No detach: the context is the host's own and ends with it.
        otel_context.attach(trace.set_span_in_context(span))


def _failed(span: Span, error_type: str, message: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, clip(message, _MAX_DESCRIPTION)))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _messages(role: str, text: str) -> str:
    """A message list of one text message, as `gen_ai.*.messages` attributes hold it."""
    return _json([{"role": role, "parts": [{"type": "text", "content": text}]}])
