"""The ReAct baseline: think, call one tool, observe, repeat.

It uses the same models, tools, prompts style and result type as `Agent`, so
every benchmark can put the two side by side. Each step is one model call and
at most one tool call; nothing runs in parallel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from taskloom._ids import TaskId
from taskloom.agent._agent import uses_grammar
from taskloom.agent._decision import Decision, Finish
from taskloom.agent._example import Example, check_examples
from taskloom.agent._feed import nothing_succeeded
from taskloom.agent._grammar import react_grammar
from taskloom.agent._limits import GrammarLimits
from taskloom.agent._notional import NOTIONAL_EXAMPLES
from taskloom.agent._result import AgentResult, LLMCall, Timings
from taskloom.agent._shown import Shots, react_steps
from taskloom.agent.prompts import ReActShot, react_messages, result_text, result_values
from taskloom.engine import Executor, RunResult, TaskStatus, execute
from taskloom.engine._execute import ToolsLike, as_tools
from taskloom.engine._scheduler import EventListener
from taskloom.errors import ModelError, PlanError, UserError
from taskloom.llm import ChatModel, model_from_config
from taskloom.plan import PlanParser
from taskloom.tools import Tool

__all__ = ["ReActAgent"]

_MAX_STEP_TOKENS = 160
_ANCHORS = 1
"""Examples every prompt shows first, when there are many: the agent's policy (see `Shots`)."""
_SHOTS = 1
"""Examples shown after the anchors: whole conversations, so fewer than the planner's."""


