"""One MCP server's session: shared by every call, started on demand, restarted after a crash.

The SDK multiplexes requests on one session by JSON-RPC id, so parallel
calls go out at once; nothing here serialises them (only starting a session
takes a lock, so that a crash does not start the server twice).

A session lives in a task of its own (`_hold`), started in the task group of
`taskloom.tools.mcp.connect`, so that it enters and leaves the SDK's
contexts in one task. It ends when the connection closes (the server
exited: the read stream ends) or when `close()` is called; for a stdio
server the SDK then closes its stdin and, after a grace period, kills the
server's whole process group.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

import anyio
import anyio.abc
import mcp
import mcp_types
import pydantic
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError as SDKError

from taskloom._text import clip
from taskloom.errors import MCPError
from taskloom.tools._mcp_config import ServerConfig

__all__ = ["ServerSession", "trace_meta"]

START_TIMEOUT = 60.0
"""Seconds a server may take to start and answer the handshake."""
_STDERR_TAIL = 400
"""Characters of a stdio server's stderr quoted when it fails."""
_LIST_PAGES = 100
"""Most pages of a tool listing: a server whose cursor never ends cannot hang the start."""


@dataclass(eq=False, kw_only=True)
class _Live:
    """One running session of a server."""

    client: mcp.Client | None = None
    """The SDK client, set once the handshake is done."""
    ended: anyio.Event = field(default_factory=anyio.Event)
    """Set when the connection closed or the session is to close."""
    stderr: TextIO | None = None
    """Where a stdio server's stderr goes, to quote when it fails."""
    last_words: str = ""
    """The end of that stderr, kept when the session ends and the file is closed."""


