"""The test doubles: ScriptedModel and FunctionModel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from taskloom.errors import ModelError
from taskloom.llm import ChatModel, GenerationOptions, Message
from taskloom.llm._testing import FunctionModel, ScriptedModel

Q = (Message("system", "be brief"), Message("user", "what is two plus two"))


def test_doubles_are_chat_models() -> None:
    assert isinstance(ScriptedModel([]), ChatModel)
    assert isinstance(FunctionModel(lambda m, o: ""), ChatModel)


@pytest.mark.anyio
async def test_scripted_replies_stream_in_chunks_and_record_calls() -> None:
    model = ScriptedModel(["two plus two is four", "second"], chunk_size=5)
    stream = model.stream(Q, max_tokens=50)
    chunks = [c async for c in stream]
    assert chunks == ["two p", "lus t", "wo is", " four"]
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (7, 5)
    assert stream.usage.model == "scripted"
    assert not stream.usage.estimated
    assert stream.finish_reason == "stop"
    assert (await model.complete([Message("user", "again")])).text == "second"
    assert model.calls == [Q, (Message("user", "again"),)]
    assert model.options[0] == GenerationOptions(max_tokens=50)
    assert model.remaining == 0


@pytest.mark.anyio
async def test_scripted_exception_is_raised_when_iterated() -> None:
    model = ScriptedModel([ModelError("scripted", "down"), "ok"])
    stream = model.stream(Q)  # nothing raised yet: streams are lazy
    with pytest.raises(ModelError, match="down"):
        await stream.collect()
    assert stream.usage is not None and stream.usage.completion_tokens == 0
    assert (await model.complete(Q)).text == "ok"


@pytest.mark.anyio
async def test_script_too_short_is_not_a_model_error() -> None:
    model = ScriptedModel(["only"])
    await model.complete(Q)
    with pytest.raises(RuntimeError, match="has 1 replies but was asked for reply 2"):
        await model.complete(Q)


@pytest.mark.anyio
async def test_scripted_honours_stop_and_max_tokens() -> None:
    model = ScriptedModel(["1. a\n2. b\nEND more", "one two three four"])
    stopped = await model.complete(Q, stop=["END", "\n2."])
    assert (stopped.text, stopped.finish_reason) == ("1. a", "stop")
    cut = await model.complete(Q, max_tokens=2)
    assert (cut.text, cut.finish_reason) == ("one two", "length")


@pytest.mark.anyio
async def test_function_model_gets_messages_and_options() -> None:
    seen: list[GenerationOptions] = []

    def reply(messages: tuple[Message, ...], options: GenerationOptions) -> str:
        seen.append(options)
        return messages[-1].content.upper()

    model = FunctionModel(reply, chunk_size=3, name="shout")
    completion = await model.complete(Q, temperature=0.5, grammar="root ::= x")
    assert completion.text == "WHAT IS TWO PLUS TWO"
    assert completion.usage.model == "shout"
    assert seen == [GenerationOptions(temperature=0.5, grammar="root ::= x")]
    assert model.calls == [Q]


@pytest.mark.anyio
async def test_function_model_accepts_coroutines_and_async_iterators() -> None:
    async def whole(messages: tuple[Message, ...], options: GenerationOptions) -> str:
        return "done"

    async def pieces(
        messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str]:
        yield "a b "
        yield "c"

    assert (await FunctionModel(whole).complete(Q)).text == "done"
    stream = FunctionModel(pieces).stream(Q)
    assert [c async for c in stream] == ["a b ", "c"]
    assert stream.usage is not None and stream.usage.completion_tokens == 3


@pytest.mark.anyio
async def test_function_model_exceptions_propagate() -> None:
    def fail(messages: tuple[Message, ...], options: GenerationOptions) -> str:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await FunctionModel(fail).complete(Q)


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ScriptedModel([], chunk_size=0)
    with pytest.raises(ValueError):
        FunctionModel(lambda m, o: "", chunk_size=0)
