"""A recorded run as a timeline (a Gantt chart): an SVG picture, or an HTML page around it.

    timeline = load_timeline(store, run_id)
    Path("run.svg").write_text(render_svg(timeline))
    Path("run.html").write_text(render_html(timeline))

Each concurrent slot is a lane: a task's bar goes in the first lane free when
it starts, so the number of lanes is the most tasks that ran at once. The
planner's and the joiner's model calls have lanes of their own above them;
tasks that never ran (skipped, cancelled while waiting) are ticks in a lane
below. Bars are coloured by the task's final state; hovering one shows the
call, its times and its error. Nothing is loaded from elsewhere: no script,
no font, no stylesheet.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from taskloom._ids import RunId, TaskId
from taskloom._text import clip

if TYPE_CHECKING:
    from taskloom.store import EventRecord, RunRecord, Store, TaskRecord

__all__ = [
    "Bar",
    "Timeline",
    "assign_lanes",
    "build_timeline",
    "load_timeline",
    "render_html",
    "render_svg",
]

COLOURS = {
    "done": "#43a047",
    "failed": "#e53935",
    "skipped": "#9e9e9e",
    "cancelled": "#fb8c00",
    "interrupted": "#8e24aa",
    "running": "#1e88e5",
    "pending": "#cfd8dc",
    "ready": "#cfd8dc",
    "planner": "#5c6bc0",
    "joiner": "#00897b",
    "model": "#5c6bc0",
}
"""Fill colour of a bar, by a task's state or a model call's purpose."""

_PURPOSES = {"plan": "planner", "join": "joiner"}
"""A model call's lane, by the call's purpose; any other purpose (ReAct's) goes in `model`."""
_VERB = {"planner": "plan", "joiner": "join"}
"""A model call's bar label, "plan 2", by its lane."""
_NOT_RUN = "not run"
_ROW, _TOP, _GUTTER, _PAD, _LEGEND = 22.0, 30, 92, 16, 30
_BODY = 1200.0
"""Most pixels the lanes take together: past about 55 lanes, each gets thinner."""
_CHAR = 6.6
"""Roughly the width of one character of the 11px labels, to see whether a label fits its bar."""
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot hold (control characters, lone surrogates)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Bar:
    """One bar of the timeline: a task, or a model call of the planner or the joiner."""

    kind: str
    """"task", "planner", "joiner" or "model" (another model call: a ReAct step)."""
    label: str
    """The short text on the bar: "3 country", "plan 1"."""
    detail: str
    """The longer text shown on hover: the call, its times, its error."""
    state: str
    """A task's final status; for a model call, its kind."""
    start: float
    """Seconds after the run's start."""
    end: float
    """Seconds after the run's start (equal to `start` for a task that never ran)."""
    lane: int
    """Its row: an index into `Timeline.lanes`."""
    task_id: TaskId | None = None
    """The task, for a task's bar."""
    retries: tuple[float, ...] = ()
    """When an attempt failed and another followed (seconds after the run's start)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeline:
    """What a timeline shows of one run."""

    run_id: RunId
    """The run."""
    kind: str
    """"exec" or "agent"."""
    status: str
    """How it ended (or `running`, `abandoned`)."""
    request: str
    """The question, or the plan's name."""
    duration: float
    """Seconds from the run's start to its last recorded moment."""
    lanes: tuple[str, ...]
    """The rows' names, top to bottom: "planner", "joiner", "slot 1"..., "not run"."""
    bars: tuple[Bar, ...] = field(default=())
    """Every bar: one per task, one per model call."""


def assign_lanes(spans: Sequence[tuple[float, float]]) -> list[int]:
    """Put each (start, end) interval in a lane so that no two in one lane overlap.

    Intervals are taken by start time; each goes in the lowest-numbered lane
    free by then (one that ends exactly when another starts leaves its lane
    free). That uses as few lanes as the most intervals open at one moment.

    Returns:
        The lane of each interval, from 0, in the order given.

    """
    order = sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1], i))
    lanes = [0] * len(spans)
    busy: list[tuple[float, int]] = []  # (end, lane) of lanes in use
    free: list[int] = []
    count = 0
    for i in order:
        start, end = spans[i]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, count = count, count + 1
        lanes[i] = lane
        heapq.heappush(busy, (max(start, end), lane))
    return lanes


