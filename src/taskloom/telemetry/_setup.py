"""Whether runs are traced, and where the spans go: decided once per run, for free when off.

Tracing is off unless `instrument()` turned it on, or the standard
OpenTelemetry variables ask for traces:

- `OTEL_TRACES_EXPORTER` names exporters (`otlp`, `console`, any installed
  `opentelemetry_traces_exporter` entry point; `none` is off);
- without it, `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
  alone means `otlp`;
- `OTEL_SDK_DISABLED=true` turns everything off.

Off, a run costs a few dictionary look-ups and imports no OpenTelemetry module.
On, spans go to the global tracer provider if the application set one, or to
one built here from the environment (its exporters read their own `OTEL_*`
settings: endpoint, headers, protocol, batch sizes; `OTEL_SERVICE_NAME`
defaults to `taskloom`). Arguments, results and model output are recorded
only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` or
`instrument(capture_content=True)`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskloom.errors import ConfigError

if TYPE_CHECKING:
    from taskloom.telemetry._spans import RunTracer

__all__ = [
    "capture_from_env",
    "continued",
    "instrument",
    "start_trace",
    "traced",
    "traces_requested",
    "uninstrument",
]

_CAPTURE_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_EXPORTER_GROUP = "opentelemetry_traces_exporter"
_INSTALL_HINT = "install the extra: pip install 'taskloom[otel]'"


@dataclass(frozen=True, kw_only=True, slots=True)
class _Setup:
    """Where a traced run sends its spans."""

    tracer: Any
    """The OpenTelemetry Tracer (typed Any: the module must not import OpenTelemetry)."""
    capture_content: bool | None
    """Record arguments, results and model output; None: as the environment says."""


_lock = threading.Lock()
_explicit: _Setup | None = None
"""What `instrument()` set; it wins over the environment."""
_from_env: _Setup | None = None
"""The tracer built from the environment, once it was needed."""
_env_failed = False
"""The environment asked for traces, but they could not be set up (warned once)."""


def traces_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the `OTEL_*` variables (of `env`, by default the process's) ask for traces.

    See the module's docstring for which do.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return any(name.strip() not in ("", "none") for name in exporters.split(","))
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def capture_from_env() -> bool:
    """Whether `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` asks for content."""
    return os.environ.get(_CAPTURE_VARIABLE, "").strip().lower() in ("true", "1", "yes")


def instrument(tracer_provider: Any = None, *, capture_content: bool | None = None) -> None:
    """Trace every later run of this process, whatever the environment says.

    Args:
        tracer_provider: an OpenTelemetry TracerProvider; None for the global one.
        capture_content: record tool arguments and results, the question, the
            answer and the model's output on spans; None: as
            `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` says.

    Raises:
        ConfigError: if opentelemetry-api is not installed.

    """
    global _explicit
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigError(f"tracing needs OpenTelemetry: {_INSTALL_HINT}") from exc
    tracer = trace.get_tracer("taskloom", _version(), tracer_provider=tracer_provider)
    with _lock:
        _explicit = _Setup(tracer=tracer, capture_content=capture_content)


def uninstrument() -> None:
    """Stop what `instrument()` started; the environment decides again."""
    global _explicit
    with _lock:
        _explicit = None


def start_trace(
    operation: str, *, started_at: float, run_id: str | None = None, request: str | None = None
) -> RunTracer | None:
    """A RunTracer for one run when tracing is on; None (and nothing imported) when off.

    Args:
        operation: `invoke_workflow` for a plan, `invoke_agent` for a request.
        started_at: when the run began, in monotonic seconds.
        run_id: its id, when known before its first event.
        request: the question (recorded only when content is captured).

    """
    setup = _explicit
    if setup is None:
        if _env_failed or not traces_requested():
            return None
        setup = _env_setup()
        if setup is None:
            return None
    from taskloom.telemetry._spans import RunTracer

    capture = setup.capture_content
    return RunTracer(
        setup.tracer,
        operation=operation,
        started_at=started_at,
        run_id=run_id,
        request=request,
        capture_content=capture_from_env() if capture is None else capture,
    )


@contextlib.asynccontextmanager
async def traced(
    operation: str, *, started_at: float, run_id: str | None = None, request: str | None = None
) -> AsyncIterator[RunTracer | None]:
    """`start_trace()` for the block; the trace closes when it ends, with its error if it raised.

    Yields:
        The RunTracer (None when tracing is off); subscribe it to the run's events.

    """
    trace = start_trace(operation, started_at=started_at, run_id=run_id, request=request)
    if trace is None:
        yield None
        return
    try:
        yield trace
    except BaseException as exc:
        trace.close(error=exc)
        raise
    trace.close()


@contextlib.contextmanager
def continued(carrier: Mapping[str, Any] | None) -> Iterator[None]:
    """Runs traced in the block continue the caller's trace that `carrier` names.

    `carrier` holds W3C trace context (`traceparent`, `tracestate`), as an MCP
    request's `_meta` does; the runs' spans become children of the caller's.
    With tracing off, or no `traceparent`, the block runs as it is.
    """
    if not carrier or "traceparent" not in carrier or not _tracing_on():
        yield
        return
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract({k: str(v) for k, v in carrier.items()}))
    try:
        yield
    finally:
        context.detach(token)


def _tracing_on() -> bool:
    return _explicit is not None or (not _env_failed and traces_requested())


def _env_setup() -> _Setup | None:
    """The tracer the environment asks for, built once; None (warned once) if it cannot be."""
    global _from_env, _env_failed
    with _lock:
        if _from_env is None and not _env_failed:
            try:
                _from_env = _Setup(tracer=_tracer_from_env(), capture_content=None)
            except ConfigError as exc:
                _env_failed = True
                # Traces are an aid: a run goes on without them.
                warnings.warn(f"taskloom runs untraced: {exc}", RuntimeWarning, stacklevel=3)
        return _from_env


def _tracer_from_env() -> Any:
    """A tracer of the global provider if the application set one, else of a new one.

    Raises:
        ConfigError: if OpenTelemetry's SDK or a named exporter is not installed.

    """
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(f"OTEL_* variables ask for traces: {_INSTALL_HINT}") from exc
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        # Set by the application, or by opentelemetry-instrument: its spans go there.
        return current.get_tracer("taskloom", _version())
    attributes = {} if _service_named() else {"service.name": "taskloom"}
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in _exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider.get_tracer("taskloom", _version())


def _service_named() -> bool:
    if os.environ.get("OTEL_SERVICE_NAME"):
        return True
    resource = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return any(part.split("=", 1)[0].strip() == "service.name" for part in resource.split(","))


def _exporters() -> list[Any]:
    """The span exporters `OTEL_TRACES_EXPORTER` names (default `otlp`), made.

    `otlp` is OTLP over HTTP unless `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (or
    `OTEL_EXPORTER_OTLP_PROTOCOL`) says `grpc`.

    Raises:
        ConfigError: for a name no installed package provides.

    """
    from importlib.metadata import entry_points

    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    made = []
    for name in (n.strip() for n in names.split(",")):
        if name in ("", "none"):
            continue
        wanted = name
        if name == "otlp":
            protocol = os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            )
            wanted = "otlp_proto_grpc" if (protocol or "").strip() == "grpc" else "otlp_proto_http"
        found = list(entry_points(group=_EXPORTER_GROUP, name=wanted))
        if not found:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER names {name!r}, but no installed package provides it"
                + (f"; {_INSTALL_HINT}" if name == "otlp" else "")
            )
        made.append(found[0].load()())
    return made


def _version() -> str:
    from taskloom import __version__

    return __version__
