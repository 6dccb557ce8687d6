"""Chat models: the `ChatModel` protocol and its two real implementations.

`OpenAICompatible` talks to any OpenAI-style server over HTTP; `Local` runs a
GGUF model in-process on llama.cpp (the `local` extra). Test doubles live in
`taskloom.testing`.
"""

from __future__ import annotations

import math
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
from taskloom.llm.openai import DEFAULT_READ_TIMEOUT_S, DEFAULT_TOTAL_TIMEOUT_S, OpenAICompatible

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
    *,
    timeout: float | None = None,
    read_timeout: float | None = None,
) -> ChatModel:
    """Build the chat model that settings or the environment ask for.

    Each argument left as None is read from `TASKLOOM_MODEL`,
    `TASKLOOM_BASE_URL`, `TASKLOOM_API_KEY`, `TASKLOOM_MODEL_TIMEOUT` and
    `TASKLOOM_READ_TIMEOUT`. With a base URL the model is
    `OpenAICompatible(base_url, model, api_key=api_key)`, each of its calls
    limited to `timeout` seconds in all and `read_timeout` seconds of
    silence; without one it is `Local`: the bundled Gemma 3 270M when
    `model` is unset or `BUNDLED_MODEL`, otherwise `model` is the path of a
    GGUF file.

    Returns:
        A model; nothing is loaded or sent yet.

    Raises:
        ConfigError: if a server is given without a model name, a time limit
            is not a positive number, a GGUF path does not exist, or the
            `local` extra is missing for a local model.

    """
    model = model if model is not None else _env("TASKLOOM_MODEL")
    base_url = base_url if base_url is not None else _env("TASKLOOM_BASE_URL")
    api_key = api_key if api_key is not None else _env("TASKLOOM_API_KEY")
    if timeout is None:
        timeout = _seconds("TASKLOOM_MODEL_TIMEOUT", DEFAULT_TOTAL_TIMEOUT_S)
    if read_timeout is None:
        read_timeout = _seconds("TASKLOOM_READ_TIMEOUT", DEFAULT_READ_TIMEOUT_S)
    if base_url:
        if not model:
            raise ConfigError(
                f"a model name is needed for the server at {base_url}; set TASKLOOM_MODEL"
            )
        return OpenAICompatible(
            base_url, model, api_key=api_key, timeout=read_timeout, total_timeout=timeout
        )
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


def _seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable `name`, else `default`.

    Raises:
        ConfigError: if the variable is set to anything but a positive number.

    """
    text = _env(name)
    if text is None:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(f"{name} must be a positive number of seconds, got {text[:40]!r}")
    return seconds
