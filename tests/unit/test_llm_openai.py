"""OpenAICompatible against httpx.MockTransport and bare loopback sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import anyio
import httpx
import pytest

from chat_server import KEEP_ALIVE, SILENT, chat_server
from taskloom.errors import ConfigError, ModelError
from taskloom.llm import Message, OpenAICompatible, model_from_config
from taskloom.llm.openai import DEFAULT_TOTAL_TIMEOUT_S

URL = "http://llm.test/v1"
HI = [Message("user", "hi")]


def chunk(text: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text is not None else {}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def sse(*events: dict[str, Any] | str, done: bool = True) -> bytes:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def sse_response(body: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})


HELLO = sse(
    {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]},
    chunk("Hel"),
    chunk("lo"),
    chunk(finish="stop"),
    {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
)


class Server:
    """Answers each request with the next scripted reply and records the requests."""

    def __init__(self, *replies: httpx.Response | Exception | Callable[[], Any]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply()  # type: ignore[no-any-return]
        return reply

    def model(self, **kwargs: Any) -> OpenAICompatible:
        kwargs.setdefault("backoff", 0.0)
        return OpenAICompatible(URL, "m", transport=httpx.MockTransport(self), **kwargs)

    def body(self, index: int = 0) -> dict[str, Any]:
        return json.loads(self.requests[index].content)  # type: ignore[no-any-return]


class BrokenStream(httpx.AsyncByteStream):
    """Sends some bytes, then fails the way a dropped connection does."""

    def __init__(self, parts: Iterable[bytes], error: Exception) -> None:
        self.parts = list(parts)
        self.error = error
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        raise self.error

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_streams_chunks_and_reads_usage() -> None:
    server = Server(sse_response(HELLO))
    stream = server.model(api_key="sk-test").stream(
        HI, max_tokens=5, stop=["\n"], grammar='root ::= "x"'
    )
    chunks = [c async for c in stream]
    assert chunks == ["Hel", "lo"]
    assert stream.text == "Hello"
    assert stream.finish_reason == "stop"
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (7, 2)
    assert not stream.usage.estimated
    assert stream.usage.model == "m"
    request = server.requests[0]
    assert request.url == "http://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert server.body() == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
        "max_tokens": 5,
        "stop": ["\n"],
        "grammar": 'root ::= "x"',
    }


@pytest.mark.anyio
async def test_json_schema_becomes_response_format() -> None:
    schema = {"title": "Plan step!", "type": "object"}
    server = Server(sse_response(HELLO), sse_response(HELLO))
    await server.model().complete(HI, json_schema=schema)
    await server.model(json_mode="json_object").complete(HI, json_schema=schema)
    assert server.body(0)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Plan_step_", "schema": schema, "strict": True},
    }
    assert server.body(1)["response_format"] == {"type": "json_object", "schema": schema}


@pytest.mark.anyio
async def test_usage_falls_back_to_counting_chunks() -> None:
    server = Server(sse_response(sse(chunk("a"), chunk("b"), chunk("c", finish="length"))))
    completion = await server.model().complete(HI)
    assert completion.text == "abc"
    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 3
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.estimated


@pytest.mark.anyio
async def test_429_is_retried_after_retry_after() -> None:
    busy = httpx.Response(
        429, json={"error": {"message": "slow down"}}, headers={"retry-after": "0"}
    )
    server = Server(busy, sse_response(HELLO))
    completion = await server.model(backoff=60.0).complete(HI)  # Retry-After wins
    assert completion.text == "Hello"
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_repeated_500_gives_up_after_max_retries() -> None:
    server = Server(httpx.Response(500, text="boom"))
    with pytest.raises(ModelError, match=r"HTTP 500 .*boom.*gave up after 3 attempts") as info:
        await server.model(max_retries=2).complete(HI)
    assert len(server.requests) == 3
    assert info.value.retryable


@pytest.mark.anyio
async def test_connection_error_is_retried_then_succeeds() -> None:
    server = Server(httpx.ConnectError("refused"), sse_response(HELLO))
    assert (await server.model().complete(HI)).text == "Hello"
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_connection_error_gives_up() -> None:
    server = Server(httpx.ConnectError("refused"))
    with pytest.raises(ModelError, match="cannot connect to .*refused") as info:
        await server.model(max_retries=1).complete(HI)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_client_error_is_not_retried() -> None:
    server = Server(httpx.Response(400, json={"error": {"message": "bad grammar"}}))
    with pytest.raises(ModelError, match="HTTP 400 .*: bad grammar$") as info:
        await server.model().complete(HI)
    assert not info.value.retryable
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (sse("{not json"), "invalid JSON: {not json"),
        (b"<html>oops</html>\n\n", "not an SSE event: <html>"),
        (sse({"id": "x"}), "stream chunk has no choices"),
        (sse([1, 2]), "stream chunk is not an object"),
        (sse({"error": {"message": "overloaded"}}), "error mid-stream: overloaded"),
    ],
)
@pytest.mark.anyio
async def test_garbage_is_a_model_error(body: bytes, problem: str) -> None:
    server = Server(sse_response(body))
    with pytest.raises(ModelError, match=problem):
        await server.model().complete(HI)
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_stream_cut_after_output_is_not_retried() -> None:
    stream = BrokenStream([sse(chunk("part"), done=False)], httpx.ReadError("reset"))
    server = Server(lambda: httpx.Response(200, stream=stream))
    received = []
    with pytest.raises(ModelError, match="stream broke after 4 chars of partial output") as info:
        async for text in server.model().stream(HI):
            received.append(text)
    assert received == ["part"]
    assert isinstance(info.value.__cause__, httpx.ReadError)
    assert len(server.requests) == 1
    assert stream.closed


@pytest.mark.anyio
async def test_stream_ending_without_done_after_output() -> None:
    server = Server(sse_response(sse(chunk("par"), done=False)))
    with pytest.raises(ModelError, match="broke after 3 chars .*without \\[DONE\\]"):
        await server.model().complete(HI)


@pytest.mark.anyio
async def test_stream_cut_before_output_is_retried() -> None:
    cut = BrokenStream([sse(chunk(""), done=False)], httpx.RemoteProtocolError("peer closed"))
    server = Server(lambda: httpx.Response(200, stream=cut), sse_response(HELLO))
    assert (await server.model().complete(HI)).text == "Hello"
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_read_timeout_is_a_model_error_without_retry() -> None:
    server = Server(httpx.ReadTimeout("timed out"))
    with pytest.raises(ModelError, match="no reply from .* within 120s") as info:
        await server.model().complete(HI)
    assert info.value.retryable
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_whole_json_reply_is_accepted() -> None:
    reply = {
        "choices": [{"message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    completion = await Server(httpx.Response(200, json=reply)).model().complete(HI)
    assert (completion.text, completion.finish_reason) == ("Hi!", "stop")
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 2)


@pytest.mark.anyio
async def test_closing_early_closes_the_response() -> None:
    stream = BrokenStream([sse(chunk("a"), chunk("b"), done=False)], httpx.ReadError("unused"))
    server = Server(lambda: httpx.Response(200, stream=stream))
    async with server.model().stream(HI) as reply:
        assert await anext(reply) == "a"
    assert stream.closed
    assert reply.usage is not None and reply.usage.completion_tokens == 1


@pytest.mark.anyio
async def test_silent_server_times_out() -> None:
    """A real socket that accepts and never answers: the read timeout fires."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def swallow(client: anyio.abc.SocketStream) -> None:
            async with client:
                await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, swallow)
            model = OpenAICompatible(f"http://127.0.0.1:{port}/v1", "m", timeout=0.2)
            with anyio.fail_after(5), pytest.raises(ModelError, match="within 0.2s"):
                await model.complete(HI)
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_refused_connection_gives_up() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
    model = OpenAICompatible(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0)
    with anyio.fail_after(5), pytest.raises(ModelError, match="gave up after 2 attempts"):
        await model.complete(HI)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="http"):
        OpenAICompatible("localhost:8080", "m")
    with pytest.raises(ConfigError):
        OpenAICompatible(URL, "")
    with pytest.raises(ConfigError):
        OpenAICompatible(URL, "m", max_retries=-1)
    with pytest.raises(ConfigError):
        OpenAICompatible(URL, "m", json_mode="yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://127.0.0.1:99999/v1", "port 99999 is out of range"),
        ("http:///v1", "names no host"),
    ],
)
def test_a_url_no_request_could_reach_is_a_config_error(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        OpenAICompatible(url, "m")


# -- time limits, against a real server on loopback ----------------------------------


@pytest.mark.anyio
async def test_a_server_sending_keep_alive_bytes_forever_fails_within_the_total_limit() -> None:
    with chat_server([KEEP_ALIVE]) as server:
        model = OpenAICompatible(server.url, "m", timeout=30, total_timeout=0.5)
        with anyio.fail_after(20), pytest.raises(ModelError, match="0.5s time limit") as caught:
            await model.complete(HI)
    assert "with no output" in str(caught.value)
    assert len(server.requests) == 1  # a call out of time is not tried again


@pytest.mark.anyio
async def test_a_silent_server_fails_at_the_total_limit_when_it_comes_first() -> None:
    with chat_server([SILENT]) as server:
        model = OpenAICompatible(server.url, "m", timeout=30, total_timeout=0.3)
        with anyio.fail_after(20), pytest.raises(ModelError, match="0.3s time limit"):
            await model.complete(HI)


@pytest.mark.anyio
async def test_a_silent_server_fails_at_the_read_timeout_when_it_comes_first() -> None:
    with chat_server([SILENT]) as server:
        model = OpenAICompatible(server.url, "m", timeout=0.3, total_timeout=30)
        with anyio.fail_after(20), pytest.raises(ModelError, match="within 0.3s of silence"):
            await model.complete(HI)


@pytest.mark.anyio
async def test_the_total_limit_stops_a_stream_that_has_started() -> None:
    with chat_server([KEEP_ALIVE]) as server:
        model = OpenAICompatible(server.url, "m", timeout=30, total_timeout=0.5)
        with anyio.fail_after(20), pytest.raises(ModelError, match="time limit"):
            async with model.stream(HI) as reply:
                async for _ in reply:
                    pass


@pytest.mark.anyio
async def test_a_scripted_server_streams_the_reply_in_pieces() -> None:
    with chat_server(['1. country("France")\n2. join()']) as server:
        model = OpenAICompatible(server.url, "scripted")
        with anyio.fail_after(20):
            async with model.stream(HI) as reply:
                chunks = [c async for c in reply]
    assert "".join(chunks) == '1. country("France")\n2. join()'
    assert len(chunks) > 1
    assert server.requests[0]["stream"] is True


@pytest.mark.anyio
async def test_retries_stop_when_the_next_would_pass_the_total_limit() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
    model = OpenAICompatible(
        f"http://127.0.0.1:{port}/v1",
        "m",
        max_retries=5,
        backoff=30,
        max_backoff=30,
        total_timeout=0.5,
    )
    # Full jitter may pick a short delay; the 30 s retry-after of a 429 is never short.
    server = Server(
        httpx.Response(429, headers={"retry-after": "30"}, json={"error": {"message": "busy"}})
    )
    limited = server.model(total_timeout=0.5, max_retries=5)
    with anyio.fail_after(20), pytest.raises(ModelError, match="another would pass") as caught:
        await limited.complete(HI)
    assert "gave up after 1 attempt" in str(caught.value) and len(server.requests) == 1
    with anyio.fail_after(20), pytest.raises(ModelError, match="cannot connect"):
        await model.complete(HI)


def test_time_limits_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="total_timeout=0"):
        OpenAICompatible(URL, "m", total_timeout=0)
    with pytest.raises(ConfigError, match="timeout=-1"):
        OpenAICompatible(URL, "m", timeout=-1)
    assert OpenAICompatible(URL, "m", total_timeout=None).total_timeout is None


def test_time_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_MODEL_TIMEOUT", "12.5")
    monkeypatch.setenv("TASKLOOM_READ_TIMEOUT", "3")
    model = model_from_config("m", URL)
    assert isinstance(model, OpenAICompatible)
    assert (model.total_timeout, model.read_timeout) == (12.5, 3.0)
    given = model_from_config("m", URL, timeout=1, read_timeout=2)
    assert isinstance(given, OpenAICompatible)
    assert (given.total_timeout, given.read_timeout) == (1, 2)
    for bad in ("soon", "0", "-4", "inf", "nan"):
        monkeypatch.setenv("TASKLOOM_MODEL_TIMEOUT", bad)
        with pytest.raises(ConfigError, match="TASKLOOM_MODEL_TIMEOUT must be a positive number"):
            model_from_config("m", URL)


def test_the_defaults_bound_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_from_config("m", URL)
    assert isinstance(model, OpenAICompatible)
    assert model.total_timeout == DEFAULT_TOTAL_TIMEOUT_S and model.read_timeout == 120.0
