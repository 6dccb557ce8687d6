"""The bundled Gemma 3 270M, in-process and behind llama-cpp-python's OpenAI server.

The model is the base (not instruction-tuned) model, so these tests check
mechanics — streaming, usage, grammars — and not the quality of its answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskloom.errors import ModelError
from taskloom.llm import Local, Message, OpenAICompatible, bundled_model_path

pytest.importorskip("llama_cpp")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

STORY = [Message("system", "Be brief."), Message("user", "Write one sentence about a cat.")]
YES_NO = [Message("user", "Is the sky blue? Answer yes or no.")]
YES_NO_GRAMMAR = 'root ::= "yes" | "no"'


@pytest.fixture(scope="module")
def model_path() -> Path:
    return bundled_model_path()


@pytest.fixture(scope="module")
def local(model_path: Path) -> Local:
    # One instance for the module: the model loads once, in the first test.
    return Local(model_path, name="gemma-local")


@pytest.mark.anyio
async def test_local_streams_text_and_usage(local: Local) -> None:
    stream = local.stream(STORY, max_tokens=48)
    chunks = [chunk async for chunk in stream]
    assert len(chunks) > 1
    assert "".join(chunks).strip()
    usage = stream.usage
    assert usage is not None
    assert usage.prompt_tokens > 5 and usage.completion_tokens > 1
    assert not usage.estimated
    assert usage.time_to_first_token_s is not None
    assert stream.finish_reason in ("stop", "length")
    print(
        f"local: {usage.tokens_per_s:.1f} tokens/s, first token {usage.time_to_first_token_s:.3f}s"
    )


@pytest.mark.anyio
async def test_local_is_deterministic_at_temperature_zero(local: Local) -> None:
    first = await local.complete(STORY, max_tokens=16)
    second = await local.complete(STORY, max_tokens=16)
    assert first.text == second.text


@pytest.mark.anyio
async def test_local_grammar_constrains_the_reply(local: Local) -> None:
    reply = await local.complete(YES_NO, grammar=YES_NO_GRAMMAR, max_tokens=8)
    assert reply.text in ("yes", "no")
    assert reply.finish_reason == "stop"


@pytest.mark.anyio
async def test_local_json_schema_constrains_the_reply(local: Local) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    reply = await local.complete(YES_NO, json_schema=schema, max_tokens=32)
    assert json.loads(reply.text)["answer"] in ("yes", "no")


@pytest.mark.anyio
async def test_local_rejects_a_broken_grammar(local: Local) -> None:
    # Unchecked, llama.cpp would dereference a NULL grammar and crash the process.
    with pytest.raises(ModelError, match="invalid GBNF grammar"):
        await local.complete(YES_NO, grammar='root ::= ("yes"')
    assert (await local.complete(YES_NO, grammar=YES_NO_GRAMMAR)).text in ("yes", "no")


@pytest.mark.anyio
async def test_server_streams_text_and_usage(server_url: str) -> None:
    model = OpenAICompatible(server_url, "gemma", timeout=60)
    stream = model.stream(STORY, max_tokens=32)
    chunks = [chunk async for chunk in stream]
    assert len(chunks) > 1
    assert "".join(chunks).strip()
    usage = stream.usage
    assert usage is not None
    # This server does not report usage while streaming: counts are estimates.
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 1
    assert usage.time_to_first_token_s is not None
    print(f"server: {usage.tokens_per_s:.1f} chunks/s, first {usage.time_to_first_token_s:.3f}s")


@pytest.mark.anyio
async def test_server_grammar_and_json_schema(server_url: str) -> None:
    model = OpenAICompatible(server_url, "gemma", timeout=60, json_mode="json_object")
    reply = await model.complete(YES_NO, grammar=YES_NO_GRAMMAR, max_tokens=8)
    assert reply.text in ("yes", "no")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    reply = await model.complete(YES_NO, json_schema=schema, max_tokens=32)
    assert isinstance(json.loads(reply.text)["ok"], bool)