class ReActAgent:
    """One tool call per model call, in the style of ReAct (Yao et al.)."""

    def __init__(
        self,
        *,
        tools: ToolsLike,
        model: ChatModel | None = None,
        max_steps: int = 12,
        grammar: bool | None = None,
        max_concurrency: int | None = None,
        on_event: EventListener | None = None,
        on_text: Callable[[str], None] | None = None,
        grammar_limits: GrammarLimits | None = None,
        examples: Iterable[Example] | None = None,
        executor: Executor | None = None,
    ) -> None:
        """Set the agent up; nothing is loaded or sent until `run()`.

        Args:
            tools: the tools it may call.
            model: the chat model; by default the configured or embedded one.
            max_steps: model calls before it must stop.
            grammar: constrain each step with a grammar (see `uses_grammar`).
            max_concurrency: accepted for symmetry with `Agent`; ReAct runs one call at a time.
            on_event: receives the scheduler events of every tool call.
            on_text: receives each step's text as the model writes it.
            examples: worked examples over these tools (those with results and
                a decision are replayed one call at a time); None: notional ones.
            grammar_limits: how long a step's thought and arguments may be
                under the grammar; by default `GrammarLimits()`.
            executor: where tool calls run (`taskloom.ray.RayExecutor`); None: here.

        Raises:
            UserError: if max_steps is below 1, an example does not fit the tools, or
                `grammar_limits` is not a GrammarLimits.

        """
        if max_steps < 1:
            raise UserError("max_steps must be at least 1")
        del max_concurrency  # one call at a time by definition
        self.tools: list[Tool] = list(as_tools(tools).values())
        self.model = model if model is not None else model_from_config()
        self.max_steps = max_steps
        self.grammar = uses_grammar(self.model, grammar)
        if grammar_limits is not None and not isinstance(grammar_limits, GrammarLimits):
            raise UserError(
                f"grammar_limits must be a GrammarLimits, not {type(grammar_limits).__name__}"
            )
        self.grammar_limits = grammar_limits or GrammarLimits()
        self._on_event = on_event
        self._on_text = on_text
        self.executor = executor
        given = check_examples(examples or (), self.tools)
        bank = given or NOTIONAL_EXAMPLES
        self._shots = Shots(
            [
                (e, ReActShot(e.question, *react_steps(e, self.tools), tools=e.tools))
                for e in bank
                if e.reply is not None and e.decision is not None and "Replan" not in e.decision
            ],
            closest=_SHOTS,
            anchors=_ANCHORS,
            fixed=not given,
        )

    async def run(self, question: str) -> AgentResult:
        """Answer one question, one tool call at a time.

        Returns:
            The AgentResult; a failing model gives status "failed", not an exception.

        Raises:
            UserError: if the question is empty.

        """
        if not question.strip():
            raise UserError("the question is empty")
        started = time.monotonic()
        timings = Timings()
        steps: list[tuple[str, str]] = []
        runs: list[RunResult] = []
        calls: list[LLMCall] = []
        decision: Decision | None = None
        error: str | None = None
        model_failed = False
        try:
            for number in range(1, self.max_steps + 1):
                last = number == self.max_steps
                messages = react_messages(
                    question, self.tools, steps, examples=self._shots.for_question(question)
                )
                # Finish quotes what was observed, as the joiner's does (see joiner_grammar).
                observed = result_values(observation for _, observation in steps)
                grammar = (
                    react_grammar(self.tools, answers=observed, limits=self.grammar_limits)
                    if self.grammar
                    else None
                )
                began = time.monotonic()
                stream = self.model.stream(
                    messages, max_tokens=_MAX_STEP_TOKENS, grammar=grammar, stop=["\nObservation"]
                )
                try:
                    async for chunk in stream:
                        if self._on_text is not None:
                            self._on_text(chunk)
                finally:
                    timings.planner_s += time.monotonic() - began
                    calls.append(LLMCall(purpose="react", usage=stream.usage))
                text = stream.text.strip()
                action = _action(text)
                if action.startswith("Finish(") or last:
                    decision = Finish(answer=_finish_answer(action, steps), thought=_thought(text))
                    break
                observation, run = await self._act(number, action)
                if run is not None:
                    runs.append(run)
                    if timings.first_dispatch_s is None and run.tasks:
                        first = next(iter(run.tasks.values())).started_at
                        timings.first_dispatch_s = None if first is None else first - started
                    timings.makespan_s += run.makespan
                steps.append((text, observation))
        except ModelError as exc:
            error, model_failed = str(exc), True
        timings.total_s = time.monotonic() - started
        succeeded = any(t.status is TaskStatus.DONE for run in runs for t in run.tasks.values())
        if error is None and not succeeded:
            tried = [(str(n), _action(text), seen) for n, (text, seen) in enumerate(steps, 1)]
            error = nothing_succeeded(tried)  # a Finish now could only be made up
        answer = decision.answer if isinstance(decision, Finish) and error is None else None
        return AgentResult(
            question=question,
            answer=answer,
            status="answered" if answer is not None and error is None else "failed",
            agent="react",
            rounds=runs,
            decisions=[decision] if decision else [],
            llm_calls=calls,
            timings=timings,
            error=error,
            model_failed=model_failed,
            started_at=started,
        )

    async def _act(self, number: int, action: str) -> tuple[str, RunResult | None]:
        """Run the step's one tool call; a bad call becomes an observation the model can read."""
        parser = PlanParser(tools=self.tools)
        try:
            tasks = parser.feed(f"{number}. {action}\n")
        except PlanError as exc:
            return f"error: {exc.reason}", None
        if not tasks:
            return "error: write one tool call, or Finish(answer)", None
        run = await execute(
            tasks, tools=self.tools, on_event=self._on_event, executor=self.executor
        )
        task = run.tasks[TaskId(tasks[0].id)]
        if task.status is TaskStatus.DONE:
            return result_text(task.output), run
        return f"error: {task.error}", run


def _action(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip().startswith("Action:"):
            return line.split(":", 1)[1].strip()
    return text.splitlines()[-1].strip() if text else ""


def _thought(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip().startswith("Thought:"):
            return line.split(":", 1)[1].strip()
    return None


def _finish_answer(action: str, steps: list[tuple[str, str]]) -> str:
    if action.startswith("Finish(") and action.endswith(")"):
        answer = action[len("Finish(") : -1].strip()
        if answer:
            return answer
    for _, observation in reversed(steps):
        if not observation.startswith("error:"):
            return observation
    return "no answer"
