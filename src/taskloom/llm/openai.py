"""Any server that speaks OpenAI's streaming chat-completions API.

OpenAI itself, llama.cpp's `llama-server`, `python -m llama_cpp.server`, vLLM,
Ollama and others. Every httpx exception is translated to `ModelError` here.
"""

from __future__ import annotations

import json
import math
import random
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio
import httpx

from taskloom._text import clip
from taskloom.errors import ConfigError, ModelError
from taskloom.llm._protocol import GenerationOptions, Message, _ChatModelBase, _StreamEnd

__all__ = ["DEFAULT_READ_TIMEOUT_S", "DEFAULT_TOTAL_TIMEOUT_S", "OpenAICompatible"]

DEFAULT_READ_TIMEOUT_S = 120.0
"""How long a server may stay silent, before its first byte or between bytes."""
DEFAULT_TOTAL_TIMEOUT_S = 300.0
"""How long one model call may take in all, retries included."""

T = TypeVar("T")

_RETRY_STATUS = frozenset({408, 409, 429})
_MAX_RETRY_AFTER_S = 60.0
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]")


class _Retry(Exception):
    """A failure before any output that another attempt might not repeat."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(problem)


class OpenAICompatible(_ChatModelBase):
    """A chat model behind an OpenAI-compatible `/chat/completions` endpoint.

    Failures before the first text chunk (connection errors, 429, 5xx) are
    retried with exponential backoff and jitter. After text has been streamed
    nothing is retried, since the caller has already seen part of the reply.

    Every call has two time limits: the longest silence (`timeout`, before
    the first byte and between bytes) and its whole length (`total_timeout`,
    retries and their waits included), so a server that keeps sending
    keep-alive bytes without an answer fails the call too.

    Every request uses its own short-lived connection, so an instance needs no
    closing and works from any event loop.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_READ_TIMEOUT_S,
        total_timeout: float | None = DEFAULT_TOTAL_TIMEOUT_S,
        connect_timeout: float = 10.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        json_mode: Literal["json_schema", "json_object"] = "json_schema",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Describe the server; nothing is sent until a stream is iterated.

        Args:
            base_url: The API root, e.g. "http://127.0.0.1:8080/v1".
            model: The model name to request, also this model's `name`.
            api_key: Sent as a bearer token when given.
            timeout: Seconds the server may stay silent (before the first
                byte, and between bytes) before the call fails.
            total_timeout: Seconds one call may take from its start to the
                end of the reply, retries included, before it fails; None for
                no limit. Time the caller spends between chunks counts too.
            connect_timeout: Seconds to establish a connection.
            max_retries: Extra attempts after a retryable failure.
            backoff: Delay before the first retry in seconds; doubled each
                time, with full jitter.
            max_backoff: Upper bound on one retry delay in seconds.
            json_mode: How to ask for output matching a `json_schema`:
                "json_schema" is OpenAI's `response_format` (OpenAI,
                llama-server, vLLM); "json_object" sends `{"type":
                "json_object", "schema": ...}` (`python -m llama_cpp.server`).
            transport: An httpx transport to send requests through (tests
                pass `httpx.MockTransport`). The caller keeps ownership.

        Raises:
            ConfigError: if the URL is not http(s) or a number is out of range.

        """
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        _check_url(base_url)
        if not model:
            raise ConfigError("model name must not be empty")
        if (
            timeout <= 0
            or connect_timeout <= 0
            or (total_timeout is not None and total_timeout <= 0)
        ):
            raise ConfigError(
                f"timeouts must be positive, got timeout={timeout:g}, "
                f"total_timeout={total_timeout}, connect_timeout={connect_timeout:g}"
            )
        if max_retries < 0 or backoff < 0 or max_backoff < 0:
            raise ConfigError("max_retries, backoff and max_backoff must be >= 0")
        if json_mode not in ("json_schema", "json_object"):
            raise ConfigError(
                f"json_mode must be 'json_schema' or 'json_object', got {json_mode!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self._url = f"{self.base_url}/chat/completions"
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.total_timeout = total_timeout
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._json_mode = json_mode
        self._transport = _Borrowed(transport) if transport is not None else None
        self._ssl: ssl.SSLContext | None = None

    @property
    def name(self) -> str:
        """The requested model name."""
        return self.model

    @property
    def read_timeout(self) -> float:
        """Seconds the server may stay silent before a call fails."""
        read = self._timeout.read
        assert read is not None  # set from a positive number
        return read

    def __repr__(self) -> str:
        return f"<OpenAICompatible {self.model} at {self.base_url}>"

    async def _generate(
        self, messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str | _StreamEnd]:
        body = _request_body(self.model, messages, options, self._json_mode)
        limit = math.inf if self.total_timeout is None else self.total_timeout
        deadline = anyio.current_time() + limit
        attempt = 0
        while True:
            try:
                # The attempt only raises _Retry before it has yielded any text.
                async with aclosing(self._attempt(body, deadline)) as items:
                    async for item in items:
                        yield item
                return
            except _Retry as exc:
                tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                delay = self._delay(attempt, exc.retry_after)
                if attempt >= self.max_retries:
                    problem = f"{exc.problem} (gave up after {tries})"
                elif anyio.current_time() + delay >= deadline:
                    problem = (
                        f"{exc.problem} (gave up after {tries}: another would pass "
                        f"the call's {limit:g}s time limit)"
                    )
                else:
                    await anyio.sleep(delay)
                    attempt += 1
                    continue
                raise ModelError(self.name, problem, retryable=True) from (exc.__cause__ or exc)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER_S)
        # Full jitter: clients that failed together do not retry together.
        return random.uniform(0, min(self._max_backoff, self._backoff * 2**attempt))

    async def _attempt(
        self, body: dict[str, Any], deadline: float
    ) -> AsyncGenerator[str | _StreamEnd, None]:
        """One request: yield text chunks, then the model's counts.

        Every wait on the server ends at `deadline` (in `anyio.current_time()`
        seconds); no cancel scope is held across a `yield`.

        Raises:
            _Retry: if the request failed retryably before any text came.
            ModelError: for every other failure, and when `deadline` passes.

        """
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        emitted = 0
        try:
            async with httpx.AsyncClient(
                transport=self._transport,
                verify=await self._ssl_context(),
                timeout=self._timeout,
                headers=headers,
            ) as client:
                request = client.build_request("POST", self._url, json=body)
                response = await self._before(deadline, client.send(request, stream=True), 0)
                try:
                    await self._before(deadline, self._check_status(response), 0)
                    async with aclosing(self._parse(response)) as items:
                        while True:
                            item = await self._before(deadline, anext(items, None), emitted)
                            if item is None:
                                return
                            if isinstance(item, str):
                                emitted += len(item)
                            yield item
                finally:
                    await response.aclose()
        except httpx.HTTPError as exc:
            raise self._translate(exc, emitted) from exc

    async def _before(self, deadline: float, step: Awaitable[T], emitted: int) -> T:
        """Await `step`, or fail with ModelError once the call's time limit has passed."""
        with anyio.CancelScope(deadline=deadline):
            return await step
        limit = self.total_timeout or 0.0
        got = f"after {emitted} chars of partial output" if emitted else "with no output"
        raise ModelError(
            self.name,
            f"no complete reply from {self._url} within the call's {limit:g}s time limit "
            f"(stopped {got}; a longer limit: total_timeout=, or TASKLOOM_MODEL_TIMEOUT)",
            retryable=True,
        )

    async def _ssl_context(self) -> ssl.SSLContext | bool:
        if self._transport is not None:
            return True  # the caller's transport does its own TLS
        if self._ssl is None:
            # Loading the CA bundle costs ~20 ms of CPU, which a new client
            # would otherwise spend on the event loop for every request.
            self._ssl = await anyio.to_thread.run_sync(httpx.create_ssl_context)
        return self._ssl

    async def _check_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        await response.aread()
        problem = f"HTTP {response.status_code} from {self._url}: {_error_text(response)}"
        if response.status_code in _RETRY_STATUS or response.status_code >= 500:
            raise _Retry(problem, _retry_after(response))
        raise ModelError(self.name, problem)

    def _translate(self, exc: httpx.HTTPError, emitted: int) -> Exception:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if emitted:
            return ModelError(
                self.name,
                f"stream broke after {emitted} chars of partial output ({what})",
                retryable=True,
            )
        if isinstance(exc, httpx.ReadTimeout):
            # The server took the request and is still silent; trying again
            # would double the wait, so the caller decides.
            read = self._timeout.read
            return ModelError(
                self.name,
                f"no reply from {self._url} within {read:g}s of silence "
                "(a longer wait: timeout=, or TASKLOOM_READ_TIMEOUT)",
                retryable=True,
            )
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return _Retry(f"cannot connect to {self._url} ({what})")
        if isinstance(exc, httpx.TransportError):
            return _Retry(f"request to {self._url} failed before any output ({what})")
        return ModelError(self.name, f"request to {self._url} failed ({what})")

    async def _parse(self, response: httpx.Response) -> AsyncGenerator[str | _StreamEnd, None]:
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            # The server ignored stream=true and sent the whole reply at once.
            await response.aread()
            payload = self._decode(response.text)
            text, end = _read_message(payload, self.name)
            yield text
            yield end
            return
        end = _StreamEnd()
        async for data in _sse_data(response, self.name):
            if data == "[DONE]":
                yield end
                return
            text, end = _read_chunk(self._decode(data), end, self.name)
            if text:
                yield text
        if end.finish_reason is None:
            raise httpx.RemoteProtocolError("stream ended without [DONE]")
        yield end

    def _decode(self, data: str) -> Any:
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise ModelError(self.name, f"server sent invalid JSON: {_shorten(data)}") from exc


