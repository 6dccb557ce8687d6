"""The scheduler's record of one task, and the results made from those records."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python

from taskloom._held import Held
from taskloom._ids import TaskId
from taskloom.engine.result import TaskResult, TaskStatus
from taskloom.errors import BadOutput, RunError
from taskloom.plan import Task
from taskloom.plan._subplan import SubplanTool
from taskloom.tools import Tool

__all__ = [
    "MAX_INT_DIGITS",
    "Earlier",
    "Node",
    "TaskResults",
    "gated",
    "is_storable",
    "jsonable",
    "storable",
    "task_result",
]


class Node:
    """The scheduler's mutable record of one task."""

    __slots__ = (
        "arguments",
        "attempts",
        "bound",
        "dependents",
        "elements",
        "error",
        "finished_at",
        "gated",
        "output",
        "host",
        "queued",
        "started_at",
        "status",
        "task",
        "tool",
        "waiting",
    )

    def __init__(
        self, task: Task, tool: Tool, bound: dict[str, Any], *, gate: bool | None = None
    ) -> None:
        """Record `task`, to be called with `tool` on `bound` once its inputs exist.

        `gate` is `gated(task, tool)` when the caller knows it (a map's
        elements have no gate); None works it out.
        """
        self.task = task
        self.tool = tool
        self.bound = bound
        """Arguments by parameter name, references not yet resolved."""
        self.status = TaskStatus.PENDING
        self.waiting = 0
        """How many dependencies have not finished yet."""
        self.dependents: list[Node] = []
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
        self.gated = gated(task, tool) if gate is None else gate
        """A condition, a map or a sub-plan stands between its inputs and its call
        (`through_gate`)."""
        self.elements: list[Node] | None = None
        """A map task's element tasks, once it fanned out (a sub-plan call's tasks, once
        added); None before (and for other tasks)."""


def gated(task: Task, tool: Tool) -> bool:
    """Whether a condition, a map or a sub-plan stands between the task's inputs and its call."""
    return task.guard is not None or task.is_map or type(tool) is SubplanTool


MAX_INT_DIGITS = 4300
"""The most digits an integer output may have: Python's default limit for
turning an int into text, so every process (and `taskloom show`) can read it back."""

_INT_HIGH = 10**MAX_INT_DIGITS
_INT_LOW = -_INT_HIGH

_MANY_DIGITS = re.compile(rb"\d{%d}" % (MAX_INT_DIGITS + 1))
"""A run of digits longer than an int output may be (in JSON text)."""

_check_json = json.JSONEncoder(ensure_ascii=False, allow_nan=True).encode
"""The store's encoding, without its fallback to str(): what it cannot encode fails here."""


def jsonable(node: Node, output: Any) -> Any:
    """The output as JSON-able data, checked once where the scheduler accepts it.

    Every consumer (the store, the call cache, `--json`, the summary, a
    dependent's `$N`) can then encode or print it. Floats, bools and None
    never reach this function (the scheduler's fast path); non-finite floats
    are accepted, and each JSON writer says how it writes them.

    Returns:
        The output itself for plain text and integers; otherwise its JSON-able
        form (pydantic's); or a BadOutput saying why it cannot be stored.
    """
    value = storable(output)
    if type(value) is _Unstorable:
        return BadOutput(node.task.id, node.tool.name, type(output).__name__, value.problem)
    return value


class _Unstorable:
    """Why a value cannot be stored (what `storable` returns for it)."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def storable(output: Any) -> Any:
    """The output as JSON-able data, or an `_Unstorable` saying why it has none.

    Use `is_storable` outside the scheduler; `jsonable` turns the reason into
    the task's BadOutput.
    """
    kind = type(output)
    if kind is str and output.isascii():
        return output
    if kind is int:
        if _INT_LOW < output < _INT_HIGH:
            return output
        return _Unstorable(f"an integer of more than {MAX_INT_DIGITS} digits")
    if isinstance(output, Held):  # kept by the executor; checked where it was made
        return output
    try:
        value = to_jsonable_python(output)  # refuses cycles, depth past 254, unknown types
        # pydantic's encoder (a third of the cost of json's) refuses text that is
        # not valid Unicode. It writes ints of any size, so where a long run of
        # digits shows up, json's encoder, the store's, checks the ints too.
        if _MANY_DIGITS.search(to_json(value)) is not None:
            _check_json(value)
    except RecursionError:
        return _Unstorable("it is nested too deeply")
    except Exception as exc:  # anything that cannot be encoded is this task's failure
        return _Unstorable(_encoding_problem(exc))
    return value


def is_storable(output: Any) -> bool:
    """Whether every consumer (the store first) can encode the output."""
    return type(storable(output)) is not _Unstorable


def _encoding_problem(exc: Exception) -> str:
    """Why encoding failed, in a short sentence (Python's own advice does not apply)."""
    text = str(exc)
    if isinstance(exc, UnicodeEncodeError) or "UnicodeEncodeError" in text:
        return "its text is not valid Unicode (it holds a lone surrogate)"
    if "integer string conversion" in text:
        return f"it holds an integer of more than {MAX_INT_DIGITS} digits"
    if "serialization depth" in text:
        return "it is nested too deeply"
    if "Circular reference" in text:
        return "it contains itself"
    if isinstance(exc, PydanticSerializationError):
        text = text.removeprefix("Unable to serialize unknown type: ")
        return f"it holds a value of unknown type {text}"
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}"


class Earlier:
    """A finished task of an earlier plan in the same agent run: only its output."""

    __slots__ = ("output",)

    def __init__(self, output: Any) -> None:
        self.output = output


def task_result(node: Node) -> TaskResult:
    dependencies = node.task.dependencies
    if node.elements:  # a map's output is its elements' outputs
        dependencies = dependencies | {element.task.id for element in node.elements}
    return TaskResult(
        id=node.task.id,
        tool=node.task.tool,
        arguments=node.arguments,
        dependencies=tuple(sorted(dependencies)),
        status=node.status,
        output=node.output,
        error=node.error,
        attempts=node.attempts,
        started_at=node.started_at,
        finished_at=node.finished_at,
    )


class TaskResults(Mapping[TaskId, TaskResult]):
    """The tasks of a finished run, each made into a TaskResult when first read."""

    __slots__ = ("_made", "_nodes")

    def __init__(self, nodes: Mapping[TaskId, Node]) -> None:
        self._nodes = nodes
        self._made: dict[TaskId, TaskResult] = {}

    def __getitem__(self, task_id: TaskId) -> TaskResult:
        made = self._made.get(task_id)
        if made is None:
            made = self._made[task_id] = task_result(self._nodes[task_id])
        return made

    def __iter__(self) -> Iterator[TaskId]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def statuses(self) -> Iterator[TaskStatus]:
        """Every task's status, without making its TaskResult."""
        return (node.status for node in self._nodes.values())

    def __repr__(self) -> str:
        return repr(dict(self))
