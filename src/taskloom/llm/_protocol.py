"""The seam between taskloom and every chat model: messages, streams, usage.

A model's `stream()` returns a `ChatStream` at once, without I/O. Iterating it
sends the request and yields text chunks as they arrive; when the stream stops
(it ended, failed or was closed) its `usage` is filled in.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

import anyio

from taskloom.errors import UserError

__all__ = [
    "ChatModel",
    "ChatStream",
    "Completion",
    "GenerationOptions",
    "Message",
    "Role",
    "Usage",
    "Warmable",
]

Role = Literal["system", "user", "assistant"]
"""Who speaks a message."""

_ROLES = frozenset(("system", "user", "assistant"))
_CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation."""

    role: Role
    """Who speaks: "system", "user" or "assistant"."""
    content: str
    """The text of the turn."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerationOptions:
    """How to generate one reply; validated by `ChatModel.stream()`."""

    max_tokens: int | None = None
    """Upper bound on generated tokens; None lets the model decide."""
    stop: tuple[str, ...] = ()
    """Generation stops before any of these strings; they are not returned."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy and (for local models) deterministic."""
    grammar: str | None = None
    """A GBNF grammar the output must match (llama.cpp backends)."""
    json_schema: Mapping[str, Any] | None = None
    """A JSON Schema the output must match."""
    copy_from: str | None = None
    """A text (the question) whose words the reply's quoted strings should copy
    where the model nearly prefers that anyway; a hint that models which cannot
    steer their own decoding (servers) ignore. See `Local(copy_margin=...)`."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """What one reply cost, known once its stream has stopped."""

    model: str
    """The name of the model that answered."""
    prompt_tokens: int
    """Tokens in the prompt, as the model counted them (or an estimate)."""
    completion_tokens: int
    """Tokens generated (or an estimate)."""
    time_to_first_token_s: float | None
    """Seconds from sending the request to the first text chunk; None if none came."""
    duration_s: float
    """Seconds from sending the request until the stream stopped."""
    estimated: bool = False
    """True when the token counts are estimates, not the model's own numbers."""

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed after the first token; None if it cannot be measured."""
        if self.time_to_first_token_s is None or self.completion_tokens < 2:
            return None
        generating = self.duration_s - self.time_to_first_token_s
        return (self.completion_tokens - 1) / generating if generating > 0 else None


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """A whole reply: the joined chunks of one stream."""

    text: str
    """Everything the model generated."""
    usage: Usage
    """Tokens and timings of the reply."""
    finish_reason: str | None = None
    """Why generation ended: "stop", "length", or None if the model did not say."""


@dataclass(frozen=True, kw_only=True, slots=True)
class _StreamEnd:
    """The last item a model's chunk source yields: what the model reported."""

    prompt_tokens: int | None = None
    """The model's prompt token count, if it gave one."""
    completion_tokens: int | None = None
    """The model's completion token count, if it gave one."""
    finish_reason: str | None = None
    """The model's reason for stopping, if it gave one."""


@dataclass(kw_only=True, slots=True)
class _Clock:
    """Timings of one stream, in `time.perf_counter()` seconds."""

    started: float | None = None
    first_chunk: float | None = None
    chunks: int = 0


class ChatStream(AsyncIterator[str]):
    """The text chunks of one reply, as they arrive.

    Iterate it (`async for chunk in stream`) once. Use it as an async context
    manager, or call `aclose()`, when you may stop early: that releases the
    connection, or the local model (which serves one stream at a time), at
    once rather than when the stream is garbage-collected.
    """

    def __init__(
        self,
        model: str,
        messages: Sequence[Message],
        source: AsyncIterator[str | _StreamEnd],
    ) -> None:
        self._model = model
        self._messages = messages
        self._source = source
        self._parts: list[str] = []
        self._clock = _Clock()
        self._end: _StreamEnd | None = None
        self.usage: Usage | None = None
        """Tokens and timings; None until the stream has stopped."""

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    @property
    def finish_reason(self) -> str | None:
        """Why generation ended, once it has; None before, or if the model did not say."""
        return self._end.finish_reason if self._end is not None else None

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> str:
        if self.usage is not None:
            raise StopAsyncIteration
        if self._clock.started is None:
            self._clock.started = time.perf_counter()
        try:
            while True:
                item = await anext(self._source)
                if isinstance(item, _StreamEnd):
                    self._end = item
                    raise StopAsyncIteration
                if item:
                    break
        except BaseException:
            # Ended, failed or cancelled: either way the stream is over and
            # the caller may still want to know what it cost.
            await self.aclose()
            raise
        if self._clock.first_chunk is None:
            self._clock.first_chunk = time.perf_counter()
        self._clock.chunks += 1
        self._parts.append(item)
        return item

    async def aclose(self) -> None:
        """Stop the stream and release its resources; fills `usage`. Idempotent."""
        if self.usage is not None:
            return
        self.usage = self._measure()
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            # Shielded, so a cancelled caller still lets the source close its
            # connection or hand the local model back; bounded so it cannot hang.
            with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
                await aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def collect(self) -> Completion:
        """Read the rest of the stream.

        Returns:
            The whole reply with its usage.

        Raises:
            ModelError: if the model failed before the reply was complete.

        """
        async with self:
            async for _ in self:
                pass
        assert self.usage is not None  # set by aclose()
        return Completion(text=self.text, usage=self.usage, finish_reason=self.finish_reason)

    def _measure(self) -> Usage:
        clock, end = self._clock, self._end or _StreamEnd()
        now = time.perf_counter()
        started = clock.started if clock.started is not None else now
        prompt, completion = end.prompt_tokens, end.completion_tokens
        return Usage(
            model=self._model,
            prompt_tokens=prompt if prompt is not None else _estimate_prompt(self._messages),
            # Servers send about one token per chunk, so chunks are a fair count.
            completion_tokens=completion if completion is not None else clock.chunks,
            time_to_first_token_s=(
                clock.first_chunk - started if clock.first_chunk is not None else None
            ),
            duration_s=now - started,
            estimated=prompt is None or completion is None,
        )


