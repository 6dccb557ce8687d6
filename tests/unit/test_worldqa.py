"""WorldQA: the tolerant scorer, and the shape of the generated question set."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import taskloom
from taskloom.tools import world
from taskloom.tools.world import WORLD_TOOLS

WORLDQA = Path(__file__).resolve().parents[2] / "bench" / "worldqa"


def _load_scorer() -> ModuleType:
    # bench/ is not a package: load the module from its file, under a name of its own.
    spec = importlib.util.spec_from_file_location("worldqa_score", WORLDQA / "score.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


scorer = _load_scorer()
score = scorer.score


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "predicted",
    [
        "67000000",
        "67,000,000",
        "About 67,000,000 people.",
        "67 million",
        "roughly 67 Million people",
        "67.0M",
        "6.7e7",
        "6.7E+07",
        "0.067 billion",
        "67000 thousand",
        "67\u202f000\u202f000",
        "The populations are 12,345 and 67,100,000.",
        67_000_000,
        67_300_000.0,
    ],
)
def test_numbers_in_many_formats_match(predicted: Any) -> None:
    assert score(predicted, 67_000_000)


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ("about 1,234.5 km", 1234.5),
        ("It is 1234 km away", 1234.5),
        ("-5,000", -5000),
        ("a fall of \u22123.2 points", -3.2),
        ("12.5%", 12.5),
        ("12.5%", 0.125),
        ("The ratio is 2.95.", 2.94597),
        ("0.5", 0.5),
        ("3.4 bn", 3.4e9),
        ("1.2k", 1200),
        ("0", 0),
    ],
)
def test_formats_signs_percentages_and_scales(predicted: str, expected: float) -> None:
    assert score(predicted, expected)


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ("67 million", 68_000_000),  # 1.5% off
        ("6,700,000", 67_000_000),  # a digit short
        ("5,000", -5000),  # the wrong sign
        ("1990-2000", -2000),  # a range's hyphen is not a minus
        ("1,234 m", 1_234_000_000),  # "m" is metres, not millions
        ("no idea", 42),
        ("", 42),
        (None, 42),
        ("The answer is 41.", 42),
    ],
)
def test_wrong_numbers_are_rejected(predicted: str | None, expected: float) -> None:
    assert not score(predicted, expected)


def test_tolerance_is_relative_and_adjustable() -> None:
    assert score("105", 100, tolerance=0.05)
    assert not score("106", 100, tolerance=0.05)
    assert not score("100.5", 100, tolerance=0.0)
    assert score("100", 100, tolerance=0.0)


def test_extract_numbers_lists_every_reading() -> None:
    assert scorer.extract_numbers("67.0M and 12.5% of 1,000") == [67.0, 67e6, 12.5, 0.125, 1000]
    assert scorer.extract_numbers("Paris-Berlin") == []


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ("Nairobi", "Nairobi"),
        ("The capital of Kenya is NAIROBI.", "Nairobi"),
        ("brasilia", "Brasília"),
        ("Brasília", "Brasilia"),
        ("It's São Paulo!", "Sao Paulo"),
        ("Netherlands", "The Netherlands"),
        ("the USA", "United States"),
        ("the U.S.", "United States"),
        ("Bangalore", "Bengaluru"),
        ("Ulaanbaatar", "Ulan Bator"),
        ("New York", "New York City"),
        ("Answer: Buenos Aires", "Buenos Aires"),
    ],
)
def test_names_match_ignoring_case_accents_articles_and_aliases(
    predicted: str, expected: str
) -> None:
    assert score(predicted, expected)


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ("Parisian", "Paris"),  # only whole words count
        ("Lagos", "Abuja"),
        ("Buenos", "Buenos Aires"),
        ("Nigeria", "Niger"),
        ("Let us think: Canada.", "United States"),
        ("", "Paris"),
        (None, "Paris"),
    ],
)
def test_wrong_names_are_rejected(predicted: str | None, expected: str) -> None:
    assert not score(predicted, expected)


def test_normalize_name() -> None:
    assert scorer.normalize_name("  The Côte-d'Ivoire! ") == "cote divoire"


# ---------------------------------------------------------------- the question set


@pytest.fixture(scope="module", params=["tuning", "heldout"])
def questions(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    # Both halves are drawn from the same families and must have the same mix.
    path = scorer.QUESTIONS_PATH if request.param == "tuning" else scorer.HELDOUT_PATH
    return scorer.load_questions(path)


def test_the_halves_are_drawn_with_different_seeds_and_share_no_question() -> None:
    tuning = scorer.load_questions(scorer.QUESTIONS_PATH)
    heldout = scorer.load_questions(scorer.HELDOUT_PATH)
    assert len(heldout) >= 100
    assert not {q["question"] for q in tuning} & {q["question"] for q in heldout}
    # No worked example of the world tools is a benchmark question, in either half.
    examples = {e["question"].casefold() for e in scorer.load_questions(world.EXAMPLES_PATH)}
    for half in (tuning, heldout):
        assert not examples & {q["question"].casefold() for q in half}
    assert (
        Counter(q["family"] for q in tuning).keys() == Counter(q["family"] for q in heldout).keys()
    )


def test_question_set_has_the_promised_mix(questions: list[dict[str, Any]]) -> None:
    assert len(questions) >= 100
    ids = [q["id"] for q in questions]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"q\d{3}", i) for i in ids)
    widths = Counter(q["width"] for q in questions)
    assert set(range(1, 9)) <= set(widths)
    assert sum(n for w, n in widths.items() if w >= 4) >= 25
    replans = [q for q in questions if q["needs_replan"]]
    assert len(replans) >= 15
    assert all(q["second_step"] for q in replans)
    assert {q["kind"] for q in questions} == {"lookup", "aggregate", "derived", "replan"}


def test_records_are_well_formed(questions: list[dict[str, Any]]) -> None:
    for q in questions:
        assert q["question"].endswith("?"), q["id"]
        if isinstance(q["answer"], str):
            assert q["tolerance"] == 0 and q["answer"], q["id"]
        else:
            assert isinstance(q["answer"], int | float) and q["tolerance"] > 0, q["id"]
        assert q["needs_replan"] == (q["kind"] == "replan"), q["id"]


def test_every_reference_plan_parses_and_joins(questions: list[dict[str, Any]]) -> None:
    lookups = {"country", "city", "distance"}
    for q in questions:
        plan = taskloom.Plan.parse(q["reference_plan"], tools=WORLD_TOOLS)
        assert plan.joined, q["id"]
        assert sum(t.tool in lookups for t in plan) == q["width"], q["id"]
        # The lookups are independent: every dependency leads to a computing step.
        for task in plan:
            assert not (task.tool in lookups and task.dependencies), q["id"]
