"""Terminal views of a run: live progress from events, and the final summary.

A consumer of events like any other: the scheduler does not know it exists.
Everything that comes from a plan, a tool or a model (ids, arguments,
outputs, errors, requests) is printed as plain text: cells and lines are
`Text` objects, never strings that rich would read as markup, so `[red]` in
an output is shown as it is and `[/]` cannot break a table; control
characters (an ESC that would recolour the terminal) are shown as escapes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from taskloom._text import printable
from taskloom.engine import RunResult, TaskStatus

if TYPE_CHECKING:
    from taskloom.agent import AgentResult
    from taskloom.store import RunRecord, RunSummary
from taskloom.engine import events as ev

__all__ = ["LiveProgress", "render_agent_summary", "render_record", "render_runs", "render_summary"]

_STYLE = {
    "pending": "dim",
    "ready": "cyan",
    "running": "yellow",
    "done": "green",
    "failed": "red",
    "skipped": "magenta",
    "cancelled": "magenta",
    "interrupted": "red",
}
_MAX_ROWS = 30


class LiveProgress:
    """A live table of tasks, updated from the run's events.

    Use as a context manager and pass `on_event` to the run.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._rows: dict[str, dict[str, Any]] = {}
        self._plan_text = ""
        self._start: float | None = None
        self._live = Live(
            console=console, refresh_per_second=10, get_renderable=self._render, transient=True
        )

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.__exit__(exc_type, exc, tb)

    def on_plan_text(self, chunk: str) -> None:
        """Show the plan as the model writes it."""
        self._plan_text += chunk

    def on_event(self, event: ev.Event) -> None:
        """Record what an event changes; the screen refreshes on its own clock."""
        if self._start is None:
            self._start = event.at
        if isinstance(event, ev.TaskAdded):
            # Rounds of an agent run reuse nothing, but ids continue, so keys stay unique.
            self._rows[event.task_id] = {"tool": event.tool, "status": "pending", "note": ""}
            return
        if not isinstance(event, ev.TaskEvent):
            return
        row = self._rows[event.task_id]
        if isinstance(event, ev.TaskRewritten):
            row.update(tool=event.tool, status="pending")
        elif isinstance(event, ev.TaskReady):
            row["status"] = "ready"
        elif isinstance(event, ev.TaskStarted):
            row.update(status="running", began=event.at, note=_short(event.arguments))
        elif isinstance(event, ev.TaskRetried):
            row["note"] = _short(f"retry {event.attempt}: {event.error}")
        elif isinstance(event, ev.TaskFinished):
            row.update(status="done", ended=event.at, note=_short(event.output))
        elif isinstance(event, ev.TaskFailed | ev.TaskSkipped | ev.TaskCancelledEvent):
            row.update(
                status=event.kind.removeprefix("task_"),
                ended=event.at,
                note=_short(str(event.error)),
            )

    def _render(self) -> RenderableType:
        counts: dict[str, int] = {}
        for row in self._rows.values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        header = Text("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "waiting")
        table = Table(box=None, pad_edge=False, expand=True)
        table.add_column("task", no_wrap=True, min_width=4)
        table.add_column("tool", no_wrap=True, min_width=8)
        table.add_column("status", no_wrap=True, min_width=9)
        table.add_column("time", no_wrap=True, min_width=7, justify="right")
        table.add_column("detail", no_wrap=True, overflow="ellipsis", ratio=1)
        rows = list(self._rows.items())
        for task_id, row in rows[-_MAX_ROWS:]:
            took = ""
            if "began" in row and "ended" in row:
                took = f"{row['ended'] - row['began']:.3f}s"
            table.add_row(
                Text(task_id),
                Text(row["tool"]),
                Text(row["status"], style=_STYLE[row["status"]]),
                took,
                Text(row["note"][:80]),
            )
        if len(rows) > _MAX_ROWS:
            header.append(f"  (last {_MAX_ROWS} of {len(rows)} tasks)")
        if not self._plan_text:
            return Group(header, table)
        plan = printable("\n".join(self._plan_text.splitlines()[-12:]))
        return Group(
            Text("plan (as written):", style="bold"), Text(plan, style="dim"), header, table
        )


def render_summary(result: RunResult, console: Console, *, within_agent: bool = False) -> None:
    """Print every task's outcome and the run's timing summary (see `timing_line`)."""
    title = Text(f"run {result.run_id}: {result.status}")
    table = Table(title=title, title_justify="left", expand=True)
    table.add_column("task", no_wrap=True, min_width=4)
    table.add_column("tool", no_wrap=True, min_width=8)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("tries", no_wrap=True, justify="right")
    table.add_column("time", no_wrap=True, min_width=7, justify="right")
    table.add_column("output or error", no_wrap=True, overflow="ellipsis", ratio=1)
    shown = list(result.tasks.values())
    for task in shown[:200]:
        detail = _short(task.output) if task.status is TaskStatus.DONE else _short(str(task.error))
        table.add_row(
            Text(task.id),
            Text(task.tool),
            Text(str(task.status), style=_STYLE[str(task.status)]),
            str(task.attempts),
            f"{task.duration:.3f}s",
            Text(detail),
        )
    console.print(table)
    if len(shown) > 200:
        console.print(f"... and {len(shown) - 200} more tasks")
    if result.plan_error is not None:
        console.print(Text(printable(f"plan error: {result.plan_error}"), style="red"))
    console.print(Text(timing_line(result, within_agent=within_agent)))


def timing_line(result: RunResult, *, within_agent: bool = False) -> str:
    """The run's timings in words a person reads correctly.

    Parallelism (the sum of task times over the makespan) is shown only when
    it says something: at least two tasks ran and, on average, at least one
    was running. Below that the run mostly waited (for a plan being written,
    for a free thread), and the share of the run's time tools were busy says
    so plainly. In an agent's round the wall time includes the planner's
    writing, so tool time and wall time are shown side by side instead.
    """
    path = " -> ".join(result.critical_path) or "-"
    critical = f"critical path {result.critical_path_s:.3f}s ({_short(path)})"
    work, span = result.work, result.makespan
    if within_agent:
        return f"tools ran {work:.3f}s in all over {span:.3f}s of wall time · {critical}"
    ran = sum(1 for t in result.tasks.values() if t.started_at is not None)
    line = f"makespan {span:.3f}s · {critical} · sum of task times {work:.3f}s"
    if ran < 2 or span <= 0:
        return line
    if work >= span:
        return f"{line} · parallelism {result.parallelism:.2f}x"
    return f"{line} · tools busy {work / span:.0%} of the makespan"


def render_agent_summary(result: AgentResult, console: Console) -> None:
    """Print an agent run: its plans, tasks, the answer and where the time went."""
    for attempt in result.plan_attempts:
        mark = "valid" if attempt.valid else f"invalid: {attempt.error}"
        console.print(Text(printable(f"plan {attempt.round} ({mark})"), style="bold"))
        console.print(Text(printable(attempt.text.strip()) or "(empty)", style="dim"))
    for run in result.rounds:
        if run.tasks:
            render_summary(run, console, within_agent=True)
    if result.status == "answered":
        console.print(Text.assemble(("answer: ", "bold green"), printable(result.answer or "")))
    else:
        console.print(Text(printable(f"failed: {result.error or 'no answer'}"), style="bold red"))
    t = result.timings
    first = "-" if t.first_dispatch_s is None else f"{t.first_dispatch_s:.2f}s"
    console.print(
        f"{result.agent} · planner {t.planner_s:.2f}s · first tool call at {first} · "
        f"tools {t.makespan_s:.2f}s · joiner {t.joiner_s:.2f}s · total {t.total_s:.2f}s · "
        f"tokens {result.prompt_tokens} in / {result.completion_tokens} out · "
        f"{len(result.llm_calls)} LLM calls"
    )


def render_runs(runs: Sequence[RunSummary], console: Console) -> None:
    """Print recorded runs, newest first."""
    if not runs:
        console.print("no runs recorded yet")
        return
    table = Table(expand=True)
    table.add_column("run", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("request", no_wrap=True, overflow="ellipsis", ratio=1)
    for run in runs:
        status = run.status if run.status != "running" else "running (or stopped)"
        table.add_row(
            Text(run.id),
            Text(run.kind),
            Text(status),
            _when(run.started),
            Text(_short(run.request)),
        )
    console.print(table)


def render_record(record: RunRecord, console: Console) -> None:
    """Print a recorded run: its plans, its tasks with timings and results, the answer."""
    console.print(Text(f"run {record.id} · {record.kind} · {record.status}", style="bold"))
    console.print(Text(f"started {_when(record.started)} · resumed {record.resumes}x", style="dim"))
    console.print(Text(f"request: {_short(record.request, 2000)}"))
    for attempt in record.plan_attempts:
        mark = {True: "valid", False: f"invalid: {attempt.error}", None: "unfinished"}
        console.print(
            Text(printable(f"plan {attempt.attempt} ({mark[attempt.valid]})"), style="bold")
        )
        console.print(Text(printable(attempt.text.strip()) or "(empty)", style="dim"))
    table = Table(expand=True)
    for name in ("task", "call", "status", "start", "end"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    table.add_column("output or error", no_wrap=True, overflow="ellipsis", ratio=1)
    for task in record.tasks:
        detail = _short(task.output) if task.status == "done" else _short(task.error or "")
        table.add_row(
            Text(task.id),
            Text(_short(task.task.call_text(), 40)),
            Text(task.status, style=_STYLE.get(task.status, "")),
            "-" if task.started is None else f"{task.started:.3f}s",
            "-" if task.finished is None else f"{task.finished:.3f}s",
            Text(detail),
        )
    console.print(table)
    if record.answer is not None:
        console.print(Text.assemble(("answer: ", "bold green"), printable(record.answer)))
    if record.exhausted:
        console.print(Text(printable(f"budget exceeded: {record.exhausted}"), style="red"))
    if record.llm_calls:
        tokens = sum(c.prompt_tokens + c.completion_tokens for c in record.llm_calls)
        console.print(f"{len(record.llm_calls)} LLM calls · {tokens} tokens")


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return printable(text if len(text) <= limit else text[: limit - 3] + "...")
