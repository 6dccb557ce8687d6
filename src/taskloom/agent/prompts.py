"""The words the agent says to models: planner, joiner and ReAct prompts.

Every prompt is a short system text, a few worked examples as earlier turns
(so that even a small base model sees the exact format it must continue),
and the request. The examples are the user's, over their own tools, or
notional ones over tools shown with them (`_notional.py`); `_shown.py`
chooses them for the question. Nothing here knows any tool by name.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from taskloom.agent._example import Example
from taskloom.llm import Message
from taskloom.tools import Tool

__all__ = [
    "JoinShot",
    "Observation",
    "ReActShot",
    "ReplanShot",
    "joiner_messages",
    "planner_messages",
    "react_messages",
    "result_text",
    "result_values",
    "tool_catalogue",
]

Observation = tuple[str, str, str]
"""One finished call as the models see it: (task id, call text, result text)."""


class JoinShot(NamedTuple):
    """A worked example for the joiner: a question, its results, and the reply to it."""

    question: str
    results: Sequence[Observation]
    reply: str


class ReplanShot(NamedTuple):
    """A worked example of a new plan: question, first results, what was missing, the plan."""

    question: str
    results: Sequence[Observation]
    reason: str
    """What the joiner asked for (the reason of its `Replan`)."""
    first_id: int
    """The number of the new plan's first call."""
    calls: str
    """The new plan: numbered calls, then the join line."""


class ReActShot(NamedTuple):
    """A worked example for ReAct: a question, its (call, observation) steps, and the answer."""

    question: str
    steps: Sequence[tuple[str, str]]
    answer: str
    tools: Sequence[Tool]
    """The tools the example calls, when they are not the agent's own (notional); else empty."""


_MAX_RESULT_CHARS = 400
_NESTED_FIELDS = 3
"""Plain fields shown of a record nested in a result (the first ones: names come first)."""
_NESTED_ITEMS = 3
"""Items shown of a list inside a result record."""
_MAX_VALUE_DEPTH = 4
"""Levels of nesting a grounded answer's values are read from."""
_EXAMPLE_RESULT_CHARS = 160
_MAX_DESCRIPTION_CHARS = 240

PLANNER_SYSTEM = """\
You answer questions by writing a plan of tool calls. Write one call per line, \
numbered. Calls that do not need each other run at the same time, so look up \
everything the question names at once and combine it at the end. Use $N for the \
result of call N and $N.field for one field of it, also inside quoted text; \
$N.field[*] calls the tool once for each item of that list. Use \
only the tools given, then end the plan with a join() line and <END_OF_PLAN>.\
"""

JOINER_SYSTEM = """\
You read a question and the results of the tool calls made for it, then either \
answer it or ask for a new plan. Write one Thought line, then either \
Action: Finish(the answer) or Action: Replan(what is still missing). In the \
answer, $N is the whole result of call N and $N.field one field of it: \
Finish($2) or Finish($1.name) answers with exactly that value.\
"""

JOINER_FORCED = " This is the last round: you must Finish with the best answer you have."

REACT_SYSTEM = """\
You answer questions with tools, one call at a time. Each turn, write one \
Thought line and one Action line: either a single tool call, or \
Finish(the answer). You then see the call's Observation. Use only the tools given.\
"""


def tool_catalogue(tools: Iterable[Tool]) -> str:
    """One line per tool: its signature and the first sentences of its description."""
    lines = []
    for tool in tools:
        summary = " ".join(tool.description.split("\n\n")[0].split())
        if len(summary) > _MAX_DESCRIPTION_CHARS:
            summary = summary[: _MAX_DESCRIPTION_CHARS - 3] + "..."
        lines.append(f"- {tool.signature()}: {summary}")
    return "\n".join(lines)


def _with_tools(system: str, tools: Sequence[Tool], notional: bool) -> str:
    """The system text, with the catalogue when every question shares it (no notional examples)."""
    if notional:
        return system
    return f"{system}\n\nTools:\n{tool_catalogue(tools)}"


