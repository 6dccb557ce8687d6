"""The scheduler: start every task in the event-loop turn its last input arrives.

There are no levels and no supersteps. When a task settles, `_settle` walks
its dependents synchronously: each one whose inputs are now complete is
dispatched at once (`TaskGroup.start_soon`), in the same turn. When slots
are scarce, ready tasks wait in a queue ordered by the longest remaining
critical path, estimated from each tool's observed durations.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
import uuid
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from taskloom._ids import RunId, TaskId
from taskloom.engine import events as ev
from taskloom.engine._stats import DurationStats
from taskloom.engine.result import RunResult, RunStatus, TaskResult, TaskStatus
from taskloom.errors import (
    BadArguments,
    BadOutput,
    DependencyFailed,
    EditError,
    PlanError,
    RunError,
    TaskCancelled,
    ToolFailed,
    ToolTimedOut,
    UserError,
)
from taskloom.plan import Plan, Task
from taskloom.plan._check import bind_task
from taskloom.plan._resolve import HasOutput, ResolveError, resolve
from taskloom.tools import Tool

__all__ = ["EventListener", "Order", "Run"]

EventListener = Callable[[ev.Event], None]
"""A callable that receives every event of a run, synchronously, in order."""

Order = Literal["critical_path", "fifo"]
"""Which ready task takes a free slot first: longest remaining path, or first come."""

_FEED_BATCH = 256
"""Tasks added between two checkpoints when a large plan is fed in."""

_PLAIN = (str, int, float, bool, type(None))


class _Node:
    """The scheduler's mutable record of one task."""

    __slots__ = (
        "arguments",
        "attempts",
        "bound",
        "dependents",
        "error",
        "finished_at",
        "output",
        "host",
        "queued",
        "started_at",
        "status",
        "task",
        "tool",
        "waiting",
    )

    def __init__(self, task: Task, tool: Tool, bound: dict[str, Any]) -> None:
        self.task = task
        self.tool = tool
        self.bound = bound
        """Arguments by parameter name, references not yet resolved."""
        self.status = TaskStatus.PENDING
        self.waiting = 0
        """How many dependencies have not finished yet."""
        self.dependents: list[_Node] = []
        self.output: Any = None
        self.error: RunError | None = None
        self.arguments: dict[str, Any] | None = None
        self.attempts = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.host: asyncio.Task[Any] | None = None
        """The asyncio task running the call, while it runs; cancelling it stops the call."""
        self.queued = 0
        """Non-zero while the node sits in the ready queue: its queue ticket."""


def _settled_by_cancel(node: _Node) -> bool:
    """Whether `Run.cancel` settled this node (then its CancelledError is ours)."""
    return node.status is TaskStatus.CANCELLED


def _jsonable(node: _Node, output: Any) -> Any:
    """The output as JSON-able data, or BadOutput if it has no JSON form."""
    try:
        return to_jsonable_python(output)
    except (PydanticSerializationError, ValueError, TypeError):
        return BadOutput(node.task.id, node.tool.name, type(output).__name__)


class _Earlier:
    """A finished task of an earlier plan in the same agent run: only its output."""

    __slots__ = ("output",)

    def __init__(self, output: Any) -> None:
        self.output = output


def _task_result(node: _Node) -> TaskResult:
    return TaskResult(
        id=node.task.id,
        tool=node.task.tool,
        arguments=node.arguments,
        dependencies=tuple(sorted(node.task.dependencies)),
        status=node.status,
        output=node.output,
        error=node.error,
        attempts=node.attempts,
        started_at=node.started_at,
        finished_at=node.finished_at,
    )


class _TaskResults(Mapping[TaskId, TaskResult]):
    """The tasks of a finished run, each made into a TaskResult when first read."""

    __slots__ = ("_made", "_nodes")

    def __init__(self, nodes: Mapping[TaskId, _Node]) -> None:
        self._nodes = nodes
        self._made: dict[TaskId, TaskResult] = {}

    def __getitem__(self, task_id: TaskId) -> TaskResult:
        made = self._made.get(task_id)
        if made is None:
            made = self._made[task_id] = _task_result(self._nodes[task_id])
        return made

    def __iter__(self) -> Iterator[TaskId]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return repr(dict(self))


