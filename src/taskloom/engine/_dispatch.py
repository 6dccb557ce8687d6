"""Dispatching: which ready task takes a free slot, and starting it.

With no limit anywhere, every ready task starts at once, a burst of them in
one loop (`_start_all`). With limits, ready tasks wait in a queue ordered by
the longest remaining critical path (or first come); a run on a shared
Runtime lets the runtime hand out the slots (`engine/_runtime.py`). A started
task is an asyncio task of the run's own (see `engine/_scheduler.py`), which
`_host_done` sees end.

`Dispatcher` is part of `Run` (its base): the methods are the run's own.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from taskloom._ids import TaskId
from taskloom.engine._budget import Budget
from taskloom.engine._gc import before_burst
from taskloom.engine._node import Node
from taskloom.engine._stats import DurationStats
from taskloom.engine.result import TaskStatus
from taskloom.plan import Plan

if TYPE_CHECKING:
    from taskloom.engine._runtime import Share

__all__ = ["Dispatcher"]


class Dispatcher:
    """The dispatching half of `Run`: queue, slots, starting tasks and seeing them end."""

    # Set by Run.__init__ (declared here for the type checker).
    _share: Share | None
    _holding: bool
    _tg: anyio.abc.TaskGroup | None
    _queue: list[tuple[float, int, Node]]
    _unlimited: bool
    _budget: Budget | None
    _fifo: bool
    _ranks: dict[TaskId, float] | None
    _limit: int | None
    _running: int
    _per_tool: dict[str, int]
    _plan: Plan
    _nodes: dict[TaskId, Node]
    _stats: DurationStats
    _hosts: dict[asyncio.Task[None], Node]
    _calls: int
    _deadline_at: float | None
    loop: asyncio.AbstractEventLoop | None
    crash: BaseException | None
    exhausted: str | None

    if TYPE_CHECKING:

        def _run_task(self, node: Node) -> Coroutine[Any, Any, None]: ...
        def _cancel_node(self, node: Node, reason: str) -> None: ...
        def _check_done(self) -> None: ...
        def exceed(self, budget: str) -> None: ...

    def _dispatch(self) -> None:
        """Start queued tasks while there are free slots."""
        if self._share is not None:  # on a shared Runtime: it hands the slots out
            self._share.dispatch()
            return
        if self._holding or self._tg is None or not self._queue:
            return
        if self._unlimited:
            queue, self._queue = self._queue, []
            before_burst(len(queue))
            if self._budget is None:
                self._start_all(queue)
                return
            for _, ticket, node in queue:
                if node.queued == ticket and node.status is TaskStatus.READY:
                    self._start(node)
            return
        if not self._fifo and self._ranks is None:
            self._order_queue()
        blocked: list[tuple[float, int, Node]] = []
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
            # A map's elements come after it in the plan but lead into it.
            after = max((ranks.get(d.task.id, 0.0) for d in node.dependents), default=0.0)
            rank = ranks[task.id] = self._stats.estimate(node.tool.name) + after
            for element in node.elements or ():
                ranks[element.task.id] = rank
        return ranks

    def _start(self, node: Node) -> None:
        assert self._tg is not None
        if self._budget is not None and not self._admit(node):
            return
        node.status = TaskStatus.RUNNING
        node.queued = 0
        self._running += 1
        if not self._unlimited:
            name = node.tool.name
            self._per_tool[name] = self._per_tool.get(name, 0) + 1
        assert self.loop is not None
        host = node.host = self.loop.create_task(self._run_task(node), name=node.task.id)
        self._hosts[host] = node
        host.add_done_callback(self._host_done)

    def _start_all(self, queue: list[tuple[float, int, Node]]) -> None:
        """`_start` for every task still waiting in `queue`, with no limit and no budget.

        A burst (a fan-out's 10,000 dependents) starts in one loop, with what
        `_start` looks up for each task looked up once.
        """
        assert self.loop is not None
        ready, running = TaskStatus.READY, TaskStatus.RUNNING
        create_task, run_task = self.loop.create_task, self._run_task
        hosts, host_done = self._hosts, self._host_done
        for _, ticket, node in queue:
            if node.queued == ticket and node.status is ready:
                node.status = running
                node.queued = 0
                self._running += 1
                host = node.host = create_task(run_task(node), name=node.task.id)
                hosts[host] = node
                host.add_done_callback(host_done)

    def _host_done(self, host: asyncio.Task[None]) -> None:
        node = self._hosts.pop(host)
        node.host = None
        if host.cancelled():
            if not node.status.is_final:  # cancelled by someone other than the run
                self._cancel_node(node, "its asyncio task was cancelled")
                self._dispatch()
                self._check_done()
            return
        crash = host.exception()
        if crash is not None:
            self._crashed(crash)

    def _crashed(self, crash: BaseException) -> None:
        """A bug or a raising listener: the run stops and open_run raises the first such error."""
        if self.crash is None:
            self.crash = crash
            assert self._tg is not None
            self._tg.cancel_scope.cancel()

    async def _hosts_ended(self) -> None:
        """Wait until every task host has returned (after the run finished or was cancelled)."""
        while self._hosts:
            await asyncio.wait(list(self._hosts))

    def _admit(self, node: Node) -> bool:
        """Whether the budget lets this task start now; if not, settle it."""
        budget = self._budget
        assert budget is not None
        if budget.tool_calls is not None and self._calls >= budget.tool_calls:
            self.exceed("tool_calls")
            return False
        if self._deadline_at is not None:
            expected = self._stats.observed(node.tool.name)
            if expected is not None and time.monotonic() + expected > self._deadline_at:
                self.exhausted = self.exhausted or "deadline"
                self._cancel_node(
                    node, f"its expected {expected:.3g}s would not end before the deadline"
                )
                self._check_done()
                return False
        self._calls += 1
        return True
