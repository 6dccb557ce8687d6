"""Short excerpts of user text, for messages that must stay readable whatever they quote.

A plan line, a tool name or an argument can be megabytes long; a message that
quotes it whole takes longer to print than the run took. Every message that
embeds text it did not write itself goes through these helpers.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "SURROGATE",
    "clip",
    "escape_surrogates",
    "exception_text",
    "excerpt_at",
    "printable",
    "quoted",
    "short_repr",
]

SURROGATE = re.compile("[\ud800-\udfff]")
"""Half of a UTF-16 pair: a Python str may hold one, but no UTF-8 text (nor the store) can."""
QUOTE_LIMIT = 60
"""Characters of a quoted word or value kept in a message."""
LINE_LIMIT = 120
"""Characters of a plan line shown under a message."""


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text`, or its start and end joined by "..." when it is longer than `limit`.

    Returns:
        At most about `limit` characters, with the cut said in words.

    """
    if len(text) <= limit:
        return text
    head, tail = _ends(text, limit)
    return f"{head}...{tail} ({len(text):,} characters)"


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`repr(text)`, or the reprs of its start and end when it is longer than `limit`."""
    if len(text) <= limit:
        return repr(text)
    head, tail = _ends(text, limit)
    return f"{head!r}...{tail!r} ({len(text):,} characters)"


def _ends(text: str, limit: int) -> tuple[str, str]:
    """The start and the end of a text too long to quote, about `limit` in all."""
    keep = max(limit - 3, 2)
    head = keep * 2 // 3
    return text[:head], text[len(text) - (keep - head) :]


def escape_surrogates(text: str) -> str:
    r"""`text` with every lone surrogate (which UTF-8 cannot hold) written as its escape.

    Such text comes from an undecodable file name or a `\ud800` escape in a
    plan; every printer, writer and encoder of it would fail. Inside JSON text
    the escape is JSON's own, so the value reads back exactly.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def short_repr(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)`, clipped to about `limit` characters.

    A huge container is not rendered whole just to be cut: its repr is built
    only when it is small (strings are clipped before `repr`).
    """
    if isinstance(value, str):
        return quoted(value, limit)
    if isinstance(value, list | tuple | dict | set | frozenset) and len(value) > limit:
        return f"<{type(value).__name__} of {len(value):,} items>"
    try:
        text = repr(value)
    except Exception:  # a user object whose __repr__ fails: name its type
        return f"<{type(value).__name__}>"
    return clip(text, limit)


def excerpt_at(line: str, column: int, width: int = LINE_LIMIT) -> str:
    """The part of `line` around `column` (counted from 1), at most about `width` long.

    Returns:
        The whole line when it is short; else a window that holds the column,
        with "..." where the line was cut.

    """
    if len(line) <= width:
        return line
    at = min(max(column - 1, 0), len(line))
    start = max(0, min(at - width // 3, len(line) - width))
    end = start + width
    return ("..." if start else "") + line[start:end] + ("..." if end < len(line) else "")


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Characters a terminal obeys rather than shows: C0 and C1 controls but tab and newline
(ESC starts colour, cursor and title sequences), and the marks that reorder text."""


def printable(text: str) -> str:
    r"""`text` with every control character written as an escape (`\x1b`, `\u202e`).

    Tool outputs, plan strings and errors may hold escape sequences that would
    recolour the terminal, move its cursor or reverse the text around them;
    printed through this they show as what they are. Tabs and newlines stay.
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def exception_text(exc: BaseException) -> str:
    """`str(exc)`, or a note saying it could not be read.

    A user's exception class may break in `__str__`; quoting it must not
    raise in turn.
    """
    try:
        return str(exc)
    except Exception as failure:  # RecursionError too: a __str__ that calls itself
        return f"(its message could not be read: {type(failure).__name__} in __str__)"
