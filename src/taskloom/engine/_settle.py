"""Settling: a task reaches its final status, and what follows from it.

A task that finishes makes its dependents ready in the same call (no
barrier: they are dispatched before control returns to the loop); one that
fails, is skipped or cancelled settles its dependents the same way. The run
ends when it is closed and no task is open (`_check_done`).

`Settler` is part of `Run` (its base): the methods are the run's own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import anyio

from taskloom._ids import TaskId
from taskloom.engine import events as ev
from taskloom.engine._branch import part_unfinished
from taskloom.engine._node import Node
from taskloom.engine._stats import DurationStats
from taskloom.engine.result import RunStatus, TaskStatus
from taskloom.errors import (
    ConditionFalse,
    DependencyFailed,
    RunError,
    TaskCancelled,
    TaskInterrupted,
)

if TYPE_CHECKING:
    from taskloom.engine._executor import Executor
    from taskloom.engine._runtime import Share
    from taskloom.engine._scheduler import Run

__all__ = ["Settler"]


class Settler:
    """The settling half of `Run`: final statuses, their dependents, and the run's end."""

    # Set by Run.__init__ (declared here for the type checker).
    _open: int
    _running: int
    _unlimited: bool
    _per_tool: dict[str, int]
    _share: Share | None
    _stats: DurationStats
    _closed: bool
    _done: anyio.Event
    _nodes: dict[TaskId, Node]
    _deadline_scope: anyio.CancelScope | None
    _executor: Executor | None
    finished_at: float | None

    if TYPE_CHECKING:

        def _emit(self, kind: type[ev.Event], **fields: Any) -> None: ...
        def _make_ready(self, node: Node) -> None: ...
        def _dispatch(self) -> None: ...
        def _status(self) -> RunStatus: ...

    def _finish(self, node: Node, output: Any) -> None:
        node.output = output
        node.status = TaskStatus.DONE
        self._emit(ev.TaskFinished, task_id=node.task.id, output=output)
        if self._unlimited:  # `_release`, inlined: no slots to give back
            if node.finished_at is None:
                node.finished_at = time.monotonic()
            self._running -= 1
            self._open -= 1
        else:
            self._release(node)
        assert node.started_at is not None and node.finished_at is not None
        self._stats.observe(node.tool.name, node.finished_at - node.started_at)
        pending = TaskStatus.PENDING
        for child in node.dependents:
            if child.status is pending:
                child.waiting -= 1
                if child.waiting == 0:
                    self._make_ready(child)
        self._dispatch()
        self._check_done()

    def _fail(self, node: Node, error: RunError) -> None:
        node.error = error
        interrupted = type(error) is TaskInterrupted  # its executor's worker died in the call
        node.status = TaskStatus.INTERRUPTED if interrupted else TaskStatus.FAILED
        self._emit(ev.TaskFailed, task_id=node.task.id, error=error)
        self._release(node)
        self._skip_dependents(node)
        self._dispatch()
        self._check_done()

    def _skip(self, node: Node, because: Node) -> None:
        error: DependencyFailed | ConditionFalse
        if isinstance(because.error, ConditionFalse):  # the branch was not taken: no failure
            error = ConditionFalse(node.task.id, because.error.guarded, because.error.condition)
        else:
            cause = str(because.error) if because.error else str(because.status)
            error = DependencyFailed(node.task.id, because.task.id, cause)
        node.error = error
        node.status = TaskStatus.SKIPPED
        node.finished_at = time.monotonic()
        self._open -= 1
        self._emit(ev.TaskSkipped, task_id=node.task.id, error=error)
        self._skip_dependents(node)

    def _skip_dependents(self, node: Node) -> None:
        not_taken = isinstance(node.error, ConditionFalse)
        for child in node.dependents:
            if child.status.is_final:
                continue
            if child.elements is not None:  # `node` is an element of the map (or sub-plan) `child`
                part_unfinished(cast("Run", self), child, node)
            elif not_taken and child.task.accepts_skipped(node.task.id):
                if child.status is TaskStatus.PENDING:  # `$N?`: None stands in for the output
                    child.waiting -= 1
                    if child.waiting == 0:
                        self._make_ready(child)
            else:
                self._skip(child, node)

    def _settle_unrun(self, node: Node, error: RunError) -> None:
        """Settle a task that never started: skipped by a condition, or failed before any call."""
        skipped = isinstance(error, ConditionFalse)
        node.error = error
        node.status = TaskStatus.SKIPPED if skipped else TaskStatus.FAILED
        node.finished_at = time.monotonic()
        node.queued = 0
        self._open -= 1
        self._emit(ev.TaskSkipped if skipped else ev.TaskFailed, task_id=node.task.id, error=error)
        self._skip_dependents(node)

    def _cancel_node(self, node: Node, reason: str) -> None:
        was_running = node.status is TaskStatus.RUNNING
        abandoned = was_running and node.tool.in_thread and self._executor is None
        error = TaskCancelled(node.task.id, reason, thread_abandoned=abandoned)
        node.error = error
        node.status = TaskStatus.CANCELLED
        node.queued = 0
        if was_running:
            if node.host is not None:  # None: the call is settling itself
                node.host.cancel()
            self._release(node)
        else:
            node.finished_at = time.monotonic()
            self._open -= 1
        self._emit(ev.TaskCancelledEvent, task_id=node.task.id, error=error)
        for child in node.dependents:
            if not child.status.is_final:
                self._cancel_node(child, f"task {node.task.id} was cancelled")

    def _release(self, node: Node) -> None:
        """Give back a running task's slots and count it as settled."""
        if node.finished_at is None or node.status is TaskStatus.CANCELLED:
            # Not when a worker thread recorded when the call ended: the time the
            # loop took to read its result is not the tool's.
            node.finished_at = time.monotonic()
        self._running -= 1
        if not self._unlimited:
            self._per_tool[node.tool.name] -= 1
            if self._share is not None:
                self._share.release(node)
        self._open -= 1

    def _check_done(self) -> None:
        if self._closed and self._open == 0 and not self._done.is_set():
            self.finished_at = max(
                (n.finished_at for n in self._nodes.values() if n.finished_at is not None),
                default=time.monotonic(),
            )
            if self._deadline_scope is not None:
                self._deadline_scope.cancel()
            self._done.set()  # first: a listener that raises cannot keep the run unfinished
            if self._share is not None:
                self._share.leave()
            self._emit(ev.RunFinished, status=str(self._status()))
