"""A question asked from the web page: the planner's and joiner's bars, the plan, the answer.

The server's model is the scripted OpenAI-compatible server of the tests
(tests/chat_server.py): it writes one plan, then finishes with a task's output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_site import Site, assert_same_drawing, expect, node, screenshot, serving, start_from_form

from chat_server import chat_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PLAN = '1. nap(0.05)\n2. math("2 + 2")\n3. join()<END_OF_PLAN>'
FINISH = "Thought: task 2 has it.\nAction: Finish($2)"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """`taskloom serve` whose questions go to a scripted model (one plan, then finish)."""
    with (
        chat_server([PLAN, FINISH]) as model,
        serving(tmp_path, "--base-url", model.url, "--model", "scripted") as running,
    ):
        yield running


def test_a_question_shows_its_planner_joiner_and_answer(
    page: Any, site: Site, tmp_path: Path
) -> None:
    run_id = start_from_form(page, "What is 2 + 2?", kind="question")
    expect(page.locator("#run-status")).to_have_text("answered")
    expect(page.locator("#answer-box")).to_be_visible()
    expect(page.locator("#answer")).to_have_text("4")
    expect(page.locator("#run-request")).to_have_text("What is 2 + 2?")
    expect(node(page, "1")).to_have_attribute("data-state", "done")
    expect(node(page, "2")).to_have_attribute("data-state", "done")
    expect(page.locator("#timeline rect.bar.planner")).to_have_count(1)
    expect(page.locator("#timeline rect.bar.joiner")).to_have_count(1)
    page.click("#plan-box summary")
    expect(page.locator("#plan-text")).to_contain_text('math("2 + 2")')
    assert site.run(run_id)["answer"] == "4"
    assert_same_drawing(page, site, run_id, tmp_path / "trace.svg")
    screenshot(page, tmp_path / "question.png")
