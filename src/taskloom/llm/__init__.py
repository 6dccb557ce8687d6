"""Chat models: the `ChatModel` protocol and its two real implementations.

`OpenAICompatible` talks to any OpenAI-style server over HTTP; `Local` runs a
GGUF model in-process on llama.cpp (the `local` extra). Test doubles live in
`taskloom.testing`.
"""

from __future__ import annotations

import os
from pathlib import Path

from taskloom.errors import ConfigError
from taskloom.llm._protocol import (
    ChatModel,
    ChatStream,
    Completion,
    GenerationOptions,
    Message,
    Role,
    Usage,
    Warmable,
)
from taskloom.llm.local import BUNDLED_MODEL, Local, bundled_model_path
from taskloom.llm.openai import OpenAICompatible

__all__ = [
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


def model_from_config(
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
) -> ChatModel:
    """Build the chat model that settings or the environment ask for.

    Each argument left as None is read from `TASKLOOM_MODEL`,
    `TASKLOOM_BASE_URL` and `TASKLOOM_API_KEY`. With a base URL the model is
    `OpenAICompatible(base_url, model, api_key=api_key)`; without one it is
    `Local`: the bundled Gemma 3 270M when `model` is unset or
    `BUNDLED_MODEL`, otherwise `model` is the path of a GGUF file.

    Returns:
        A model; nothing is loaded or sent yet.

    Raises:
        ConfigError: if a server is given without a model name, a GGUF path
            does not exist, or the `local` extra is missing for a local model.

    """
    model = model if model is not None else _env("TASKLOOM_MODEL")
    base_url = base_url if base_url is not None else _env("TASKLOOM_BASE_URL")
    api_key = api_key if api_key is not None else _env("TASKLOOM_API_KEY")
    if base_url:
        if not model:
            raise ConfigError(
                f"a model name is needed for the server at {base_url}; set TASKLOOM_MODEL"
            )
        return OpenAICompatible(base_url, model, api_key=api_key)
    if not model or model == BUNDLED_MODEL:
        return Local()
    if not Path(model).is_file():
        raise ConfigError(
            f"model {model!r} is neither {BUNDLED_MODEL!r} nor a GGUF file; "
            "to use a server, set TASKLOOM_BASE_URL"
        )
    return Local(model)


def _env(name: str) -> str | None:
    # An empty variable counts as unset, as in most shells' ${VAR:-default}.
    return os.environ.get(name) or None
