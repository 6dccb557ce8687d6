"""The web page in headless Chromium: start a run, watch it, open a task, cancel, a big plan.

Every wait is for something to appear on the page (bounded far past a normal
run, so only a hang fails it); nothing is timed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from web_site import (
    TOKEN,
    WAIT_MS,
    Site,
    assert_same_drawing,
    bar,
    expect,
    node,
    open_gate,
    screenshot,
    serving,
    start_from_form,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PAGE = 50
"""Runs in one page of the page's list."""


def test_a_run_started_from_the_form_shows_its_tasks_change_state(
    page: Any, site: Site, tmp_path: Path
) -> None:
    # The token moved from the address into the tab's session.
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('taskloom.token')") == TOKEN
    gate = tmp_path / "gate"
    run_id = start_from_form(page, f'1. gate("{gate}")\n2. nap(0.01)\n3. math("$1 * 2")\n')

    expect(node(page, "1")).to_have_attribute("data-state", "running")
    expect(node(page, "2")).to_have_attribute("data-state", "done")
    expect(node(page, "3")).to_have_attribute("data-state", "pending")
    expect(page.locator("#run-status")).to_have_text("running")
    expect(page.locator("#cancel-run")).to_be_visible()
    expect(bar(page, "1")).to_have_attribute("data-state", "running")
    # One edge: 3 needs 1.
    expect(page.locator("#dag path.edges")).to_have_attribute("d", re.compile(r"^M[^M]+$"))

    open_gate(gate, "21")  # task 1 ends, and 3 can start
    expect(node(page, "1")).to_have_attribute("data-state", "done")
    expect(node(page, "3")).to_have_attribute("data-state", "done")
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator("#cancel-run")).to_be_hidden()
    node(page, "3").click()
    expect(page.locator("#task-output")).to_have_text("42")
    for task in ("1", "2", "3"):
        expect(bar(page, task)).to_have_attribute("data-state", "done")
    expect(page.locator(f'#runs li[data-run="{run_id}"] .status')).to_have_text("completed")
    assert site.settled(run_id)["status"] == "completed"
    screenshot(page, tmp_path / "run.png")


def test_a_task_opens_with_its_arguments_output_and_error(
    page: Any, site: Site, tmp_path: Path
) -> None:
    plan = '1. math("6 * 7")\n2. math("$1 + 1")\n3. math("1 / 0")\n4. math("$3 + 1")\n'
    start_from_form(page, plan)
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(node(page, "3")).to_have_attribute("data-state", "failed")
    expect(node(page, "4")).to_have_attribute("data-state", "skipped")

    node(page, "2").click()
    panel = page.locator("#task-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#task-title")).to_have_text("Task 2")
    expect(page.locator("#task-status")).to_have_text("done")
    expect(page.locator("#task-args")).to_contain_text("+ 1")
    expect(page.locator("#task-output")).to_have_text("43")
    expect(page.locator("#task-deps")).to_have_text("1")
    expect(page.locator("#task-attempts")).to_have_text("1")
    expect(node(page, "2")).to_have_class(re.compile(r"\bselected\b"))

    page.locator('#task-deps [data-goto="1"]').click()  # follow the dependency
    expect(page.locator("#task-title")).to_have_text("Task 1")
    expect(page.locator("#task-output")).to_have_text("42")

    bar(page, "3").click()  # the timeline's bars open their task too
    expect(page.locator("#task-title")).to_have_text("Task 3")
    expect(page.locator("#task-status")).to_have_text("failed")
    expect(page.locator("#task-error")).to_contain_text("zero")
    expect(page.locator("#task-output")).to_have_text("")

    node(page, "4").click()
    expect(page.locator("#task-status")).to_have_text("skipped")
    expect(page.locator("#task-error")).not_to_be_empty()
    expect(page.locator("#task-times")).to_contain_text("never ran; skipped at")
    screenshot(page, tmp_path / "task.png")

    page.click("#close-task")
    expect(panel).to_be_hidden()


def test_cancel_stops_a_running_run(page: Any, site: Site, tmp_path: Path) -> None:
    never = tmp_path / "never-opened"
    run_id = start_from_form(page, f'1. gate("{never}")\n2. math("$1 + 1")\n3. nap(0.01)\n')
    expect(node(page, "1")).to_have_attribute("data-state", "running")
    expect(node(page, "3")).to_have_attribute("data-state", "done")

    page.click("#cancel-run")
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(node(page, "1")).to_have_attribute("data-state", "cancelled")
    expect(node(page, "2")).to_have_attribute("data-state", re.compile("skipped|cancelled"))
    expect(bar(page, "1")).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#cancel-run")).to_be_hidden()
    expect(page.locator(f'#runs li[data-run="{run_id}"] .status')).to_have_text("cancelled")
    run = site.settled(run_id)
    assert run["status"] == "cancelled"
    assert {t["id"]: t["status"] for t in run["tasks"]}["1"] == "cancelled"
    screenshot(page, tmp_path / "cancelled.png")


def big_plan(size: int) -> str:
    """Ten roots, then each task adds one to the output of the task a tenth its number."""
    lines = [f'{i}. math("{i} + 1")' for i in range(1, 11)]
    lines += [f'{i}. math("${i // 10} + 1")' for i in range(11, size + 1)]
    return "\n".join(lines) + "\n"


