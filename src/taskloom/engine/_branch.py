"""Maps and conditions: what stands between a task's inputs and its call.

A call of a sub-plan is gated the same way (`taskloom.engine._subplan`).

A map task (`3. city($2.names[*])`) fans out into one element task per item
of its list, `3.0`, `3.1`, ...: each an ordinary task whose map reference is
replaced by a reference to its item (`$2.names[0]`). A condition
(`... if $3.status != "ok"`) is evaluated by simpleeval on the outputs it
references. `through_gate` is the scheduler's part: it acts on the run's
state (the functions after it compute).

Ordinary tasks pay one flag test for all of this (`Node.gated`, read in
`Run._make_ready`).
"""

from __future__ import annotations

import ast
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import simpleeval

from taskloom._held import Held
from taskloom._ids import TaskId
from taskloom.engine import _subplan as subplan
from taskloom.engine import events as ev
from taskloom.engine._gc import before_burst
from taskloom.engine._launch import launch, launchable
from taskloom.engine._node import Node
from taskloom.engine.result import TaskStatus
from taskloom.errors import ConditionError, ConditionFalse, MapFailed
from taskloom.plan import Guard, Ref, Task, Template
from taskloom.plan._args import GUARD_FUNCTIONS
from taskloom.plan._model import derived_task, item_ref, iter_refs
from taskloom.plan._plan import add_checked
from taskloom.plan._resolve import HasOutput, ResolveError, resolve
from taskloom.plan._subplan import SubplanTool

if TYPE_CHECKING:
    from taskloom.engine._scheduler import Run

__all__ = [
    "BranchProblem",
    "accepts",
    "element_id",
    "element_task",
    "element_value",
    "guard_holds",
    "map_size",
    "part_unfinished",
    "parts",
    "through_gate",
]


def through_gate(run: Run, node: Node) -> bool:
    """A task with a condition or a map has its inputs: judge, fan out or collect.

    A false condition skips the task ("condition false"); one that cannot
    be evaluated fails it. A map adds its elements (`_fan_out`); once they
    are all done, its output is theirs (`_collect`).

    Returns:
        True when the task is to be queued for its call like any other.

    """
    if node.elements is not None:  # a map whose elements are all done (or a sub-plan's tasks)
        if node.task.is_map:
            _collect(run, node)
        else:
            subplan.collect(run, node)
        return False
    task = node.task
    if task.guard is not None:
        try:
            holds = guard_holds(task.guard, run._outputs)
        except BranchProblem as exc:
            run._settle_unrun(node, ConditionError(task.id, task.guard.text, str(exc)))
            return False
        if not holds:
            run._settle_unrun(node, ConditionFalse(task.id, task.id, task.guard.text))
            return False
    if task.is_map:
        _fan_out(run, node)
        return False
    if type(node.tool) is SubplanTool:
        subplan.expand(run, node)
        return False
    return True


def parts(node: Node) -> Iterator[Node]:
    """The tasks a map or a sub-plan call is made of, theirs included (nested calls)."""
    stack = list(reversed(node.elements or ()))
    while stack:
        part = stack.pop()
        yield part
        stack.extend(reversed(part.elements or ()))


def part_unfinished(run: Run, whole: Node, part: Node) -> None:
    """An element of the map `whole` (or a task of the sub-plan call `whole`) has no output."""
    if not whole.task.is_map:
        subplan.inner_unfinished(run, whole, part)
        return
    why = f"element {part.task.id} did not finish: {part.error or part.status}"
    run._settle_unrun(whole, MapFailed(whole.task.id, why, element=part.task.id))


