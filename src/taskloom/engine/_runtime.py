"""The Runtime: what many runs share, and the fair hand-out of their slots.

A run opened alone keeps its limits to itself: a tool's `max_concurrency`
and `rate_limit` count only that run's calls. Runs opened on one `Runtime`
count together. The runtime keeps, by tool name, how many calls run now and
when the next call may start; and an optional limit on every call of every
run at once.

When slots are scarce, each free one goes to the waiting run that holds the
fewest slots for its weight (a run of weight 2 is due twice the slots of a
run of weight 1); runs that hold as many take turns (round robin). A run's
own order (longest remaining path first, or FIFO) picks which of its tasks
starts. So a 3-task run opened while a 10,000-task run holds every slot
takes the next three slots that free, not the ones after the big run's
queue; and runs that stay busy settle at shares of the slots in proportion
to their weights.

Each run keeps its ready tasks in one queue per tool: a task whose tool is at
its limit does not hold back the run's tasks of other tools, and choosing
a run's next task costs one look per tool it uses.

A run with no limit to share (the runtime has none, nor have its tools)
keeps the fast path of a run alone and shares only the rate limits.

The slots are handed out in the event-loop turn in which one frees: the run
whose task settled dispatches (`Run._dispatch`), and that dispatch serves
every waiting run. A run's slot is given back when its task settles or is
cancelled (as a run alone does), not when a cancelled thread ends.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import AsyncIterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from taskloom.engine._node import Node
from taskloom.engine._stats import DurationStats
from taskloom.engine.result import TaskStatus
from taskloom.errors import UserError

if TYPE_CHECKING:
    from taskloom._ids import TaskId
    from taskloom.engine._budget import Budget
    from taskloom.engine._execute import ToolsLike
    from taskloom.engine._journal import Journal
    from taskloom.engine._scheduler import EventListener, Order, Run
    from taskloom.engine.result import RunResult
    from taskloom.llm import ChatModel
    from taskloom.plan import Plan, Task
    from taskloom.store import CallCache, Store
    from taskloom.tools import Tool

__all__ = ["Runtime", "Share", "check_weight"]

_Entry = tuple[float, int, Node]
"""A ready task in a queue: its key (minus its remaining path, or 0), its ticket, the task."""


def check_weight(weight: float) -> float:
    """The weight of a run, checked.

    Returns:
        `weight` as a float.

    Raises:
        UserError: unless it is a finite number above 0.

    """
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not math.isfinite(weight)
        or weight <= 0
    ):
        raise UserError(f"weight must be a number above 0, got {weight!r}")
    return float(weight)


class Runtime:
    """What runs share: tools and their limits, the call cache, the store, the model.

    Runs opened on one runtime share every limit: a tool's `max_concurrency`
    and `rate_limit` count the calls of all of them (by tool name), and
    `max_concurrency` here bounds the calls of all runs together. A free
    slot goes to the waiting run that holds the fewest for its `weight`
    (equals take turns), so a big run cannot starve a small one. A run
    without a runtime (plain `execute()`) has a private one, as fast as
    before.

        runtime = taskloom.Runtime(tools=[search, fetch], max_concurrency=8)
        result = await runtime.execute(plan)                   # like taskloom.execute
        async with runtime.open_run(weight=2) as run: ...      # like taskloom.open_run
        result = await taskloom.execute(plan, runtime=runtime)  # the same
        answer = await taskloom.Agent(runtime=runtime).run("question")

    An `Agent` on a runtime takes from it what it was not given: its tools,
    model, store and call cache; every round of every request then takes its
    slots from the runtime. `run_batch` puts its requests on one runtime,
    and so does the MCP server. The embedded model answers its callers one
    at a time in the order they asked (FIFO), so the planner and joiner
    calls of all runs take turns on it.

    A server makes one runtime when it starts, over the tools it serves,
    its store and its model, and opens every request on it:

        runtime = taskloom.Runtime(tools=tools, store=store, model=model,
                                   max_concurrency=limit)
        # a plan request (journal: durable, resumable like any run)
        journal = store.journal(request=..., config=..., plan=plan)
        result = await runtime.execute(plan, on_event=send, journal=journal)
        # a question: the agent's tools, model and store are the runtime's
        result = await taskloom.Agent(runtime=runtime, on_event=send).run(question)
        # an agent built elsewhere joins with `agent.runtime = runtime`

    `in_flight`, `in_flight_of(tool)`, `open_runs` and `waiting_runs` tell
    how loaded it is (a status page, a 429 when too many runs wait).

    A runtime may be made outside an event loop; its runs must all live on
    one loop.
    """

    def __init__(
        self,
        *,
        tools: ToolsLike = (),
        max_concurrency: int | None = None,
        cache: CallCache | None = None,
        store: Store | None = None,
        model: ChatModel | None = None,
        stats: DurationStats | None = None,
    ) -> None:
        """Set the runtime up; nothing starts until a run is opened on it.

        Args:
            tools: the tools of runs that name none, and of agents on it.
            max_concurrency: tool calls of all its runs at once; None for no
                limit beyond the tools' own.
            cache: answers repeated calls of cacheable tools, for every run
                on it (and joins identical calls in flight across runs).
                None: runs call their tools directly; agents keep a cache
                per request, as without a runtime.
            store: where agents on it record their requests.
            model: the model of agents on it that were given none.
            stats: tool durations shared by its runs, for ordering; a new
                one by default.

        Raises:
            UserError: for a limit that is not a whole number of at least 1,
                or bad tools.

        """
        from taskloom.engine._execute import as_tools

        if max_concurrency is not None and (
            type(max_concurrency) is not int or max_concurrency < 1
        ):
            raise UserError(
                f"max_concurrency must be a whole number of at least 1, got {max_concurrency!r}"
            )
        self.tools: Mapping[str, Tool] = as_tools(tools)
        """The tools of runs that name none, by name."""
        self.max_concurrency = max_concurrency
        """Tool calls of all runs at once; None: only the tools' own limits."""
        self.cache = cache
        """The call cache of its runs, if any."""
        self.store = store
        """Where agents on it record their requests, if anywhere."""
        self.model = model
        """The model of agents on it that were given none."""
        self.stats = stats or DurationStats()
        """Tool durations seen by its runs."""
        self._running = 0
        self._per_tool: dict[str, int] = {}
        self._next_call: dict[str, float] = {}  # rate limits: when each tool may next start
        self._rotation: deque[Share] = deque()  # runs with ready tasks, in turn
        self._blocked: list[Share] = []  # runs whose ready tasks all wait on a full tool
        self._shares: set[Share] = set()
        self._pumping = False
        self._again = False

    # -- reading ----------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Tool calls of its runs that hold a slot now (runs with limits to share)."""
        return self._running

    def in_flight_of(self, tool: str) -> int:
        """Calls of the tool named `tool` that hold a slot now, across its runs."""
        return self._per_tool.get(tool, 0)

    @property
    def open_runs(self) -> int:
        """Runs open on it now that take slots from it."""
        return len(self._shares)

    @property
    def waiting_runs(self) -> int:
        """Runs with ready tasks that wait for a slot."""
        return len(self._rotation) + len(self._blocked)

    # -- opening runs -------------------------------------------------------------

    def open_run(
        self,
        *,
        tools: ToolsLike | None = None,
        weight: float = 1.0,
        max_concurrency: int | None = None,
        run_id: str | None = None,
        on_event: EventListener | None = None,
        order: Order = "critical_path",
        earlier: Mapping[TaskId, Any] | None = None,
        journal: Journal | None = None,
        budget: Budget | None = None,
    ) -> AbstractAsyncContextManager[Run]:
        """Open a run on this runtime: `taskloom.open_run(..., runtime=self)`.

        Args:
            tools: its tools; the runtime's by default.
            weight: its share of scarce slots (2: twice the slots of a run
                of weight 1).
            max_concurrency: the run's own limit, within the runtime's.
            run_id: see `taskloom.open_run`.
            on_event: see `taskloom.open_run`.
            order: see `taskloom.open_run`.
            earlier: see `taskloom.open_run`.
            journal: see `taskloom.open_run`.
            budget: see `taskloom.open_run`.

        Returns:
            The context manager `taskloom.open_run` returns; it yields the Run.

        """
        from taskloom.engine._execute import open_run

        return open_run(
            tools=tools,
            runtime=self,
            weight=weight,
            max_concurrency=max_concurrency,
            run_id=run_id,
            on_event=on_event,
            order=order,
            earlier=earlier,
            journal=journal,
            budget=budget,
        )

    async def execute(
        self,
        plan: Plan | Sequence[Task] | AsyncIterable[Task],
        *,
        tools: ToolsLike | None = None,
        weight: float = 1.0,
        max_concurrency: int | None = None,
        run_id: str | None = None,
        on_event: EventListener | None = None,
        order: Order = "critical_path",
        journal: Journal | None = None,
        budget: Budget | None = None,
    ) -> RunResult:
        """Run a plan on this runtime: `taskloom.execute(plan, runtime=self)`.

        Args:
            plan: the tasks to run (see `taskloom.execute`).
            tools: its tools; the runtime's by default.
            weight: its share of scarce slots.
            max_concurrency: the run's own limit, within the runtime's.
            run_id: see `taskloom.execute`.
            on_event: see `taskloom.execute`.
            order: see `taskloom.execute`.
            journal: see `taskloom.execute`.
            budget: see `taskloom.execute`.

        Returns:
            The RunResult.

        Raises:
            PlanError: if a complete plan does not fit the tools.
            UserError: for bad options or tools.
            StoreError: if the journal could not record the run.

        """
        from taskloom.engine._execute import execute

        return await execute(
            plan,
            tools=tools,
            runtime=self,
            weight=weight,
            max_concurrency=max_concurrency,
            run_id=run_id,
            on_event=on_event,
            order=order,
            journal=journal,
            budget=budget,
        )

    # -- for open_run ---------------------------------------------------------------

    def tools_for(self, tools: ToolsLike | None) -> Mapping[str, Tool] | ToolsLike:
        """The tools of a run opened on it: `tools`, or its own; through its cache if any.

        Raises:
            UserError: if neither the run nor the runtime has tools.

        """
        from taskloom.engine._execute import as_tools

        if tools is None:
            if not self.tools:
                raise UserError("the run names no tools= and its Runtime holds none")
            tools = self.tools
        if self.cache is None:
            return tools
        return {t.name: t for t in self.cache.wrap(as_tools(tools).values())}

    def seat(self, run: Run, weight: float) -> None:
        """Make `run` take its slots and rate limits from this runtime.

        A run with nothing to share (no limit here, none on its tools) keeps
        the fast path of a run alone and shares only the rate limits.
        """
        limited = self.max_concurrency is not None or any(
            t.policy.max_concurrency is not None for t in run._tools.values()
        )
        share = Share(self, run, check_weight(weight)) if limited else None
        run._share_with(share, self._next_call)

    # -- handing out slots ---------------------------------------------------------

    def _enter(self, share: Share) -> None:
        """The run has new ready tasks: it joins the rotation, at the back, if not in it."""
        if share.blocked:
            share.blocked = False
            self._blocked.remove(share)
        elif share.waiting:
            return
        share.waiting = True
        self._rotation.append(share)

    def _out(self, share: Share) -> None:
        """The run has no ready task that may start: out of the rotation."""
        self._rotation.remove(share)
        share.waiting = False

    def _leave(self, share: Share) -> None:
        self._shares.discard(share)
        if share.blocked:
            self._blocked.remove(share)
        elif share.waiting:
            self._rotation.remove(share)
        share.waiting = share.blocked = False

    def _unblock(self, freed: Share | None = None, tool: str | None = None) -> None:
        """A slot came free: runs that waited for it go back into the rotation.

        Those are the run that freed it (its own limit may have held it
        back) and the runs waiting on its tool; all blocked runs when
        `freed` is None (a run left with its slots).
        """
        still = []
        for share in self._blocked:
            if freed is None or share is freed or tool in share.full:
                share.blocked = False
                share.waiting = True
                self._rotation.append(share)
            else:
                still.append(share)
        self._blocked = still

    def _has_room(self, tool: Tool) -> bool:
        limit = tool.policy.max_concurrency
        return limit is None or self._per_tool.get(tool.name, 0) < limit

    def pump(self) -> None:
        """Hand free slots to waiting runs until no slot or no startable task is left."""
        if self._pumping:  # a start that settled something: the outer loop goes on
            self._again = True
            return
        self._pumping = True
        try:
            again = True
            while again:
                self._again = False
                self._grant()
                again = self._again
        finally:
            self._pumping = False

    def _grant(self) -> None:
        rotation, limit = self._rotation, self.max_concurrency
        while rotation and (limit is None or self._running < limit):
            share = rotation[0] if len(rotation) == 1 else self._neediest()
            node = share.take()
            if node is None:
                self._out(share)
                if share.has_queued:  # its tools are full: it waits for one to free
                    share.blocked = True
                    self._blocked.append(share)
                continue
            share.run._start(node)
            if node.status is TaskStatus.RUNNING:
                self._running += 1
                name = node.tool.name
                self._per_tool[name] = self._per_tool.get(name, 0) + 1
            if share.left or not share.waiting:
                continue  # its start ran out a budget and ended the run
            if not share.has_queued:
                self._out(share)
            elif len(rotation) > 1:  # runs as needy as it go first next time
                if rotation[0] is share:
                    rotation.rotate(-1)
                else:
                    rotation.remove(share)
                    rotation.append(share)

    def _neediest(self) -> Share:
        """The waiting run holding the fewest slots for its weight; the first in turn of those."""
        best = self._rotation[0]
        level = best.run._running / best.weight
        for share in self._rotation:
            mine = share.run._running / share.weight
            if mine < level:
                best, level = share, mine
        return best