def load_timeline(store: Store, run_id: str) -> Timeline:
    """The timeline of a run recorded in `store` (an id prefix is enough).

    Raises:
        UserError: if there is no such run.
        StoreError: if the store cannot be read.

    """
    record = store.load(run_id)
    return build_timeline(record, store.events(record.id))


def build_timeline(record: RunRecord, events: Iterable[EventRecord] = ()) -> Timeline:
    """The timeline of a recorded run, from its tasks and its event log.

    The log gives the model calls (`llm_call_finished`: when each ended and
    how long it took) and the retries; without it, only the tasks are drawn.
    """
    calls: list[tuple[str, float, float, dict[str, Any]]] = []
    retries: dict[TaskId, list[float]] = {}
    last = record.elapsed
    for event in events:
        data = event.data or {}
        last = max(last, event.at)
        if event.kind == "llm_call_finished":
            latency = float(data.get("latency_s") or 0.0)
            purpose = _PURPOSES.get(str(data.get("purpose")), "model")
            calls.append((purpose, max(0.0, event.at - latency), event.at, data))
        elif event.kind == "task_retried" and event.task_id is not None:
            retries.setdefault(event.task_id, []).append(event.at)
    for task in record.tasks:
        last = max(last, task.finished or 0.0, task.started or 0.0)

    lanes: list[str] = []
    bars: list[Bar] = []
    for purpose in ("planner", "joiner", "model"):
        mine = [c for c in calls if c[0] == purpose]
        if mine:
            bars += _model_bars(mine, purpose, lanes)

    ran = [t for t in record.tasks if t.started is not None]
    spans = [(t.started or 0.0, t.finished if t.finished is not None else last) for t in ran]
    slots = assign_lanes(spans)
    first = len(lanes)
    lanes += [f"slot {n + 1}" for n in range(max(slots, default=-1) + 1)]
    for task, (start, end), slot in zip(ran, spans, slots, strict=True):
        state = task.status if task.finished is not None else "running"
        bars.append(
            _task_bar(task, state, start, end, first + slot, tuple(retries.get(task.id, ())))
        )
    never = [t for t in record.tasks if t.started is None]
    if never:
        lanes.append(_NOT_RUN)
        for task in never:
            at = task.finished if task.finished is not None else 0.0
            bars.append(_task_bar(task, task.status, at, at, len(lanes) - 1, ()))
    return Timeline(
        run_id=record.id,
        kind=record.kind,
        status=record.status,
        request=record.request,
        duration=last,
        lanes=tuple(lanes),
        bars=tuple(bars),
    )


def _model_bars(
    calls: list[tuple[str, float, float, dict[str, Any]]], purpose: str, lanes: list[str]
) -> list[Bar]:
    slots = assign_lanes([(start, end) for _, start, end, _ in calls])
    first = len(lanes)
    lanes += [purpose if n == 0 else f"{purpose} {n + 1}" for n in range(max(slots) + 1)]
    bars = []
    for (_, start, end, data), slot in zip(calls, slots, strict=True):
        round_ = data.get("round")
        tokens_in, tokens_out = data.get("prompt_tokens", "?"), data.get("completion_tokens", "?")
        tokens = f"{tokens_in} tokens in, {tokens_out} out"
        bars.append(
            Bar(
                kind=purpose,
                label=f"{_VERB.get(purpose, purpose)} {round_}" if round_ else purpose,
                detail=f"{purpose} (round {round_}): {data.get('model', '?')}, "
                f"{_span_text(start, end)}; {tokens}",
                state=purpose,
                start=start,
                end=end,
                lane=first + slot,
            )
        )
    return bars


