"""The one place the HTTP API starts, cancels and resumes runs, and hears their events.

Runs go through the public Python API, as any caller's would (invariant 8):
a plan through `Store.journal` and `execute`, a question through
`Agent.journal` and `Agent.run`, a stopped run through `taskloom.resume` or
`Agent.resume`. Each runs in the service's task group under a cancel scope
of its own, so `cancel` is a caller's cancellation like any other: tools
stop and the store records the run `cancelled`.

Events reach subscribers from the store's journals (`Store.subscribe`): the
record each event becomes in the log, at the moment it is logged, so what a
client hears live is exactly what it would read back from the store.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from taskloom._ids import RunId
from taskloom.engine import Budget, Executor, RunResult, Runtime, events, execute
from taskloom.errors import PlanError
from taskloom.plan import Plan
from taskloom.server._views import task_fields
from taskloom.store import EventRecord, Store, resume
from taskloom.tools import Tool

if TYPE_CHECKING:
    from taskloom.agent import Agent
    from taskloom.llm import ChatModel

__all__ = [
    "AgentFactory",
    "Busy",
    "Conflict",
    "NotLive",
    "RunOptions",
    "RunService",
    "ServiceOptions",
    "Subscription",
]

_log = logging.getLogger("taskloom.server")

_CANCEL_WAIT_S = 5.0
"""Seconds `cancel` waits for a run to end before answering that it is still stopping."""


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What one request may set for its run."""

    max_concurrency: int | None = None
    """Tool calls running at once; None: the server's setting."""
    budget: Budget | None = None
    """Limits of the run; None: the server's setting."""


AgentFactory = Callable[[Mapping[str, Tool], RunOptions], "Agent"]
"""Builds the agent of one question: over these tools, with this request's options;
its store must be the service's."""


@dataclass(frozen=True, kw_only=True)
class ServiceOptions:
    """What the service runs with."""

    store: Store
    """Where every run is recorded, and read back from."""
    tools: Mapping[str, Tool]
    """The tools of every plan and every agent."""
    agent: AgentFactory
    """The agent of one question (the command line's model and agent settings)."""
    model: ChatModel | None = None
    """The model a resumed question uses; None: the one it recorded."""
    exec_config: Mapping[str, Any] = field(default_factory=dict)
    """What a plan run records to be resumed by the command line (its tool source)."""
    max_concurrency: int | None = None
    """Tool calls of one plan run at once, unless the request asks for another limit."""
    budget: Budget | None = None
    """Limits of a plan run, unless the request gives its own."""
    max_runs: int = 16
    """Runs going on at once; past it `start` raises Busy."""
    runtime: Runtime | None = None
    """What the runs share: tool limits across runs, free slots in turn, the call
    cache. None: the service makes one over `tools` and `store`."""
    executor: Executor | None = None
    """Where every run's tool calls go (one `taskloom.ray.RayExecutor` shared by
    plans, agents and resumed runs); None: in this process. The caller opens it
    before the service starts and closes it after."""


class Busy(Exception):
    """As many runs as the service allows are going on (HTTP 429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"{limit} runs are going on, the most this server runs at once; retry later"
        )


class Conflict(Exception):
    """The run is not in a state to do that: resuming one that is going on, or ended (HTTP 409)."""


class NotLive(Exception):
    """The run is not going on in this server, so it cannot be cancelled (HTTP 409)."""

    def __init__(self, run_id: str, status: str) -> None:
        self.status = status
        super().__init__(f"run {run_id} is not going on here (it is {status})")


class Subscription:
    """A client's view of one live run: the records logged since it subscribed, then the end."""

    def __init__(self) -> None:
        self._records: collections.deque[EventRecord] = collections.deque()
        self._changed = anyio.Event()
        self.ended = False
        """Whether the run is over: once `next()` returns nothing, nothing more comes."""
        self.status = "running"
        """How the run ended, once it has."""

    def put(self, record: EventRecord) -> None:
        self._records.append(record)
        self._changed.set()

    def end(self, status: str) -> None:
        self.status, self.ended = status, True
        self._changed.set()

    async def next(self) -> list[EventRecord]:
        """The records logged since the last call, waiting for some; [] once the run is over."""
        while not self._records and not self.ended:
            await self._changed.wait()
            self._changed = anyio.Event()
        taken = list(self._records)
        self._records.clear()
        return taken