def test_a_plan_of_a_thousand_tasks_renders_every_node(
    page: Any, site: Site, tmp_path: Path
) -> None:
    size = 1000
    start_from_form(page, big_plan(size))
    placed = "#dag .node:not(.unplaced)"
    page.wait_for_function(
        f"document.querySelectorAll('{placed}').length === {size}", timeout=WAIT_MS
    )
    expect(page.locator("#run-status")).to_have_text("completed")
    done = f"document.querySelectorAll('#dag .node[data-state=\"done\"]').length === {size}"
    page.wait_for_function(done, timeout=WAIT_MS)
    bars = f"document.querySelectorAll('#timeline rect.bar[data-state=\"done\"]').length === {size}"
    page.wait_for_function(bars, timeout=WAIT_MS)
    expect(page.locator("#run-counts")).to_have_text(f"{size} tasks: {size} done")
    # The page still answers: a click opens a task ($1000 = $100 + 1 = ($10 + 1) + 1 = 13).
    node(page, str(size)).click()
    expect(page.locator("#task-output")).to_have_text("13")
    assert page.evaluate("() => document.querySelectorAll('#dag .node').length") == size
    screenshot(page, tmp_path / "thousand.png")


def test_the_timeline_is_the_drawing_of_taskloom_trace(
    page: Any, site: Site, tmp_path: Path
) -> None:
    plan = "1. nap(0.3)\n2. nap(0.1)\n3. nap(0.15)\n4. nap(0.05)\n"
    plan += '5. math("1 / 0")\n6. math("$5 + 1")\n'
    run_id = start_from_form(page, plan, most=2)
    expect(page.locator("#run-status")).to_have_text("completed")
    export_bars = assert_same_drawing(page, site, run_id, tmp_path / "trace.svg")
    assert {b["state"] for b in export_bars.values()} == {"done", "failed", "skipped"}
    assert len({b["y"] for b in export_bars.values()}) == 3  # two slots and "not run"


def test_the_page_says_when_it_has_no_token(browser: Any, site: Site) -> None:
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(site.url + "/")
        expect(tab.locator("#notice")).to_contain_text("token", timeout=WAIT_MS)
        expect(tab.locator("#run-view")).to_be_hidden()
    finally:
        context.close()


def finish_plan(site: Site, plan: str) -> str:
    """Start a plan through the API and follow its events to the end."""
    created = site.api.post("/v1/runs", json={"plan": plan})
    assert created.status_code == 201, created.text
    run_id = str(created.json()["id"])
    site.follow_to_end(run_id)
    return run_id


def test_the_list_of_runs_comes_a_page_at_a_time(page: Any, site: Site) -> None:
    for n in range(PAGE + 1):
        finish_plan(site, f'1. math("{n} + 1")\n')
    every = []
    before: str | None = None
    while True:
        query = f"?limit=100&before={before}" if before else "?limit=100"
        listed = site.api.get(f"/v1/runs{query}").json()
        every += [r["id"] for r in listed["runs"]]
        before = listed["next"]
        if before is None:
            break
    page.reload()
    rows = page.locator("#runs li")
    expect(rows).to_have_count(PAGE)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.run)") == every[:PAGE]
    page.click("#more-runs")
    expect(rows).to_have_count(len(every))
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.run)") == every
    expect(page.locator("#more-runs")).to_be_hidden()
    rows.last.locator("a").click()  # the oldest run opens
    expect(page.locator("#run-title")).to_contain_text(every[-1][:12])


def test_a_plan_that_does_not_parse_is_explained_under_the_form(page: Any, site: Site) -> None:
    page.fill("#run-text", "1. no_such_tool(1)\n")
    page.click("#start")
    error = page.locator("#form-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("no_such_tool")
    assert "#/runs/" not in page.url


def _from_where_it_stopped(url: str, last_event_id: str | None) -> bool:
    """Whether a request for the stream asks for the events after some it has."""
    return bool(re.search(r"[?&]after=[1-9]", url)) or (last_event_id or "0") != "0"


def test_the_page_follows_a_run_across_a_server_restart_and_resumes_it(
    browser: Any, tmp_path: Path
) -> None:
    streams: list[Any] = []  # each request for the run's event stream
    gate = tmp_path / "gate"
    root = tmp_path / "site"
    root.mkdir()
    with serving(root) as first:
        port = int(first.url.rsplit(":", 1)[1])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        page.on("request", lambda r: streams.append(r) if "/events" in r.url else None)
        page.goto(first.page_url())
        run_id = start_from_form(page, f'1. gate("{gate}")\n2. math("$1 + 1")\n3. nap(0.01)\n')
        expect(node(page, "1")).to_have_attribute("data-state", "running")
        expect(node(page, "3")).to_have_attribute("data-state", "done")
        first.process.kill()  # the stream drops with the server; the run is left unfinished
        first.process.wait()
        expect(page.locator("#stream-state")).to_contain_text("reconnecting")
    try:
        with serving(root, port=port) as second:
            # The page follows the stream again, from the last event it had: the run is
            # unfinished, so the page offers to resume it.
            expect(page.locator("#run-status")).to_have_text("abandoned")
            expect(page.locator("#stream-state")).to_be_hidden()
            again = [(r.url, r.all_headers().get("last-event-id")) for r in streams[1:]]
            assert any(_from_where_it_stopped(*stream) for stream in again), again
            page.click("#resume-run")
            expect(node(page, "1")).to_have_attribute("data-state", "running")
            open_gate(gate, "1")
            expect(page.locator("#run-status")).to_have_text("completed")
            expect(node(page, "2")).to_have_attribute("data-state", "done")
            expect(page.locator("#resume-run")).to_be_hidden()
            assert second.settled(run_id)["status"] == "completed"
            screenshot(page, tmp_path / "resumed.png")
    finally:
        context.close()