def _task_bar(
    task: TaskRecord, state: str, start: float, end: float, lane: int, retries: tuple[float, ...]
) -> Bar:
    times = _span_text(start, end) if task.started is not None else f"at {start:.3f} s"
    detail = f"{clip(str(task.task), 200)}\n{state}, {times}"  # str(task): "3. tool(...)"
    if retries:
        detail += f", {len(retries)} retr{'y' if len(retries) == 1 else 'ies'}"
    if task.error:
        detail += f"\n{task.error_type or 'error'}: {clip(task.error, 300)}"
    return Bar(
        kind="task",
        label=f"{task.id} {task.task.tool}",
        detail=detail,
        state=state,
        start=start,
        end=end,
        lane=lane,
        task_id=task.id,
        retries=retries,
    )


def _span_text(start: float, end: float) -> str:
    return f"{start:.3f}–{end:.3f} s ({_seconds(end - start)})"


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


# -- drawing ------------------------------------------------------------------


def render_svg(timeline: Timeline, *, width: int = 1000) -> str:
    """The timeline as a standalone SVG picture (the text of an `<svg>` element).

    Every task's bar is a `rect` with `data-task` (its id) and `data-state`.
    A run with many lanes (a wide fan-out) gets thinner lanes, so the picture
    stays about a screen high.
    """
    layout = _Layout(timeline.duration, width, max(1, len(timeline.lanes)))
    height = math.ceil(_TOP + layout.rows * layout.row + _LEGEND)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="11" '
        f'role="img" aria-label="{_text(f"timeline of run {timeline.run_id}")}">',
        f"<title>{_text(f'run {timeline.run_id}: {timeline.status}')}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    out += _axis(layout)
    every = math.ceil(14 / layout.row)  # a label every so many lanes, so that labels never collide
    for row, name in enumerate(timeline.lanes):
        y = _TOP + row * layout.row
        if row % 2 and layout.row >= 6:
            out.append(
                f'<rect x="{_GUTTER}" y="{_f(y)}" width="{_f(layout.right - _GUTTER)}" '
                f'height="{_f(layout.row)}" fill="#000000" fill-opacity="0.03"/>'
            )
        if row % every == 0 or name in (_NOT_RUN, "planner", "joiner"):
            out.append(
                f'<text x="{_GUTTER - 8}" y="{_f(y + layout.row / 2 + 4)}" text-anchor="end" '
                f'fill="#455a64">{_text(name)}</text>'
            )
    for bar in timeline.bars:
        out += _bar(bar, layout)
    out += _legend(timeline, height)
    out.append("</svg>")
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where things go: seconds to x, lanes to y."""

    duration: float
    width: int
    rows: int

    @property
    def right(self) -> float:
        return self.width - _PAD

    @property
    def row(self) -> float:
        return min(_ROW, _BODY / self.rows)

    @property
    def bar(self) -> float:
        """A bar's height: most of its lane, with a gap while the lane is tall enough."""
        return self.row - 6 if self.row >= 12 else self.row * 0.8

    def x(self, seconds: float) -> float:
        span = self.duration if self.duration > 0 else 1.0
        return _GUTTER + (self.right - _GUTTER) * max(0.0, seconds) / span


def _axis(layout: _Layout) -> list[str]:
    step = _tick_step(layout.duration)
    bottom = _f(_TOP + layout.rows * layout.row)
    out = [
        f'<line x1="{_GUTTER}" y1="{_TOP}" x2="{layout.right}" y2="{_TOP}" stroke="#90a4ae"/>',
    ]
    n = 0
    while n * step <= layout.duration * (1 + 1e-9) and n <= 50:
        x = _f(layout.x(n * step))
        out.append(
            f'<line x1="{x}" y1="{_TOP - 4}" x2="{x}" y2="{bottom}" stroke="#eceff1"/>'
            f'<text x="{x}" y="{_TOP - 8}" text-anchor="middle" fill="#607d8b">'
            f"{_tick_label(n * step, step)}</text>"
        )
        n += 1
    return out