class _Borrowed(httpx.AsyncBaseTransport):
    """A caller's transport, which closing our per-request client leaves open."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        """Leave the caller's transport open."""

    async def aclose(self) -> None:
        """Leave the caller's transport open."""


def _request_body(
    model: str, messages: tuple[Message, ...], options: GenerationOptions, json_mode: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": options.temperature,
    }
    if options.max_tokens is not None:
        body["max_tokens"] = options.max_tokens
    if options.stop:
        body["stop"] = list(options.stop)
    if options.grammar is not None:
        body["grammar"] = options.grammar  # a llama.cpp extension
    if options.json_schema is not None and json_mode == "json_object":
        body["response_format"] = {"type": "json_object", "schema": dict(options.json_schema)}
    elif options.json_schema is not None:
        schema = dict(options.json_schema)
        name = _SCHEMA_NAME.sub("_", str(schema.get("title") or "response"))[:64]
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        }
    return body


async def _sse_data(response: httpx.Response, model: str) -> AsyncIterator[str]:
    """Yield the data of each server-sent event.

    Raises:
        ModelError: if a line is not server-sent-event syntax.

    """
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data)
                data.clear()
            continue
        if line.startswith(":"):
            continue  # a comment, e.g. a keep-alive ping
        field, colon, value = line.partition(":")
        if not colon or field not in ("data", "event", "id", "retry"):
            raise ModelError(
                model, f"server sent a line that is not an SSE event: {_shorten(line)}"
            )
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _read_chunk(payload: Any, end: _StreamEnd, model: str) -> tuple[str, _StreamEnd]:
    """Read one stream chunk: its text, and the counts and finish reason so far.

    Raises:
        ModelError: if the chunk reports an error or has no choices.

    """
    if not isinstance(payload, dict):
        raise ModelError(model, f"stream chunk is not an object: {_shorten(str(payload))}")
    if "error" in payload:
        raise ModelError(model, f"server reported an error mid-stream: {_error_of(payload)}")
    usage = payload.get("usage")
    if isinstance(usage, dict):
        end = _StreamEnd(
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            finish_reason=end.finish_reason,
        )
    choices = payload.get("choices")
    if not isinstance(choices, list) or (not choices and usage is None):
        raise ModelError(model, f"stream chunk has no choices: {_shorten(json.dumps(payload))}")
    if not choices:
        return "", end
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else None
    reason = choice.get("finish_reason")
    if isinstance(reason, str):
        end = _StreamEnd(
            prompt_tokens=end.prompt_tokens,
            completion_tokens=end.completion_tokens,
            finish_reason=reason,
        )
    return (text if isinstance(text, str) else ""), end