def _fan_out(run: Run, node: Node) -> None:
    """Add a map's elements, one per item of its list; each is ready at once.

    They are ordinary tasks of the run (own status, retries, limits), so
    they are queued in this same loop turn: no barrier. The map waits for
    them as for dependencies; the first that fails fails it (`MapFailed`),
    and the others go on.

    A task that needs the whole map is then skipped rather than handed a
    partial list: a reduce over fewer items than the plan asked for (a
    sum, a ranking, a count) would pass for a complete answer. The joiner
    sees every element's own result and error, and decides.
    """
    task = node.task
    try:
        size = map_size(node.bound, run._outputs)
    except BranchProblem as exc:
        run._settle_unrun(node, MapFailed(task.id, str(exc)))
        return
    ids = [element_id(task.id, index) for index in range(size)]
    taken = next((i for i in ids if i in run._nodes or i in run._earlier), None)
    if taken is not None:
        why = f"the id {taken} of one of its elements is taken by another task"
        run._settle_unrun(node, MapFailed(task.id, why))
        return
    before_burst(size)  # adding the elements allocates as a burst of starts does
    elements: list[Node] = []
    node.elements, node.waiting = elements, 0
    run._ranks = None
    run._emit(ev.TaskMapped, task_id=task.id, elements=tuple(ids))
    failed: Node | None = None
    dependencies = tuple(sorted(task.dependencies))
    make = Elements(task, node.bound)
    # Usually every input of the map is done, so each element is ready as it is added.
    done = task.guard is None and all(
        dep not in run._nodes or run._nodes[dep].status is TaskStatus.DONE
        for dep in task.dependencies
    )
    if done and size and launchable(run, node) and launch(run, node, ids, make, dependencies):
        return  # added and started, their events to follow (`engine/_launch.py`)
    for index in range(size):
        element = _add_element(run, node, index, dependencies, make, done)
        elements.append(element)
        if element.status is TaskStatus.DONE:
            continue
        if element.status.is_final:  # restored so by a resumed run
            failed = failed or element
            continue
        element.dependents.append(node)
        node.waiting += 1
    if failed is not None:
        why = f"element {failed.task.id} did not finish: {failed.error or failed.status}"
        run._settle_unrun(node, MapFailed(task.id, why, element=failed.task.id))
    elif node.waiting == 0:
        _collect(run, node)


def _add_element(
    run: Run,
    node: Node,
    index: int,
    dependencies: tuple[TaskId, ...],
    make: Elements,
    inputs_done: bool,
) -> Node:
    task = make.task(index)
    # Its id was checked free (`_fan_out`) and its references are the map's: no checks again.
    add_checked(run._plan, task)
    element = Node(task, node.tool, make.bound(index))
    run._nodes[task.id] = element
    recorded = run._recorded.pop(task.id, None) if run._recorded else None
    if recorded is not None:
        element.status, element.output, element.error, element.attempts = recorded
        run._emit(ev.TaskRestored, task_id=task.id, status=str(element.status), error=element.error)
        return element
    run._open += 1
    if task.dependencies is not node.task.dependencies:  # the map has a condition
        dependencies = tuple(sorted(task.dependencies))
    run._emit(ev.TaskAdded, task_id=task.id, tool=task.tool, dependencies=dependencies, task=task)
    if inputs_done:  # what `_link` would find: nothing to wait for
        run._make_ready(element)
    else:
        run._link(element)
    return element


def _collect(run: Run, node: Node) -> None:
    """Every element of a map is done: the map's output is their outputs, in order."""
    assert node.elements is not None
    node.output = [element.output for element in node.elements]
    node.status = TaskStatus.DONE
    node.finished_at = time.monotonic()
    run._open -= 1
    run._emit(ev.TaskFinished, task_id=node.task.id, output=node.output)
    for child in node.dependents:
        if child.status is TaskStatus.PENDING:
            child.waiting -= 1
            if child.waiting == 0:
                run._make_ready(child)


def accepts(node: Node, dep: Node) -> bool:
    """Whether `node` runs without `dep`'s output.

    So it does when `dep` was skipped by a false condition and `node`
    refers to it only as `$N?`.
    """
    return isinstance(dep.error, ConditionFalse) and node.task.accepts_skipped(dep.task.id)


class BranchProblem(Exception):
    """A map cannot fan out, or a condition cannot be evaluated; the message says why."""