class Share:
    """One run's place on a Runtime: its weight, its ready tasks by tool."""

    __slots__ = (
        "_by_tool",
        "_keyed_by",
        "blocked",
        "full",
        "left",
        "run",
        "runtime",
        "waiting",
        "weight",
    )

    def __init__(self, runtime: Runtime, run: Run, weight: float) -> None:
        self.runtime = runtime
        self.run = run
        self.weight = weight
        """Its share of scarce slots, against other runs' weights."""
        self.waiting = False
        """Whether it is in the runtime's rotation."""
        self.blocked = False
        """Whether it is among the runtime's runs whose ready tasks all wait on a full tool."""
        self.full: set[str] = set()
        """The tools whose limit held back its first ready task at its last look."""
        self.left = False
        """Whether the run has ended: it holds no slot and takes none."""
        self._by_tool: dict[str, list[_Entry]] = {}
        self._keyed_by: Mapping[Any, float] | None = None
        runtime._shares.add(self)

    @property
    def has_queued(self) -> bool:
        """Whether it may hold ready tasks (some may have been cancelled since)."""
        return bool(self._by_tool)

    def dispatch(self) -> None:
        """Take the run's newly ready tasks into its queues, then hand out free slots."""
        if self.left:
            return
        run = self.run
        # While tasks are added in bulk, they are ordered over the whole graph first.
        if run._queue and not run._holding and run._tg is not None:
            self._take_in()
        self.runtime.pump()

    def _take_in(self) -> None:
        run = self.run
        if not run._fifo:
            if run._ranks is None:
                run._order_queue()
            if run._ranks is not self._keyed_by:  # the graph changed: re-key what waits
                self._rekey(run._ranks)
        by_tool = self._by_tool
        for entry in run._queue:
            name = entry[2].tool.name
            heap = by_tool.get(name)
            if heap is None:
                by_tool[name] = [entry]
            else:
                heapq.heappush(heap, entry)
        run._queue = []
        self.runtime._enter(self)

    def _rekey(self, ranks: Mapping[Any, float] | None) -> None:
        self._keyed_by = ranks
        if ranks is None:
            return
        for heap in self._by_tool.values():
            heap[:] = [(-ranks.get(n.task.id, 0.0), t, n) for _, t, n in heap]
            heapq.heapify(heap)

    def take(self) -> Node | None:
        """Remove and return the run's first ready task that may start now, if any."""
        run, full = self.run, self.full
        full.clear()
        if run._limit is not None and run._running >= run._limit:
            return None  # only its own calls ending can let it start more
        runtime = self.runtime
        best: list[_Entry] | None = None
        best_name = ""
        empty: list[str] = []
        for name, heap in self._by_tool.items():
            while heap:
                _, ticket, node = heap[0]
                if node.queued == ticket and node.status is TaskStatus.READY:
                    break
                heapq.heappop(heap)  # cancelled or rewritten since it was queued
            if not heap:
                empty.append(name)
            elif not runtime._has_room(heap[0][2].tool):
                full.add(heap[0][2].tool.name)
            elif best is None or (heap[0][0], heap[0][1]) < (best[0][0], best[0][1]):
                best, best_name = heap, name
        for name in empty:
            del self._by_tool[name]
        if best is None:
            return None
        node = heapq.heappop(best)[2]
        if not best:
            del self._by_tool[best_name]
        return node

    def release(self, node: Node) -> None:
        """Give back the slot of the run's task `node`, which settled or was cancelled."""
        if self.left:
            return
        runtime = self.runtime
        runtime._running -= 1
        runtime._per_tool[node.tool.name] -= 1
        if runtime._blocked:
            runtime._unblock(self, node.tool.name)

    def leave(self) -> None:
        """The run ended: it leaves the rotation, and the slots it freed go to the others."""
        if self.left:
            return
        runtime = self.runtime
        runtime._leave(self)
        # Slots still held (a run torn down by a crash) are given back.
        run = self.run
        runtime._running -= run._running
        for name, count in run._per_tool.items():
            runtime._per_tool[name] -= count
        self.left = True
        self._by_tool.clear()
        if runtime._blocked:
            runtime._unblock()
        runtime.pump()
