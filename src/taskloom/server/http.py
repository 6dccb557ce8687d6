"""taskloom's HTTP API: start runs, read them, stream their events; the web page beside it.

Every route under `/v1` translates and does nothing else (invariant 8): a
body is checked (pydantic), one call of `RunService` or of the store is
made, and its result goes back as JSON. Bad input is a 4xx that says what is
wrong, never a 5xx:

- 401 without the bearer token (the events stream also takes `?token=`,
  since a browser's EventSource cannot set headers);
- 404 for a run no run has; 409 to cancel a run that is not going on, or
  resume one that is, or has ended; 413 for a body past the limit; 422 for
  a body that does not validate or a plan that does not parse (with the
  PlanError's message); 429 when as many runs go on as the server allows.

`GET /` and `GET /static/...` serve the web page shipped in the package
(`server/static/`), with no token: the page asks for the API with it.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskloom._cli_io import json_text
from taskloom.errors import PlanError, TaskloomError, UserError
from taskloom.server._auth import valid_token
from taskloom.server._listen import Uvicorn, bind, origin, serve_shielded, started
from taskloom.server._models import (
    ErrorBody,
    RunBody,
    RunDetail,
    RunList,
    RunState,
)
from taskloom.server._runs import Busy, Conflict, NotLive, RunOptions, RunService
from taskloom.server._sse import event_stream
from taskloom.server._views import run_detail, run_summary
from taskloom.store import Store

__all__ = ["MAX_BODY_BYTES", "STATIC_DIR", "create_app", "serve_http"]

MAX_BODY_BYTES = 16 * 1024 * 1024
"""A request body larger than this is refused with 413 (a plan of some 500,000 tasks)."""
STATIC_DIR = Path(__file__).parent / "static"
"""The web page's files, shipped in the package."""
_STOP_GRACE_S = 1
"""Seconds requests in flight (event streams) get to end when the server stops."""
_MAX_PAGE = 1000
_MAX_SEQ = 2**62
"""Past any sequence number (SQLite's integers end at 2**63)."""


class StrictJSON(JSONResponse):
    """JSON as RFC 8259 has it: a NaN or an infinity in a tool's output becomes its name."""

    def render(self, content: Any) -> bytes:
        return json_text(content, indent=None).encode("utf-8")


