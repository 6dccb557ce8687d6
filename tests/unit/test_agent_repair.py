"""The repair loop and the answers an agent may not give.

A plan that fails validation goes back to the model, which writes it again
from its first call: calls the run already holds are taken as they are, a
changed call rewrites its task if it has not started, and a round whose plan
never validates ends the request `failed`. A request none of whose tool
calls succeeded has nothing to answer from, so it fails too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from taskloom import tool
from taskloom.agent import Agent
from taskloom.llm import GenerationOptions, Message
from taskloom.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio

FINISH = "Thought: the results answer it.\nAction: Finish(the sum)"


def counting_tools(calls: list[str]) -> list[Any]:
    @tool
    async def size(name: str) -> dict[str, Any]:
        """The size of a name (counts its calls: a repair must not repeat one)."""
        calls.append(name)
        return {"name": name, "size": len(name)}

    @tool
    async def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    return [size, add]


async def test_a_plan_written_again_from_its_first_call_is_accepted() -> None:
    calls: list[str] = []
    model = ScriptedModel(
        [
            '1. size("alpha")\n2. sise("beta")\n3. join()',
            '1. size("alpha")\n2. size("beta")\n3. add($1.size, $2.size)\n4. join()',
            FINISH,
        ]
    )
    agent = Agent(tools=counting_tools(calls), model=model, grammar=False)
    result = await agent.run("How long are alpha and beta together?")
    assert [a.valid for a in result.plan_attempts] == [False, True]
    assert "unknown tool 'sise'" in (result.plan_attempts[0].error or "")
    assert result.plan_attempts[1].tasks == 2  # task 1 was skipped: the same call
    assert result.status == "answered" and result.answer == "the sum"
    (run,) = result.rounds
    assert {i: t.status for i, t in run.tasks.items()} == dict.fromkeys("123", "done")
    assert run.tasks["3"].output == 9
    assert calls == ["alpha", "beta"]  # the repeated call ran once
    repair_prompt = model.calls[1][-1].content
    assert '1. size("alpha")' in repair_prompt and "exactly as they are" in repair_prompt


async def test_a_repair_may_continue_the_numbering_instead() -> None:
    calls: list[str] = []
    model = ScriptedModel(
        ['1. size("alpha")\n2. sise("beta")\n3. join()', '2. size("beta")\n3. join()', FINISH]
    )
    result = await Agent(tools=counting_tools(calls), model=model, grammar=False).run("?")
    assert [a.valid for a in result.plan_attempts] == [False, True]
    assert calls == ["alpha", "beta"]


async def test_a_repair_that_changes_a_call_that_ran_is_sent_back() -> None:
    calls: list[str] = []
    model = ScriptedModel(
        [
            '1. size("alpha")\n2. sise("beta")\n3. join()',
            '1. size("gamma")\n2. size("beta")\n3. join()',
            '1. size("alpha")\n2. size("beta")\n3. join()',
            FINISH,
        ]
    )
    result = await Agent(tools=counting_tools(calls), model=model, grammar=False).run("?")
    assert [a.valid for a in result.plan_attempts] == [False, False, True]
    second = result.plan_attempts[1].error or ""
    assert 'task 1 has already run as size("alpha")' in second
    assert "has already run" in model.calls[2][-1].content  # the model is told why
    assert calls == ["alpha", "beta"]
    assert result.status == "answered"


async def test_a_repair_rewrites_a_changed_call_that_has_not_started() -> None:
    opened = anyio.Event()
    calls: list[str] = []

    @tool
    async def gate() -> str:
        """Waits until the repaired plan has been read."""
        await opened.wait()
        return "open"

    @tool
    async def echo(text: str, after: str = "") -> str:
        """Says its text (counts its calls)."""
        calls.append(text)
        return text

    attempts = 0

    async def planner(
        messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str]:
        nonlocal attempts
        if "Results:" in messages[-1].content:
            yield "Thought: done.\nAction: Finish(new)"
            return
        attempts += 1
        if attempts == 1:
            yield '1. gate()\n2. echo("old", $1)\n3. ech("x")\n4. join()'
            return
        try:
            yield '1. gate()\n2. echo("new", $1)\n3. join()'
        finally:
            opened.set()  # task 2 waited on task 1 until here: it had not started

    with anyio.fail_after(10):
        result = await Agent(tools=[gate, echo], model=FunctionModel(planner), grammar=False).run(
            "?"
        )
    assert [a.valid for a in result.plan_attempts] == [False, True]
    (run,) = result.rounds
    assert run.tasks["2"].output == "new" and calls == ["new"]


async def test_an_agent_whose_plan_never_validates_fails_without_a_join() -> None:
    bad = '1. size("alpha")\n2. sise("beta")\n3. join()'
    model = ScriptedModel([bad, bad, bad, FINISH])
    calls: list[str] = []
    result = await Agent(tools=counting_tools(calls), model=model, grammar=False).run("?")
    assert [a.valid for a in result.plan_attempts] == [False, False, False]
    assert result.status == "failed" and result.answer is None
    assert "the plan was still invalid after 3 attempts" in (result.error or "")
    assert "unknown tool 'sise'" in (result.error or "")
    assert not result.model_failed
    assert len(model.calls) == 3  # the joiner was never asked
    assert calls == ["alpha"]  # the valid call still ran, once


async def test_an_agent_whose_every_tool_call_failed_does_not_answer() -> None:
    @tool
    async def lookup(name: str) -> str:
        """Always fails."""
        raise LookupError(f"no place called {name}")

    model = ScriptedModel(
        [
            '1. lookup("Atlantis")\n2. join()',
            "Thought: hmm.\nAction: Finish(Paris)",  # an answer from nothing
        ]
    )
    result = await Agent(tools=[lookup], model=model, grammar=False).run("Capital of Atlantis?")
    assert result.status == "failed" and result.answer is None
    assert "no tool call succeeded" in (result.error or "")
    assert "no place called Atlantis" in (result.error or "")


async def test_on_the_last_round_nothing_to_answer_from_skips_the_joiner() -> None:
    @tool
    async def lookup(name: str) -> str:
        """Always fails."""
        raise LookupError(f"no place called {name}")

    model = ScriptedModel(['1. lookup("Atlantis")\n2. join()', "Action: Finish(Paris)"])
    agent = Agent(tools=[lookup], model=model, grammar=False, max_replans=0)
    result = await agent.run("Capital of Atlantis?")
    assert result.status == "failed" and result.answer is None
    assert len(model.calls) == 1 and result.decisions == []


async def test_a_replan_after_every_call_failed_may_still_answer() -> None:
    @tool
    async def lookup(name: str) -> str:
        """Knows one place."""
        if name != "Atlantis":
            raise LookupError(f"no place called {name}")
        return "Poseidonia"

    model = ScriptedModel(
        [
            '1. lookup("Atlantys")\n2. join()',
            "Thought: a typo.\nAction: Replan(spell it Atlantis)",
            '2. lookup("Atlantis")\n3. join()',
            "Thought: found.\nAction: Finish(Poseidonia)",
        ]
    )
    result = await Agent(tools=[lookup], model=model, grammar=False).run("Capital of Atlantis?")
    assert result.status == "answered" and result.answer == "Poseidonia"


# -- the same loop through the OpenAI-compatible client and a real server ----------


async def test_repair_through_a_server_model_runs_the_fixed_call() -> None:
    from chat_server import chat_server
    from taskloom.llm import OpenAICompatible

    calls: list[str] = []
    replies = [
        '1. size("alpha")\n2. sise("beta")\n3. join()<END_OF_PLAN>',
        "Thought: the name was misspelt.\n"
        '1. size("alpha")\n2. size("beta")\n3. add($1.size, $2.size)\n4. join()<END_OF_PLAN>',
        FINISH,
    ]
    with chat_server(replies) as server:
        model = OpenAICompatible(server.url, "scripted", total_timeout=30)
        agent = Agent(tools=counting_tools(calls), model=model)  # no grammar: a server
        with anyio.fail_after(30):
            result = await agent.run("How long are alpha and beta together?")
    assert result.status == "answered", result.error
    assert [a.valid for a in result.plan_attempts] == [False, True]
    (run,) = result.rounds
    assert {i: t.status for i, t in run.tasks.items()} == dict.fromkeys("123", "done")
    assert run.tasks["3"].output == 9 and calls == ["alpha", "beta"]
    assert [r["stream"] for r in server.requests] == [True, True, True]
    planner, repair, joiner = server.prompts()
    assert "unknown tool 'sise'" in repair and '1. size("alpha")' in repair
    assert "3. add(a=5, b=4) -> 9" in joiner


async def test_a_server_plan_that_never_validates_fails() -> None:
    from chat_server import chat_server
    from taskloom.llm import OpenAICompatible

    bad = '1. size("alpha")\n2. size(\n3. join()'
    with chat_server([bad, bad, bad, FINISH]) as server:
        model = OpenAICompatible(server.url, "scripted", total_timeout=30)
        with anyio.fail_after(30):
            result = await Agent(tools=counting_tools([]), model=model).run("?")
    assert result.status == "failed" and "still invalid after 3 attempts" in (result.error or "")
    assert len(server.requests) == 3


async def test_react_does_not_answer_when_every_call_failed() -> None:
    from taskloom.agent.react import ReActAgent

    @tool
    async def lookup(name: str) -> str:
        """Always fails."""
        raise LookupError(f"no place called {name}")

    model = ScriptedModel(
        ['Thought: look it up.\nAction: lookup("Atlantis")', "Thought: hmm.\nAction: Finish(Paris)"]
    )
    result = await ReActAgent(tools=[lookup], model=model, grammar=False).run("Capital?")
    assert result.status == "failed" and result.answer is None
    assert "no tool call succeeded" in (result.error or "")
    assert 'lookup("Atlantis")' in (result.error or "")