def element_id(task_id: TaskId, index: int) -> TaskId:
    """The id of a map's element: `3.0` is the first element of map task 3."""
    return TaskId(f"{task_id}.{index}")


def map_size(bound: Mapping[str, Any], outputs: Mapping[TaskId, HasOutput]) -> int:
    """How many elements a map has: the length of the list(s) its `[*]` references name.

    Raises:
        BranchProblem: if a list is missing or is no list, or the lists zipped
            by several `[*]` references differ in length.

    """
    sizes: dict[str, int] = {}
    for ref in iter_refs(list(bound.values())):
        if ref.each is None:
            continue
        whole = Ref(ref.task, ref.path)
        name = str(whole)
        if name in sizes:
            continue
        try:
            items = resolve(whole, outputs)
        except ResolveError as exc:
            raise BranchProblem(str(exc)) from None
        if not isinstance(items, list | tuple):
            raise BranchProblem(
                f"{name} is {_kind(items)}, not a list; [*] maps over the items of a list"
            )
        sizes[name] = len(items)
    if len(set(sizes.values())) > 1:
        told = ", ".join(f"{name} has {n}" for name, n in sorted(sizes.items()))
        raise BranchProblem(
            f"the lists it maps over differ in length ({told}); "
            "several [*] in one call pair their items one by one"
        )
    return next(iter(sizes.values()), 0)


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, Held):  # its items are not here: a map fans out on the driver
        return f"a {value} (a map needs its items here)"
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def element_value(value: Any, index: int) -> Any:
    """`value` with each map reference (`$2.names[*].x`) made the reference to item `index`."""
    make = _maker(value, {})
    return value if make is None else make(index)


def element_task(task: Task, index: int) -> Task:
    """Element `index` of map task `task`: the same call on item `index` of its list(s)."""
    return Elements(task, {}).task(index)


_Make = Callable[[int], Any]
"""Gives a value as element `index` of a map has it."""


class Columns:
    """A map's arguments before validation, for every element at once.

    A parameter either has a value per element (`varying`: the items of the
    list it maps over, say) or one value for all (`same`).
    """

    __slots__ = ("names", "same", "varying")

    def __init__(
        self, names: list[str], varying: dict[str, Sequence[Any]], same: dict[str, Any]
    ) -> None:
        self.names = names
        """The parameters given, in the order the task binds them."""
        self.varying = varying
        """Per parameter that differs between elements: its value for each, in order."""
        self.same = same
        """Per other parameter: its value, the same for every element."""

    def row(self, index: int) -> dict[str, Any]:
        """Element `index`'s arguments by parameter name, as `Run._arguments` resolves them."""
        varying, same = self.varying, self.same
        return {n: varying[n][index] if n in varying else same[n] for n in self.names}


class Elements:
    """Makes a map's element tasks and their arguments, one per index.

    Which parts of the arguments hold a map reference is worked out once for
    the map, not again for each of its (possibly 10,000) elements; a part with
    none is shared by every element as it is (values are read, never changed:
    resolving a task's arguments builds new lists and dicts). The element's
    reference to its item is one object in its task and its arguments.
    """

    __slots__ = ("_args", "_bound", "_kwargs", "_task")

    def __init__(self, task: Task, bound: Mapping[str, Any]) -> None:
        refs: dict[int, _Make] = {}
        self._task = task
        self._args = _maker(task.args, refs)
        self._kwargs = [(k, v, _maker(v, refs)) for k, v in task.kwargs.items()]
        self._bound = [(k, v, _maker(v, refs)) for k, v in bound.items()]

    def task(self, index: int, task_id: TaskId | None = None) -> Task:
        """Element `index`'s task (see `element_task`), under `task_id` if it was made already."""
        task = self._task
        args = task.args if self._args is None else self._args(index)
        kwargs = {k: v if make is None else make(index) for k, v, make in self._kwargs}
        return derived_task(task, task_id or element_id(task.id, index), args, kwargs)

    def columns(self, outputs: Mapping[TaskId, HasOutput], size: int) -> Columns | None:
        """Every element's arguments, resolved: the list a parameter maps over is read once.

        Returns:
            The arguments of the `size` elements; None if a reference of some
            element does not resolve (resolving each element's own says which).

        """
        names: list[str] = []
        varying: dict[str, Sequence[Any]] = {}
        same: dict[str, Any] = {}
        try:
            for name, value, make in self._bound:
                names.append(name)
                if make is None:
                    same[name] = resolve(value, outputs)
                elif type(value) is Ref and value.each == ():  # `$2.names[*]`: item i is [i]
                    varying[name] = resolve(Ref(value.task, value.path), outputs)
                else:
                    varying[name] = [resolve(make(index), outputs) for index in range(size)]
        except ResolveError:
            return None
        return Columns(names, varying, same)

    def bound(self, index: int) -> dict[str, Any]:
        """Element `index`'s arguments by parameter name, references not yet resolved."""
        return {k: v if make is None else make(index) for k, v, make in self._bound}


