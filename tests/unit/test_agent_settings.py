"""An agent request records its agent's settings; `Agent.from_store` builds that agent again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

import taskloom
from chat_server import chat_server
from taskloom import Agent, Budget, Example, Price, UserError
from taskloom.agent import GrammarLimits, load_examples
from taskloom.agent._settings import importable_recorded_tools
from taskloom.cli import load_tools
from taskloom.llm import OpenAICompatible
from taskloom.store import Store
from taskloom.testing import ScriptedModel
from taskloom.tools.world import WORLD_TOOLS

pytestmark = pytest.mark.anyio

TOOLS = """
import taskloom

@taskloom.tool
def shout(text: str) -> str:
    '''Upper-case a text.'''
    return text.upper()
"""
PLAN = '1. country("Japan")\n2. shout($1.capital)\n3. join()'
FINISH = "Thought: shouted.\nAction: Finish(TOKYO)"


async def test_from_store_rebuilds_the_recorded_agent(tmp_path: Path) -> None:
    tools_file = tmp_path / "settings_tools.py"
    tools_file.write_text(TOOLS)
    budget = Budget(tool_calls=9, tokens=10_000, prices={"scripted": Price(prompt=1, completion=2)})
    with chat_server([PLAN, FINISH]) as server, Store.open(tmp_path / "s.sqlite3") as store:
        model = OpenAICompatible(server.url, "scripted", timeout=7, total_timeout=70)
        agent = Agent(
            tools=load_tools(str(tools_file)),
            model=model,
            max_replans=1,
            max_repairs=0,
            max_concurrency=2,
            tool_latency=0.01,
            budget=budget,
            store=store,
        )
        with anyio.fail_after(30):
            result = await agent.run("Shout the capital of Japan")
        assert result.status == "answered"
        (run,) = store.runs()
        again = Agent.from_store(store, run.id)
    assert [t.name for t in again.tools] == [t.name for t in agent.tools]
    assert again.tools[-1].is_async  # the recorded latency wraps every tool again
    assert (again.max_replans, again.max_repairs, again.max_concurrency) == (1, 0, 2)
    assert (again.tool_latency, again.grammar, again.budget) == (0.01, False, budget)
    assert again.store is store
    rebuilt = again.model
    assert isinstance(rebuilt, OpenAICompatible)
    assert (rebuilt.base_url, rebuilt.model) == (server.url, "scripted")
    assert (rebuilt.read_timeout, rebuilt.total_timeout) == (7, 70)


async def test_a_model_taskloom_cannot_build_must_be_given(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        agent = Agent(
            tools=WORLD_TOOLS,
            model=ScriptedModel(['1. math("1+1")\n2. join()', "Action: Finish(2)"]),
            store=store,
        )
        await agent.run("1+1?")
        (run,) = store.runs()
        with pytest.raises(UserError, match="cannot build again; give a model"):
            Agent.from_store(store, run.id)
        given = ScriptedModel([])
        assert Agent.from_store(store, run.id, model=given).model is given


async def test_tools_that_cannot_be_found_again_must_be_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools_file = tmp_path / "gone_tools.py"
    tools_file.write_text(TOOLS)
    with Store.open(tmp_path / "s.sqlite3") as store:
        model = ScriptedModel(['1. shout("a")\n2. join()', "Action: Finish(A)"])
        await Agent(tools=load_tools(str(tools_file)), model=model, store=store).run("shout a")
        (run,) = store.runs()
        tools_file.unlink()
        monkeypatch.delitem(sys.modules, "gone_tools")  # as in a new process
        with pytest.raises(UserError, match="gone_tools.*give the tools again"):
            Agent.from_store(store, run.id, model=model)
        found = Agent.from_store(store, run.id, model=model, tools=WORLD_TOOLS)
        assert {t.name for t in found.tools} == {t.name for t in WORLD_TOOLS}


async def test_from_store_refuses_a_plan_run(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        journal = store.journal(request="p.plan", config={})
        journal.end("completed")
        await journal.flush()
        with pytest.raises(UserError, match="is a plan run"):
            Agent.from_store(store, journal.run_id)


async def test_a_request_records_the_extra_config_beside_the_settings(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        model = ScriptedModel(['1. math("1+1")\n2. join()', "Action: Finish(2)"])
        extra = {"mcp": ["/somewhere/mcp.json"], "python_tool": True}
        agent = Agent(tools=WORLD_TOOLS, model=model, store=store, extra_config=extra)
        await agent.run("1+1?")
        (run,) = store.runs()
        config = store.load(run.id).config
    assert config["mcp"] == ["/somewhere/mcp.json"] and config["python_tool"] is True
    assert config["max_replans"] == 3  # the agent's own settings are there too
    with pytest.raises(UserError, match="may not set the agent's own settings: budget, tools"):
        Agent(tools=WORLD_TOOLS, model=model, extra_config={"tools": [], "budget": 1})


async def test_tools_built_at_run_time_record_no_source_and_are_left_to_the_caller(
    tmp_path: Path,
) -> None:
    def made_at_run_time() -> taskloom.Tool:
        @taskloom.tool
        def echo(text: str) -> str:
            """Say it again."""
            return text

        return echo

    built = [made_at_run_time(), taskloom.python_tool()]
    with Store.open(tmp_path / "s.sqlite3") as store:
        model = ScriptedModel(['1. echo("a")\n2. join()', "Action: Finish(a)"])
        await Agent(tools=[*WORLD_TOOLS, *built], model=model, store=store).run("echo a")
        (run,) = store.runs()
        config = store.load(run.id).config
        # Only the module that defines tools among its globals is recorded.
        assert [s["module"] for s in config["tool_sources"]] == ["taskloom.tools.world"]
        found = importable_recorded_tools(config)
        assert list(found) == [t.name for t in WORLD_TOOLS]
        with pytest.raises(UserError, match="cannot find the tools echo, python"):
            Agent.from_store(store, run.id, model=model)


async def test_grammar_limits_shape_the_plan_grammar_and_are_recorded(tmp_path: Path) -> None:
    limits = GrammarLimits(max_text=77, max_digits=19, max_parts=3)
    with Store.open(tmp_path / "s.sqlite3") as store:
        model = ScriptedModel(['1. math("1+1")\n2. join()', "Action: Finish(2)"])
        agent = Agent(
            tools=WORLD_TOOLS, model=model, store=store, grammar=True, grammar_limits=limits
        )
        await agent.run("1+1?")
        plan_grammar = model.options[0].grammar
        assert plan_grammar is not None
        assert "words ::= nchar{1,77}\n" in plan_grammar
        assert "digits ::= [0-9]{1,19}\n" in plan_grammar
        (run,) = store.runs()
        assert store.load(run.id).config["grammar_limits"] == limits.to_json()
        assert Agent.from_store(store, run.id, model=model).grammar_limits == limits
    assert Agent(tools=WORLD_TOOLS, model=model).grammar_limits == GrammarLimits()
    with pytest.raises(UserError, match="grammar_limits must be a GrammarLimits, not dict"):
        Agent(tools=WORLD_TOOLS, model=model, grammar_limits={"max_text": 5})  # type: ignore[arg-type]


async def test_the_examples_a_request_used_are_recorded_and_used_again(tmp_path: Path) -> None:
    examples = [
        Example(question="Double 2?", plan='1. math("2 * 2")'),
        Example(
            question="Capital of Kenya?",
            plan='1. country("Kenya")',
            results={"1": {"capital": "Nairobi", "ids": [1, None, True]}},
            decision='Thought: it is "Nairobi".\nAction: Finish($1.capital)',
        ),
    ]
    with Store.open(tmp_path / "s.sqlite3") as store:
        model = ScriptedModel(['1. math("1+1")\n2. join()', "Action: Finish(2)"])
        await Agent(tools=WORLD_TOOLS, model=model, store=store, examples=examples).run("1+1?")
        (run,) = store.runs()
        recorded = store.load(run.id).config["examples"]
        assert recorded == [e.to_json() for e in examples]
        assert [Example.from_json(e) for e in recorded] == examples
        again = Agent.from_store(store, run.id, model=model)
        assert list(again.examples) == examples
        # Tools that no longer fit the recorded examples: a clear error, not a bad prompt.
        with pytest.raises(UserError, match="example 1 .*unknown tool 'math'"):
            Agent.from_store(store, run.id, model=model, tools=WORLD_TOOLS[:2])


async def test_a_request_without_examples_records_none(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        model = ScriptedModel(['1. math("1+1")\n2. join()', "Action: Finish(2)"])
        await Agent(tools=WORLD_TOOLS, model=model, store=store).run("1+1?")
        (run,) = store.runs()
        assert store.load(run.id).config["examples"] == []
        assert Agent.from_store(store, run.id, model=model).examples == ()


async def test_a_large_set_of_examples_from_a_file_is_recorded_by_its_digest(
    tmp_path: Path,
) -> None:
    bank = tmp_path / "bank.jsonl"
    lines = [
        json.dumps({"question": f"What is {i} doubled? {'x' * 200}", "plan": f'1. math("{i}*2")'})
        for i in range(200)
    ]
    bank.write_text("\n".join(lines) + "\n")
    small = tmp_path / "small.jsonl"
    small.write_text(lines[0] + "\n")
    with Store.open(tmp_path / "s.sqlite3") as store:
        model = ScriptedModel(['1. math("1+1")\n2. join()', "Action: Finish(2)"] * 2)
        for path in (bank, small):
            agent = Agent(tools=WORLD_TOOLS, model=model, store=store, examples=load_examples(path))
            await agent.run("1+1?")
        big_run, small_run = reversed(store.runs())
        config = store.load(big_run.id).config
        assert "examples" not in config
        assert config["examples_file"]["path"] == str(bank.resolve())
        again = Agent.from_store(store, big_run.id, model=model)
        assert list(again.examples) == load_examples(bank)
        # A small set is recorded inline: its file may change, the run's examples do not.
        assert len(store.load(small_run.id).config["examples"]) == 1
        bank.write_text(lines[1] + "\n")
        with pytest.raises(UserError, match="has changed since the run was recorded"):
            Agent.from_store(store, big_run.id, model=model)
        given = [Example(question="q", plan='1. math("1")')]
        chosen = Agent.from_store(store, big_run.id, model=model, examples=given)
        assert list(chosen.examples) == given


def test_replans_default_to_one_for_the_embedded_model_and_three_for_others() -> None:
    from taskloom.llm import Local

    assert Agent(tools=WORLD_TOOLS, model=ScriptedModel([])).max_replans == 3
    assert Agent(tools=WORLD_TOOLS, model=Local()).max_replans == 1  # nothing is loaded yet
    assert Agent(tools=WORLD_TOOLS, model=Local(), max_replans=4).max_replans == 4
    with pytest.raises(UserError, match="max_replans"):
        Agent(tools=WORLD_TOOLS, model=ScriptedModel([]), max_replans=-1)