class ServerSession:
    """The session of one configured MCP server, shared by all its tools' calls."""

    def __init__(self, config: ServerConfig, task_group: anyio.abc.TaskGroup) -> None:
        """Prepare the session; nothing starts until the first call or listing.

        Args:
            config: the server.
            task_group: where the session's task runs; it must outlive every call.

        """
        self.config = config
        self.name = config.name
        self._task_group = task_group
        self._live: _Live | None = None
        self._starting = anyio.Lock()
        self._closed = False
        self._limiter = (
            None
            if config.max_concurrency is None
            else anyio.CapacityLimiter(config.max_concurrency)
        )

    async def list_tools(self) -> list[mcp_types.Tool]:
        """Every tool the server lists, starting the server if needed.

        Raises:
            MCPError: the server could not start, or the listing failed.

        """
        live = await self._session()
        assert live.client is not None
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(_LIST_PAGES):
            async with self._translated(live, "listing its tools"):
                page = await live.client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def call(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Call one tool; concurrent calls share the session (within `max_concurrency`).

        Cancelling the awaiting task (a timeout) makes the SDK send
        `notifications/cancelled` for the request.

        Raises:
            MCPError: the server could not start, or it went away during the call.

        """
        if self._limiter is None:
            return await self._call(tool, arguments)
        async with self._limiter:
            return await self._call(tool, arguments)

    async def _call(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        live = await self._session()
        assert live.client is not None
        async with self._translated(live, f"calling {tool}"):
            return await live.client.call_tool(tool, arguments, meta=trace_meta())

    def close(self) -> None:
        """End the session (its task then stops the server); later calls fail."""
        self._closed = True
        if self._live is not None:
            self._live.ended.set()

    async def _session(self) -> _Live:
        """The running session, started now if there is none (first use, or after a crash).

        Raises:
            MCPError: the server could not start, or the session was closed.

        """
        live = self._live
        if live is not None and not live.ended.is_set():
            return live
        async with self._starting:
            live = self._live
            if live is not None and not live.ended.is_set():
                return live  # another call started it while this one waited
            if self._closed:
                raise MCPError(self.name, "the session is closed (its `connect` block has ended)")
            started: _Live = await self._task_group.start(self._hold)
            self._live = started
            return started

    async def _hold(self, *, task_status: anyio.abc.TaskStatus[_Live]) -> None:
        """Open the session, hand it out, and keep it open until it ends.

        Raises:
            MCPError: (before the session is handed out) the server did not start.

        """
        live = _Live()
        with contextlib.ExitStack() as files:
            if self.config.command is not None:
                stderr = tempfile.TemporaryFile("w+", encoding="utf-8")
                live.stderr = cast(TextIO, files.enter_context(stderr))
            try:
                # One scope around the whole session, not just the start: the SDK's
                # task groups opened inside must close inside it. Its deadline is
                # lifted once the handshake is done.
                with anyio.CancelScope(deadline=anyio.current_time() + START_TIMEOUT) as start:
                    async with contextlib.AsyncExitStack() as stack:
                        client = await self._enter(live, stack)
                        start.deadline = math.inf
                        live.client = client
                        task_status.started(live)
                        await live.ended.wait()
            except Exception:
                if live.client is None:
                    raise
                # The session had started: errors while it winds down (a crashed
                # server) end only this session, never the task group.
            finally:
                live.ended.set()
                # The server has stopped: its stderr is complete. Calls that fail
                # after the file is closed still quote it.
                live.last_words = _tail(live)
            if live.client is None:
                raise MCPError(
                    self.name,
                    f"did not answer the MCP handshake within {START_TIMEOUT:g}s" + _tail(live),
                )

    async def _enter(self, live: _Live, stack: contextlib.AsyncExitStack) -> mcp.Client:
        """Start the server and do the handshake; the session closes with `stack`.

        Raises:
            MCPError: the program is missing, the server exited, or the handshake failed.

        """
        try:
            transport = await self._transport(live, stack)
            return await stack.enter_async_context(mcp.Client(_Watched(transport, live.ended)))
        except Exception as exc:
            cause = _leaf(exc)  # the SDK's task groups wrap what went wrong
            if isinstance(cause, OSError):
                raise MCPError(self.name, _start_problem(self.config, cause)) from cause
            if isinstance(cause, SDKError | pydantic.ValidationError | anyio.BrokenResourceError):
                problem = f"failed during the MCP handshake: {_said(cause)}{_tail(live)}"
            else:
                problem = f"could not be reached: {_said(cause)}{_tail(live)}"
            raise MCPError(self.name, problem) from cause

    async def _transport(self, live: _Live, stack: contextlib.AsyncExitStack) -> Any:
        """The SDK transport of the server; an HTTP client it needs closes with `stack`."""
        config = self.config
        if config.command is not None:
            parameters = mcp.StdioServerParameters(
                command=config.command, args=list(config.args), env=dict(config.env), cwd=config.cwd
            )
            assert live.stderr is not None
            return stdio_client(parameters, errlog=live.stderr)
        assert config.url is not None
        # A client handed to the SDK is the caller's to close.
        http = await stack.enter_async_context(
            create_mcp_http_client(headers=dict(config.headers) or None)
        )
        return streamable_http_client(config.url, http_client=http)

    @contextlib.asynccontextmanager
    async def _translated(self, live: _Live, doing: str) -> AsyncIterator[None]:
        """Turn the SDK's errors into `MCPError`; a closed connection ends the session.

        Raises:
            MCPError: naming the server and what it was doing.

        """
        try:
            yield
        except SDKError as exc:
            if exc.error.code == mcp_types.CONNECTION_CLOSED or live.ended.is_set():
                live.ended.set()  # the next call starts the server again
                raise MCPError(
                    self.name,
                    f"the connection closed while {doing} (the server exited or was "
                    f"unreachable: {_said(exc)}){_tail(live)}",
                ) from exc
            raise MCPError(self.name, f"error while {doing}: {_said(exc)}") from exc
        except pydantic.ValidationError as exc:
            raise MCPError(self.name, f"answered {doing} with a malformed result: {exc}") from exc


def trace_meta() -> mcp_types.RequestParamsMeta | None:
    """The caller's trace context for a request's `_meta` (`traceparent`, `tracestate`).

    A traced run makes each task's `execute_tool` span current while its tool
    runs, so the server's spans join that trace. Without tracing, OpenTelemetry
    is not loaded and this costs one dictionary look-up.
    """
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return cast(mcp_types.RequestParamsMeta, carrier) if carrier else None


class _Watched:
    """A transport whose read stream sets `ended` when it ends: the server has gone."""

    def __init__(self, transport: Any, ended: anyio.Event) -> None:
        self._transport = transport
        self._ended = ended

    async def __aenter__(self) -> tuple[Any, Any]:
        read, write = await self._transport.__aenter__()
        return _WatchedRead(read, self._ended), write

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        result: bool | None = await self._transport.__aexit__(*exc_info)
        return result


class _WatchedRead:
    """A read stream that sets an event when it ends (EOF or closed)."""

    def __init__(self, stream: Any, ended: anyio.Event) -> None:
        self._stream = stream
        self._ended = ended

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)  # `last_context`, which the SDK reads if present

    async def receive(self) -> Any:
        try:
            return await self._stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended.set()
            raise

    def __aiter__(self) -> _WatchedRead:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> _WatchedRead:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._ended.set()
        result: bool | None = await self._stream.__aexit__(*exc_info)
        return result


def _start_problem(config: ServerConfig, exc: OSError) -> str:
    """Why a stdio server's program could not be started, in words."""
    command = clip(config.command or "")
    if isinstance(exc, FileNotFoundError):
        return f"cannot start {command!r}: no such program (is it installed and on PATH?)"
    if isinstance(exc, PermissionError):
        return f"cannot start {command!r}: permission denied"
    return f"cannot start {command!r}: {clip(str(exc))}"


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (or `exc` itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _said(exc: BaseException) -> str:
    if isinstance(exc, SDKError):
        return clip(exc.error.message or f"error {exc.error.code}")
    text = str(exc) or type(exc).__name__
    return clip(text)


def _tail(live: _Live) -> str:
    """The end of a stdio server's stderr, as `; its stderr said: ...`, or nothing."""
    if live.stderr is None or live.stderr.closed:
        return live.last_words
    fd = live.stderr.fileno()
    size = os.fstat(fd).st_size
    # pread: the server writes to the same file, so the shared offset must not move.
    start = max(0, size - 4 * _STDERR_TAIL)
    text = os.pread(fd, size - start, start).decode("utf-8", errors="replace").strip()
    if not text:
        return ""
    return f"; its stderr said: {clip(text[-_STDERR_TAIL:], _STDERR_TAIL)}"
