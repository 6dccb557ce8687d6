"""Terminal views print user and tool data as plain text: markup in it is never read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from taskloom import Plan, Store, execute, tool
from taskloom._console import LiveProgress, render_record, render_runs, render_summary
from taskloom.engine import RunResult

pytestmark = pytest.mark.anyio

MARKUP = "[/]"
STYLED = "[red]alarm[/red]"


@tool
async def echo(text: str) -> str:
    """Return the text."""
    return text


@tool
async def boom(text: str) -> str:
    """Fail with the text."""
    raise ValueError(text)


PLAN = f'1. echo("{MARKUP}")\n2. echo("{STYLED}")\n3. boom("{MARKUP} {STYLED}")\n'


def console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system="truecolor", force_terminal=True)


def written(view: Console) -> str:
    out = view.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def plain(view: Console) -> str:
    """What a person reads: the text without its colour codes."""
    from rich.text import Text

    return Text.from_ansi(written(view)).plain


async def run(store: Store | None = None) -> RunResult:
    plan = Plan.parse(PLAN)
    journal = store.journal(request=f"ask {MARKUP} {STYLED}", plan=plan) if store else None
    return await execute(plan, tools=[echo, boom], journal=journal)


async def test_the_summary_prints_markup_in_outputs_and_errors_as_it_is() -> None:
    view = console()
    render_summary(await run(), view)
    text = plain(view)
    assert MARKUP in text
    assert STYLED in text  # shown as written, not turned into a red "alarm"
    assert "ValueError" in text


async def test_a_styled_output_is_not_rendered_as_style() -> None:
    view = console()
    render_summary(await run(), view)
    # Rich would emit red for "[red]alarm": the word must not be coloured.
    assert "\x1b[31malarm" not in written(view)
    assert "[red]alarm[/red]" in plain(view)


async def test_show_and_runs_print_a_recorded_run_with_markup(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        result = await run(store)
        record = store.load(result.run_id)
        runs = store.runs(10)
    view = console()
    render_record(record, view)
    text = plain(view)
    assert f"request: ask {MARKUP} {STYLED}" in text
    assert MARKUP in text and STYLED in text
    listing = console()
    render_runs(runs, listing)
    assert STYLED in plain(listing)


async def test_live_progress_shows_markup_as_it_is() -> None:
    view = console()
    progress = LiveProgress(view)
    await execute(Plan.parse(PLAN), tools=[echo, boom], on_event=progress.on_event)
    view.print(progress._render())
    text = plain(view)
    assert MARKUP in text and STYLED in text


async def test_a_huge_error_is_shown_short() -> None:
    @tool
    async def loud() -> str:
        raise ValueError("x" * 5_000_000)

    result = await execute(Plan.parse("1. loud()\n"), tools=[loud])
    assert len(str(result.tasks["1"].error)) < 1000
    view = console()
    render_summary(result, view)
    assert len(written(view)) < 20_000


ESCAPES = "A\x1b[2J\x1b]0;title\x07B\u202eC\rD\x9bE"
"""Clear the screen, set the window title, reverse the text, return the carriage."""


async def test_control_characters_in_outputs_errors_and_calls_are_shown_as_escapes(
    tmp_path: Path,
) -> None:
    plan = Plan.parse('1. echo("a\\u001b[2Jb")\n2. boom("c\\u202ed")\n')
    views = [console(), console()]
    with Store.open(tmp_path / "s.sqlite3") as store:
        result = await execute(plan, tools=[echo, boom], journal=store.journal(plan=plan))
        render_summary(result, views[0])
        render_record(store.load(result.run_id), views[1])
    for view in views:
        out = written(view)
        assert "\x1b[2J" not in out and "\u202e" not in out
        assert "a\\x1b[2Jb" in plain(view)
        assert "\\u202e" in plain(view)


def test_printable_escapes_terminal_controls_and_keeps_lines() -> None:
    from taskloom._text import printable

    assert printable(ESCAPES) == "A\\x1b[2J\\x1b]0;title\\x07B\\u202eC\\x0dD\\x9bE"
    assert (
        printable("tab\tand\nnewline stay; é and 中 too") == "tab\tand\nnewline stay; é and 中 too"
    )
