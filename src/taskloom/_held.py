"""An output that stays where it was made (a Ray object store), not in this process.

An executor that runs calls elsewhere may keep a large output there and hand
the scheduler a `Held` for it. The engine passes a `Held` through unchanged:
it is the task's output, a dependent's argument (`$N`, the whole output) and
what the run's result holds; the executor that made it sends it on to the
next call as a reference. Every consumer that writes outputs down (the
store, the events' JSON, the joiner's observations) writes `str(held)`: a
short placeholder with the output's size and type, never the value.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any

__all__ = ["Held", "held_problem", "is_held_text"]

_HELD_TEXT = re.compile(r"<\w+ of [\d,]+ bytes, held in [^<>]+>")


class Held(ABC):
    """A task's output kept elsewhere: its size and type here, the value there."""

    __slots__ = ("kind", "size", "where")

    def __init__(self, *, size: int, kind: str, where: str) -> None:
        """Describe an output kept elsewhere.

        Args:
            size: its size in bytes, serialized.
            kind: the name of its Python type (`str`, `list`, `dict`, ...).
            where: where it is kept, for people ("the Ray object store").

        """
        self.size = size
        """Its size in bytes, serialized."""
        self.kind = kind
        """The name of its Python type."""
        self.where = where
        """Where it is kept."""

    @abstractmethod
    async def fetch(self) -> Any:
        """Bring the value here (all of it: it is large).

        Returns:
            The output itself.

        """

    def stand_in(self) -> Any:
        """An empty value of the output's type, to check an argument's type with.

        Returns:
            `""`, `[]`, `{}`, ... or None for a type with no empty value known here.

        """
        return _EMPTY.get(self.kind)

    def __str__(self) -> str:
        return f"<{self.kind} of {self.size:,} bytes, held in {self.where}>"

    def __repr__(self) -> str:
        return f"Held(size={self.size}, kind={self.kind!r}, where={self.where!r})"


_EMPTY: dict[str, Any] = {
    "str": "",
    "bytes": b"",
    "list": [],
    "tuple": (),
    "dict": {},
    "set": set(),
    "frozenset": frozenset(),
    "bytearray": bytearray(),
}


def is_held_text(value: Any) -> bool:
    """Whether a recorded output is the placeholder of a held one (`str(held)`)."""
    return type(value) is str and value.endswith(">") and _HELD_TEXT.fullmatch(value) is not None


def held_problem(value: Any) -> Held | None:
    """The first Held inside `value` (a list, a tuple or a dict of arguments), if any."""
    if isinstance(value, Held):
        return value
    if isinstance(value, list | tuple):
        items: Any = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return None
    for item in items:
        found = held_problem(item)
        if found is not None:
            return found
    return None