def _error(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> StrictJSON:
    return StrictJSON({"detail": detail}, status_code=status, headers=headers)


# -- middleware: the token and the body's size, before anything reads the request -------


class _Guard:
    """Refuse API requests without the token (401) and bodies past the limit (413)."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        if self.token is not None and path.startswith("/v1") and not self._allowed(scope):
            headers = {"WWW-Authenticate": "Bearer"}
            detail = "give the server's token: Authorization: Bearer TOKEN"
            return await _error(401, detail, headers)(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            return await self._too_large()(scope, receive, send)
        await self._bounded(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        assert self.token is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and valid_token(given.strip(), self.token)
        if scope["path"].endswith("/events"):  # EventSource cannot send headers
            from urllib.parse import parse_qs

            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return valid_token((query.get("token") or [None])[0], self.token)
        return False

    def _too_large(self) -> StrictJSON:
        return _error(413, f"the request body is larger than {self.max_body:,} bytes")

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body as it is read; past the limit, 413."""
        received = 0
        responded = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge(self.max_body)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not responded:
                await self._too_large()(scope, receive, send)


class _NotFound(Exception):
    """No run has the id (HTTP 404)."""


class _BodyTooLarge(HTTPException):
    """A chunked body went past the limit while it was read (HTTP 413).

    An HTTPException, so that the app's own body reading passes it on as it is.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# -- the app --------------------------------------------------------------------------


def create_app(
    service: RunService,
    *,
    token: str | None,
    static_dir: Path = STATIC_DIR,
    max_body: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The ASGI app of the HTTP API and the web page, over `service`.

    The service runs while the app does (its lifespan): serve the app with
    lifespan on (uvicorn's default), and runs going on are cancelled when it
    stops.

    Args:
        service: starts and follows the runs.
        token: the bearer token every `/v1` request must carry; None: no token
            (only for a server on a loopback address).
        static_dir: the web page's folder (`index.html`, assets).
        max_body: bytes a request body may have.

    Returns:
        The FastAPI app.

    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service:
            yield

    from taskloom import __version__

    app = FastAPI(
        title="taskloom",
        version=__version__,
        summary="Run plans and questions; follow their events live.",
        lifespan=lifespan,
        default_response_class=StrictJSON,
        docs_url=None,  # the docs pages load scripts from a CDN; the page works offline
        redoc_url=None,
    )
    app.add_middleware(_Guard, token=token, max_body=max_body)
    _add_error_handlers(app)
    _add_api_routes(app, service)
    _add_page(app, static_dir)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return _error(422, errors)

    async def busy(request: Request, exc: Exception) -> Response:
        return _error(429, str(exc), {"Retry-After": "1"})

    async def not_live(request: Request, exc: Exception) -> Response:
        return _error(409, str(exc))

    async def plan_error(request: Request, exc: Exception) -> Response:
        return _error(422, f"the plan is not valid: {exc}")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, str(exc))

    async def user_error(request: Request, exc: Exception) -> Response:
        return _error(422, str(exc))

    async def taskloom_error(request: Request, exc: Exception) -> Response:
        return _error(500, str(exc))

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Busy, busy)
    app.add_exception_handler(NotLive, not_live)
    app.add_exception_handler(Conflict, not_live)
    app.add_exception_handler(_NotFound, not_found)
    app.add_exception_handler(PlanError, plan_error)
    app.add_exception_handler(UserError, user_error)
    app.add_exception_handler(TaskloomError, taskloom_error)


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or the wrong one."},
    404: {"model": ErrorBody, "description": "No such run."},
    422: {"model": ErrorBody, "description": "The request is not valid."},
}
_bearer = HTTPBearer(auto_error=False, description="The server's token (printed on first start).")
"""Declares the token in the OpenAPI document; the middleware checks it."""

RunIdPath = Annotated[str, PathParam(description="The run's id, or the start of it.")]


def _add_api_routes(app: FastAPI, service: RunService) -> None:
    store = service.store
    secured = [Depends(_bearer)]

    async def find(run_id: str) -> str:
        try:
            return str(await anyio.to_thread.run_sync(store.find, run_id))
        except UserError as exc:  # no such run, or a prefix of several
            raise _NotFound(str(exc)) from exc

    @app.post(
        "/v1/runs",
        status_code=201,
        response_model=RunState,
        dependencies=secured,
        responses={**_ERRORS, 413: {"model": ErrorBody}, 429: {"model": ErrorBody}},
    )
    async def start_run(body: RunBody) -> Response:
        """Start a run: a question for the agent, or a plan. Answers with its id at once."""
        options = RunOptions(
            max_concurrency=body.max_concurrency,
            budget=body.budget.to_budget() if body.budget is not None else None,
        )
        if body.plan is not None:
            run_id = await service.start_plan(body.plan, options)
        else:
            assert body.question is not None
            run_id = await service.start_question(body.question, options)
        return StrictJSON({"id": run_id, "status": "running"}, status_code=201)

    @app.get("/v1/runs", response_model=RunList, dependencies=secured, responses=_ERRORS)
    async def list_runs(
        limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 50,
        before: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        """The runs, newest first, a page at a time: `next` is the `before` of the next page."""
        if before is not None:
            before = await find(before)
        runs = await anyio.to_thread.run_sync(lambda: store.runs(limit + 1, before=before))
        page = [run_summary(r, live=service.is_live(r.id)) for r in runs[:limit]]
        following = page[-1]["id"] if len(runs) > limit else None
        return StrictJSON({"runs": page, "next": following})

    @app.get("/v1/runs/{run_id}", response_model=RunDetail, dependencies=secured, responses=_ERRORS)
    async def show_run(run_id: RunIdPath) -> Response:
        """One run: its status, plan, tasks and answer."""
        full = await find(run_id)
        record, retries = await anyio.to_thread.run_sync(_load_with_retries, store, full)
        return StrictJSON(run_detail(record, retries, live=service.is_live(full)))

    @app.post(
        "/v1/runs/{run_id}/cancel",
        status_code=202,
        response_model=RunState,
        dependencies=secured,
        responses={**_ERRORS, 409: {"model": ErrorBody}},
    )
    async def cancel_run(run_id: RunIdPath) -> Response:
        """Cancel a run going on: its tools stop, it is recorded `cancelled`."""
        full = await find(run_id)
        status = await service.cancel(full)
        return StrictJSON({"id": full, "status": status}, status_code=202)

    @app.post(
        "/v1/runs/{run_id}/resume",
        status_code=202,
        response_model=RunState,
        dependencies=secured,
        responses={**_ERRORS, 409: {"model": ErrorBody}, 429: {"model": ErrorBody}},
    )
    async def resume_run(run_id: RunIdPath) -> Response:
        """Finish a run whose server stopped (killed, say): done tasks are kept."""
        full = await service.resume(await find(run_id))
        return StrictJSON({"id": full, "status": "running"}, status_code=202)

    @app.get(
        "/v1/runs/{run_id}/events",
        dependencies=secured,
        responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}},
        response_class=StreamingResponse,
    )
    async def run_events(
        run_id: RunIdPath,
        after: Annotated[int, Query(ge=0, le=_MAX_SEQ)] = 0,
        last_event_id: Annotated[str | None, Header(max_length=30)] = None,
        token: Annotated[str | None, Query(max_length=600)] = None,
    ) -> Response:
        """The run's events as Server-Sent Events, from after `after` (or `Last-Event-ID`).

        Each message: `id` the sequence number, `event` the kind, `data` the
        event as JSON. The stream ends after the run's end, with an `end`
        event whose data holds the run's status.
        """
        if last_event_id is not None:
            given = last_event_id.strip()
            if not (given.isascii() and given.isdigit()) or int(given) > _MAX_SEQ:
                return _error(422, "Last-Event-ID is the sequence number of an event")
            after = max(after, int(given))
        full = await find(run_id)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            event_stream(service, full, after), media_type="text/event-stream", headers=headers
        )


def _load_with_retries(store: Store, run_id: str) -> tuple[Any, dict[str, int]]:
    """The run's record, and how many retries each task had (from its events)."""
    record = store.load(run_id)
    retries: dict[str, int] = {}
    for event in store.events(record.id):
        if event.kind == "task_retried" and event.task_id is not None:
            retries[event.task_id] = retries.get(event.task_id, 0) + 1
    return record, retries


def _add_page(app: FastAPI, static_dir: Path) -> None:
    index = static_dir / "index.html"

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        if not index.is_file():
            return _error(404, "the web page is not installed")
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    if static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=static_dir), name="static")


# -- serving --------------------------------------------------------------------------


async def serve_http(
    app: FastAPI,
    *,
    host: str,
    port: int,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve `app` at `http://host:port` until cancelled.

    The socket is bound before serving starts, so port 0 picks a free port;
    `on_listening` is told the URL once the server accepts connections.
    When cancelled, event streams get a second to end; the app's runs are
    cancelled (and recorded so) before the cancellation goes on.

    Raises:
        UserError: if the address cannot be bound, or the server could not start.

    """
    sock = bind(host, port)
    try:
        await _serve_on(app, sock, host, on_listening)
    finally:
        sock.close()


async def _serve_on(
    app: FastAPI, sock: socket.socket, host: str, on_listening: Callable[[str], None] | None
) -> None:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=_STOP_GRACE_S,
    )
    server = Uvicorn(config)
    url = origin(host, sock.getsockname()[1])
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_shielded, server, sock)
        try:
            if await started(server):
                if on_listening is not None:
                    on_listening(url)
                await anyio.sleep_forever()
        finally:
            server.should_exit = True
    raise UserError(f"the HTTP server at {url} could not start")