class Run:
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
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise UserError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.run_id = run_id or RunId(uuid.uuid4().hex[:12])
        # Outputs of tasks from an earlier plan (a replan): referable, never re-run.
        self._earlier = {i: _Earlier(output) for i, output in (earlier or {}).items()}
        # The plan checks structure; tool checks happen here (bind_task), once.
        self._plan = Plan(external=self._earlier)
        self._tools = tools
        self._limit = max_concurrency
        self._fifo = order == "fifo"
        # With no limit anywhere, ready tasks start at once and need no ordering.
        self._unlimited = max_concurrency is None and all(
            t.policy.max_concurrency is None for t in tools.values()
        )
        self._listeners = list(listeners)
        self._stats = stats or DurationStats()
        self._nodes: dict[TaskId, _Node] = {}
        self._outputs: Mapping[TaskId, HasOutput] = (
            ChainMap(self._nodes, self._earlier) if self._earlier else self._nodes  # type: ignore[arg-type]
        )
        self._events: list[ev.Event] = []
        self._seq = 0
        self._open = 0
        self._running = 0
        self._per_tool: dict[str, int] = {}
        self._next_call: dict[str, float] = {}
        self._queue: list[tuple[float, int, _Node]] = []
        self._tickets = 0
        self._ranks: dict[TaskId, float] | None = None
        self._holding = False
        self._closed = False
        self._cancelled = False
        self._done = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self.plan_error: PlanError | None = None
        self.started_at = time.monotonic()
        self.finished_at: float | None = None

    # -- public: reading ------------------------------------------------------

    @property
    def plan(self) -> Plan:
        """The plan as it stands now."""
        return self._plan

    def status(self, task_id: str) -> TaskStatus:
        """The current status of a task.

        Raises:
            KeyError: if the run has no such task.

        """
        return self._nodes[TaskId(task_id)].status

    @property
    def events(self) -> Sequence[ev.Event]:
        """Every event so far, in order."""
        return self._events

    def subscribe(self, listener: EventListener) -> None:
        """Call `listener` with every future event, synchronously and in order."""
        self._listeners.append(listener)

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
        self._holding = not self._unlimited
        try:
            for count, (task, arguments) in enumerate(zip(ordered, bound, strict=True), start=1):
                self._add(task, arguments)
                if self._unlimited:
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
        that already reached a final status does nothing.

        Raises:
            KeyError: if the run has no such task.

        """
        if task_id is None:
            self._cancelled = True
            self._closed = True
            why = reason or "the run was cancelled"
            for node in self._nodes.values():
                if not node.status.is_final:
                    self._cancel_node(node, why)
            self._check_done()
            return
        node = self._nodes[TaskId(task_id)]
        if node.status.is_final:
            return
        self._cancel_node(node, reason or f"task {task_id} was cancelled")
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
        old = node.task
        new = Task(
            id=old.id,
            tool=old.tool if tool is None else tool,
            args=old.args if args is None else tuple(args),
            kwargs=old.kwargs if kwargs is None else dict(kwargs),
            thought=old.thought,
            position=old.position,
        )
        bound = bind_task(new, self._tools)
        self._plan.replace(new)
        for dep in old.dependencies:
            if dep in self._nodes:
                self._nodes[dep].dependents.remove(node)
        node.task, node.tool, node.bound, node.queued = new, self._tools[new.tool], bound, 0
        node.status = TaskStatus.PENDING
        self._ranks = None
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
        finished = self._done.is_set()
        tasks: Mapping[TaskId, TaskResult]
        if finished:
            # Nodes no longer change: build each TaskResult only when it is read.
            tasks = _TaskResults(self._nodes)
        else:
            tasks = {i: _task_result(n) for i, n in self._nodes.items()}
        return RunResult(
            run_id=self.run_id,
            status=RunStatus.CANCELLED if self._cancelled else RunStatus.COMPLETED,
            tasks=tasks,
            events=tuple(self._events),
            started_at=self.started_at,
            finished_at=self.finished_at or time.monotonic(),
            plan_error=self.plan_error,
        )

    # -- lifecycle, driven by open_run ----------------------------------------

    def _attach(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self.started_at = time.monotonic()

    # -- adding and linking ---------------------------------------------------

    def _add(self, task: Task, bound: dict[str, Any] | None = None) -> None:
        if self._closed:
            raise UserError(f"cannot add task {task.id}: the run no longer accepts tasks")
        if bound is None:
            bound = bind_task(task, self._tools)
        self._plan.add(task)
        node = _Node(task, self._tools[task.tool], bound)
        self._nodes[task.id] = node
        self._open += 1
        self._ranks = None
        self._emit(
            ev.TaskAdded,
            task_id=task.id,
            tool=task.tool,
            dependencies=tuple(sorted(task.dependencies)),
        )
        self._link(node)

    def _link(self, node: _Node) -> None:
        """Count unfinished dependencies; make the node ready or skip it at once."""
        waiting = 0
        for dep_id in node.task.dependencies:
            dep = self._nodes.get(dep_id)
            if dep is None:
                continue  # a task of an earlier plan: done, its output kept

            if dep.status is TaskStatus.DONE:
                continue
            if dep.status.is_final:
                self._skip(node, dep)
                return
            dep.dependents.append(node)
            waiting += 1
        node.waiting = waiting
        if waiting == 0:
            self._make_ready(node)

    def _make_ready(self, node: _Node) -> None:
        node.status = TaskStatus.READY
        self._emit(ev.TaskReady, task_id=node.task.id)
        self._tickets += 1
        node.queued = ticket = self._tickets
        if self._unlimited or self._fifo or self._ranks is None:
            # Unordered (or FIFO by ticket); `_order_queue` keys it when needed.
            self._queue.append((0.0, ticket, node))
        else:
            heapq.heappush(self._queue, (-self._ranks.get(node.task.id, 0.0), ticket, node))

    # -- dispatching ----------------------------------------------------------

    def _dispatch(self) -> None:
        """Start queued tasks while there are free slots."""
        if self._holding or self._tg is None or not self._queue:
            return
        if self._unlimited:
            queue, self._queue = self._queue, []
            for _, ticket, node in queue:
                if node.queued == ticket and node.status is TaskStatus.READY:
                    self._start(node)
            return
        if not self._fifo and self._ranks is None:
            self._order_queue()
        blocked: list[tuple[float, int, _Node]] = []
        while self._queue and (self._limit is None or self._running < self._limit):
            entry = heapq.heappop(self._queue)
            node = entry[2]
            if node.queued != entry[1] or node.status is not TaskStatus.READY:
                continue
            tool_limit = node.tool.policy.max_concurrency
            if tool_limit is not None and self._per_tool.get(node.tool.name, 0) >= tool_limit:
                blocked.append(entry)
                continue
            self._start(node)
        for entry in blocked:
            heapq.heappush(self._queue, entry)

    def _order_queue(self) -> None:
        """Key the queue by longest remaining critical path (largest first)."""
        ranks = self._ranks = self._remaining_paths()
        self._queue = [(-ranks[n.task.id], t, n) for _, t, n in self._queue]
        heapq.heapify(self._queue)

    def _remaining_paths(self) -> dict[TaskId, float]:
        """For every task, its estimated duration plus the longest chain after it."""
        ranks: dict[TaskId, float] = {}
        for task in reversed(self._plan.in_dependency_order()):
            node = self._nodes[task.id]
            after = max((ranks[d.task.id] for d in node.dependents), default=0.0)
            ranks[task.id] = self._stats.estimate(node.tool.name) + after
        return ranks

    def _start(self, node: _Node) -> None:
        assert self._tg is not None
        node.status = TaskStatus.RUNNING
        node.queued = 0
        self._running += 1
        if not self._unlimited:
            name = node.tool.name
            self._per_tool[name] = self._per_tool.get(name, 0) + 1
        self._tg.start_soon(self._run_task, node, name=node.task.id)

    # -- running one task -----------------------------------------------------

    async def _run_task(self, node: _Node) -> None:
        if node.status is not TaskStatus.RUNNING:
            return  # cancelled between dispatch and this first step
        # Cancelling one task cancels its asyncio task (see `_cancel_node`);
        # a cancel scope per task would cost a sixth of the per-task budget.
        node.host = asyncio.current_task()
        try:
            await self._call(node)
        except asyncio.CancelledError:
            if not _settled_by_cancel(node):
                raise
            # Our own cancellation of this one task: it was settled already.
            if node.host is not None:
                node.host.uncancel()
        finally:
            node.host = None

    async def _call(self, node: _Node) -> None:
        node.started_at = time.monotonic()
        arguments = self._arguments(node)
        if isinstance(arguments, BadArguments):
            self._fail(node, arguments)
            return
        self._emit(ev.TaskStarted, task_id=node.task.id, tool=node.tool.name, arguments=arguments)
        tool = node.tool
        if tool.is_async and tool.policy.simple:
            # The common case, inlined: one coroutine less per task.
            node.attempts = 1
            try:
                output = await tool.fn(**arguments)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the tool's own failure: recorded as data
                outcome = ToolFailed(node.task.id, tool.name, exc)
            else:
                outcome = output if type(output) in _PLAIN else _jsonable(node, output)
        else:
            outcome = await self._call_with_retries(node, arguments)
        if node.status is not TaskStatus.RUNNING:
            return  # cancelled, and the tool swallowed the cancellation
        if isinstance(outcome, RunError):
            self._fail(node, outcome)
        else:
            self._finish(node, outcome)

    def _arguments(self, node: _Node) -> dict[str, Any] | BadArguments:
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
        except ValueError as exc:
            return BadArguments(task.id, tool.name, str(exc))

    async def _call_with_retries(self, node: _Node, arguments: dict[str, Any]) -> Any:
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

    async def _attempt(self, node: _Node, arguments: dict[str, Any]) -> Any:
        """One call of the tool; a failure comes back as a RunError value."""
        tool, task_id = node.tool, node.task.id
        timeout = tool.policy.timeout
        try:
            if timeout is None:
                output = await tool.call(arguments)
            else:
                with anyio.move_on_after(timeout) as deadline:
                    output = await tool.call(arguments)
                if deadline.cancelled_caught:
                    return ToolTimedOut(
                        task_id, tool.name, timeout, thread_abandoned=not tool.is_async
                    )
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # the tool's own failure: recorded, never propagated
            return ToolFailed(task_id, tool.name, exc)
        return output if type(output) in _PLAIN else _jsonable(node, output)

    def _rate_delay(self, tool: str, per_second: float) -> float:
        now = time.monotonic()
        slot = max(now, self._next_call.get(tool, now))
        self._next_call[tool] = slot + 1.0 / per_second
        return slot - now

    # -- settling -------------------------------------------------------------

    def _finish(self, node: _Node, output: Any) -> None:
        node.output = output
        node.status = TaskStatus.DONE
        self._emit(ev.TaskFinished, task_id=node.task.id, output=output)
        self._release(node)
        assert node.started_at is not None and node.finished_at is not None
        self._stats.observe(node.tool.name, node.finished_at - node.started_at)
        for child in node.dependents:
            if child.status is TaskStatus.PENDING:
                child.waiting -= 1
                if child.waiting == 0:
                    self._make_ready(child)
        self._dispatch()
        self._check_done()

    def _fail(self, node: _Node, error: RunError) -> None:
        node.error = error
        node.status = TaskStatus.FAILED
        self._emit(ev.TaskFailed, task_id=node.task.id, error=error)
        self._release(node)
        self._skip_dependents(node)
        self._dispatch()
        self._check_done()

    def _skip(self, node: _Node, because: _Node) -> None:
        cause = str(because.error) if because.error else str(because.status)
        error = DependencyFailed(node.task.id, because.task.id, cause)
        node.error = error
        node.status = TaskStatus.SKIPPED
        node.finished_at = time.monotonic()
        self._open -= 1
        self._emit(ev.TaskSkipped, task_id=node.task.id, error=error)
        self._skip_dependents(node)

    def _skip_dependents(self, node: _Node) -> None:
        for child in node.dependents:
            if not child.status.is_final:
                self._skip(child, node)

    def _cancel_node(self, node: _Node, reason: str) -> None:
        was_running = node.status is TaskStatus.RUNNING
        abandoned = was_running and not node.tool.is_async
        error = TaskCancelled(node.task.id, reason, thread_abandoned=abandoned)
        node.error = error
        node.status = TaskStatus.CANCELLED
        node.queued = 0
        if was_running:
            if node.host is not None:  # None: dispatched this turn, not yet stepped
                node.host.cancel()
            self._release(node)
        else:
            node.finished_at = time.monotonic()
            self._open -= 1
        self._emit(ev.TaskCancelledEvent, task_id=node.task.id, error=error)
        for child in node.dependents:
            if not child.status.is_final:
                self._cancel_node(child, f"task {node.task.id} was cancelled")

    def _release(self, node: _Node) -> None:
        """Give back a running task's slots and count it as settled."""
        node.finished_at = time.monotonic()
        self._running -= 1
        if not self._unlimited:
            self._per_tool[node.tool.name] -= 1
        self._open -= 1

    def _check_done(self) -> None:
        if self._closed and self._open == 0 and not self._done.is_set():
            self.finished_at = max(
                (n.finished_at for n in self._nodes.values() if n.finished_at is not None),
                default=time.monotonic(),
            )
            status = RunStatus.CANCELLED if self._cancelled else RunStatus.COMPLETED
            self._emit(ev.RunFinished, status=str(status))
            self._done.set()

    def _emit(self, kind: type[ev.Event], **fields: Any) -> None:
        self._seq += 1
        event = kind(seq=self._seq, at=time.monotonic(), run_id=self.run_id, **fields)
        self._events.append(event)
        for listener in self._listeners:
            listener(event)
