"""Chat models for tests: a scripted one and one backed by a function.

Both stream their replies in small chunks with a checkpoint between chunks, so
code under test sees text arrive piecewise, as it would from a real model.
They count tokens by splitting on whitespace.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import anyio.lowlevel

from taskloom.llm._protocol import GenerationOptions, Message, _ChatModelBase, _StreamEnd

__all__ = ["FunctionModel", "ScriptedModel"]

ModelFunction = Callable[
    [tuple[Message, ...], GenerationOptions], str | Awaitable[str] | AsyncIterator[str]
]
"""What `FunctionModel` calls: (messages, options) -> text, awaitable text, or chunks."""

_WORD = re.compile(r"\S+")


class ScriptedModel(_ChatModelBase):
    """Replies with scripted texts, one per request, in order.

    An `Exception` in the script is raised when that request's stream is
    iterated, e.g. `ModelError("scripted", "down")` to test failure handling.
    Stop strings and `max_tokens` (counted in words) are honoured, so the
    reply is what a real model would have returned.
    """

    def __init__(
        self,
        responses: Sequence[str | Exception],
        *,
        chunk_size: int = 4,
        name: str = "scripted",
    ) -> None:
        """Script the replies.

        Raises:
            ValueError: if chunk_size is not positive.

        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self._responses = list(responses)
        self._chunk_size = chunk_size
        self._name = name
        self.calls: list[tuple[Message, ...]] = []
        """The messages of every request, in order."""
        self.options: list[GenerationOptions] = []
        """The options of every request, in order."""

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    @property
    def remaining(self) -> int:
        """How many scripted replies have not been used yet."""
        return len(self._responses) - len(self.calls)

    async def _generate(
        self, messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str | _StreamEnd]:
        index = len(self.calls)
        self.calls.append(messages)
        self.options.append(options)
        if index >= len(self._responses):
            # Not a ModelError: code under test might treat that as data and
            # hide what is really a test whose script is too short.
            raise RuntimeError(
                f"ScriptedModel {self._name!r} has {len(self._responses)} replies "
                f"but was asked for reply {index + 1}"
            )
        response = self._responses[index]
        if isinstance(response, Exception):
            raise response
        async for item in _chunked(response, messages, options, self._chunk_size):
            yield item


class FunctionModel(_ChatModelBase):
    """Replies with whatever a function returns for the messages.

    The function gets `(messages, options)` and returns the reply text, an
    awaitable of it, or an async iterator of chunks (streamed as given).
    Exceptions it raises propagate unchanged when the stream is iterated.
    """

    def __init__(self, fn: ModelFunction, *, chunk_size: int = 4, name: str = "function") -> None:
        """Wrap `fn`.

        Raises:
            ValueError: if chunk_size is not positive.

        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self._fn = fn
        self._chunk_size = chunk_size
        self._name = name
        self.calls: list[tuple[Message, ...]] = []
        """The messages of every request, in order."""

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    async def _generate(
        self, messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str | _StreamEnd]:
        self.calls.append(messages)
        result = self._fn(messages, options)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, str):
            async for item in _chunked(result, messages, options, self._chunk_size):
                yield item
            return
        words = 0
        async for chunk in result:
            words += len(chunk.split())
            yield chunk
        yield _StreamEnd(prompt_tokens=_count_prompt(messages), completion_tokens=words)


async def _chunked(
    text: str, messages: tuple[Message, ...], options: GenerationOptions, size: int
) -> AsyncIterator[str | _StreamEnd]:
    text, finish_reason = _truncate(text, options)
    for start in range(0, len(text), size):
        # Let other tasks run between chunks, as they would while a real model works.
        await anyio.lowlevel.checkpoint()
        yield text[start : start + size]
    yield _StreamEnd(
        prompt_tokens=_count_prompt(messages),
        completion_tokens=len(text.split()),
        finish_reason=finish_reason,
    )


def _truncate(text: str, options: GenerationOptions) -> tuple[str, str]:
    """Cut the text where a real model would stop; return it and the finish reason."""
    reason = "stop"
    cuts = [i for i in (text.find(s) for s in options.stop) if i >= 0]
    if cuts:
        text = text[: min(cuts)]
    if options.max_tokens is not None:
        words = list(_WORD.finditer(text))
        if len(words) > options.max_tokens:
            text = text[: words[options.max_tokens - 1].end()]
            reason = "length"
    return text, reason


def _count_prompt(messages: tuple[Message, ...]) -> int:
    return sum(len(m.content.split()) for m in messages)
