"""Scoring for WorldQA: a tolerant match of an agent's answer against the expected one.

Numbers: every number written in the answer counts ("about 1,234.5 km",
"67 million", "6.7e7", "67.0M", "-12", "12.5%"), read both as written and
scaled by the word after it, and the answer is right if any of them is within
the relative tolerance of the expected value.

Names: case, accents, punctuation and articles are ignored, and the answer is
right if the expected name, or one of a few common aliases of it, appears in
it as a whole phrase ("the capital is Brasília." matches "Brasilia").
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "HELDOUT_PATH",
    "QUESTIONS_PATH",
    "extract_numbers",
    "load_questions",
    "normalize_name",
    "score",
]

QUESTIONS_PATH = Path(__file__).with_name("questions.jsonl")
"""The tuning half: where `generate.py` writes the question set by default (seed 20240611)."""
HELDOUT_PATH = Path(__file__).with_name("heldout.jsonl")
"""The held-out half: the same families drawn with another seed, never tuned on."""

_SCALE_WORDS = {
    "thousand": 1e3,
    "million": 1e6,
    "millions": 1e6,
    "mn": 1e6,
    "mio": 1e6,
    "billion": 1e9,
    "billions": 1e9,
    "bn": 1e9,
    "trillion": 1e12,
}
"""Scale words, in any case: "67 Million"."""
_SCALE_LETTERS = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
"""Scale letters, in this case only: "1,234 m" is metres and "5 b" is nothing."""
_SCALE = (
    "(?i:" + "|".join(sorted(_SCALE_WORDS, key=len, reverse=True)) + ")"
    f"|[{''.join(_SCALE_LETTERS)}]"
)
_NUMBER = re.compile(
    r"(?P<sign>(?<![\w.])[-\u2212])?"  # a minus sign, but not the hyphen in "1990-2000"
    r"(?<![\w.,])"
    r"(?P<digits>\d{1,3}(?:[,\u00a0\u202f]\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exponent>[eE][-+]?\d+)?"
    rf"(?:\s*(?P<scale>{_SCALE})(?![A-Za-z]))?"
    r"(?P<percent>\s*%)?"
)
_SEPARATORS = str.maketrans("", "", ",\u00a0\u202f")


def extract_numbers(text: str) -> list[float]:
    """List every value a piece of text may mean, in order of appearance.

    Each number is listed as written; a number followed by a scale word
    ("million", "bn", "K") is also listed scaled, and a percentage also as a
    fraction ("12.5%" gives 12.5 and 0.125).

    Returns:
        The candidate values; empty when the text holds no number.

    """
    values: list[float] = []
    for match in _NUMBER.finditer(text):
        value = float(match["digits"].translate(_SEPARATORS) + (match["exponent"] or ""))
        if match["sign"]:
            value = -value
        values.append(value)
        if match["scale"]:
            scale = match["scale"]
            values.append(value * _SCALE_LETTERS.get(scale, _SCALE_WORDS.get(scale.lower(), 1)))
        if match["percent"]:
            values.append(value / 100)
    return [v for v in values if math.isfinite(v)]


def _close(value: float, expected: float, tolerance: float) -> bool:
    return abs(value - expected) <= tolerance * abs(expected) + 1e-9


# A few names the GeoNames data spells differently from common English.
_ALIASES = {
    "united states": ("usa", "u s", "u s a", "america", "united states of america"),
    "united kingdom": ("uk", "britain", "great britain"),
    "netherlands": ("holland",),
    "czechia": ("czech republic",),
    "new york city": ("new york", "nyc"),
    "ulan bator": ("ulaanbaatar",),
    "bengaluru": ("bangalore",),
    "kyiv": ("kiev",),
    "koln": ("cologne",),
    "sevilla": ("seville",),
    "frankfurt am main": ("frankfurt",),
    "washington": ("washington dc", "washington d c"),
}
_ARTICLES = re.compile(r"\b(?:the|a|an)\b")
_NON_WORD = re.compile(r"[\W_]+")


def normalize_name(text: str) -> str:
    """Fold a name for comparison: "The Côte-d'Or!" -> "cote dor".

    Returns:
        The text without accents, case, punctuation or articles, with single
        spaces between words.

    """
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    text = text.replace("'", "").replace("\u2019", "")
    text = _NON_WORD.sub(" ", text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _name_variants(expected: str) -> Iterator[str]:
    name = normalize_name(expected)
    yield name
    yield from _ALIASES.get(name, ())


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def score(predicted: str | float | None, expected: str | float, tolerance: float = 0.01) -> bool:
    """Tell whether a predicted answer matches the expected one.

    Args:
        predicted: the agent's answer, as text or a number; None counts as wrong.
        expected: the ground truth: a number or a place name.
        tolerance: the relative tolerance for numbers (0.01 is 1%).

    Returns:
        For a numeric `expected`, True if any number read from `predicted`
        (see `extract_numbers`) is within `tolerance` of it. For a name, True
        if the name or one of its aliases appears in `predicted` as a whole
        phrase, ignoring case, accents, punctuation and articles.

    """
    if predicted is None:
        return False
    number = _as_number(predicted)
    target = _as_number(expected)
    if target is not None:
        candidates = [number] if number is not None else extract_numbers(str(predicted))
        return any(_close(c, target, tolerance) for c in candidates)
    text = f" {normalize_name(str(predicted))} "
    return any(f" {variant} " in text for variant in _name_variants(str(expected)) if variant)


def load_questions(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Read a WorldQA question file, one JSON object a line.

    Args:
        path: the file; `questions.jsonl` next to this module by default.

    Returns:
        The questions, in file order.

    Raises:
        OSError: the file cannot be read.
        ValueError: a line is not a JSON object.

    """
    questions: list[dict[str, Any]] = []
    lines = Path(path or QUESTIONS_PATH).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError(f"line {number} is not a JSON object")
        questions.append(record)
    return questions