@dataclass(eq=False)
class _Live:
    """One run going on in this service."""

    id: RunId
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    subscriptions: list[Subscription] = field(default_factory=list)
    status: str = "running"


class RunService:
    """Starts, cancels and resumes runs in one task group, and fans their events out.

    Use it as an async context manager: leaving it cancels the runs going
    on (the store records them `cancelled`).
    """

    def __init__(self, options: ServiceOptions) -> None:
        """Serve runs as `options` say; nothing starts until the block is entered."""
        self.options = options
        self.store = options.store
        self.runtime = options.runtime or Runtime(tools=options.tools, store=options.store)
        """Every run of the service takes its slots from it: a tool's limits hold across runs."""
        self._live: dict[RunId, _Live] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def __aenter__(self) -> RunService:
        self._tg = await anyio.create_task_group().__aenter__()
        self._unsubscribe = self.store.subscribe(self._on_record)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()

    # -- what is going on ---------------------------------------------------------

    def is_live(self, run_id: str) -> bool:
        """Whether the run is going on in this service."""
        return run_id in self._live

    def subscribe(self, run_id: str) -> tuple[Subscription | None, Callable[[], None]]:
        """Hear the records a live run logs from now on.

        Returns:
            The subscription (None if the run is not going on here: everything
            it logged is in the store), and a function that ends it.

        """
        live = self._live.get(RunId(run_id))
        if live is None:
            return None, lambda: None
        sub = Subscription()
        live.subscriptions.append(sub)

        def unsubscribe() -> None:
            if sub in live.subscriptions:
                live.subscriptions.remove(sub)

        return sub, unsubscribe

    def _on_record(self, run_id: RunId, record: EventRecord, event: events.Event) -> None:
        live = self._live.get(run_id)
        if live is None or not live.subscriptions:
            return
        if isinstance(event, events.TaskAdded):  # the log keeps these in the task's row
            record = _with_task(record, event)
        for sub in live.subscriptions:
            sub.put(record)

    # -- starting ----------------------------------------------------------------

    async def start_plan(self, text: str, options: RunOptions) -> RunId:
        """Parse a plan, record it, and start running it.

        Returns:
            The run's id; the run is recorded when this returns.

        Raises:
            PlanError: if the plan does not parse or fit the tools, or has no tasks.
            Busy: if the service runs as many runs as it may.
            StoreError: if the store failed.

        """
        self._check_room()
        tools = self.options.tools
        plan = await anyio.to_thread.run_sync(lambda: Plan.parse(text, tools=tools))
        if not len(plan):
            raise PlanError("the plan has no tasks; write lines like 1. tool(arguments)")
        self._check_room()  # again: other requests may have started runs meanwhile
        limit = options.max_concurrency or self.options.max_concurrency
        budget = options.budget or self.options.budget
        config = {**self.options.exec_config, "max_concurrency": limit}
        first = str(next(iter(plan)))
        journal = self.store.journal(
            request=first if len(plan) == 1 else f"{first} (+{len(plan) - 1} more)",
            config=config,
            plan=plan,
        )
        await journal.flush()  # on disk before the id is handed out

        async def go() -> RunResult:
            return await execute(
                plan,
                tools=tools,
                runtime=self.runtime,
                max_concurrency=limit,
                journal=journal,
                budget=budget,
                executor=self.options.executor,
            )

        self._launch(journal.run_id, go)
        return journal.run_id

    async def start_question(self, question: str, options: RunOptions) -> RunId:
        """Record a question and start an agent answering it.

        Returns:
            The run's id; the run is recorded when this returns.

        Raises:
            UserError: if the question is empty.
            Busy: if the service runs as many runs as it may.
            TaskloomError: if the agent cannot be built (a bad model setting).

        """
        self._check_room()
        agent = self.options.agent(self.options.tools, options)
        agent.runtime = self.runtime  # its rounds share slots with every other run
        if self.options.executor is not None:
            agent.executor = self.options.executor
        journal = agent.journal(question)
        await journal.flush()

        async def go() -> Any:
            return await agent.run(question, journal=journal)

        self._launch(journal.run_id, go)
        return journal.run_id

    async def resume(self, run_id: str) -> RunId:
        """Go on with a run whose process stopped (the server was killed, say).

        Returns:
            The run's full id; it is going on (`is_live`) when this returns.

        Raises:
            UserError: if there is no such run, or its tools or model cannot be
                found again.
            Conflict: if it is still going on (here or in another process), or has ended.
            Busy: if the service runs as many runs as it may.
            StoreError: if the store failed.

        """
        record = await anyio.to_thread.run_sync(self.store.load, run_id)
        if record.id in self._live:
            raise Conflict(f"run {record.id} is going on already")
        if record.status == "running":  # and not here: its process is alive
            where = f" (process {record.owner})" if record.owner else ""
            raise Conflict(f"run {record.id} is still going on elsewhere{where}")
        if not record.unfinished:
            raise Conflict(f"run {record.id} has ended ({record.status}); nothing to resume")
        self._check_room()
        store, tools = self.store, self.options.tools
        go: Callable[[], Awaitable[Any]]
        if record.kind == "agent":
            from taskloom.agent import Agent

            agent = Agent.from_store(store, record.id, tools=tools, model=self.options.model)
            agent.runtime = self.runtime
            if self.options.executor is not None:
                agent.executor = self.options.executor

            def go() -> Awaitable[Any]:
                return agent.resume(record.id)
        else:
            executor = self.options.executor

            def go() -> Awaitable[Any]:
                return resume(record.id, store=store, tools=tools, executor=executor)

        self._launch(record.id, go)
        return record.id

    def _check_room(self) -> None:
        if len(self._live) >= self.options.max_runs:
            raise Busy(self.options.max_runs)

    def _launch(self, run_id: RunId, go: Callable[[], Awaitable[Any]]) -> None:
        assert self._tg is not None, "the service is not running (use it as a context manager)"
        live = self._live[run_id] = _Live(run_id)
        self._tg.start_soon(self._drive, live, go, name=f"run {run_id}")

    async def _drive(self, live: _Live, go: Callable[[], Awaitable[Any]]) -> None:
        try:
            with live.scope:
                result = await go()
                live.status = str(result.status)
            if live.scope.cancelled_caught:
                live.status = "cancelled"
        except Exception:  # recorded by the run's journal; the server goes on serving others
            live.status = "failed"
            _log.exception("run %s failed", live.id)
        finally:
            del self._live[live.id]
            live.done.set()
            for sub in live.subscriptions:
                sub.end(live.status)

    # -- stopping ----------------------------------------------------------------

    async def cancel(self, run_id: str) -> str:
        """Cancel a run going on here; wait a little for it to stop.

        Returns:
            Its status then: "cancelled" (or how it ended, if it ended first),
            or "cancelling" if its tools take longer to stop.

        Raises:
            UserError: if there is no such run.
            NotLive: if the run is not going on here.

        """
        full = await anyio.to_thread.run_sync(self.store.find, run_id)
        live = self._live.get(full)
        if live is None:
            record = await anyio.to_thread.run_sync(self.store.load, full)
            raise NotLive(full, record.status)
        live.scope.cancel()
        with anyio.move_on_after(_CANCEL_WAIT_S):
            await live.done.wait()
            return live.status
        return "cancelling"


def _with_task(record: EventRecord, event: events.TaskAdded) -> EventRecord:
    """A task_added record with the task's call beside it, as a client needs to draw it."""
    return EventRecord(
        seq=record.seq,
        kind=record.kind,
        task_id=record.task_id,
        at=record.at,
        data=task_fields(event.task),
    )
