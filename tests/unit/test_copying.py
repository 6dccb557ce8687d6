"""CopyGuide: inside quoted strings, a greedy reply keeps copying the question's words."""

from __future__ import annotations

import numpy as np
import pytest

from taskloom.agent import Agent
from taskloom.llm._copying import CopyGuide
from taskloom.llm._sampling import LineLoops
from taskloom.testing import ScriptedModel

QUESTION = "What is the distance between Nairobi and Addis Ababa in miles?"
# A toy vocabulary: token id -> its text.
VOCAB = ['"', "Kenya", "N", "airobi", "Oslo", "n", "Add", "is", " Ab", "aba", "km", "$", ")", "d"]
IDS = {text: i for i, text in enumerate(VOCAB)}


def piece(token: int) -> bytes:
    return VOCAB[token].encode()


def scores(**by_text: float) -> np.ndarray:
    """Logits: -10 for every token but the ones named."""
    logits = np.full(len(VOCAB), -10.0, dtype=np.float32)
    for text, score in by_text.items():
        logits[IDS[text]] = score
    return logits


def guide_in_string(so_far: str, margin: float = 3.0) -> CopyGuide:
    guide = CopyGuide(QUESTION, margin)
    guide.advance(f'1. distance("{so_far}'.encode())
    return guide


def steer(guide: CopyGuide, logits: np.ndarray, allowed: set[str] | None = None) -> str:
    best = int(np.argmax(logits))

    def allow(ids: np.ndarray) -> np.ndarray:
        return np.array([allowed is None or VOCAB[i] in allowed for i in ids], dtype=np.bool_)

    return VOCAB[guide.steer(logits, best, allow if allowed is not None else None, piece)]


@pytest.mark.parametrize(
    ("so_far", "logits", "expected"),
    [
        # A name that starts with a capital starts one of the question's words.
        ("", scores(Kenya=5.0, N=3.0), "N"),
        # ... but only when the model nearly prefers it (margin 3).
        ("", scores(Kenya=5.0, N=1.0), "Kenya"),
        # A copy that has begun goes on, or ends where it may.
        ("Nairobi", scores(n=4.0, **{'"': 2.0}), '"'),
        ("Add", scores(Kenya=6.0, **{"is": 4.0}), "is"),
        ("Addis", scores(n=6.0, **{" Ab": 5.0}), " Ab"),
        # A copy stands in for a closing quote only at the end of a word,
        ("Ad", scores(n=6.0, **{'"': 5.0, "d": 4.0}), "d"),
        # and the model's own closing quote stands, even inside a word.
        ("Ad", scores(**{'"': 6.0, "d": 5.0}), '"'),
        # A pick that keeps the copy is the model's own.
        ("N", scores(airobi=5.0, **{'"': 4.0}), "airobi"),
        # Strings the model writes in its own words are left alone.
        ("", scores(km=5.0, N=4.9), "km"),
        ("", scores(**{"$": 5.0, "N": 4.9}), "$"),
    ],
)
def test_a_string_keeps_copying_the_question(
    so_far: str, logits: np.ndarray, expected: str
) -> None:
    assert steer(guide_in_string(so_far), logits) == expected


def test_outside_strings_the_model_picks_freely() -> None:
    guide = CopyGuide(QUESTION, 3.0)
    guide.advance(b"1. distance(")
    assert steer(guide, scores(Kenya=5.0, N=4.0)) == "Kenya"
    guide.advance(b'"Nairobi", "Addis Ababa")\n2. ')
    assert steer(guide, scores(Kenya=5.0, N=4.0)) == "Kenya"


def test_the_stand_in_must_be_allowed_by_the_grammar() -> None:
    guide = guide_in_string("Nairobi")
    assert steer(guide, scores(n=4.0, **{'"': 3.0}), allowed={"n", "Kenya"}) == "n"
    assert guide.steered == 0


def test_escaped_quotes_do_not_end_the_string() -> None:
    guide = CopyGuide('say "Nairobi" twice', 3.0)
    guide.advance(b'1. echo("say \\"Nai')
    assert steer(guide, scores(n=5.0, airobi=4.0)) == "n"  # "Nain" is not a copy, but
    guide.advance(b"robi\\")  # inside an escape nothing is steered
    assert steer(guide, scores(n=5.0, **{'"': 4.0})) == "n"


@pytest.mark.anyio
async def test_the_planner_asks_the_model_to_copy_from_the_question() -> None:
    model = ScriptedModel(
        [
            '1. shout("Nairobi")\n2. join()<END_OF_PLAN>',
            "Thought: it is in the results.\nAction: Finish($1)",
        ]
    )

    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    agent = Agent(tools=[shout], model=model, max_replans=0, grammar=False)
    result = await agent.run(QUESTION)
    assert result.answer == "NAIROBI"
    planner, joiner = model.options
    assert planner.copy_from == QUESTION
    assert joiner.copy_from is None


def test_a_line_may_not_repeat_a_run_of_tokens() -> None:
    loops = LineLoops(size=3)
    for token in (1, 2, 3, 4, 1, 2):
        assert loops.banned() == set()
        loops.advance(token, b"x")
    # 1 2 came before, followed by 3: a 3 now would repeat the run 1 2 3.
    assert loops.banned() == {3}
    loops.advance(9, b"\n")  # a new line starts afresh
    for token in (1, 2):
        loops.advance(token, b"x")
    assert loops.banned() == set()


def test_a_sum_of_references_is_no_loop() -> None:
    # "$1.population + $2.population + $3.population": runs differ by a digit.
    loops, line = LineLoops(size=8), []
    for n in range(1, 7):
        for token in (10, 100 + n, 11, 12, 13, 14):  # "$", digit, ".", "population", " +", " "
            assert token not in loops.banned()
            loops.advance(token, b"x")
            line.append(token)
    assert len(line) == 36