def _maker(value: Any, refs: dict[int, _Make]) -> _Make | None:
    """How to make `value` for an element (see `element_value`); None: it is the same for all.

    `refs` holds the makers of the map references met so far, by identity, so
    one reference found in the task and in its bound arguments gives one object.
    """
    if isinstance(value, Ref):
        if value.each is None:
            return None
        make = refs.get(id(value))
        if make is None:
            make = refs[id(value)] = _ref_maker(value)
        return make
    if isinstance(value, Template):
        parts = _makers(value.parts, refs)
        if parts is None:
            return None
        return lambda index: Template(tuple(_made(parts, index)))
    if isinstance(value, list):
        items = _makers(value, refs)
        return None if items is None else lambda index: _made(items, index)
    if isinstance(value, tuple):
        members = _makers(value, refs)
        return None if members is None else lambda index: tuple(_made(members, index))
    if isinstance(value, Mapping):
        keys = list(value)
        values = _makers(list(value.values()), refs)
        if values is None:
            return None
        return lambda index: dict(zip(keys, _made(values, index), strict=True))
    return None


def _ref_maker(ref: Ref) -> _Make:
    task, path, each = ref.task, ref.path, ref.each
    assert each is not None
    last: list[Any] = [-1, None]  # the last one made: the task's and its arguments' are one

    def make(index: int) -> Ref:
        if last[0] != index:
            last[0], last[1] = index, item_ref(task, (*path, index, *each))
        made: Ref = last[1]
        return made

    return make


def _makers(values: Sequence[Any], refs: dict[int, _Make]) -> list[tuple[Any, _Make | None]] | None:
    pairs = [(v, _maker(v, refs)) for v in values]
    if all(make is None for _, make in pairs):
        return None
    return pairs


def _made(pairs: list[tuple[Any, _Make | None]], index: int) -> list[Any]:
    return [v if make is None else make(index) for v, make in pairs]


@functools.lru_cache(maxsize=256)
def _parsed(source: str) -> ast.expr:
    return ast.parse(source, mode="eval").body


def guard_holds(guard: Guard, outputs: Mapping[TaskId, HasOutput]) -> bool:
    """Whether the condition is true on the referenced outputs (Python's truth).

    Raises:
        BranchProblem: if a reference's path is missing from its output, or
            evaluating raised (a comparison of a number with text, say).

    """
    names: dict[str, Any] = {}
    for name, ref in zip(guard.names, guard.refs, strict=True):
        try:
            names[name] = resolve(ref, outputs)
        except ResolveError as exc:
            raise BranchProblem(str(exc)) from None
        if isinstance(names[name], Held):  # its value is not here to compare
            raise BranchProblem(
                f"{ref} is a {names[name]}; a condition needs the value here"
            ) from None
    evaluator = simpleeval.SimpleEval(functions=GUARD_FUNCTIONS, names=names)
    try:
        return bool(evaluator.eval(guard.source, previously_parsed=_parsed(guard.source)))
    except Exception as exc:  # anything the condition does wrong is its task's failure
        raise BranchProblem(f"{type(exc).__name__}: {exc}") from None
