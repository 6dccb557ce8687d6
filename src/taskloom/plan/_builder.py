"""Graph: build a plan in Python, each call returning a handle to its output.

    g = Graph()
    fr = g.call(country, "France")
    g.call(math, f"{fr.population} * 2")
    plan = g.plan()  # the Plan that `Plan.parse` makes of the same text

A handle stands for an output that does not exist yet. Passed as an
argument it becomes a reference (`$1`); its fields and items
(`fr.population`, `fr["names"][0]`) are references into the output; written
inside a string (an f-string, `str()`, `format()`) it becomes a reference
inside that string, as `"$1.population * 2"` is in plan text.

Maps and conditions read as they do in plan text:

    names = g.call(search, "largest cities")
    pops = g.call(city, names.names.each())      # 2. city($1.names[*])
    g.call(page, "oncall", when=f"{pops[0]} == None")  # ... if $2[0] == None
    g.call(report, names.maybe())                # $1?: None if 1 was skipped
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from taskloom._ids import TaskId
from taskloom._text import quoted, short_repr
from taskloom.errors import UserError
from taskloom.plan._args import parse_guard
from taskloom.plan._check import bind_task
from taskloom.plan._model import Guard, Ref, Task, Template
from taskloom.plan._plan import Plan
from taskloom.tools import Tool

__all__ = ["Graph", "Handle"]

# A handle written into a string leaves a marker that `call` turns back into
# a reference. Private-use characters cannot be mistaken for text anyone
# writes, and the graph's number in the marker tells one graph's handles
# from another's.
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARK = re.compile(f"{_MARK_OPEN}(\\d+):(\\d+){_MARK_CLOSE}")
_graph_numbers = itertools.count(1)


class Handle:
    """The future output of one call in a `Graph`, or a field or item of it.

    Attribute access and indexing give handles deeper into the output;
    nothing is read until the plan runs.
    """

    __slots__ = ("_graph", "_ref")

    def __init__(self, graph: Graph, ref: Ref) -> None:
        """Made by `Graph.call`; not meant to be built by hand."""
        self._graph = graph
        self._ref = ref

    @property
    def ref(self) -> Ref:
        """The reference this handle stands for (`$1.population`)."""
        return self._ref

    def __getattr__(self, name: str) -> Handle:
        if name.startswith("_"):
            # Python's protocols (copy, pickle) probe such names; they are no fields.
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, key: str | int) -> Handle:
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise UserError(
                f"a handle is indexed by a field name (str) or a position (int), "
                f"not {short_repr(key)}"
            )
        if isinstance(key, int) and key < 0:
            raise UserError(f"a reference cannot count from the end; got index {key}")
        ref = self._ref
        if ref.each is not None:  # a field of each item: `$1.people[*].name`
            return Handle(self._graph, Ref(ref.task, ref.path, (*ref.each, key)))
        return Handle(self._graph, Ref(ref.task, (*ref.path, key), None, ref.optional))

    def each(self) -> Handle:
        """Each item of this list: a call given it runs once per item (`$1.names[*]`).

        Fields and items of the returned handle are taken in each item
        (`h.people.each().name`). An output field named `each` is `h["each"]`.

        Returns:
            A map handle.

        Raises:
            UserError: if the handle is a map handle already, or optional.

        """
        if self._ref.each is not None or self._ref.optional:
            raise UserError(f"{self._ref}: [*] may be taken once, and not of an optional handle")
        return Handle(self._graph, Ref(self._ref.task, self._ref.path, ()))

    def maybe(self) -> Handle:
        """This output, or None where its call was skipped by a false condition (`$1?`).

        Returns:
            An optional handle.

        Raises:
            UserError: for a map handle (from `each()`).

        """
        if self._ref.each is not None:
            raise UserError(f"{self._ref}: a map handle cannot be optional")
        return Handle(self._graph, Ref(self._ref.task, self._ref.path, None, True))

    def __format__(self, spec: str) -> str:
        if spec:
            raise UserError(
                f"{self._ref} has no value yet, so it cannot be formatted with {quoted(spec)}"
            )
        index = self._graph._remember(self._ref)
        return f"{_MARK_OPEN}{self._graph._number}:{index}{_MARK_CLOSE}"

    def __str__(self) -> str:
        return self.__format__("")

    def __repr__(self) -> str:
        return f"<Handle {self._ref}>"

    def __bool__(self) -> NoReturn:
        raise UserError(f"{self._ref} has no value yet; a plan cannot branch on it in Python")

    def __iter__(self) -> NoReturn:
        # Without this, `__getitem__` would make every handle an endless sequence.
        raise UserError(f"{self._ref} has no value yet, so it cannot be iterated in Python")


class Graph:
    """Builds a `Plan` call by call; each call returns a `Handle` to its output."""

    def __init__(self) -> None:
        """Start an empty graph."""
        self._number = next(_graph_numbers)
        self._tasks: list[Task] = []
        self._tools: dict[str, Tool] = {}
        self._marked: list[Ref] = []

    def call(
        self, tool: Tool | str, /, *args: Any, when: str | None = None, **kwargs: Any
    ) -> Handle:
        """Add a call to `tool` with these arguments.

        Arguments may hold handles (from this graph), also inside lists,
        tuples, dict values and strings. When `tool` is a Tool, the call is
        checked against its parameters now. A handle from `each()` makes the
        call a map; `when` is a condition, an f-string over handles
        (`f"{h.status} != 'ok'"`), under which the call runs (a tool's own
        parameter named `when` is then passed by position).

        Returns:
            A handle to the call's output.

        Raises:
            UserError: for a tool that is neither a Tool nor a name, a handle
                from another graph, or a handle used as a dict key.
            PlanError: for arguments that do not fit the tool's parameters.

        """
        if isinstance(tool, Tool):
            known = self._tools.get(tool.name)
            if known is not None and known is not tool:
                raise UserError(
                    f"two different tools are named {quoted(tool.name)} in one graph; "
                    "give one of them another name (@taskloom.tool(name=...))"
                )
            name = tool.name
        elif isinstance(tool, str) and tool:
            name = tool
        else:
            raise UserError(
                f"call a Tool or a tool's name, not {short_repr(tool)}; "
                "decorate a function with @taskloom.tool"
            )
        task_id = TaskId(str(len(self._tasks) + 1))
        task = Task(
            id=task_id,
            tool=name,
            args=tuple(self._value(a) for a in args),
            kwargs={k: self._value(v) for k, v in kwargs.items()},
            guard=None if when is None else self._condition(when, task_id),
        )
        if isinstance(tool, Tool):
            bind_task(task, {name: tool})
            self._tools[name] = tool
        self._tasks.append(task)
        return Handle(self, Ref(task.id))

    def plan(self) -> Plan:
        """The plan of the calls so far, in the order they were made."""
        return Plan(self._tasks)

    @property
    def tools(self) -> list[Tool]:
        """The Tool objects the graph's calls were made with, to pass to `execute`."""
        return list(self._tools.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"<Graph of {len(self._tasks)} call(s)>"

    def _remember(self, ref: Ref) -> int:
        self._marked.append(ref)
        return len(self._marked) - 1

    def _value(self, value: Any) -> Any:
        """An argument as a Task holds it: handles as Refs, marked strings as Templates."""
        if isinstance(value, Handle):
            return self._own(value)._ref
        if isinstance(value, str):
            return self._string(value)
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._value(v) for v in value)
        if isinstance(value, Mapping):
            if any(isinstance(k, Handle) or _MARK.search(str(k)) for k in value):
                raise UserError("a handle cannot be a dict key; its value is not known yet")
            return {k: self._value(v) for k, v in value.items()}
        return value

    def _condition(self, when: Any, task_id: TaskId) -> Guard:
        """The guard that `when` writes, its handles made references."""
        if isinstance(when, Handle):
            when = str(when)
        if not isinstance(when, str):
            raise UserError(f"when= is a condition written as a string, not {short_repr(when)}")
        value = self._string(when)
        text = value if isinstance(value, str) else "".join(str(p) for p in value.parts)
        return parse_guard(text, task_id=task_id)

    def _own(self, handle: Handle) -> Handle:
        if handle._graph is not self:
            raise UserError(
                f"{handle._ref} is a handle from another Graph; "
                "a call may only use the outputs of calls in its own graph"
            )
        return handle

    def _string(self, text: str) -> str | Template:
        parts: list[str | Ref] = []
        at = 0
        for match in _MARK.finditer(text):
            if int(match.group(1)) != self._number:
                raise UserError(
                    "a string holds a handle from another Graph; "
                    "a call may only use the outputs of calls in its own graph"
                )
            if match.start() > at:
                parts.append(text[at : match.start()])
            parts.append(self._marked[int(match.group(2))])
            at = match.end()
        if not parts:
            return text
        if at < len(text):
            parts.append(text[at:])
        return Template(tuple(parts))
