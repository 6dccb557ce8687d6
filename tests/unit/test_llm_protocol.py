"""ChatStream, Usage, option checks, model_from_config and the public names."""

from __future__ import annotations

import importlib.util

import pytest

import taskloom.llm
from taskloom.errors import ConfigError, UserError
from taskloom.llm import Local, Message, OpenAICompatible, Usage, model_from_config
from taskloom.llm._testing import ScriptedModel

HI = [Message("user", "hi")]


def test_public_names() -> None:
    assert taskloom.llm.__all__ == [
        "BUNDLED_MODEL",
        "ChatModel",
        "ChatStream",
        "Completion",
        "GenerationOptions",
        "Local",
        "Message",
        "OpenAICompatible",
        "Role",
        "Usage",
        "Warmable",
        "bundled_model_path",
        "model_from_config",
    ]


@pytest.mark.parametrize(
    ("messages", "options", "problem"),
    [
        ([], {}, "at least one message"),
        (["hi"], {}, "must be Message objects"),
        ([Message("robot", "x")], {}, "unknown message role"),  # type: ignore[arg-type]
        (HI, {"max_tokens": 0}, "max_tokens"),
        (HI, {"stop": "\n"}, "sequence of strings"),
        (HI, {"stop": [""]}, "non-empty"),
        (HI, {"temperature": -1}, "temperature"),
        (HI, {"grammar": "root ::= x", "json_schema": {}}, "not both"),
    ],
)
def test_bad_requests_are_user_errors(messages: list[Message], options: dict, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        ScriptedModel(["x"]).stream(messages, **options)


@pytest.mark.anyio
async def test_usage_is_set_when_the_stream_stops() -> None:
    stream = ScriptedModel(["a b c d"], chunk_size=2).stream(HI)
    assert stream.usage is None
    async with stream:
        assert await anext(stream) == "a "
        assert stream.usage is None
    usage = stream.usage
    assert usage is not None
    assert usage.completion_tokens == 1  # counted chunks: the reply did not finish
    assert usage.estimated
    assert usage.time_to_first_token_s is not None
    assert [c async for c in stream] == []  # a closed stream stays closed


def test_tokens_per_second() -> None:
    usage = Usage(
        model="m", prompt_tokens=5, completion_tokens=11, time_to_first_token_s=1.0, duration_s=3.0
    )
    assert usage.total_tokens == 16
    assert usage.tokens_per_s == 5.0
    one = Usage(
        model="m", prompt_tokens=5, completion_tokens=1, time_to_first_token_s=1, duration_s=1
    )
    assert one.tokens_per_s is None


def test_model_from_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_BASE_URL", "http://127.0.0.1:8080/v1")
    monkeypatch.setenv("TASKLOOM_MODEL", "qwen")
    monkeypatch.setenv("TASKLOOM_API_KEY", "")
    model = model_from_config()
    assert isinstance(model, OpenAICompatible)
    assert (model.base_url, model.name) == ("http://127.0.0.1:8080/v1", "qwen")
    assert model_from_config(model="other").name == "other"
    monkeypatch.delenv("TASKLOOM_MODEL")
    with pytest.raises(ConfigError, match="TASKLOOM_MODEL"):
        model_from_config()


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs the local extra")
def test_model_from_config_without_a_server_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKLOOM_BASE_URL", raising=False)
    monkeypatch.delenv("TASKLOOM_MODEL", raising=False)
    model = model_from_config()
    assert isinstance(model, Local)
    assert model.name == "gemma-3-270m-q4_k_m"
    with pytest.raises(
        ConfigError, match="nor a GGUF file; to use a server, set TASKLOOM_BASE_URL"
    ):
        model_from_config(model="gpt-4o")
