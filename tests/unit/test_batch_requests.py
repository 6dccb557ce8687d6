"""Reading a batch file: every request has one id of its own, printed as written."""

from __future__ import annotations

import pytest

from taskloom import UserError
from taskloom.agent import read_requests, run_batch
from taskloom.agent.batch import BatchRequest


def test_requests_get_their_id_or_their_line_number() -> None:
    requests = read_requests(
        ['{"id": "q1", "question": "a?"}', "", '"b?"', '{"id": 7, "question": "c?"}']
    )
    assert [(r.id, r.question) for r in requests] == [("q1", "a?"), ("3", "b?"), ("7", "c?")]


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        (
            ['{"id": "a", "question": "x"}', '{"id": "a", "question": "y"}'],
            "line 2: the id 'a' is already used by line 1",
        ),
        (['"x"', '{"id": "1", "question": "y"}'], "line 2: the id '1' is already used by line 1"),
        (['{"id": 2, "question": "x"}', '"y"'], "line 2: the id '2' is already used by line 1"),
        (
            ['{"id": {"a": 1}, "question": "x"}'],
            'line 1: the id must be a non-empty string or a whole number, not {"a": 1}',
        ),
        (['{"id": [1], "question": "x"}'], "not [1]"),
        (['{"id": 1.5, "question": "x"}'], "not 1.5"),
        (['{"id": true, "question": "x"}'], "not true"),
        (['{"id": null, "question": "x"}'], "not null"),
        (['{"id": "", "question": "x"}'], 'not ""'),
        (
            ['{"id": ' + "9" * 5000 + ', "question": "x"}'],
            "line 1: not a JSON value taskloom can read",
        ),
        (["[" * 100_000], "line 1:"),
    ],
    ids=[
        "explicit twice",
        "auto then explicit",
        "explicit then auto",
        "object id",
        "list id",
        "float id",
        "bool id",
        "null id",
        "empty id",
        "huge int",
        "deep nesting",
    ],
)
def test_bad_or_duplicate_ids_are_user_errors(lines: list[str], fragment: str) -> None:
    with pytest.raises(UserError) as caught:
        read_requests(lines)
    assert fragment in str(caught.value)
    assert len(str(caught.value)) < 300


@pytest.mark.anyio
async def test_run_batch_rejects_requests_that_share_an_id() -> None:
    from taskloom.agent import Agent
    from taskloom.testing import ScriptedModel

    agent = Agent(tools=[], model=ScriptedModel([]))
    with pytest.raises(UserError, match="two requests of the batch have the id '1'"):
        await run_batch(agent, ["a", BatchRequest(id="1", question="b")])


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('"caf\\ud800"', "line 1: the question holds half of a surrogate pair (\\ud800)"),
        ('{"id": "\\udc00", "question": "x"}', "line 1: the id holds half of a surrogate pair"),
    ],
    ids=["in the question", "in the id"],
)
def test_half_a_surrogate_pair_is_a_user_error(line: str, fragment: str) -> None:
    with pytest.raises(UserError) as caught:
        read_requests([line])
    assert fragment in str(caught.value)


def test_a_pair_of_surrogate_escapes_is_one_character() -> None:
    (request,) = read_requests(['"\\ud83d\\ude00"'])
    assert request.question == "\U0001f600"
