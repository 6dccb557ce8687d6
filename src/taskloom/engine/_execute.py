"""The ways in: `open_run()` for a live run you can edit, `execute()` to run a plan."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from taskloom._ids import RunId, TaskId
from taskloom._text import short_repr
from taskloom.engine._budget import Budget
from taskloom.engine._executor import Executor
from taskloom.engine._gc import roomy_gc
from taskloom.engine._journal import Journal
from taskloom.engine._runtime import check_weight
from taskloom.engine._scheduler import EventListener, Order, Run
from taskloom.engine._stats import DurationStats
from taskloom.engine.result import RunResult
from taskloom.errors import PlanError, UserError
from taskloom.plan import Plan, Task
from taskloom.plan._plan import tool_map
from taskloom.plan._subplan import subplan_tools
from taskloom.telemetry._setup import traced
from taskloom.tools import Tool, tool

if TYPE_CHECKING:
    from taskloom.engine._runtime import Runtime

__all__ = ["NO_TOOLS", "ToolsLike", "as_tools", "execute", "open_run"]

ToolsLike = Iterable[Tool | Callable[..., Any]] | Mapping[str, Tool]
"""Tools, or plain typed functions (turned into tools with default options)."""

NO_TOOLS = (
    "tools must be a list of tools or functions, not None (or give a runtime= that has tools)"
)
"""What a run, or an agent, without tools and without a runtime that has some is told."""


def as_tools(tools: ToolsLike) -> dict[str, Tool]:
    """Index tools by name, wrapping plain functions with `@tool`.

    A sub-plan tool brings the tools its tasks call (`Plan.as_tool(tools=...)`).

    Raises:
        UserError: if `tools` is not a collection, or two different tools share a name.
        ToolDefinitionError: if a plain function cannot become a tool.

    """
    if isinstance(tools, Mapping):
        return subplan_tools(tool_map(tools))
    if isinstance(tools, Tool | str | bytes) or not isinstance(tools, Iterable):
        raise UserError(f"tools must be a list of tools or functions, not {short_repr(tools)}")
    return subplan_tools(tool_map(t if isinstance(t, Tool) else tool(t) for t in tools))


def _tools_on(runtime: Runtime | None, tools: ToolsLike | None, weight: float) -> ToolsLike:
    """The tools of a run: its own or its runtime's, through the runtime's cache.

    Raises:
        UserError: for no tools at all, or a bad weight on a runtime.

    """
    if runtime is not None:
        check_weight(weight)
        return runtime.tools_for(tools)
    if tools is None:
        raise UserError(NO_TOOLS)
    return tools


@asynccontextmanager
async def open_run(
    *,
    tools: ToolsLike | None = None,
    runtime: Runtime | None = None,
    weight: float = 1.0,
    max_concurrency: int | None = None,
    run_id: str | None = None,
    on_event: EventListener | None = None,
    stats: DurationStats | None = None,
    order: Order = "critical_path",
    earlier: Mapping[TaskId, Any] | None = None,
    journal: Journal | None = None,
    budget: Budget | None = None,
    deadline_at: float | None = None,
    first_seq: int = 0,
    executor: Executor | None = None,
) -> AsyncIterator[Run]:
    """Open a run that you feed, edit and cancel while it executes.

    Leaving the block closes the run to new tasks and waits until every task
    is final. If the block raises, the run is cancelled first.

        async with taskloom.open_run(tools=[city]) as run:
            run.add(task)
            run.cancel("3")
        result = run.result()

    Args:
        tools: the tools tasks may call; with a runtime, its tools by default.
        runtime: a `Runtime` shared with other runs: its tools' limits, its
            own limit and its call cache hold across all of them, and a free
            slot goes to the run that holds the fewest for its weight. None:
            the run has its own.
        weight: with a runtime, the run's share of scarce slots (2: twice
            the slots of a run of weight 1).
        max_concurrency: tasks running at once; None for no limit.
        run_id: an id for the run; a random one by default.
        on_event: called synchronously with every event, in order.
        stats: tool duration statistics to order by (and update); shared
            between runs, they make critical-path ordering better over time.
            With a runtime, its own by default.
        order: "critical_path" (default) or "fifo" for ready tasks that wait.
        earlier: outputs of tasks from an earlier plan (when replanning):
            new tasks may reference them by id; they are not run again.
        journal: keeps the run durably (`Store.journal()`): a tool that is
            not idempotent is called only once its start is on disk.
        budget: limits on tool calls and time (see `Budget`).
        deadline_at: an absolute deadline (monotonic seconds) overriding
            `budget.deadline`, for runs inside a larger one (agent rounds).
        first_seq: the sequence number before this run's first event (a
            resumed run or a later agent round goes on numbering).
        executor: where tool calls run (`taskloom.ray.RayExecutor`, say);
            None runs them in this process.

    Yields:
        The live Run.

    Raises:
        UserError: for bad options or tools (none given, and no runtime).
        StoreError: if the journal could not record the run.

    """
    tools = _tools_on(runtime, tools, weight)
    if runtime is not None and stats is None:
        stats = runtime.stats
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise UserError(
            "taskloom runs on anyio's asyncio backend (the default of anyio.run)"
        ) from None
    if journal is not None:
        if run_id is not None and run_id != journal.run_id:
            raise UserError(f"run_id {run_id!r} differs from the journal's run {journal.run_id!r}")
        run_id = journal.run_id
    run = Run(
        tools=as_tools(tools),
        max_concurrency=max_concurrency,
        run_id=RunId(run_id) if run_id else None,
        listeners=[on_event] if on_event else [],
        stats=stats,
        order=order,
        earlier=earlier,
        before_call=journal.before_call if journal else None,
        budget=budget,
        deadline_at=deadline_at,
        first_seq=first_seq,
        executor=_checked_executor(executor),
    )
    if runtime is not None:
        runtime.seat(run, weight)
    failure: Exception | None = None
    try:
        with roomy_gc():
            async with anyio.create_task_group() as tg:
                run._attach(tg)
                if journal is not None:
                    journal.attach(run)
                try:
                    # Cancelled already: no task of this run may start, not even
                    # in the turn in which the block's first await meets it.
                    await anyio.lowlevel.checkpoint_if_cancelled()
                    yield run
                except Exception as exc:
                    # Re-raised below, outside the task group, so the caller gets the
                    # error itself rather than an ExceptionGroup around it.
                    run.cancel(reason=f"the code driving the run raised {type(exc).__name__}")
                    failure = exc
                except BaseException:
                    run.cancel(reason="the code driving the run was cancelled")
                    raise
                else:
                    run.close()
                    await run.wait()
                finally:
                    # Whatever ended the wait (the caller's cancellation, a crashed
                    # host): the tools still running must stop before we leave.
                    if not run.finished:
                        run.cancel(reason=_why_stopped(run))
                    with anyio.CancelScope(shield=True):
                        await run._hosts_ended()
    finally:
        if run._share is not None:
            run._share.leave()  # ended already, unless a crash tore it down
        if journal is not None:
            with anyio.CancelScope(shield=True):  # what ran, and how it ended, must reach the disk
                await journal.close(run.result())
    if run.crash is not None:
        raise run.crash
    if failure is not None:
        raise failure
    # A cancellation that arrived while the journal was closing is delivered
    # here, so the caller's scope sees it (the shield only postponed it).
    await anyio.lowlevel.checkpoint_if_cancelled()


def _checked_executor(executor: object) -> Executor | None:
    """The executor given, checked: it must have an async `call`.

    Raises:
        UserError: for anything else.

    """
    if executor is not None and not isinstance(executor, Executor):
        raise UserError(
            f"executor must be an Executor (an object with an async call()), "
            f"got {short_repr(executor)}"
        )
    return executor


def _why_stopped(run: Run) -> str:
    if run.crash is not None:
        return f"the run crashed: {type(run.crash).__name__}"
    return "the caller was cancelled"


async def execute(
    plan: Plan | Sequence[Task] | AsyncIterable[Task],
    *,
    tools: ToolsLike | None = None,
    runtime: Runtime | None = None,
    weight: float = 1.0,
    max_concurrency: int | None = None,
    run_id: str | None = None,
    on_event: EventListener | None = None,
    stats: DurationStats | None = None,
    order: Order = "critical_path",
    journal: Journal | None = None,
    budget: Budget | None = None,
    executor: Executor | None = None,
) -> RunResult:
    """Run a plan to the end, every task as soon as its inputs exist.

    The plan may be complete (`Plan`, a list of tasks) or a stream of tasks
    (an async iterable, such as `parse_stream()` over an LLM's tokens); a
    streamed task starts while later ones are still being written.

    Args:
        plan: the tasks to run.
        tools: the tools they call; with a runtime, its tools by default.
        runtime: a `Runtime` shared with other runs (see `open_run`).
        weight: with a runtime, the run's share of scarce slots (see `open_run`).
        max_concurrency: tasks running at once; None for no limit.
        run_id: an id for the run; a random one by default.
        on_event: called synchronously with every event, in order.
        stats: tool duration statistics for ordering (see `open_run`).
        order: "critical_path" (default) or "fifo".
        journal: keeps the run durably so it can be resumed (`Store.journal()`).
        budget: limits on tool calls and time (see `Budget`).
        executor: where tool calls run (`taskloom.ray.RayExecutor`, say);
            None runs them in this process.

    Returns:
        The RunResult. Tool failures are in it, not raised. If a streamed
        plan breaks off with a PlanError, the tasks before it still run and
        the error is in `RunResult.plan_error`.

    Raises:
        PlanError: if a complete plan does not validate against the tools
            (nothing runs then).
        UserError: for bad options or tools.
        StoreError: if the journal could not record the run.
        ExecutorLost: if the executor could run no more calls (the run stopped).

    """
    if isinstance(plan, str | bytes) or not isinstance(plan, Plan | Sequence | AsyncIterable):
        # Plan text is a Sequence too; it needs parsing first.
        raise UserError(
            "execute() needs a Plan, a list of Tasks or a stream of them, "
            f"got {short_repr(plan)}; parse plan text with Plan.parse()"
        )
    tool_index = as_tools(_tools_on(runtime, tools, weight))
    if not isinstance(plan, AsyncIterable | Plan):
        plan = Plan(plan)
    if isinstance(plan, Plan) and plan.inputs:
        raise PlanError(
            f"the plan has inputs ({', '.join('$' + n for n in plan.inputs)}), so it runs "
            "as a tool of another plan: Plan.as_tool(name), or `--tools FILE.plan`"
        )
    # `trace` is None unless tracing is on (OTEL_* variables, telemetry.instrument()).
    traced_id = journal.run_id if journal is not None else run_id
    async with (
        traced("invoke_workflow", started_at=time.monotonic(), run_id=traced_id) as trace,
        open_run(
            tools=tool_index,
            runtime=runtime,
            weight=weight,
            max_concurrency=max_concurrency,
            run_id=run_id,
            on_event=on_event if trace is None else trace.chained(on_event),
            stats=stats,
            order=order,
            journal=journal,
            budget=budget,
            executor=executor,
        ) as run,
    ):
        if isinstance(plan, AsyncIterable):
            try:
                async for task in plan:
                    run.add(task)
            except PlanError as exc:
                run.plan_error = exc
        else:
            # Every task is checked against the tools before any starts, so a
            # bad complete plan raises PlanError with nothing run.
            await run.add_plan(plan)
    return run.result()