def _read_message(payload: Any, model: str) -> tuple[str, _StreamEnd]:
    """Read a whole (non-streamed) chat completion.

    Raises:
        ModelError: if it reports an error or has no message.

    """
    if isinstance(payload, dict) and "error" in payload:
        raise ModelError(model, f"server reported an error: {_error_of(payload)}")
    try:
        choice = payload["choices"][0]
        text = choice["message"]["content"] or ""
        usage = payload.get("usage") or {}
    except (KeyError, IndexError, TypeError) as exc:
        raise ModelError(model, f"reply has no message: {_shorten(json.dumps(payload))}") from exc
    end = _StreamEnd(
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        finish_reason=choice.get("finish_reason"),
    )
    return str(text), end


def _error_text(response: httpx.Response) -> str:
    try:
        return _error_of(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _shorten(response.text) or response.reason_phrase


def _error_of(payload: Any) -> str:
    """Find the message in an OpenAI-style `{"error": {"message": ...}}` or a FastAPI `detail`."""
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload))
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return _shorten(error["message"])
        if isinstance(error, str):
            return _shorten(error)
    return _shorten(json.dumps(payload))


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None  # absent, or an HTTP date: fall back to our own backoff
    return seconds if seconds >= 0 else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _shorten(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _check_url(base_url: str) -> None:
    """Refuse a URL no request could be sent to, now rather than at the first call.

    Raises:
        ConfigError: if the URL does not parse, has no host, or its port is out of range.

    """
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"base_url {clip(base_url)!r} is not a valid URL: {exc}") from exc
    if not url.host:
        raise ConfigError(f"base_url {clip(base_url)!r} names no host")
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigError(f"base_url {clip(base_url)!r}: port {url.port} is out of range")