def _question(question: str, tools: Sequence[Tool] | None) -> str:
    """A question turn; with notional examples each question comes with its own tools."""
    if tools is None:
        return f"Question: {question}"
    return f"Tools:\n{tool_catalogue(tools)}\n\nQuestion: {question}"


def planner_messages(
    question: str,
    tools: Sequence[Tool],
    *,
    examples: Sequence[Example] = (),
    history: Sequence[Observation] = (),
    replan_reason: str | None = None,
    first_id: int = 1,
    repair: tuple[str, str] | None = None,
    replans: Sequence[ReplanShot] = (),
) -> list[Message]:
    """The planner's conversation.

    Args:
        question: what the user asked.
        tools: the tools a plan may call.
        examples: the worked examples to show, in order; those with their own
            `tools` (notional) are shown with them, and then so is the request.
        history: results of earlier plans in this run, which new calls may use.
        replan_reason: why the joiner asked for a new plan.
        first_id: the number the new plan's first call must carry.
        repair: (the plan text so far, the PlanError message) to fix.
        replans: worked examples of a new plan after a first round, shown
            after `examples`, in the form of the request when it has `history`.

    """
    notional = any(e.tools for e in examples)
    messages = [Message("system", _with_tools(PLANNER_SYSTEM, tools, notional))]
    for example in examples:
        messages.append(Message("user", _question(example.question, example.tools or None)))
        messages.append(Message("assistant", example.calls))
    for shot in replans:
        request = _question(shot.question, None)
        messages.append(
            Message("user", request + _still_needed(shot.results, shot.reason, shot.first_id))
        )
        messages.append(Message("assistant", shot.calls))
    request = _question(question, tools if notional else None)
    if history:
        request += _still_needed(history, replan_reason, first_id)
    if repair is not None:
        text, error = repair
        request += (
            f"\n\nYour plan so far:\n{text.rstrip()}\n\nIt has an error: {error}\n"
            "Write the plan again from its first call, with the error fixed; "
            "repeat the calls above that are right exactly as they are."
        )
    messages.append(Message("user", request))
    return messages


def _still_needed(history: Sequence[Observation], reason: str | None, first_id: int) -> str:
    """What a request for a new plan adds to its question: the results so far, what is missing."""
    return (
        "\n\nResults so far (usable as $N):\n"
        + _observations(history)
        + f"\n\nStill needed: {reason or 'the rest of the answer'}."
        + f" Number the new calls from {first_id}; do not repeat calls above."
    )


def joiner_messages(
    question: str,
    observations: Sequence[Observation],
    *,
    force_finish: bool,
    examples: Sequence[JoinShot] = (),
) -> list[Message]:
    """The joiner's conversation: worked examples, the question, its results, the choice."""
    system = JOINER_SYSTEM + (JOINER_FORCED if force_finish else "")
    messages = [Message("system", system)]
    for example in examples:
        # Shortened results: the examples teach the form, and prompt tokens are time.
        results = [(i, call, _shorten(text)) for i, call, text in example.results]
        messages.append(Message("user", _joiner_request(example.question, results)))
        messages.append(Message("assistant", example.reply))
    messages.append(Message("user", _joiner_request(question, observations)))
    return messages


def joiner_prefix(
    question: str,
    earlier: Sequence[Observation],
    planned: Sequence[Observation],
    *,
    force_finish: bool,
    done: Sequence[Observation] = (),
    examples: Sequence[JoinShot] = (),
) -> list[Message]:
    """The start of the joiner's conversation while this round's results are coming in.

    Its last message stops where the next result line will begin, so a model
    can read all of it while the round's tools are still running. `planned`
    names this round's calls (their results are ignored); `done` are the
    result lines of its first calls, those that have settled.
    """
    messages = joiner_messages(
        question, [*earlier, *planned], force_finish=force_finish, examples=examples
    )
    head = f"Question: {question}\nResults:\n"
    if earlier or done:
        head += _observations([*earlier, *done]) + "\n"
    return [*messages[:-1], Message("user", head)]


def _joiner_request(question: str, observations: Sequence[Observation]) -> str:
    results = _observations(observations) if observations else "(no calls were made)"
    return f"Question: {question}\nResults:\n{results}"