def _estimate_prompt(messages: Sequence[Message]) -> int:
    # About four characters per token for English text, plus a few per turn.
    return sum(len(m.content) // 4 + 4 for m in messages)


@runtime_checkable
class ChatModel(Protocol):
    """Anything taskloom can ask for text: a server, a local model, a test double."""

    @property
    def name(self) -> str:
        """The model's name, as reported in `Usage.model` and errors."""
        ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        grammar: str | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> ChatStream:
        """Start a reply; nothing is sent until the stream is iterated.

        Returns:
            The reply's chunks; iterating raises `ModelError` if the model fails.

        Raises:
            UserError: if the messages or options are invalid.

        """
        ...

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        grammar: str | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Generate a whole reply.

        Returns:
            The joined text, its usage and why it ended.

        Raises:
            UserError: if the messages or options are invalid.
            ModelError: if the model could not be reached or misbehaved.

        """
        ...


@runtime_checkable
class Warmable(Protocol):
    """A model that can evaluate the start of a prompt ahead of the request."""

    async def warm(self, messages: Sequence[Message]) -> None:
        """Evaluate the prompt `messages` begin, their last message left open.

        A later request whose prompt starts with these messages (its last
        message continuing the open one) then begins from there. It uses the
        model like a request does; call it while the model would sit idle.

        Raises:
            ModelError: if the model cannot evaluate the prompt.

        """
        ...


class _ChatModelBase(ABC):
    """`stream()` and `complete()` on top of one method that yields chunks."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The model's name."""

    @abstractmethod
    def _generate(
        self, messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str | _StreamEnd]:
        """Yield text chunks, then optionally one `_StreamEnd` with the model's counts."""

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        grammar: str | None = None,
        json_schema: Mapping[str, Any] | None = None,
        copy_from: str | None = None,
    ) -> ChatStream:
        """Start a reply; nothing is sent until the stream is iterated.

        `copy_from` is a hint (see `GenerationOptions.copy_from`); a model
        that cannot act on it ignores it.

        Returns:
            The reply's chunks; iterating raises `ModelError` if the model fails.

        Raises:
            UserError: if the messages or options are invalid.

        """
        checked = _check_messages(messages)
        options = _check_options(max_tokens, stop, temperature, grammar, json_schema)
        if copy_from is not None:
            options = replace(options, copy_from=copy_from)
        return ChatStream(self.name, checked, self._generate(checked, options))

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        grammar: str | None = None,
        json_schema: Mapping[str, Any] | None = None,
        copy_from: str | None = None,
    ) -> Completion:
        """Generate a whole reply.

        Returns:
            The joined text, its usage and why it ended.

        Raises:
            UserError: if the messages or options are invalid.
            ModelError: if the model could not be reached or misbehaved.

        """
        stream = self.stream(
            messages,
            max_tokens=max_tokens,
            stop=stop,
            temperature=temperature,
            grammar=grammar,
            json_schema=json_schema,
            copy_from=copy_from,
        )
        return await stream.collect()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _check_messages(messages: Sequence[Message]) -> tuple[Message, ...]:
    checked = tuple(messages)
    if not checked:
        raise UserError("a chat model needs at least one message")
    for message in checked:
        if not isinstance(message, Message):
            raise UserError(f"messages must be Message objects, got {type(message).__name__}")
        if message.role not in _ROLES:
            raise UserError(f"unknown message role {message.role!r}; use one of {sorted(_ROLES)}")
    return checked


def _check_options(
    max_tokens: int | None,
    stop: Sequence[str],
    temperature: float,
    grammar: str | None,
    json_schema: Mapping[str, Any] | None,
) -> GenerationOptions:
    if max_tokens is not None and max_tokens < 1:
        raise UserError(f"max_tokens must be at least 1, got {max_tokens}")
    if isinstance(stop, str):
        # A bare string is a sequence of one-character stops: never what was meant.
        raise UserError(f"stop must be a sequence of strings, not the string {stop!r}")
    if not all(isinstance(s, str) and s for s in stop):
        raise UserError("stop strings must be non-empty strings")
    if temperature < 0:
        raise UserError(f"temperature must be >= 0, got {temperature}")
    if grammar is not None and json_schema is not None:
        raise UserError("give either a grammar or a json_schema, not both")
    return GenerationOptions(
        max_tokens=max_tokens,
        stop=tuple(stop),
        temperature=temperature,
        grammar=grammar,
        json_schema=dict(json_schema) if json_schema is not None else None,
    )
