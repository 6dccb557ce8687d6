"""How long the parts of a plan may grow when a grammar constrains the model.

A grammar cannot stop a model from looping, but it can make the loop end: a
270M model caught repeating a digit, a word or `$1 + $2 + ...` is made to
close the string once a bound is reached, and the plan still fits its token
budget. The defaults fit general text (a sentence-long string argument with
references anywhere in it, ids and numbers of any sensible length); every
bound is finite, and each is capped so that a grammar stays small enough to
compile for every plan (llama.cpp expands `x{0,n}` into n rules).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskloom.errors import UserError

__all__ = ["GrammarLimits"]

_CEILINGS = {
    "max_thought": 4000,
    "max_text": 4000,
    "max_digits": 100,
    "max_parts": 200,
    "max_field": 256,
    "max_path": 16,
}
"""The largest value of each limit: beyond these a grammar grows too large to build per plan."""

_FLOORS = {"max_parts": 0, "max_path": 0}
"""Limits that may be 0 (no numbers or references in strings; no `.field` after a reference)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GrammarLimits:
    """The bounds of the plan and ReAct grammars (`Agent(grammar_limits=...)`).

    GrammarLimits(max_text=600, max_digits=32)

    Raises:
        UserError: if a limit is not an int in its range (see each field).

    """

    max_thought: int = 200
    """Longest `Thought: ...` line, in characters (1-4000): a thought that
    rambles must end so the calls get written."""
    max_text: int = 300
    """Longest run of text in a string argument between its numbers and
    references, in characters (1-4000): a model repeating words must close
    the string. A string of a few hundred characters fits in one run."""
    max_digits: int = 24
    """Longest run of digits (1-100): in a string, an integer, or a number's
    fraction. Each digit is one token and a small model can loop inside a
    number; 16-digit ids and 20-digit numbers fit."""
    max_parts: int = 24
    """Most numbers and references in one string argument (0-200): a model
    looping `$1 + $2 + $1 + ...` or `1 + 1 + 1 + ...` must close the string."""
    max_field: int = 32
    """Longest field name after a reference (`$1.population`), in characters (1-256)."""
    max_path: int = 4
    """Most `.field` and `[index]` steps after one reference (0-16): `$1.a.b[0]` is 3."""

    def __post_init__(self) -> None:
        for name, ceiling in _CEILINGS.items():
            value = getattr(self, name)
            floor = _FLOORS.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserError(f"GrammarLimits.{name} must be an int, not {value!r}")
            if not floor <= value <= ceiling:
                raise UserError(
                    f"GrammarLimits.{name} must be between {floor} and {ceiling}, got {value}"
                )

    def to_json(self) -> dict[str, int]:
        """The limits as a JSON object: what an agent request records."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> GrammarLimits:
        """Limits from a JSON object written by `to_json` (missing fields: defaults).

        Raises:
            UserError: if `data` is not such an object, or a limit is out of range.

        """
        if not isinstance(data, Mapping):
            raise UserError(f"grammar limits are a JSON object, not {type(data).__name__}")
        fields: dict[str, Any] = dict(data)
        unknown = sorted(set(fields) - set(_CEILINGS))
        if unknown:
            raise UserError(f"unknown grammar limits: {', '.join(map(str, unknown))}")
        return cls(**fields)
