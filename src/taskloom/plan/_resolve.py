"""Replacing references in arguments with the outputs they point to."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from taskloom._held import Held
from taskloom._ids import TaskId
from taskloom._text import clip, short_repr
from taskloom.plan._model import Ref, Template

__all__ = ["HasOutput", "ResolveError", "resolve"]


class ResolveError(Exception):
    """A reference points at a field or index that the output does not have."""


class HasOutput(Protocol):
    """Anything that holds a task's output."""

    output: Any


def resolve(value: Any, done: Mapping[TaskId, HasOutput]) -> Any:
    """Return `value` with every Ref and Template replaced by real outputs.

    A reference written `$5?` gives None where task 5 has no output (it was
    skipped by a false condition), whatever path follows it.

    Args:
        value: an argument value, possibly holding references.
        done: the referenced tasks by id, each with its `output`.

    Raises:
        ResolveError: if a reference's path does not exist in the output.
        KeyError: if a referenced task is missing (a scheduler bug).

    """
    if isinstance(value, Ref):
        output = done[value.task].output
        if value.path:
            if output is None and value.optional:
                return None  # `$5?.field` of a task skipped by its condition
            return _follow(value, output)
        return output
    if isinstance(value, Template):
        return "".join(
            part if isinstance(part, str) else _as_text(_follow(part, done[part.task].output))
            for part in value.parts
        )
    if isinstance(value, list):
        # A whole output (`[$1, $2]`) is the usual item: read without a call.
        return [
            done[v.task].output if type(v) is Ref and not v.path else resolve(v, done)
            for v in value
        ]
    if isinstance(value, tuple):
        return tuple(resolve(v, done) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, done) for k, v in value.items()}
    return value


def _follow(ref: Ref, output: Any) -> Any:
    current = output
    for depth, step in enumerate(ref.path):
        # The usual steps first, without the ABC checks: a list index, a dict key.
        kind = type(current)
        if kind is list and type(step) is int and -len(current) <= step < len(current):
            current = current[step]
            continue
        if kind is dict and step in current:
            current = current[step]
            continue
        if isinstance(current, Mapping):
            if step not in current and str(step) in current:
                step = str(step)
            if step not in current:
                raise ResolveError(
                    f"{_where(ref, depth)}: the output has no field {short_repr(step)} "
                    f"(fields: {_fields(current)})"
                )
            current = current[step]
        elif isinstance(current, Sequence) and not isinstance(current, str):
            if not isinstance(step, int) or not -len(current) <= step < len(current):
                raise ResolveError(
                    f"{_where(ref, depth)}: no item {short_repr(step)} in a list of {len(current)}"
                )
            current = current[step]
        elif isinstance(current, Held):
            raise ResolveError(
                f"{_where(ref, depth)}: the output is a {current}; a tool that runs there "
                f"can take it whole (${ref.task}), not a part of it"
            )
        else:
            raise ResolveError(
                f"{_where(ref, depth)}: the output is a {type(current).__name__}, "
                "which has no fields"
            )
    return current


def _where(ref: Ref, depth: int) -> str:
    """The reference up to the step that failed, as written (clipped: keys may be long)."""
    return clip(str(Ref(ref.task, ref.path[: depth + 1])))


def _fields(record: Mapping[Any, Any]) -> str:
    """The first field names of an output, each clipped, for a message."""
    names = [clip(str(k), 40) for k in itertools.islice(record, 20)]
    more = f" and {len(record) - 20} more" if len(record) > 20 else ""
    return (", ".join(names) or "none") + more


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Held):
        raise ResolveError(f"an output written into text is a {value}; pass it whole instead")
    return str(value)
