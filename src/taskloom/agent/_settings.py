"""What an agent request records of its agent, and the settings that record gives back.

`taskloom resume` and `Agent.from_store()` rebuild the agent of a recorded
request from these: its tools (found again where they were defined), its
limits, its grammar and grounding choices, its budget, and the model when taskloom can
build it again (a server's address and name, or a GGUF file; never a key).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from taskloom.agent._example import Example, load_examples
from taskloom.agent._limits import GrammarLimits
from taskloom.engine import Budget, Price
from taskloom.errors import UserError
from taskloom.llm import BUNDLED_MODEL, ChatModel, Local, OpenAICompatible, model_from_config
from taskloom.tools import Tool
from taskloom.tools._load import find_tools, importable_tools, tool_sources

__all__ = [
    "importable_recorded_tools",
    "model_settings",
    "recorded_budget",
    "recorded_examples",
    "recorded_grammar_limits",
    "recorded_model",
    "recorded_tool_names",
    "recorded_tools",
    "settings",
]


def settings(
    *,
    model: ChatModel,
    tools: Sequence[Tool],
    tool_latency: float,
    max_replans: int,
    max_repairs: int,
    max_concurrency: int | None,
    grammar: bool,
    grammar_limits: GrammarLimits,
    examples: Sequence[Example],
    grounded: bool,
    budget: Budget | None,
) -> dict[str, Any]:
    """The JSON-able settings an agent request records (`RunRecord.config`)."""
    return {
        "model": getattr(model, "name", type(model).__name__),
        "model_settings": model_settings(model),
        "tools": [t.name for t in tools],
        "tool_sources": tool_sources(tools),
        "tool_latency": tool_latency,
        "max_replans": max_replans,
        "max_repairs": max_repairs,
        "max_concurrency": max_concurrency,
        "grammar": grammar,
        "grammar_limits": grammar_limits.to_json(),
        **_examples_settings(examples),
        "grounded": grounded,
        "budget": _budget_settings(budget),
    }


def model_settings(model: ChatModel) -> dict[str, Any] | None:
    """What `model_from_config` needs to build `model` again; None for other models."""
    if isinstance(model, OpenAICompatible):
        return {
            "model": model.model,
            "base_url": model.base_url,
            "timeout": model.total_timeout,
            "read_timeout": model.read_timeout,
        }
    if isinstance(model, Local):
        path = model.model_path
        return {"model": str(path.resolve()) if path is not None else BUNDLED_MODEL}
    return None


def recorded_model(config: Mapping[str, Any], run_id: str) -> ChatModel:
    """The model a request recorded, built again.

    Raises:
        UserError: if the request's model cannot be built from what was
            recorded (a test double, or a custom class): pass one.
        ConfigError: if the recorded settings no longer work (a GGUF gone).

    """
    spec = config.get("model_settings")
    if not isinstance(spec, Mapping):
        name = config.get("model")
        if name is None or "model_settings" not in config:
            return model_from_config()  # recorded before models were: the default one
        raise UserError(
            f"run {run_id} used the model {name!r}, which taskloom cannot build again; "
            "give a model (--model and --base-url, or model=)"
        )
    return model_from_config(
        spec.get("model"),
        spec.get("base_url") or "",  # "" and not None: the environment's server must not win
        timeout=spec.get("timeout"),
        read_timeout=spec.get("read_timeout"),
    )


def recorded_tools(config: Mapping[str, Any]) -> list[Tool]:
    """The tools a request recorded, imported again from where they were defined.

    Raises:
        UserError: if a tool cannot be found again.

    """
    return find_tools(_recorded_sources(config), recorded_tool_names(config))


def importable_recorded_tools(config: Mapping[str, Any]) -> dict[str, Tool]:
    """The tools a request recorded that can be imported again, by name.

    Tools built at run time (an MCP server's, the python tool) are left out:
    whoever resumes the request supplies them.

    Raises:
        UserError: if a module the request's tools came from cannot be imported again.

    """
    return importable_tools(_recorded_sources(config), recorded_tool_names(config))


def recorded_tool_names(config: Mapping[str, Any]) -> list[str]:
    """The names of the tools a request recorded, in their order."""
    return [str(n) for n in config.get("tools", ())]


def _recorded_sources(config: Mapping[str, Any]) -> list[Any]:
    sources = config.get("tool_sources")
    if not isinstance(sources, list):
        raise UserError(
            "the run does not say where its tools are defined (it was recorded by an "
            "older taskloom); give the tools again (--tools, or tools=)"
        )
    return sources


_INLINE_EXAMPLES = 32_000
"""Characters of examples' JSON a request records inline; a larger set, read from one
file, is recorded by that file's path and digest (a bank of hundreds of examples
would otherwise be copied into every request of a batch)."""


def _examples_settings(examples: Sequence[Example]) -> dict[str, Any]:
    """The examples inline (the file they came from may change), or a large set's file."""
    inline = [e.to_json() for e in examples]
    origins = {e.origin for e in examples}
    if len(origins) == 1 and None not in origins:
        (origin,) = origins
        assert origin is not None
        if len(json.dumps(inline, default=str)) > _INLINE_EXAMPLES:
            return {"examples_file": {"path": origin.path, "sha256": origin.sha256}}
    return {"examples": inline}


def recorded_examples(config: Mapping[str, Any]) -> list[Example] | None:
    """The worked examples a request recorded; None if it recorded none (notional ones).

    Raises:
        UserError: if a recorded example is not a valid one, or the file a
            large set was recorded by is gone or has changed since.

    """
    spec = config.get("examples_file")
    if isinstance(spec, Mapping):
        examples = load_examples(str(spec.get("path")))
        if examples[0].origin is None or examples[0].origin.sha256 != spec.get("sha256"):
            raise UserError(
                f"the examples file {spec.get('path')} has changed since the run was "
                "recorded; give its examples (Agent.from_store(..., examples=...))"
            )
        return examples
    recorded = config.get("examples")
    if not recorded:
        return None
    if not isinstance(recorded, list):
        raise UserError("the run's recorded examples are not a list")
    return [Example.from_json(e) for e in recorded]


def recorded_grammar_limits(config: Mapping[str, Any]) -> GrammarLimits | None:
    """The grammar limits a request recorded; None (the defaults) if it recorded none.

    Raises:
        UserError: if the recorded limits are not valid ones.

    """
    recorded = config.get("grammar_limits")
    return None if recorded is None else GrammarLimits.from_json(recorded)


def recorded_budget(config: Mapping[str, Any]) -> Budget | None:
    """The budget a request recorded, or None without one."""
    spec = config.get("budget")
    if not isinstance(spec, Mapping):
        return None
    prices = {
        name: Price(prompt=float(p["prompt"]), completion=float(p["completion"]))
        for name, p in (spec.get("prices") or {}).items()
    }
    return Budget(
        tool_calls=spec.get("tool_calls"),
        deadline=spec.get("deadline"),
        tokens=spec.get("tokens"),
        cost=spec.get("cost"),
        prices=prices,
    )


def _budget_settings(budget: Budget | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {
        "tool_calls": budget.tool_calls,
        "deadline": budget.deadline,
        "tokens": budget.tokens,
        "cost": budget.cost,
        "prices": {
            name: {"prompt": p.prompt, "completion": p.completion}
            for name, p in budget.prices.items()
        },
    }