def react_messages(
    question: str,
    tools: Sequence[Tool],
    steps: Sequence[tuple[str, str]],
    *,
    examples: Sequence[ReActShot] = (),
) -> list[Message]:
    """The ReAct conversation: examples, the question, and each (action, observation) so far."""
    notional = any(e.tools for e in examples)
    messages = [Message("system", _with_tools(REACT_SYSTEM, tools, notional))]
    for example in examples:
        messages.append(Message("user", _question(example.question, example.tools or None)))
        for i, (call, observation) in enumerate(example.steps):
            thought = "Thought: I look this up first." if i == 0 else "Thought: Next call."
            messages.append(Message("assistant", f"{thought}\nAction: {call}"))
            messages.append(Message("user", f"Observation: {observation}"))
        finish = f"Thought: That answers it.\nAction: Finish({example.answer})"
        messages.append(Message("assistant", finish))
    messages.append(Message("user", _question(question, tools if notional else None)))
    for action, observation in steps:
        messages.append(Message("assistant", action))
        messages.append(Message("user", f"Observation: {observation}"))
    return messages


def _observations(observations: Sequence[Observation]) -> str:
    return "\n".join(f"{task_id}. {call} -> {result}" for task_id, call, result in observations)


def result_text(value: Any) -> str:
    """A tool's output (or error) as compact text, bounded in length."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        text = str(int(value))
    elif isinstance(value, Mapping):
        text = json.dumps(_compact(value), ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > _MAX_RESULT_CHARS:
        text = text[: _MAX_RESULT_CHARS - 3] + "..."
    return text


def result_values(texts: Iterable[str]) -> list[str]:
    """The values the results show, as an answer writes them: what a grounded answer may quote.

    A record gives its text, number and boolean fields, nested records' and
    lists' too (a few levels down); any other result its whole text; errors
    give nothing. Numbers read as in `result_text`. A boolean gives both
    `yes` and `no`: a yes/no question answered from it may need either, by
    how it is asked. Each value comes once, in the order first seen.
    """
    values: dict[str, None] = {}
    for text in texts:
        if text.startswith("error:"):
            continue
        try:
            parsed = json.loads(text)
        except ValueError:
            values[text] = None
            continue
        for value in _leaves(parsed, _MAX_VALUE_DEPTH):
            values[value] = None
    return list(values)


def _leaves(value: Any, depth: int) -> Iterable[str]:
    """The plain values inside a parsed result, as answers write them."""
    if isinstance(value, bool):
        yield from ("yes", "no")
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float):
        yield result_text(value)
    elif isinstance(value, Mapping | list) and depth > 0:
        for item in value.values() if isinstance(value, Mapping) else value:
            yield from _leaves(item, depth - 1)


def _shorten(text: str) -> str:
    if len(text) <= _EXAMPLE_RESULT_CHARS:
        return text
    return text[: _EXAMPLE_RESULT_CHARS - 3] + "..."


def _compact(value: Mapping[str, Any]) -> dict[str, Any]:
    """A record with its nested parts cut short: what the joiner needs, in few tokens.

    A nested record (a distance's two cities) shows its first few plain
    fields, a list its first few items (records among them cut the same
    way), so a field that an answer may name by reference (`$1.city_a.name`)
    is in view; deeper parts cost context and rarely matter. A record that
    is nothing else (an MCP tool's `{"result": [...]}`) is kept whole.
    """
    if all(isinstance(v, Mapping | list) for v in value.values()):
        return dict(value)
    short: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping):
            inner = _plain_fields(item)
            if inner:
                short[key] = inner
        elif isinstance(item, list):
            short[key] = [
                _plain_fields(i) if isinstance(i, Mapping) else i
                for i in item[:_NESTED_ITEMS]
                if not isinstance(i, list)
            ]
        else:
            short[key] = item
    return short


def _plain_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The first few fields of a nested record that are not records or lists themselves."""
    plain = ((k, v) for k, v in record.items() if not isinstance(v, Mapping | list))
    return dict(itertools.islice(plain, _NESTED_FIELDS))
