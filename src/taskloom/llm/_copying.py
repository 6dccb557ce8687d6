"""Keeping a reply's quoted strings true to a source text, such as the question.

A small model that plans `distance("Nairobi", "Istanbul")` sometimes writes
the country ("Kenya") for the city the question named, or misspells a name
it has begun to copy ("Oslon"). `CopyGuide` steers greedy decoding inside
the quoted strings of a reply:

- a string that has begun copying the source (its text so far occurs in the
  source, from the start of a word) goes on copying it, or ends at the end
  of a word of it;
- a string about to start with a capital letter (a name) starts a word of the
  source that has one.

Only when the model's own pick breaks the copy, and only for a token it
scores within `margin` (in logits) of that pick: a string the model clearly
means to write in its own words ("km", "$1.population + $2.population") is
left alone, and where a string ends is always the model's choice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["CopyGuide"]

Logits = npt.NDArray[np.float32]
Tokens = npt.NDArray[np.intc]
Allowed = Callable[[Tokens], npt.NDArray[np.bool_]]
Piece = Callable[[int], bytes]

_CANDIDATES = 64
"""How many of the best-scored tokens may stand in for a pick that breaks a copy."""


class CopyGuide:
    """Follows a reply's text and, inside its quoted strings, prefers copies of `source`."""

    def __init__(self, source: str, margin: float) -> None:
        """Guide a reply towards copies of `source`.

        Args:
            source: the text whose words strings should copy.
            margin: how much lower (in logits) than the model's pick a token
                that keeps the copy may score and still be taken instead.

        """
        self.source = source
        self.margin = margin
        self.steered = 0
        """How many picks were replaced so far."""
        self._in_string = False
        self._escaped = False
        self._content = ""

    def advance(self, piece: bytes) -> None:
        """Follow the text of a token the reply took."""
        for char in piece.decode("utf-8", "ignore"):
            if char == "\n":
                self._in_string, self._escaped, self._content = False, False, ""
            elif not self._in_string:
                if char == '"':
                    self._in_string, self._content = True, ""
            elif self._escaped:
                self._escaped = False
                self._content += char
            elif char == "\\":
                self._escaped = True
            elif char == '"':
                self._in_string = False
            else:
                self._content += char

    def steer(self, logits: Logits, token: int, allowed: Allowed | None, piece: Piece) -> int:
        """The token to take instead of the greedy `token`: itself unless it breaks a copy.

        Args:
            logits: the scores the greedy pick came from.
            token: the greedy pick (allowed by the grammar).
            allowed: which token ids the grammar accepts; None: all.
            piece: a token's bytes.

        Returns:
            `token`, or the best-scored token within the margin that keeps the copy.

        """
        if not self._in_string or self._escaped:
            return token
        so_far = self._content
        text = _text(piece(token))
        if '"' in text:
            return token  # where a string ends is the model's call
        starting = not so_far and text[:1].isupper()
        if not starting and not self._copies(so_far):
            return token
        if self._keeps(so_far, text):
            return token
        size = len(logits)
        count = min(_CANDIDATES, size)
        top = np.argpartition(logits, size - count)[size - count :].astype(np.intc)
        top = top[np.lexsort((top, -logits[top]))]  # best first, then lower ids
        floor = logits[token] - self.margin
        top = top[logits[top] >= floor]
        ok = allowed(top) if allowed is not None else np.ones(len(top), dtype=np.bool_)
        for candidate, fine in zip(top.tolist(), ok.tolist(), strict=True):
            if not fine or candidate == token:
                continue
            text = _text(piece(candidate))
            if self._keeps(so_far, text) and (not starting or text[:1].isupper()):
                self.steered += 1
                return int(candidate)
        return token

    def _keeps(self, so_far: str, text: str) -> bool:
        """Whether taking `text` next keeps the string a copy, or ends it as a whole one."""
        end = text.find('"')
        if end < 0:
            return self._copies(so_far + text)
        return self._copies(so_far + text[:end], whole=True)

    def _copies(self, text: str, *, whole: bool = False) -> bool:
        """Whether `text` occurs in the source from the start of a word (to the end of one)."""
        if not text:
            return False
        source = self.source
        at = source.find(text)
        while at >= 0:
            after = at + len(text)
            if (at == 0 or not source[at - 1].isalnum()) and (
                not whole or after == len(source) or not source[after].isalnum()
            ):
                return True
            at = source.find(text, at + 1)
        return False


def _text(data: bytes) -> str:
    return data.decode("utf-8", "ignore")
