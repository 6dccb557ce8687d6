"""Terminal views of a run: live progress from events, and the final summary.

A consumer of events like any other: the scheduler does not know it exists.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from taskloom.engine import RunResult, TaskStatus
from taskloom.engine import events as ev

__all__ = ["LiveProgress", "render_summary"]

_STYLE = {
    "pending": "dim",
    "ready": "cyan",
    "running": "yellow",
    "done": "green",
    "failed": "red",
    "skipped": "magenta",
    "cancelled": "magenta",
}
_MAX_ROWS = 30


class LiveProgress:
    """A live table of tasks, updated from the run's events.

    Use as a context manager and pass `on_event` to the run.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._rows: dict[str, dict[str, Any]] = {}
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

    def on_event(self, event: ev.Event) -> None:
        """Record what an event changes; the screen refreshes on its own clock."""
        if self._start is None:
            self._start = event.at
        if isinstance(event, ev.TaskAdded):
            self._rows[event.task_id] = {"tool": event.tool, "status": "pending", "note": ""}
            return
        if not isinstance(event, ev.TaskEvent):
            return
        row = self._rows[event.task_id]
        if isinstance(event, ev.TaskReady):
            row["status"] = "ready"
        elif isinstance(event, ev.TaskStarted):
            row.update(status="running", began=event.at, note=_short(event.arguments))
        elif isinstance(event, ev.TaskRetried):
            row["note"] = f"retry {event.attempt}: {event.error}"
        elif isinstance(event, ev.TaskFinished):
            row.update(status="done", ended=event.at, note=_short(event.output))
        elif isinstance(event, ev.TaskFailed | ev.TaskSkipped | ev.TaskCancelledEvent):
            row.update(
                status=event.kind.removeprefix("task_"), ended=event.at, note=str(event.error)
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
                task_id,
                row["tool"],
                Text(row["status"], style=_STYLE[row["status"]]),
                took,
                Text(row["note"][:80]),
            )
        if len(rows) > _MAX_ROWS:
            header.append(f"  (last {_MAX_ROWS} of {len(rows)} tasks)")
        return Group(header, table)


def render_summary(result: RunResult, console: Console) -> None:
    """Print every task's outcome and the run's timing summary."""
    table = Table(title=f"run {result.run_id}: {result.status}", title_justify="left", expand=True)
    table.add_column("task", no_wrap=True, min_width=4)
    table.add_column("tool", no_wrap=True, min_width=8)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("tries", no_wrap=True, justify="right")
    table.add_column("time", no_wrap=True, min_width=7, justify="right")
    table.add_column("output or error", no_wrap=True, overflow="ellipsis", ratio=1)
    shown = list(result.tasks.values())
    for task in shown[:200]:
        detail = _short(task.output) if task.status is TaskStatus.DONE else str(task.error)
        table.add_row(
            task.id,
            task.tool,
            Text(str(task.status), style=_STYLE[str(task.status)]),
            str(task.attempts),
            f"{task.duration:.3f}s",
            detail,
        )
    console.print(table)
    if len(shown) > 200:
        console.print(f"... and {len(shown) - 200} more tasks")
    if result.plan_error is not None:
        console.print(Text(f"plan error: {result.plan_error}", style="red"))
    path = " -> ".join(result.critical_path) or "-"
    console.print(
        f"makespan {result.makespan:.3f}s · critical path {result.critical_path_s:.3f}s ({path}) · "
        f"sum of task times {result.work:.3f}s · parallelism {result.parallelism:.2f}x"
    )


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
