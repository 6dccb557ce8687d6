"""A map's elements started the moment their list exists, their events told after.

The last of a map's 10,000 elements starts once every element before it has
been added, queued and started, one after another in the loop turns after the
list arrived; an element with a long call that starts late adds that much to
the makespan. In the common case nothing has to wait between an element's
list and its call: the run has no limit, budget or executor to ask, the tool
is async with no timeout, retries or rate limit, no journal must write the
start first (the tool is idempotent, or there is no journal), and the map has
no condition. Then `launch` does only what must precede the calls:

- every element's arguments are resolved and validated at once, one pass per
  parameter over all the items (`Tool.validate_many`); if some element's
  arguments are bad, the map takes the ordinary path, which fails just that
  element with its own BadArguments;
- each element is added to the plan and the run, as running, and its call is
  started (an asyncio task of the run's, as `Dispatcher._start` makes).

Its events, `task_added`, `task_ready` and `task_started` of every element,
are then emitted by `flush`, scheduled to run after the elements' first steps,
with the times at which they happened (added and ready: when the list
arrived; started: when its call began). Nothing can see the difference: any
event emitted meanwhile, by an element that finished at once, a cancellation
or anything else, flushes them first (`Run._emit`), and so do `Run.events` and
`Run.result()`; the run's state (statuses, counts, hosts) is up to date from
the start. So the events are the ordinary path's, in its order: every
element's added and ready, then each start as it happened.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from taskloom._ids import TaskId
from taskloom.engine import events as ev
from taskloom.engine._node import Node
from taskloom.engine.result import TaskStatus
from taskloom.plan._subplan import SubplanTool

if TYPE_CHECKING:
    from taskloom.engine._branch import Columns, Elements
    from taskloom.engine._scheduler import Run

__all__ = ["Launch", "flush", "launch", "launchable"]

_UNBOUND: dict[str, Any] = {}
"""A launched element's `Node.bound` until `flush` makes it: nothing reads it before
(it is read to resolve arguments, done already, and by a rewrite, refused once started)."""


class Launch:
    """The elements of one map that `launch` started and whose events are still to come."""

    __slots__ = (
        "added",
        "arguments",
        "at",
        "columns",
        "dependencies",
        "make",
        "nodes",
        "pending",
        "started",
    )

    def __init__(
        self,
        at: float,
        nodes: list[Node],
        arguments: list[dict[str, Any]],
        columns: Columns,
        make: Elements,
        dependencies: tuple[TaskId, ...],
    ) -> None:
        self.at = at
        """When the elements were added (their list arrived)."""
        self.nodes = nodes
        """The elements, in order."""
        self.arguments = arguments
        """Each element's validated arguments, as its call gets them."""
        self.columns = columns
        """Each element's arguments before validation, by parameter (see `Columns`)."""
        self.make = make
        """Makes each element's arguments as the map's task binds them (`Node.bound`)."""
        self.dependencies = dependencies
        """The ids of the tasks every element depends on, sorted."""
        self.pending = True
        """Its events are still to be emitted: an element that starts leaves its
        `task_started` to `flush`."""
        self.added = 0
        """How many of the elements' `task_added` and `task_ready` `flush` emitted
        (two per element)."""
        self.started = 0
        """How many elements `flush` went through for their `task_started`."""


def launchable(run: Run, node: Node) -> bool:
    """Whether the elements of map `node`, whose inputs are all done, may be launched.

    That is when each element would be started in the turn it is added and
    called with nothing to wait for, as `_run_task`'s inlined call does.
    """
    tool = node.tool
    return (
        run._unlimited
        and run._budget is None
        and run._share is None
        and run._executor is None
        and not run._holding
        and run._tg is not None
        and not run._recorded
        and node.task.guard is None
        and tool.is_async
        and tool.policy.simple
        and (run._before_call is None or tool.policy.idempotent)
        and type(tool) is not SubplanTool
    )


def launch(
    run: Run,
    node: Node,
    ids: list[TaskId],
    make: Elements,
    dependencies: tuple[TaskId, ...],
) -> bool:
    """Add the elements of map `node` and start their calls; their events come in `flush`.

    Returns:
        False, having changed nothing, when some element's arguments cannot be
        resolved or are bad: the ordinary path then adds the elements and
        fails those with their own error.

    """
    columns = make.columns(run._outputs, len(ids))
    if columns is None:
        return False
    arguments = node.tool.validate_many(columns.varying, columns.same, len(ids))
    if arguments is None:
        return False
    if run._launching is not None:
        flush(run)  # another map's, launched in this turn: its events come first
    elements = node.elements
    assert elements is not None and run.loop is not None
    batch = Launch(time.monotonic(), elements, arguments, columns, make, dependencies)
    run._launching = batch
    tool, tasks, nodes = node.tool, run._plan._tasks, run._nodes
    create_task, run_task = run.loop.create_task, run._run_task
    hosts, host_done = run._hosts, run._host_done
    running = TaskStatus.RUNNING
    for index, task_id in enumerate(ids):
        task = make.task(index, task_id)
        tasks[task_id] = task  # its id was checked free and its references are the map's
        element = nodes[task_id] = Node(task, tool, _UNBOUND, gate=False)
        element.status = running
        element.dependents.append(node)
        elements.append(element)
        host = element.host = create_task(run_task(element, arguments[index], batch), name=task_id)
        hosts[host] = element
        host.add_done_callback(host_done)
    count = len(ids)
    node.waiting = count
    run._open += count
    run._running += count
    run.loop.call_soon(_flush_later, run, batch)
    return True


def _flush_later(run: Run, batch: Launch) -> None:
    """`flush`, once the elements took their first steps, unless something flushed already."""
    if run._launching is batch:
        try:
            flush(run)
        except Exception as exc:  # a listener that raised: the run stops, as from a task
            run._crashed(exc)


def flush(run: Run) -> None:
    """Emit the events of the elements launched last (`launch`): added, ready, started.

    Each element that started before now gets its `task_started` here, timed
    when its call began; one that starts later emits its own. A listener
    that acts on the run meanwhile (an event it emits flushes again) finds
    the rest told first: the batch is done with only at the end.
    """
    batch = run._launching
    if batch is None:
        return
    emit, at, dependencies, nodes = run._emit_at, batch.at, batch.dependencies, batch.nodes
    count = len(nodes)
    while batch.added < 2 * count:  # one step per event: a listener may flush in between
        step = batch.added
        batch.added += 1
        task = nodes[step >> 1].task
        if step & 1:
            emit(ev.TaskReady, at, {"task_id": task.id})
        else:
            fields = {
                "task_id": task.id,
                "tool": task.tool,
                "dependencies": dependencies,
                "task": task,
            }
            emit(ev.TaskAdded, at, fields)
    while batch.started < count:
        index = batch.started
        batch.started += 1
        element = nodes[index]
        element.bound = batch.make.bound(index)
        element.arguments = batch.columns.row(index)
        if element.started_at is not None:
            fields = {
                "task_id": element.task.id,
                "tool": element.tool.name,
                "arguments": batch.arguments[index],
            }
            emit(ev.TaskStarted, element.started_at, fields)
    batch.pending = False
    if run._launching is batch:
        run._launching = None
