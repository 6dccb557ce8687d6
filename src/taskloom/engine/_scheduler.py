"""The scheduler: start every task in the event-loop turn its last input arrives.

There are no levels and no supersteps. When a task settles, it walks its
dependents synchronously (`engine/_settle.py`): each one whose inputs are now
complete is dispatched at once (an asyncio task of its own), in the same turn.
When slots are scarce, ready tasks wait in a queue ordered by the longest
remaining critical path, estimated from each tool's observed durations
(`engine/_dispatch.py`). A run opened on a shared Runtime hands its ready
tasks to it instead (`engine/_runtime.py`), which starts them in the same turn
when the slots they need are free.

The tasks running tool calls are the run's own asyncio tasks, not children
of its anyio task group: `TaskGroup.start_soon` costs about 4 µs more per
task than `loop.create_task` with its first step, which on a 10,000-task
fan-out is 40 ms between the first and the last dependent starting. The run
keeps the structure itself: it holds every such task (`_hosts`), cancels
them when it is cancelled, and `open_run` waits for all of them before it
returns (`Run._hosts_ended`); a task that crashes cancels the run and its
error is raised by `open_run`.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
import uuid
from collections import ChainMap
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel

from taskloom._ids import RunId, TaskId
from taskloom.engine import events as ev
from taskloom.engine._branch import accepts, parts, through_gate
from taskloom.engine._budget import Budget
from taskloom.engine._dispatch import Dispatcher
from taskloom.engine._eventlog import EventLog
from taskloom.engine._eventlog import build as build_event
from taskloom.engine._executor import Executor, InlineExecutor, held_arguments
from taskloom.engine._launch import Launch, flush
from taskloom.engine._node import (
    Earlier,
    Node,
    TaskResults,
    gated,
    jsonable,
    task_result,
)
from taskloom.engine._settle import Settler
from taskloom.engine._stats import DurationStats
from taskloom.engine.result import RunResult, RunStatus, TaskResult, TaskStatus
from taskloom.errors import (
    BadArguments,
    BadOutput,
    CallInterrupted,
    CallTimedOut,
    EditError,
    ExecutorLost,
    PlanError,
    RunError,
    TaskInterrupted,
    TaskloomError,
    ToolFailed,
    ToolTimedOut,
    UserError,
)
from taskloom.plan import Plan, Task
from taskloom.plan._check import bind_task
from taskloom.plan._plan import add_checked
from taskloom.plan._resolve import HasOutput, ResolveError, resolve
from taskloom.tools import Tool

if TYPE_CHECKING:
    from taskloom.engine._runtime import Share

__all__ = ["BeforeCall", "EventListener", "Order", "Run"]

EventListener = Callable[[ev.Event], None]
"""A callable that receives every event of a run, synchronously, in order."""

BeforeCall = Callable[[TaskId], Awaitable[None]]
"""Awaited before a non-idempotent tool is called (a store makes the start durable)."""

Order = Literal["critical_path", "fifo"]
"""Which ready task takes a free slot first: longest remaining path, or first come."""

_FEED_BATCH = 256
"""Tasks added between two checkpoints when a large plan is fed in."""

_PLAIN = (float, bool, type(None))
"""Outputs that every consumer can encode as they are: the fast path skips `jsonable`.
Not str or int: a lone surrogate or an int of 5,000 digits cannot be written."""


class Run(Dispatcher, Settler):
    """One execution of a plan that may grow, shrink and change while it runs.

    Create it with `taskloom.open_run()`; `taskloom.execute()` does that for you.
    All methods must be called from the run's event loop.
    """

    def __init__(
        self,
        *,
        tools: Mapping[str, Tool],
        max_concurrency: int | None = None,
        run_id: RunId | None = None,
        listeners: Sequence[EventListener] = (),
        stats: DurationStats | None = None,
        order: Order = "critical_path",
        earlier: Mapping[TaskId, Any] | None = None,
        before_call: BeforeCall | None = None,
        budget: Budget | None = None,
        deadline_at: float | None = None,
        first_seq: int = 0,
        executor: Executor | None = None,
    ) -> None:
        if max_concurrency is not None and (
            type(max_concurrency) is not int or max_concurrency < 1
        ):
            raise UserError(
                f"max_concurrency must be a whole number of at least 1, got {max_concurrency!r}"
            )
        self.run_id = run_id or RunId(uuid.uuid4().hex[:12])
        # Outputs of tasks from an earlier plan (a replan): referable, never re-run.
        self._earlier = {i: Earlier(output) for i, output in (earlier or {}).items()}
        # The plan checks structure; tool checks happen here (bind_task), once.
        self._plan = Plan(external=self._earlier, inputs=())
        self._tools = tools
        self._limit = max_concurrency
        self._fifo = order == "fifo"
        # With no limit anywhere, ready tasks start at once and need no ordering.
        self._unlimited = max_concurrency is None and all(
            t.policy.max_concurrency is None for t in tools.values()
        )
        self._listeners = list(listeners)
        self._stats = stats or DurationStats()
        self._nodes: dict[TaskId, Node] = {}
        # A resumed run's map elements that settled before the crash, by id:
        # restored as they were when their map fans out again.
        self._recorded: dict[TaskId, tuple[TaskStatus, Any, RunError | None, int]] = {}
        self._outputs: Mapping[TaskId, HasOutput] = (
            ChainMap(self._nodes, self._earlier) if self._earlier else self._nodes  # type: ignore[arg-type]
        )
        self._events = EventLog(self.run_id)
        self._seq = first_seq
        # A map's elements started before their events were emitted (`engine/_launch.py`).
        self._launching: Launch | None = None
        self._before_call = before_call
        # None: calls run inline (`Tool.call`), with the scheduler's fast path.
        self._executor = None if type(executor) is InlineExecutor else executor
        self._budget = budget
        self._deadline_at = deadline_at
        self._calls = 0
        self._deadline_scope: anyio.CancelScope | None = None
        self.exhausted: str | None = None
        """Which budget ran out, once one has."""
        self._open = 0
        self._running = 0
        self._per_tool: dict[str, int] = {}
        self._next_call: dict[str, float] = {}
        self._queue: list[tuple[float, int, Node]] = []
        self._tickets = 0
        self._ranks: dict[TaskId, float] | None = None
        self._holding = False
        self._closed = False
        self._cancelled = False
        self._done = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._hosts: dict[asyncio.Task[None], Node] = {}
        self._share: Share | None = None  # its place on a shared Runtime, if any
        self.crash: BaseException | None = None
        """An error that escaped a task's host (a listener that raised, say)."""
        self.loop: asyncio.AbstractEventLoop | None = None
        """The event loop the run lives on, once it started."""
        self.plan_error: PlanError | None = None
        self.started_at = time.monotonic()
        self.finished_at: float | None = None

    # -- public: reading ------------------------------------------------------

    @property
    def plan(self) -> Plan:
        """The plan as it stands now."""
        return self._plan

    @property
    def finished(self) -> bool:
        """Whether every task is final and the run has ended."""
        return self._done.is_set()

    @property
    def accepting(self) -> bool:
        """Whether tasks may still be added (not closed, cancelled or out of budget)."""
        return not self._closed

    def status(self, task_id: str) -> TaskStatus:
        """The current status of a task.

        Raises:
            KeyError: if the run has no such task.

        """
        return self._nodes[TaskId(task_id)].status

    @property
    def events(self) -> Sequence[ev.Event]:
        """Every event so far, in order."""
        if self._launching is not None:
            flush(self)
        return self._events

    def subscribe(self, listener: EventListener) -> None:
        """Call `listener` with every future event, synchronously and in order."""
        self._listeners.append(listener)

    def emit(self, kind: type[ev.AgentEvent], **fields: Any) -> ev.AgentEvent:
        """Put an event from outside the scheduler (an agent's model call) into the run's sequence.

        It is numbered after every event so far and delivered to the run's
        listeners (its journal's among them) like the scheduler's own.

        Returns:
            The event, as delivered.

        Raises:
            UserError: if the run has finished (nothing happens in a run after
                `run_finished`), or `kind` is not an `AgentEvent`.

        """
        if not (isinstance(kind, type) and issubclass(kind, ev.AgentEvent)):
            raise UserError(f"Run.emit() takes AgentEvent kinds, not {kind!r}")
        if self.finished:
            raise UserError(f"run {self.run_id} has finished: it takes no more events")
        if self._launching is not None:
            flush(self)
        self._seq += 1
        event = kind(seq=self._seq, at=time.monotonic(), run_id=self.run_id, **fields)
        self._events.put(event)
        for listener in self._listeners:
            listener(event)
        return event

    # -- public: editing ------------------------------------------------------

    def add(self, task: Task) -> None:
        """Add a task; it starts as soon as its dependencies are done.

        Raises:
            PlanError: if the task is invalid for this run's plan and tools.
            UserError: if the run no longer accepts tasks.

        """
        self._add(task)
        self._dispatch()

    def add_all(self, tasks: Iterable[Task]) -> None:
        """Add many tasks, dispatching only once they are all in.

        Ordering ready tasks needs the whole graph, so adding in bulk lets the
        first dispatch already see every critical path.

        Raises:
            PlanError: at the first invalid task; the ones before it stay added.

        """
        self._holding = True
        try:
            for task in tasks:
                self._add(task)
        finally:
            self._holding = False
            self._dispatch()

    async def add_plan(self, plan: Plan) -> None:
        """Add every task of a complete plan: all are checked before any is added.

        With no concurrency limit, the first tasks start while later ones are
        still being added, so a large plan's first calls do not wait for its
        last line to be read. With a limit, everything is added before the
        first dispatch, so the queue is ordered over the whole graph.

        Raises:
            PlanError: if any task does not fit the tools; then nothing was added.
        """
        ordered = plan.in_dependency_order()
        bound = [bind_task(task, self._tools) for task in ordered]
        checked = self._fits(ordered)
        self._holding = not self._unlimited
        try:
            for count, (task, arguments) in enumerate(zip(ordered, bound, strict=True), start=1):
                self._add(task, arguments, checked=checked)
                # Started a batch at a time, in the turn they were added (a budget
                # is asked task by task, so that it stops the rest being added).
                if self._unlimited and (count % _FEED_BATCH == 0 or self._budget is not None):
                    self._dispatch()
                    if count % _FEED_BATCH == 0:
                        await anyio.lowlevel.checkpoint()  # let started tasks run
        finally:
            self._holding = False
            self._dispatch()

    def cancel(self, task_id: str | None = None, *, reason: str | None = None) -> None:
        """Cancel one task and everything that depends on it, or the whole run.

        A running task's cancel scope is cancelled, so its work really stops
        (a sync tool's thread is abandoned and reported). Cancelling a task
        that already reached a final status does nothing. Each task cancelled
        is a `task_cancelled` event, so a resumed run keeps it cancelled.

        Raises:
            KeyError: if the run has no such task.

        """
        if task_id is None:
            self._cancelled = True
            self._closed = True
            why = reason or "the run was cancelled"
            # A listener that raises must not leave the other tasks running:
            # it crashes the run (open_run raises it), and every task still stops.
            for node in self._nodes.values():
                if not node.status.is_final:
                    try:
                        self._cancel_node(node, why)
                    except Exception as exc:
                        self._crashed(exc)
            try:
                self._check_done()
            except Exception as exc:
                self._crashed(exc)
            return
        node = self._nodes[TaskId(task_id)]
        if node.status.is_final:
            return
        self._cancel_node(node, reason or f"task {task_id} was cancelled")
        for element in parts(node):  # a map's elements, a sub-plan's tasks: part of it
            if not element.status.is_final:
                self._cancel_node(element, f"task {task_id}, which it is part of, was cancelled")
        self._dispatch()
        self._check_done()

    def rewrite(
        self,
        task_id: str,
        *,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        tool: str | None = None,
    ) -> Task:
        """Change a task that has not started yet.

        The change is a `task_rewritten` event, so a journal keeps the new
        version and a resumed run calls it, not the task as first added.

        Returns:
            The new version of the task.

        Raises:
            KeyError: if the run has no such task.
            EditError: if the task has started or finished.
            PlanError: if the new version is invalid or would close a cycle.

        """
        node = self._nodes[TaskId(task_id)]
        if node.status not in (TaskStatus.PENDING, TaskStatus.READY):
            raise EditError(task_id, str(node.status), "rewrite")
        if node.elements is not None:  # a map whose elements were added: they may run
            raise EditError(task_id, "running its elements", "rewrite")
        old = node.task
        new = Task(
            id=old.id,
            tool=old.tool if tool is None else tool,
            args=old.args if args is None else tuple(args),
            kwargs=old.kwargs if kwargs is None else dict(kwargs),
            thought=old.thought,
            position=old.position,
            guard=old.guard,
        )
        bound = bind_task(new, self._tools)
        self._plan.replace(new)
        for dep in old.dependencies:
            if dep in self._nodes:
                self._nodes[dep].dependents.remove(node)
        node.task, node.tool, node.bound, node.queued = new, self._tools[new.tool], bound, 0
        node.gated = gated(new, node.tool)
        node.status = TaskStatus.PENDING
        self._ranks = None
        self._emit(
            ev.TaskRewritten,
            task_id=new.id,
            tool=new.tool,
            dependencies=tuple(sorted(new.dependencies)),
            task=new,
        )
        self._link(node)
        self._dispatch()
        return new

    def close(self) -> None:
        """Say that no more tasks will be added; the run ends when all are final."""
        self._closed = True
        self._check_done()

    async def wait(self) -> RunResult:
        """Wait until the run is closed and every task is final.

        Returns:
            The run's result.

        """
        await self._done.wait()
        return self.result()

    def result(self) -> RunResult:
        """The run's result: final once `wait()` returned, else a snapshot of now."""
        if self._launching is not None:
            flush(self)
        finished = self._done.is_set()
        tasks: Mapping[TaskId, TaskResult]
        if finished:
            # Nodes no longer change: build each TaskResult only when it is read.
            tasks = TaskResults(self._nodes)
        else:
            tasks = {i: task_result(n) for i, n in self._nodes.items()}
        return RunResult(
            run_id=self.run_id,
            status=self._status(),
            tasks=tasks,
            events=self._events if finished else self._events.snapshot(),
            started_at=self.started_at,
            finished_at=self.finished_at or time.monotonic(),
            plan_error=self.plan_error,
            exhausted=self.exhausted,
        )

    def _status(self) -> RunStatus:
        if self.exhausted is not None:
            return RunStatus.BUDGET_EXCEEDED
        return RunStatus.CANCELLED if self._cancelled else RunStatus.COMPLETED

    # -- lifecycle, driven by open_run ----------------------------------------

    def _share_with(self, share: Share | None, next_call: dict[str, float]) -> None:
        """Take slots from a shared Runtime through `share` (None: no limit to share).

        Its rate limits count in `next_call`, the runtime's, with other runs' calls.
        """
        self._next_call = next_call
        if share is not None:
            self._share = share
            self._unlimited = False

    def _attach(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self.loop = asyncio.get_running_loop()
        self.started_at = time.monotonic()
        if self._deadline_at is None and self._budget and self._budget.deadline is not None:
            self._deadline_at = self.started_at + self._budget.deadline
        if self._deadline_at is not None:
            self._deadline_scope = anyio.CancelScope()
            tg.start_soon(self._watch_deadline, self._deadline_scope)

    async def _watch_deadline(self, scope: anyio.CancelScope) -> None:
        assert self._deadline_at is not None
        with scope:
            await anyio.sleep_until(self._deadline_at)
            self.exceed("deadline")

    # -- budgets and restoring ------------------------------------------------

    def exceed(self, budget: str) -> None:
        """Stop the run because `budget` ran out.

        Nothing new is dispatched, every unfinished task is cancelled (running
        ones really stop) and the run ends with status `budget_exceeded`.
        """
        if self.exhausted is None:
            self.exhausted = budget
        self._closed = True
        why = f"the {budget} budget ran out"
        # Out of calls, the calls already made may finish; out of time or
        # money, running work stops too.
        spare_running = budget == "tool_calls"
        for node in self._nodes.values():
            if node.status.is_final or (spare_running and node.status is TaskStatus.RUNNING):
                continue
            self._cancel_node(node, why)
        self._check_done()

    def restore(
        self,
        task: Task,
        status: TaskStatus,
        *,
        output: Any = None,
        error: RunError | None = None,
        attempts: int = 0,
    ) -> None:
        """Add a task that already reached a final status in an earlier process.

        Resuming a run restores what the store recorded; tasks added later
        see its output (or its failure) exactly as if it had just settled.

        Raises:
            UserError: if `status` is not final or the run no longer accepts tasks.
            PlanError: if the task does not fit the plan.

        """
        if not status.is_final:
            raise UserError(f"cannot restore task {task.id} as {status}: only final states")
        if self._closed:
            raise UserError(f"cannot restore task {task.id}: the run no longer accepts tasks")
        if task.tool not in self._tools:
            raise PlanError(f"unknown tool {task.tool!r}", task_id=task.id)
        self._plan.add(task)
        node = Node(task, self._tools[task.tool], {})
        node.status, node.output, node.error, node.attempts = status, output, error, attempts
        self._nodes[task.id] = node
        self._ranks = None
        self._emit(ev.TaskRestored, task_id=task.id, status=str(status), error=error)

    def restore_element(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        output: Any = None,
        error: RunError | None = None,
        attempts: int = 0,
    ) -> None:
        """Keep what an earlier process recorded for a map's element, for when the map fans out.

        A resumed map whose element tasks had been added fans out again over
        the same list (its input is restored); each element recorded here is
        then restored as it was instead of being called again.

        Raises:
            UserError: if `status` is not final.

        """
        if not status.is_final:
            raise UserError(f"cannot restore task {task_id} as {status}: only final states")
        self._recorded[TaskId(task_id)] = (status, output, error, attempts)

    # -- adding and linking ---------------------------------------------------

    def _fits(self, ordered: Sequence[Task]) -> bool:
        """Whether the tasks of a plan, in dependency order, may join this run's plan unchecked.

        A Plan already refuses a task that references itself or a later task;
        what is left to check against this run is done here for all of them at
        once: no id is taken, and every reference names one of them or a task
        the run has. When this says no, `Plan.add` finds and reports the problem.
        """
        ids = {task.id for task in ordered}
        if len(ids) != len(ordered) or not ids.isdisjoint(self._plan.tasks):
            return False
        if not ids.isdisjoint(self._earlier):
            return False
        unknown = set().union(*(task.dependencies for task in ordered))
        unknown -= ids
        return all(dep in self._plan.tasks or dep in self._earlier for dep in unknown)

    def _add(
        self, task: Task, bound: dict[str, Any] | None = None, *, checked: bool = False
    ) -> None:
        if not isinstance(task, Task):  # a plan line, say: it must be parsed first
            raise UserError(
                f"Run.add takes a Task (Plan.parse or PlanParser makes them), "
                f"got {type(task).__name__}"
            )
        if self._closed and self.exhausted is None:
            raise UserError(f"cannot add task {task.id}: the run no longer accepts tasks")
        if bound is None:
            bound = bind_task(task, self._tools)
        if checked:  # its id is free and its references known (`_fits`)
            add_checked(self._plan, task)
        else:
            self._plan.add(task)
        node = Node(task, self._tools[task.tool], bound)
        self._nodes[task.id] = node
        self._open += 1
        self._ranks = None
        self._emit(
            ev.TaskAdded,
            task_id=task.id,
            tool=task.tool,
            dependencies=tuple(sorted(task.dependencies)),
            task=task,
        )
        if self._closed:  # closed by a budget (any other closing raised above)
            # Out of budget: the rest of the plan is kept, as cancelled, so the
            # result shows everything that was asked for.
            self._cancel_node(node, f"the {self.exhausted} budget ran out")
            return
        self._link(node)

    def _link(self, node: Node) -> None:
        """Count unfinished dependencies; make the node ready or skip it at once."""
        waiting = 0
        for dep_id in node.task.dependencies:
            dep = self._nodes.get(dep_id)
            if dep is None:
                continue  # a task of an earlier plan: done, its output kept

            if dep.status is TaskStatus.DONE:
                continue
            if dep.status.is_final:
                if accepts(node, dep):
                    continue
                self._skip(node, dep)
                return
            dep.dependents.append(node)
            waiting += 1
        node.waiting = waiting
        if waiting == 0:
            self._make_ready(node)

    def _make_ready(self, node: Node) -> None:
        if node.gated and not through_gate(self, node):
            return
        node.status = TaskStatus.READY
        self._emit(ev.TaskReady, task_id=node.task.id)
        self._tickets += 1
        node.queued = ticket = self._tickets
        if self._unlimited or self._fifo or self._ranks is None:
            # Unordered (or FIFO by ticket); `_order_queue` keys it when needed.
            self._queue.append((0.0, ticket, node))
        else:
            heapq.heappush(self._queue, (-self._ranks.get(node.task.id, 0.0), ticket, node))

    # -- running one task -----------------------------------------------------

    async def _run_task(
        self,
        node: Node,
        arguments: dict[str, Any] | None = None,
        launched: Launch | None = None,
    ) -> None:
        # Cancelling one task cancels its asyncio task (see `_cancel_node`);
        # a cancel scope per task would cost a sixth of the per-task budget.
        # That CancelledError ends the host; `_host_done` expects it.
        tool = node.tool
        if launched is not None:  # a map's element, its arguments checked (`engine/_launch.py`)
            assert arguments is not None
            if not launched.pending:  # else `flush` emits its start, timed below
                self._emit(
                    ev.TaskStarted, task_id=node.task.id, tool=tool.name, arguments=arguments
                )
            inline = True  # launched only so: an async tool, simple, nothing to write first
        else:
            checked = self._arguments(node)
            if isinstance(checked, BadArguments):
                self._fail(node, checked)
                return
            arguments = checked
            self._emit(ev.TaskStarted, task_id=node.task.id, tool=tool.name, arguments=arguments)
            if self._before_call is not None and not tool.policy.idempotent:
                try:
                    await self._before_call(node.task.id)
                except TaskloomError as exc:
                    if node.status is TaskStatus.RUNNING:
                        node.host = None  # settle without cancelling ourselves
                        self._cancel_node(node, f"not called: {exc}")
                        self._dispatch()
                        self._check_done()
                    return
                if node.status is not TaskStatus.RUNNING:
                    return  # cancelled while its start was being written
            inline = tool.is_async and tool.policy.simple and self._executor is None
        if inline:
            # The common case, inlined: one coroutine less per task.
            node.attempts = 1
            # Timed from the call itself: after its arguments, the journal's
            # barrier and any wait for a slot (`Tool.call` does the same).
            node.started_at = time.monotonic()
            try:
                output = await tool.fn(**arguments)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the tool's own failure, SystemExit too: data
                outcome = ToolFailed(node.task.id, tool.name, exc)
            else:
                outcome = output if type(output) in _PLAIN else jsonable(node, output)
        else:
            outcome = await self._call_with_retries(node, arguments)
        if node.status is not TaskStatus.RUNNING:
            return  # cancelled, and the tool swallowed the cancellation
        if isinstance(outcome, RunError):
            self._fail(node, outcome)
        else:
            self._finish(node, outcome)

    def _arguments(self, node: Node) -> dict[str, Any] | BadArguments:
        """The validated arguments of a task, or why they are bad."""
        task, tool, bound = node.task, node.tool, node.bound
        if task.dependencies:
            outputs = self._outputs
            try:
                bound = {k: resolve(v, outputs) for k, v in bound.items()}
            except ResolveError as exc:
                return BadArguments(task.id, tool.name, str(exc))
        node.arguments = bound
        try:
            return tool.validate(bound)
        except ValueError as exc:  # or an output held by the executor, passed on whole
            return held_arguments(task.id, tool, bound, exc)

    async def _call_with_retries(self, node: Node, arguments: dict[str, Any]) -> Any:
        tool, policy = node.tool, node.tool.policy
        error: RunError | None = None
        for attempt in range(1, policy.attempts + 1):
            node.attempts = attempt
            if policy.rate_limit is not None:
                await anyio.sleep(self._rate_delay(tool.name, policy.rate_limit))
            outcome = await self._attempt(node, arguments)
            if not isinstance(outcome, RunError):
                return outcome
            error = outcome
            if attempt < policy.attempts and not isinstance(error, BadOutput):
                delay = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.5)  # jitter: retries of many tasks do not align
                self._emit(
                    ev.TaskRetried, task_id=node.task.id, attempt=attempt, delay=delay, error=error
                )
                await anyio.sleep(delay)
            else:
                break
        assert error is not None
        return error

    async def _attempt(self, node: Node, arguments: dict[str, Any]) -> Any:
        """One call of the tool; a failure comes back as a RunError value."""
        tool, task_id = node.tool, node.task.id
        try:
            # The tool applies the timeout: a sync call's starts once it has a thread.
            if self._executor is None:
                output = await tool.call(arguments, times=node, timeout=tool.policy.timeout)
            else:
                output = await self._executor.call(
                    tool, arguments, times=node, timeout=tool.policy.timeout
                )
        except CallTimedOut as exc:
            if exc.tool != tool.name:  # another tool's, called by this one: its failure
                return ToolFailed(task_id, tool.name, exc)
            return ToolTimedOut(
                task_id,
                tool.name,
                exc.timeout,
                thread_abandoned=tool.in_thread and exc.stopped is None,
                worker_killed=tool.policy.isolation is not None and exc.stopped is None,
                stopped=exc.stopped,
            )
        except CallInterrupted as exc:  # its worker died: retried only if that is harmless
            if tool.policy.idempotent or exc.tool != tool.name:
                return ToolFailed(task_id, tool.name, exc)
            return TaskInterrupted(task_id, tool.name, stopped=exc.where)
        except (anyio.get_cancelled_exc_class(), ExecutorLost):  # the latter ends the run
            raise
        except BaseException as exc:  # the tool's own failure, SystemExit too: recorded
            return ToolFailed(task_id, tool.name, exc)
        return output if type(output) in _PLAIN else jsonable(node, output)

    def _rate_delay(self, tool: str, per_second: float) -> float:
        now = time.monotonic()
        slot = max(now, self._next_call.get(tool, now))
        self._next_call[tool] = slot + 1.0 / per_second
        return slot - now

    def _emit(self, kind: type[ev.Event], **fields: Any) -> None:
        if self._launching is not None:  # the launched elements' events come first
            flush(self)
        self._seq = seq = self._seq + 1
        if not self._listeners:  # nobody receives it now: built if and when it is read
            self._events.put((kind, seq, time.monotonic(), fields))
            return
        event = build_event(kind, seq, time.monotonic(), self.run_id, fields)
        self._events.put(event)
        for listener in self._listeners:
            listener(event)

    def _emit_at(self, kind: type[ev.Event], at: float, fields: dict[str, Any]) -> None:
        """`_emit` of what happened at `at` (no later than now), told now (`_launch.flush`)."""
        self._seq = seq = self._seq + 1
        if not self._listeners:
            self._events.put((kind, seq, at, fields))
            return
        event = build_event(kind, seq, at, self.run_id, fields)
        self._events.put(event)
        for listener in self._listeners:
            listener(event)
