"""Feeding a streamed plan into its live run, and the reasons a round ends a request.

A plan written again after an error (a repair) may repeat the calls the run
already holds: the same call is skipped, a changed one rewrites the task if
it has not started yet. A new call that the plan has already written, of a
tool whose calls are harmless to repeat, ends the plan (`Repeats`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from taskloom.agent._result import PlanAttempt
from taskloom.agent.prompts import Observation
from taskloom.engine import Run, TaskStatus
from taskloom.errors import PlanError
from taskloom.plan import Task
from taskloom.tools import Tool

__all__ = ["Repeats", "feed_tasks", "nothing_succeeded", "unrepaired"]


class Repeats:
    """The calls a plan has written so far, to see it start writing them again.

    Only calls of tools that are idempotent or cacheable count: calling
    those twice with the same arguments can only give the same result, so a
    plan that does it is copying its own lines, and a small model that
    starts doing so does not stop by itself. A tool with side effects may be
    meant to run twice. A call an earlier round made may be written again
    (the call cache answers it): a new plan often restates what it uses.
    """

    def __init__(self, tools: Mapping[str, Tool], run: Run) -> None:
        """Start from the tasks the run already holds (an earlier attempt at this plan)."""
        self._tools = tools
        self._planned = {task.call_text() for task in run.plan}

    def cut(self, tasks: Sequence[Task], run: Run) -> tuple[list[Task], bool]:
        """The tasks before the first new one that repeats a call, and whether there was one."""
        kept: list[Task] = []
        for task in tasks:
            if task.id not in run.plan and self._repeats(task):
                return kept, True
            self._planned.add(task.call_text())
            kept.append(task)
        return kept, False

    def _repeats(self, task: Task) -> bool:
        tool = self._tools.get(task.tool)
        if tool is None or not (tool.policy.idempotent or tool.policy.cacheable):
            return False
        return task.call_text() in self._planned


def feed_tasks(tasks: Iterable[Task], run: Run) -> int:
    """Add parsed tasks to the run while it accepts them; return how many were added or changed.

    A task the run already holds (a plan written again after an error) is
    skipped when it is the same call, and rewritten if it has not started.

    Raises:
        PlanError: if a task changes a call that has already started.

    """
    added = 0
    for task in tasks:
        if not run.accepting:
            break  # out of budget: what was written so far is all we use
        if task.id in run.plan:
            added += _write_again(run, task)
            continue
        run.add(task)
        added += 1
    return added


def _write_again(run: Run, task: Task) -> bool:
    """Take a task that a repaired plan writes again.

    Returns:
        Whether the run changed: False for the same call, True for a rewrite.

    Raises:
        PlanError: if the call differs and the held task has already started.

    """
    held = run.plan[task.id]
    if _same_call(held, task):
        return False
    status = run.status(task.id)
    if status not in (TaskStatus.PENDING, TaskStatus.READY):
        state = "run" if status.is_final else "started"
        raise PlanError(
            f"task {task.id} has already {state} as {held.call_text()}; repeat it as it is "
            f"and give a new call the next free number",
            task_id=task.id,
            position=task.position,
        )
    run.rewrite(task.id, tool=task.tool, args=task.args, kwargs=task.kwargs)
    return True


def _same_call(a: Task, b: Task) -> bool:
    """Whether two tasks make the same call, written alike (spacing and quotes aside)."""
    return a.tool == b.tool and a.call_text() == b.call_text()


def unrepaired(attempts: Sequence[PlanAttempt]) -> str:
    """Why a round whose plan never validated ends the request."""
    count = f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}"
    return f"the plan was still invalid after {count}: {attempts[-1].error}"


def nothing_succeeded(history: Sequence[Observation]) -> str:
    """Why a request none of whose tool calls succeeded has no answer."""
    if not history:
        return "no tool call was made, so there is nothing to answer from"
    errors = [f"{i}. {call} -> {text}" for i, call, text in history[:3]]
    more = f" and {len(history) - 3} more" if len(history) > 3 else ""
    shown = "; ".join(_clip(e, 200) for e in errors)
    return f"no tool call succeeded, so there is nothing to answer from ({shown}{more})"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
