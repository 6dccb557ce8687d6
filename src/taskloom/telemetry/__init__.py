"""What a run looked like: OpenTelemetry spans while it runs, a timeline once it ran.

Both are consumers of the run's events. Tracing is off until the `OTEL_*`
variables or `instrument()` turn it on (see `_setup`), and costs nothing
while off: OpenTelemetry is imported only when a traced run starts.
"""

from __future__ import annotations

import typing as _typing

from taskloom.telemetry._setup import instrument, traces_requested, uninstrument
from taskloom.telemetry.timeline import (
    Bar,
    Timeline,
    assign_lanes,
    build_timeline,
    load_timeline,
    render_html,
    render_svg,
)

if _typing.TYPE_CHECKING:
    from taskloom.telemetry._spans import RunTracer

__all__ = [
    "Bar",
    "RunTracer",
    "Timeline",
    "assign_lanes",
    "build_timeline",
    "instrument",
    "load_timeline",
    "render_html",
    "render_svg",
    "traces_requested",
    "uninstrument",
]


def __getattr__(name: str) -> _typing.Any:
    """Import `RunTracer` (and with it OpenTelemetry) on first use.

    Raises:
        AttributeError: for a name this module does not have.

    """
    if name != "RunTracer":
        raise AttributeError(f"module 'taskloom.telemetry' has no attribute {name!r}")
    from taskloom.telemetry._spans import RunTracer

    return RunTracer
