"""Agent: plan with a model, run the plan while it is written, join, and replan if needed.

run()                         one request, start to answer
└ _answer()                   its trace span, when tracing is on
  └ _request()                its bookkeeping, journal and result
    └ _run_rounds()           plan → execute → join, at most 1 + max_replans times
      ├ _plan_and_execute()   one round: a live Run fed by the streaming planner
      │ └ _stream_plan()      one model call: tokens → parser → run.add(task)
      └ _join()               one model call: Finish(answer) or Replan(reason)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from taskloom._ids import RunId, TaskId
from taskloom.agent._answer import UnresolvedAnswer, answer_references, render_finish
from taskloom.agent._decision import Decision, Finish, Replan, parse_decision
from taskloom.agent._example import Example, check_examples
from taskloom.agent._feed import Repeats, feed_tasks, nothing_succeeded, unrepaired
from taskloom.agent._grammar import joiner_grammar, plan_grammar
from taskloom.agent._limits import GrammarLimits
from taskloom.agent._notional import NOTIONAL_EXAMPLES
from taskloom.agent._observations import fields_used, observations, recorded_observation
from taskloom.agent._result import AgentResult, LLMCall, PlanAttempt, Timings
from taskloom.agent._settings import (
    recorded_budget,
    recorded_examples,
    recorded_grammar_limits,
    recorded_model,
    recorded_tools,
    settings,
)
from taskloom.agent._shown import Shots, example_observations, replan_shot
from taskloom.agent._spend import Spend
from taskloom.agent.prompts import (
    JoinShot,
    Observation,
    joiner_messages,
    joiner_prefix,
    planner_messages,
    result_values,
)
from taskloom.engine import Budget, DurationStats, Run, RunResult, TaskStatus, open_run
from taskloom.engine import events as ev
from taskloom.engine._execute import NO_TOOLS, ToolsLike, as_tools
from taskloom.engine._executor import Executor
from taskloom.engine._runtime import Runtime, check_weight
from taskloom.engine._scheduler import EventListener
from taskloom.errors import ModelError, PlanError, UserError
from taskloom.llm import ChatModel, Message, Warmable, model_from_config
from taskloom.llm._protocol import _ChatModelBase
from taskloom.plan import PlanParser, Task
from taskloom.store import CallCache, restore_tasks
from taskloom.telemetry._setup import traced
from taskloom.tools import Tool

if TYPE_CHECKING:
    from taskloom.store import RunJournal, RunRecord, Store

__all__ = ["Agent", "default_replans", "uses_grammar"]

_MAX_PLAN_TOKENS = 400
_MAX_JOIN_TOKENS = 160
_MAX_HISTORY = 30
_PLAN_ANCHORS = 1
"""Examples every planner prompt shows first, when there are many (see `Shots`)."""
_PLAN_SHOTS = 2
"""Examples shown to the planner after the anchors: the closest of the rest. A
plan example is short, and two of the question's kind keep a small model from
copying an anchor's form (a sum's order into a difference)."""
_JOIN_ANCHORS = 1
_JOIN_SHOTS = 1
_REPLAN_SHOTS = 2
"""Examples of a new plan shown when the joiner asks for one: the closest two."""


def default_replans(model: ChatModel) -> int:
    """How many new plans a request may ask for after its first, when the caller does not say.

    One for the embedded model, three for others. A small model's later
    rounds rarely help: on the WorldQA held-out half, of the questions the
    embedded model took past a second round, 1 in 25 ended right, each after
    8 model calls and about a minute (docs/benchmarks.md). A second round
    still serves a question whose first results decide what to look up next.
    """
    from taskloom.llm import Local

    return 1 if isinstance(model, Local) else 3


def copy_hint(model: ChatModel, question: str) -> dict[str, Any]:
    """The planner's `copy_from` hint, for the models that take it (taskloom's own)."""
    return {"copy_from": question} if isinstance(model, _ChatModelBase) else {}


def uses_grammar(model: ChatModel, grammar: bool | None) -> bool:
    """Whether to constrain the model with GBNF grammars.

    `None` means: yes for the embedded llama.cpp model, no for servers (not
    every OpenAI-compatible server accepts a grammar; llama.cpp's does, so
    pass True for it).
    """
    if grammar is not None:
        return grammar
    from taskloom.llm import Local

    return isinstance(model, Local)


@dataclass(kw_only=True, slots=True)
class _Round:
    """What one round of the loop gathered."""

    run: RunResult | None = None
    used: dict[TaskId, frozenset[str] | None] = field(default_factory=dict)
    """Per task, the output fields later tasks of the round read (None: the whole output)."""
    attempts: list[PlanAttempt] = field(default_factory=list)
    planner_s: float = 0.0
    planner_started_at: float | None = None
    first_dispatch_at: float | None = None
    calls: list[LLMCall] = field(default_factory=list)
    plan_error: str | None = None
    """The PlanError of the latest attempt, if the plan itself was wrong."""


class Agent:
    """An LLMCompiler-style agent: a streamed plan, run in parallel, then a join.

    answer = await Agent(tools=WORLD_TOOLS).run("combined population of France and Germany?")
    """

    def __init__(
        self,
        *,
        tools: ToolsLike | None = None,
        model: ChatModel | None = None,
        max_replans: int | None = None,
        max_repairs: int = 2,
        max_concurrency: int | None = None,
        grammar: bool | None = None,
        on_event: EventListener | None = None,
        on_plan_text: Callable[[str], None] | None = None,
        store: Store | None = None,
        cache: CallCache | None = None,
        budget: Budget | None = None,
        read_ahead: bool = True,
        tool_latency: float = 0.0,
        extra_config: Mapping[str, Any] | None = None,
        examples: Iterable[Example] | None = None,
        grounded: bool | None = None,
        grammar_limits: GrammarLimits | None = None,
        runtime: Runtime | None = None,
        weight: float = 1.0,
        executor: Executor | None = None,
    ) -> None:
        """Set the agent up; nothing is loaded or sent until `run()`.

        Args:
            tools: the tools plans may call; the runtime's by default.
            model: the chat model for planning and joining; by default the
                runtime's, else the one `TASKLOOM_MODEL` / `TASKLOOM_BASE_URL`
                name, else the embedded one.
            max_replans: new plans after the first; the last round must answer.
                None: `default_replans(model)`, 1 for the embedded model and 3
                for others.
            max_repairs: times an invalid plan goes back to the model with its error.
            max_concurrency: tool calls running at once; None for no limit.
            grammar: constrain the model's output with grammars (see `uses_grammar`).
            on_event: receives every event of the request, in one sequence:
                the scheduler's of every round, and the agent's own (its
                model calls, plan attempts and decisions; `AgentEvent`).
            on_plan_text: receives the plan text as the model writes it, chunk by chunk.
            store: records every request (plans, tasks, events, LLM calls) so
                it can be listed, shown and resumed.
            cache: answers repeated calls of cacheable tools; share one between
                agents (a batch) to share results and calls in flight. By
                default each request has its own.
            budget: limits per request: tool calls, tokens, cost, a deadline.
            read_ahead: while a round's tools run, let a model that can
                (`Warmable`, the embedded one) read the joiner's prompt so far.
                It helps one request at a time; `run_batch` turns it off,
                since there other requests are waiting for the model.
            tool_latency: seconds added to every tool call, to model remote
                tools (a web search) with local ones (`Tool.with_latency`).
            extra_config: JSON-able facts each request records beside the
                agent's own settings (`RunRecord.config`), for whoever resumes
                it: where tools built at run time come from, say (the command
                line records its `--mcp` files there).
            examples: worked examples over these tools, shown to the planner
                (and, those with results and a decision, to the joiner): the
                closest few to each question. None: notional ones.
            grounded: make the joiner's answer come from the results: one to
                four references (`$1.capital`) or values the results show,
                so a small model cannot make a number up. The grammar
                enforces it, so it needs the grammar on. None: on exactly
                when the grammar is. Not grounded, the answer is free text,
                which may hold references too. Either way the agent renders
                references from the results (`Finish.written` keeps what the
                model wrote), and a reference to a task with no result (or a
                field its output lacks) asks for a new plan while rounds
                remain, and on the last round gives the last result instead.
            grammar_limits: how long thoughts, string arguments, numbers and
                references in a plan may be when a grammar constrains the
                model; by default `GrammarLimits()`, sized for general text.
            runtime: a `Runtime` shared with other runs: every round takes its
                tool slots from it (its tools' limits hold across all its
                runs), and the tools, model, store and cache not given here
                are its.
            weight: each round's share of the runtime's scarce slots (see
                `taskloom.open_run`).
            executor: where tool calls run (`taskloom.ray.RayExecutor`, say);
                None: in this process. The model calls stay here.

        Raises:
            UserError: for negative limits or bad tools, an `extra_config`
                key that is one of the agent's own settings, an example
                that does not fit the tools, `grounded=True` without the
                grammar, `grammar_limits` that is not a GrammarLimits, a weight
                that is not above 0, or no tools (given or the runtime's).

        """
        self.runtime = runtime
        """The Runtime its rounds take their slots from, if any."""
        self.weight = check_weight(weight)
        if runtime is not None:
            tools = runtime.tools if tools is None else tools
            model = runtime.model if model is None else model
            store = runtime.store if store is None else store
            cache = runtime.cache if cache is None else cache
        if tools is None:
            raise UserError(NO_TOOLS)
        if (max_replans is not None and max_replans < 0) or max_repairs < 0:
            raise UserError("max_replans and max_repairs must be >= 0")
        given = list(as_tools(tools).values())
        self._sources = given  # where resuming finds the tools again: not the delayed copies
        self.tool_latency = tool_latency
        self.tools: list[Tool] = [t.with_latency(tool_latency) for t in given]
        self._by_name = {t.name: t for t in self.tools}
        self.examples = check_examples(examples or (), given)
        """The user's worked examples, checked against the tools; empty: notional ones."""
        bank = self.examples or NOTIONAL_EXAMPLES
        fixed = not self.examples  # the notional examples: all shown, the same for every question
        self._plan_shots = Shots(
            [(e, e) for e in bank], closest=_PLAN_SHOTS, anchors=_PLAN_ANCHORS, fixed=fixed
        )
        self._join_shots = Shots(
            [
                (e, JoinShot(e.question, example_observations(e, given), e.reply))
                for e in bank
                if e.reply is not None
            ],
            closest=_JOIN_SHOTS,
            anchors=_JOIN_ANCHORS,
            fixed=fixed,
        )
        self._replan_shots = Shots(
            [(e, replan_shot(e, given)) for e in bank if e.next_plan is not None],
            closest=_REPLAN_SHOTS,
            anchors=0,
            fixed=fixed,
        )
        self.model = model if model is not None else model_from_config()
        self.max_replans = default_replans(self.model) if max_replans is None else max_replans
        self.max_repairs = max_repairs
        self.max_concurrency = max_concurrency
        self.grammar = uses_grammar(self.model, grammar)
        if grammar_limits is not None and not isinstance(grammar_limits, GrammarLimits):
            raise UserError(
                f"grammar_limits must be a GrammarLimits, not {type(grammar_limits).__name__}"
            )
        self.grammar_limits = grammar_limits or GrammarLimits()
        """The bounds of the plan grammar (used when `grammar` is on)."""
        if grounded and not self.grammar:
            raise UserError("grounded answers are enforced by the grammar: pass grammar=True")
        self.grounded = self.grammar if grounded is None else grounded
        """Whether the joiner's answers must come from the results (see `grounded`)."""
        self._on_event = on_event
        self._on_plan_text = on_plan_text
        self.store = store
        self.cache = cache
        self.budget = budget
        self.executor = executor
        self.read_ahead = read_ahead
        self.stats = DurationStats()
        """Tool durations seen by this agent's runs: ordering and deadline estimates."""
        self.extra_config: dict[str, Any] = {}
        taken = sorted(set(extra_config or {}) & self._settings().keys())
        if taken:
            raise UserError(
                f"extra_config may not set the agent's own settings: {', '.join(taken)}"
            )
        self.extra_config = dict(extra_config or {})
        """What each request records beside the agent's settings (see `extra_config`)."""

    @classmethod
    def from_store(
        cls,
        store: Store,
        run_id: str,
        *,
        tools: ToolsLike | None = None,
        model: ChatModel | None = None,
        on_event: EventListener | None = None,
        on_plan_text: Callable[[str], None] | None = None,
        examples: Iterable[Example] | None = None,
    ) -> Agent:
        """The agent a recorded request ran with, to `resume()` it.

        Everything comes from what the request recorded: its tools (imported
        again from the modules or files that define them), model (a server's
        URL and name, or a GGUF file; a key comes from the environment),
        replan, repair and concurrency limits, grammar choice and limits,
        worked examples, tool latency and budget. `tools`, `model` and
        `examples` replace the recorded ones. Tools built
        at run time (an MCP server's, `python_tool()`) have no module to be
        imported from: give them in `tools`, with the others.

        Returns:
            An Agent with `store` as its store.

        Raises:
            UserError: if there is no such run, it is not an agent run, its
                tools or model cannot be found again and were not given, or
                its recorded examples do not fit the tools (or their file has
                changed since) and none were given.
            ConfigError: if the recorded model settings no longer work (a
                GGUF file that is gone).
            StoreError: if the store cannot be read.

        """
        record = store.load(run_id)
        if record.kind != "agent":
            raise UserError(f"run {record.id} is a plan run; resume it with taskloom.resume()")
        config = record.config
        return cls(
            tools=recorded_tools(config) if tools is None else tools,
            model=recorded_model(config, record.id) if model is None else model,
            max_replans=int(config.get("max_replans", 3)),
            max_repairs=int(config.get("max_repairs", 2)),
            max_concurrency=config.get("max_concurrency"),
            grammar=config.get("grammar"),
            grounded=config.get("grounded"),
            budget=recorded_budget(config),
            tool_latency=float(config.get("tool_latency") or 0.0),
            examples=recorded_examples(config) if examples is None else examples,
            grammar_limits=recorded_grammar_limits(config),
            store=store,
            on_event=on_event,
            on_plan_text=on_plan_text,
        )

    async def run(self, question: str, *, journal: RunJournal | None = None) -> AgentResult:
        """Answer one question.

        Args:
            question: the question.
            journal: where to record the request: one `journal(question)`
                made, so the caller knows the run's id (and the run is on
                disk) before it ends. By default the agent's store starts
                one, if it has a store.

        Returns:
            The AgentResult. A model that fails, or a plan that cannot be
            repaired, gives status "failed" with the error and everything
            that was completed; it does not raise.

        Raises:
            UserError: if the question is empty.

        """
        if not question.strip():
            raise UserError("the question is empty")
        if journal is None and self.store is not None:
            journal = self.journal(question)
        return await self._answer(question, journal, None)

    def journal(self, question: str, *, run_id: str | None = None) -> RunJournal:
        """Start recording a request in the agent's store, to `run(question, journal=...)` it.

        An HTTP server answers with the run's id at once this way: the run
        is recorded (`await journal.flush()` commits it) before it runs.

        Args:
            question: the question the run will answer.
            run_id: the run's id; a random one by default.

        Returns:
            The journal, whose `run_id` names the run.

        Raises:
            UserError: if the agent has no store, the question is empty, or
                the id is taken.
            StoreError: if the store failed.

        """
        if self.store is None:
            raise UserError("journal() needs the agent's store: Agent(store=...)")
        if not question.strip():
            raise UserError("the question is empty")
        return self.store.journal(
            kind="agent", request=question, config=self._settings(), run_id=run_id
        )

    async def resume(self, run_id: str) -> AgentResult:
        """Finish a request whose process stopped, from what the agent's store recorded.

        Tasks that finished keep their results; a task that was running is
        called again only if its tool is idempotent, else it is `interrupted`
        and the joiner sees that. Plan lines already written are reused, not
        regenerated: the joiner decides, and may replan, from there. The
        request goes on with this agent's settings; `Agent.from_store()`
        builds the agent it recorded.

        Returns:
            The AgentResult of the finished request (for a request that had
            already ended: its recorded answer and status, nothing re-run).

        Raises:
            UserError: if the agent has no store, or the run is not an agent run.
            StoreError: if the store cannot be read or written.

        """
        if self.store is None:
            raise UserError("resume() needs the agent's store: Agent(store=...)")
        record = self.store.load(run_id)
        if record.kind != "agent":
            raise UserError(f"run {record.id} is a plan run; resume it with taskloom.resume()")
        if not record.unfinished:
            return AgentResult(
                question=record.request,
                answer=record.answer,
                status=record.status,
                agent="llmcompiler",
                exhausted=record.exhausted,
            )
        journal = self.store.resume_journal(record)
        return await self._answer(record.request, journal, record)

    async def _answer(
        self, question: str, journal: RunJournal | None, resumed: RunRecord | None
    ) -> AgentResult:
        started = time.monotonic()
        run_id = journal.run_id if journal is not None else RunId(uuid.uuid4().hex[:12])
        # `trace` is None unless tracing is on (OTEL_* variables, telemetry.instrument()).
        async with traced(
            "invoke_agent", started_at=started, run_id=run_id, request=question
        ) as trace:
            listener = self._on_event if trace is None else trace.chained(self._on_event)
            result = await self._request(question, journal, resumed, started, run_id, listener)
            if trace is not None:
                trace.close(status=result.status, error=result.error)
        return result

    async def _request(
        self,
        question: str,
        journal: RunJournal | None,
        resumed: RunRecord | None,
        started: float,
        run_id: RunId,
        listener: EventListener | None,
    ) -> AgentResult:
        timings = Timings()
        tools = (self.cache or CallCache()).wrap(self.tools)
        rounds: list[_Round] = []
        decisions: list[Decision] = []
        joins: list[LLMCall] = []
        error: str | None = None
        spend = Spend(run_id=run_id, budget=self.budget, journal=journal, listener=listener)
        if self.budget is not None and self.budget.deadline is not None:
            spend.deadline_at = started + self.budget.deadline
        if resumed is not None:
            spend.seq, spend.attempts = resumed.last_seq, len(resumed.plan_attempts)
        try:
            error = await self._run_rounds(
                question, tools, rounds, decisions, joins, timings, spend, resumed
            )
        except ModelError as exc:
            error, spend.model_failed = str(exc), True
        except anyio.get_cancelled_exc_class():
            await _record_end(spend.journal, "cancelled", exhausted=spend.exhausted)
            raise
        except BaseException:
            await _record_end(spend.journal, "failed", exhausted=spend.exhausted)
            raise
        result = self._result(question, started, timings, rounds, decisions, joins, error, spend)
        if spend.journal is not None:
            with anyio.CancelScope(shield=True):
                spend.journal.end(result.status, answer=result.answer, exhausted=spend.exhausted)
                await spend.journal.flush()
        return result

    def _settings(self) -> dict[str, Any]:
        return self.extra_config | settings(
            model=self.model,
            tools=self._sources,
            tool_latency=self.tool_latency,
            max_replans=self.max_replans,
            max_repairs=self.max_repairs,
            max_concurrency=self.max_concurrency,
            grammar=self.grammar,
            grammar_limits=self.grammar_limits,
            examples=self.examples,
            grounded=self.grounded,
            budget=self.budget,
        )

    def _result(
        self,
        question: str,
        started: float,
        timings: Timings,
        rounds: list[_Round],
        decisions: list[Decision],
        joins: list[LLMCall],
        error: str | None,
        spend: Spend,
    ) -> AgentResult:
        timings.total_s = time.monotonic() - started
        timings.planner_s = sum(r.planner_s for r in rounds)
        runs = [r.run for r in rounds if r.run is not None]
        timings.makespan_s = sum(_tool_span(run) for run in runs)
        if rounds and rounds[0].first_dispatch_at and rounds[0].planner_started_at:
            # Counted from the planner's start, as LLMCompiler reports it.
            timings.first_dispatch_s = rounds[0].first_dispatch_at - rounds[0].planner_started_at
        final = decisions[-1] if decisions and isinstance(decisions[-1], Finish) else None
        if error is not None:
            final = None  # a failed request has no answer, whatever the joiner wrote
        answer = final.answer if final is not None else None
        status = "answered" if answer is not None else "failed"
        if spend.exhausted is not None and answer is None:
            status = "budget_exceeded"
            error = error or f"the {spend.exhausted} budget ran out"
        return AgentResult(
            question=question,
            answer=answer,
            value=final.value if final is not None else None,
            status=status,
            exhausted=spend.exhausted,
            agent="llmcompiler",
            rounds=runs,
            plan_attempts=[a for r in rounds for a in r.attempts],
            decisions=decisions,
            llm_calls=[c for r in rounds for c in r.calls] + joins,
            timings=timings,
            error=error,
            model_failed=spend.model_failed,
            started_at=started,
        )

    async def _run_rounds(
        self,
        question: str,
        tools: list[Tool],
        rounds: list[_Round],
        decisions: list[Decision],
        joins: list[LLMCall],
        timings: Timings,
        spend: Spend,
        resumed: RunRecord | None = None,
    ) -> str | None:
        """Plan, execute and join until the joiner answers or the rounds run out.

        Returns:
            Why the request failed, or None when it ended with the joiner's
            decision or out of budget (`spend.exhausted` says which).

        Raises:
            ModelError: if the model failed before a plan had any task.

        """
        history: list[Observation] = []
        outputs: dict[TaskId, Any] = {}
        consumed: set[TaskId] = set()
        """Tasks whose outputs a later task that succeeded took as input."""
        reason: str | None = None
        first = 1
        if resumed is not None and resumed.tasks:
            first = max(t.round for t in resumed.tasks)
            for record in resumed.tasks:
                if record.round < first:
                    history.append(recorded_observation(record))
                    if record.status == "done":
                        outputs[record.id] = record.output
        for number in range(first, self.max_replans + 2):
            last = number == self.max_replans + 1
            if resumed is not None and resumed.tasks and number == first:
                this = await self._restore_round(resumed, tools, number, outputs, spend)
            else:
                this = await self._plan_and_execute(
                    question, tools, number, history, outputs, reason, spend
                )
            rounds.append(this)
            assert this.run is not None
            history += observations(this.run, this.used)
            outputs.update(this.run.outputs)
            consumed.update(
                dep
                for task in this.run.tasks.values()
                if task.status is TaskStatus.DONE
                for dep in task.dependencies
            )
            if this.run.exhausted is not None:
                spend.exhausted = spend.exhausted or this.run.exhausted
            if spend.exhausted is not None:
                return None  # out of budget: no joiner call; the result says which
            if this.plan_error is not None and not any(a.valid for a in this.attempts):
                return unrepaired(this.attempts)
            if not outputs and last:
                return nothing_succeeded(history)  # no joiner: it could only make an answer up
            began = time.monotonic()
            decision, call = await self._join(
                question, history, outputs, consumed, force_finish=last, spend=spend
            )
            timings.joiner_s += time.monotonic() - began
            joins.append(call)
            if decision is None:
                return None
            decisions.append(decision)
            spend.decided(decision)
            if isinstance(decision, Finish) and not outputs:
                return nothing_succeeded(history)
            if isinstance(decision, Finish) or spend.exhausted is not None:
                return None
            reason = decision.reason
        return None

    async def _plan_and_execute(
        self,
        question: str,
        tools: list[Tool],
        number: int,
        history: Sequence[Observation],
        earlier: Mapping[TaskId, Any],
        reason: str | None,
        spend: Spend,
    ) -> _Round:
        known = {TaskId(i) for i, _, _ in history}
        # Only earlier results that exist may be used: a reference to a task of
        # an earlier round that failed is no plan the run can take.
        referable = known & earlier.keys()
        this = _Round()

        def on_event(event: ev.Event) -> None:
            if isinstance(event, ev.TaskStarted):
                spend.tool_calls += 1
                if this.first_dispatch_at is None:
                    this.first_dispatch_at = event.at
            spend.seen(event)

        journal, spend.round = spend.journal, number
        if journal is not None:
            journal.round = number
        async with open_run(
            tools=tools,
            max_concurrency=self.max_concurrency,
            runtime=self.runtime,
            weight=self.weight,
            on_event=on_event,
            earlier=earlier,
            run_id=spend.run_id,
            journal=journal,
            budget=spend.round_budget(),
            stats=self.stats,
            deadline_at=spend.deadline_at,
            first_seq=spend.seq,
            executor=self.executor,
        ) as run:
            spend.run = run  # the agent's events of this round go into its sequence
            repair: tuple[str, str] | None = None
            for _ in range(self.max_repairs + 1):
                first_id = _next_id(known | set(run.plan.tasks))
                # A new plan is shown how new plans go, when there are examples of them.
                replans = self._replan_shots.for_question(question) if history else []
                messages = planner_messages(
                    question,
                    self.tools,
                    examples=[] if replans else self._plan_shots.for_question(question),
                    replans=replans,
                    history=history[-_MAX_HISTORY:],
                    replan_reason=reason,
                    first_id=first_id,
                    repair=repair,
                )
                repeats = Repeats(self._by_name, run)
                attempt = await self._stream_plan(
                    messages,
                    run,
                    number,
                    first_id,
                    (known, referable),
                    this,
                    spend,
                    question,
                    repeats,
                )
                this.attempts.append(attempt)
                if attempt.valid or spend.exhausted is not None or not run.accepting:
                    break
                shown = "\n".join(str(t) for t in run.plan)
                repair = (shown or "(no valid calls yet)", attempt.error or "")
            if self.read_ahead and isinstance(self.model, Warmable) and not spend.exhausted:
                run.close()  # the plan is complete: read ahead while its tools run
                last = number == self.max_replans + 1
                async with anyio.create_task_group() as warming:
                    warming.start_soon(
                        self._warm_joiner,
                        self.model,
                        question,
                        history,
                        run,
                        fields_used(run.plan),
                        last,
                    )
                    await run.wait()
        spend.run = None
        this.run = run.result()
        this.used = fields_used(run.plan)
        return this

    async def _warm_joiner(
        self,
        model: Warmable,
        question: str,
        history: Sequence[Observation],
        run: Run,
        used: Mapping[TaskId, frozenset[str] | None],
        last: bool,
    ) -> None:
        """Let the model read the joiner's prompt as far as it is known, while the tools run.

        The joiner's prompt is known up to this round's results: its
        instructions, examples, the question and earlier results; then each
        result line as its task settles (in plan order, as the joiner will
        see them). Reading each part as soon as it exists, while the model
        would otherwise wait on tools, leaves the joiner only the last
        results to read.
        """
        planned = [(t.id, t.call_text(), "") for t in run.plan]
        room = max(0, _MAX_HISTORY - len(planned))
        earlier = list(history[-room:]) if room else []
        settled = anyio.Event()

        def on_event(event: ev.Event) -> None:
            if isinstance(event, ev.TaskEvent) and run.status(event.task_id).is_final:
                settled.set()

        run.subscribe(on_event)
        shown = -1
        try:
            while not run.finished:
                lines = observations(run.result(), used, settled_prefix=True)
                if len(lines) > shown:
                    shown = len(lines)
                    await model.warm(
                        joiner_prefix(
                            question,
                            earlier,
                            planned,
                            force_finish=last,
                            done=lines,
                            examples=self._join_shots.for_question(question),
                        )
                    )
                if len(lines) == len(planned):
                    return  # every line is read: the joiner only writes
                await settled.wait()
                settled = anyio.Event()
        except ModelError:
            pass  # only a head start: the joiner reads the whole prompt anyway

    async def _restore_round(
        self,
        record: RunRecord,
        tools: list[Tool],
        number: int,
        earlier: Mapping[TaskId, Any],
        spend: Spend,
    ) -> _Round:
        """The round a crash interrupted: its recorded tasks, settled or run again."""
        this, spend.round = _Round(), number
        if spend.journal is not None:
            spend.journal.round = number
        async with open_run(
            tools=tools,
            max_concurrency=self.max_concurrency,
            runtime=self.runtime,
            weight=self.weight,
            on_event=spend.seen,
            earlier=earlier,
            run_id=record.id,
            journal=spend.journal,
            budget=spend.round_budget(),
            stats=self.stats,
            deadline_at=spend.deadline_at,
            first_seq=spend.seq,
            executor=self.executor,
        ) as run:
            current = [t for t in record.tasks if t.round == number]
            restore_tasks(run, current, as_tools(tools))
        this.run = run.result()
        this.used = fields_used(run.plan)
        return this

    async def _stream_plan(
        self,
        messages: list[Message],
        run: Run,
        number: int,
        first_id: int,
        ids: tuple[set[TaskId], set[TaskId]],
        this: _Round,
        spend: Spend,
        question: str,
        repeats: Repeats,
    ) -> PlanAttempt:
        """Stream one plan from the model into the run; each task starts when its line ends.

        The model is given the question to copy names from (`copy_from`):
        a model that can (the embedded one) keeps the plan's strings true to it.
        A call the plan has already written ends it (`Repeats`).
        """
        known, referable = ids  # earlier rounds' task ids; those of them with an output
        held = set(run.plan.tasks)  # accepted from an earlier attempt at this plan
        parser = PlanParser(tools=self.tools, known=known | held, rewritable=held)
        grammar = (
            plan_grammar(
                self.tools,
                first_id=first_id,
                # Only earlier results that exist: a reference to a failed
                # task of an earlier round is no plan the run can take. A map's
                # elements (`3.0`) are read through their map (`$3[0]`).
                known_ids=sorted(i for i in referable | held if i.isdigit()),
                limits=self.grammar_limits,
            )
            if self.grammar
            else None
        )
        added = 0
        began = time.monotonic()
        if this.planner_started_at is None:
            this.planner_started_at = began
        stream = self.model.stream(
            messages,
            max_tokens=_MAX_PLAN_TOKENS,
            grammar=grammar,
            stop=["<END_OF_PLAN>"],
            **copy_hint(self.model, question),
        )
        error: str | None = None
        model_broke = False  # the stream failed, not the plan: what ran is still worth joining
        spend.attempts += 1
        attempt_no = spend.attempts

        repeated = False

        def feed(tasks: list[Task]) -> int:
            nonlocal repeated
            tasks, repeated = repeats.cut(tasks, run)
            added = feed_tasks(tasks, run)
            if added:  # the text so far survives a crash
                text = parser.text
                spend.emit(ev.PlanAttempted, attempt=attempt_no, text=text, valid=None, error=None)
            return added

        try:
            with anyio.move_on_after(spend.time_left()) as limit:
                async with stream:
                    async for chunk in stream:
                        if self._on_plan_text is not None:
                            self._on_plan_text(chunk)
                        added += feed(parser.feed(chunk))
                        if parser.done or repeated or not run.accepting:
                            break
            if limit.cancelled_caught:
                spend.exhausted = spend.exhausted or "deadline"
            elif run.accepting and not repeated:
                added += feed(parser.close())
        except PlanError as exc:
            error = str(exc)
        except ModelError as exc:
            if added == 0 and not run.plan.tasks:
                raise  # nothing to join: the run fails with the model's error
            error, model_broke = str(exc), True
        finally:
            this.planner_s += time.monotonic() - began
            this.calls.append(LLMCall(purpose="planner", usage=stream.usage))
            spend.charge("plan", messages, stream)
        if spend.exhausted is not None and run.accepting:
            run.exceed(spend.exhausted)
        if error is None and added == 0 and not run.plan.tasks and not known:
            error = "the plan has no tool calls; write at least one numbered call"
        this.plan_error = error if error is not None and not model_broke else None
        valid = error is None
        spend.emit(ev.PlanAttempted, attempt=attempt_no, text=stream.text, valid=valid, error=error)
        return PlanAttempt(
            round=number, text=stream.text, valid=error is None, error=error, tasks=added
        )

    async def _join(
        self,
        question: str,
        history: Sequence[Observation],
        outputs: Mapping[TaskId, Any],
        consumed: Collection[TaskId],
        *,
        force_finish: bool,
        spend: Spend,
    ) -> tuple[Decision | None, LLMCall]:
        """Ask the joiner; None instead of a decision if the deadline came first.

        A Finish comes back with its references rendered (`render_finish`).
        """
        seen = history[-_MAX_HISTORY:]
        grammar = self._joiner_grammar(seen, outputs, consumed) if self.grammar else None
        messages = joiner_messages(
            question,
            seen,
            force_finish=force_finish,
            examples=self._join_shots.for_question(question),
        )
        stream = self.model.stream(messages, max_tokens=_MAX_JOIN_TOKENS, grammar=grammar)
        try:
            with anyio.move_on_after(spend.time_left()) as limit:
                completion = await stream.collect()
        finally:
            call = LLMCall(purpose="joiner", usage=stream.usage)
            spend.charge("join", messages, stream)
        if limit.cancelled_caught:
            spend.exhausted = spend.exhausted or "deadline"
            return None, call
        decision = parse_decision(completion.text)
        if isinstance(decision, Replan) and force_finish:
            decision = Finish(answer=_fallback_answer(history), thought=decision.thought)
        if isinstance(decision, Finish) and not decision.answer:
            decision = Finish(answer=_fallback_answer(history), thought=decision.thought)
        if isinstance(decision, Finish):
            decision = _rendered(decision, outputs, history, force_finish=force_finish)
        return decision, call

    def _joiner_grammar(
        self,
        seen: Sequence[Observation],
        outputs: Mapping[TaskId, Any],
        consumed: Collection[TaskId],
    ) -> str:
        """The joiner's grammar: grounded in what `seen` shows, or free text.

        Grounded, the answer comes from the final results: those no later
        call took as input (a sum's total, not the records it added up). A
        small model asked to name a result otherwise often names the first.
        Only when no final result is left (the call that used them failed)
        may it name the others.
        """
        if not self.grounded:
            return joiner_grammar()
        done = [(TaskId(i), text) for i, _, text in seen if TaskId(i) in outputs]
        final = [(i, text) for i, text in done if i not in consumed] or done
        return joiner_grammar(
            answers=result_values(text for _, text in final),
            references=answer_references((i, outputs[i]) for i, _ in final),
        )


async def _record_end(journal: RunJournal | None, status: str, *, exhausted: str | None) -> None:
    """Record, shielded, how a request ended that stopped by an exception (a cancellation).

    Raises:
        StoreError: if the store failed.

    """
    if journal is not None:
        with anyio.CancelScope(shield=True):
            journal.end(status, exhausted=exhausted)
            await journal.flush()


def _tool_span(run: RunResult) -> float:
    """From the first tool call's start to the last one's end (0 if none ran)."""
    starts = [t.started_at for t in run.tasks.values() if t.started_at is not None]
    ends = [t.finished_at for t in run.tasks.values() if t.finished_at is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


def _rendered(
    finish: Finish,
    outputs: Mapping[TaskId, Any],
    history: Sequence[Observation],
    *,
    force_finish: bool,
) -> Decision:
    """The answer with its references rendered (see `Agent`'s `grounded`).

    A reference that names no result is the joiner's mistake: it asks for a
    new plan while rounds remain, and gives the last result on the last one.
    """
    try:
        return render_finish(finish, outputs)
    except UnresolvedAnswer as exc:
        if not force_finish:
            return Replan(reason=str(exc), thought=finish.thought)
        return Finish(answer=_fallback_answer(history), thought=finish.thought, written=exc.written)


def _fallback_answer(history: Sequence[Observation]) -> str:
    """When the joiner gives no answer: the last result that is not an error."""
    for _, _, result in reversed(history):
        if not result.startswith("error:"):
            return result
    return "no answer: every tool call failed"


def _next_id(ids: Iterable[str]) -> int:
    return max((int(i) for i in ids if i.isdigit()), default=0) + 1