def _tick_step(duration: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about eight ticks."""
    if duration <= 0:
        return 1.0
    raw = duration / 8
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tick_label(value: float, step: float) -> str:
    if step < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:g} s"


def _bar(bar: Bar, layout: _Layout) -> list[str]:
    x = layout.x(bar.start)
    w = layout.x(bar.end) - x
    w = w - 1 if w > 4 else max(w, 2.0)  # a hairline between bars that touch
    high = layout.bar
    y = _TOP + bar.lane * layout.row + (layout.row - high) / 2
    colour = COLOURS.get(bar.state, "#78909c")
    data = ""
    if bar.task_id is not None:
        data = f' data-task="{_text(bar.task_id)}" data-state="{_text(bar.state)}"'
    out = [
        f'<rect class="bar {_text(bar.kind)}"{data} x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" '
        f'height="{_f(high)}" rx="{2 if high >= 6 else 0}" fill="{colour}">'
        f"<title>{_text(bar.detail)}</title></rect>"
    ]
    for at in bar.retries:
        rx = _f(layout.x(at))
        out.append(
            f'<line x1="{rx}" y1="{_f(y)}" x2="{rx}" y2="{_f(y + high)}" stroke="#263238" '
            'stroke-width="1.5"/>'
        )
    if high >= 14 and len(bar.label) * _CHAR + 6 <= w:
        out.append(
            f'<text x="{_f(x + 4)}" y="{_f(y + high - 4)}" fill="#ffffff" '
            f'pointer-events="none">{_text(bar.label)}</text>'
        )
    return out


def _legend(timeline: Timeline, height: int) -> list[str]:
    shown = list(dict.fromkeys(bar.state for bar in timeline.bars))
    y = height - _LEGEND + 10
    x = float(_GUTTER)
    out = []
    for state in shown:
        out.append(
            f'<rect x="{_f(x)}" y="{y}" width="12" height="12" rx="2" '
            f'fill="{COLOURS.get(state, "#78909c")}"/>'
            f'<text x="{_f(x + 16)}" y="{y + 10}" fill="#455a64">{_text(state)}</text>'
        )
        x += 28 + len(state) * _CHAR
    return out


def _f(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _text(value: str) -> str:
    """Text for XML: escaped, and without the characters XML cannot hold."""
    return escape(_NOT_XML.sub("\ufffd", value), quote=True)


_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #263238; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #607d8b; margin: 0 0 4px; }
.request { white-space: pre-wrap; margin: 0 0 16px; }
.chart { overflow-x: auto; border: 1px solid #eceff1; }
table { border-collapse: collapse; margin-top: 16px; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid #eceff1; }
td { vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.call, td.error { font-family: ui-monospace, monospace; white-space: pre-wrap; max-width: 40em; }
.state { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
"""


def render_html(timeline: Timeline, *, width: int = 1000) -> str:
    """A self-contained HTML page: the run's facts, the SVG timeline, a table of its tasks."""
    tasks = [bar for bar in timeline.bars if bar.kind == "task"]
    counts: dict[str, int] = {}
    for bar in tasks:
        counts[bar.state] = counts.get(bar.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no tasks"
    title = f"taskloom run {timeline.run_id}"
    rows = []
    for bar in sorted(tasks, key=lambda b: (b.start, b.lane)):
        ran = timeline.lanes[bar.lane] != _NOT_RUN
        call, _, rest = bar.detail.partition("\n")
        error = rest.partition("\n")[2]
        rows.append(
            "<tr>"
            f'<td><span class="state" style="background:{COLOURS.get(bar.state, "#78909c")}">'
            f"</span>{_text(bar.state)}</td>"
            f'<td class="call">{_text(call)}</td>'
            f'<td class="num">{bar.start:.3f}</td>'
            f'<td class="num">{_seconds(bar.end - bar.start) if ran else ""}</td>'
            f'<td class="error">{_text(error)}</td>'
            "</tr>"
        )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{_text(title)}</title>",
            f"<style>{_PAGE_STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{_text(title)}</h1>",
            f'<p class="meta">{_text(timeline.kind)} · {_text(timeline.status)} · '
            f"{_seconds(timeline.duration)} · {_text(summary)}</p>",
            f'<p class="request">{_text(timeline.request)}</p>',
            f'<div class="chart">{render_svg(timeline, width=width)}</div>',
            "<table>",
            "<thead><tr><th>state</th><th>task</th><th>start (s)</th><th>took</th>"
            "<th>error</th></tr></thead>",
            "<tbody>",
            *rows,
            "</tbody>",
            "</table>",
            "</body>",
            "</html>",
            "",
        ]
    )
