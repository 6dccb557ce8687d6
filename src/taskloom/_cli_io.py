"""What the command line needs around the API: signals, stdout, strict JSON, bounded reads."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import anyio
import typer

from taskloom._text import escape_surrogates
from taskloom.errors import ConfigError

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_PLAN_BYTES",
    "json_text",
    "not_utf8",
    "notice",
    "read_bounded",
    "run_stoppable",
    "tool_output_to_stderr",
]

T = TypeVar("T")

MAX_PLAN_BYTES = 64 * 1024 * 1024
"""A plan file larger than this is a mistake (some 3 million tasks), or /dev/zero."""
MAX_BATCH_BYTES = 512 * 1024 * 1024
"""A batch file larger than this (millions of questions) is a mistake, or /dev/zero."""


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of `path`, which may be a pipe; never more than `limit` are read.

    Raises:
        OSError: if the file cannot be read.
        ConfigError: if it holds more than `limit` bytes (the message does
            not name the file; the caller does).

    """
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"the {what} is larger than {limit:,} bytes")
    return data


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_stoppable(go: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run `go(*args)` with anyio; Ctrl-C (SIGINT) or SIGTERM cancels it.

    The first signal cancels `go` like any caller's cancellation: running
    tools stop, the run is recorded `cancelled`, and the command exits with
    128 + the signal's number (130, 143) after a one-line notice. A second
    signal exits at once, without waiting for tools to clean up (the run then
    reads `abandoned` in the store, and can be resumed). A signal that comes
    too late to stop `go` (it returned anyway) changes nothing.

    Returns:
        What `go` returned.

    Raises:
        typer.Exit: when a signal stopped the command.

    """
    stopped: list[signal.Signals] = []
    returned: list[T] = []

    def on_signal(sig: signal.Signals, scope: anyio.CancelScope) -> None:
        if stopped:
            notice(f"{sig.name} again: exiting without waiting for tools to stop")
            os._exit(128 + sig)
        stopped.append(sig)
        scope.cancel()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with anyio.CancelScope() as scope:
            for sig in _STOP_SIGNALS:
                loop.add_signal_handler(sig, on_signal, sig, scope)
            try:
                returned.append(await go(*args))
            finally:
                for sig in _STOP_SIGNALS:
                    loop.remove_signal_handler(sig)

    anyio.run(main, backend_options={"use_uvloop": uvloop_available()})
    if returned:
        return returned[0]
    sig = stopped[0]  # nothing returned and nothing raised: a signal cancelled it
    notice(f"interrupted by {sig.name}: the run was cancelled")
    raise typer.Exit(128 + sig)


def uvloop_available() -> bool:
    """Whether uvloop can run the command's loop: it is faster, and uvicorn picks it too."""
    return importlib.util.find_spec("uvloop") is not None


def notice(message: str) -> None:
    """One line on stderr, also when the command prints JSON on stdout."""
    print(message, file=sys.stderr, flush=True)


def not_utf8(exc: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8, in words."""
    line = exc.object.count(b"\n", 0, exc.start) + 1
    bad = exc.object[exc.start : exc.start + 1]
    return f"line {line} is not valid UTF-8 (byte {bad!r} cannot be decoded)"


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """Strict JSON for the command line's output (RFC 8259: no NaN, no Infinity).

    A float that is not finite is written as the string "NaN", "Infinity" or
    "-Infinity"; text that is not valid Unicode (a lone surrogate) with its
    JSON escape; any other value JSON has no form for as its str().
    """
    options: dict[str, Any] = {"ensure_ascii": False, "indent": indent, "default": str}
    try:
        text = json.dumps(data, allow_nan=False, **options)
    except ValueError:  # a NaN or an infinity somewhere (rare): only then walk the data
        text = json.dumps(_finite(data), allow_nan=False, **options)
    # A lone surrogate can only sit inside a JSON string, where its escape is valid JSON.
    return escape_surrogates(text)


def _finite(value: Any) -> Any:
    """`value` with every non-finite float (keys included) replaced by its name."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {_finite(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@contextmanager
def tool_output_to_stderr(active: bool = True) -> Iterator[TextIO]:
    """While tools run, send what they print to stderr, so stdout holds only JSON.

    Both `sys.stdout` (print() in async tools and in sync tools' threads) and
    file descriptor 1 (C code, child processes) point at stderr meanwhile.

    Yields:
        A stream on the real stdout, for what the command itself writes while
        the tools run (batch's lines).

    """
    real = sys.stdout
    if not active:
        yield real
        return
    real.flush()
    fd, err_fd = _fileno(real), _fileno(sys.stderr)
    saved = os.dup(fd) if fd is not None and err_fd is not None else None
    if saved is not None:
        assert fd is not None and err_fd is not None
        os.dup2(err_fd, fd)
        stream: TextIO = open(os.dup(saved), "w", encoding="utf-8")
    else:
        stream = real  # not a file (a test runner's buffer): sys.stdout alone is moved
    sys.stdout = sys.stderr
    try:
        yield stream
    finally:
        sys.stdout = real
        sys.stderr.flush()
        real.flush()  # what a tool wrote through a saved reference goes to stderr too
        if saved is not None:
            assert fd is not None
            stream.close()
            os.dup2(saved, fd)
            os.close(saved)


def _fileno(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
