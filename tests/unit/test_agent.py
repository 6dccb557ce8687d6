from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from taskloom import ModelError, Tool, tool
from taskloom.agent import Agent, Finish, Replan, parse_decision
from taskloom.agent.prompts import result_values
from taskloom.agent.react import ReActAgent
from taskloom.llm import GenerationOptions, Message
from taskloom.testing import FunctionModel, ScriptedModel
from taskloom.tools.world import WORLD_TOOLS

pytestmark = pytest.mark.anyio

PLAN = (
    "Thought: both at once.\n"
    '1. country("France")\n'
    '2. country("Germany")\n'
    '3. math("$1.population + $2.population")\n'
    "4. join()<END_OF_PLAN>"
)


async def test_plan_run_and_join() -> None:
    model = ScriptedModel([PLAN, "Thought: added.\nAction: Finish(149915166)"])
    result = await Agent(tools=WORLD_TOOLS, model=model, grammar=False).run(
        "What is the combined population of France and Germany?"
    )
    assert result.status == "answered"
    assert result.answer == "149915166"
    (run,) = result.rounds
    assert run.tasks["3"].output == 149915166.0
    assert [a.valid for a in result.plan_attempts] == [True]
    assert len(result.llm_calls) == 2
    joiner_prompt = model.calls[1][-1].content
    assert '3. math(expression="66987244 + 82927922") -> 149915166' in joiner_prompt
    data = result.to_dict()
    assert set(data) >= {"answer", "plan_attempts", "tasks", "timings", "usage"}
    assert set(data["timings"]) == {
        "planner_s",
        "first_dispatch_s",
        "makespan_s",
        "joiner_s",
        "total_s",
    }
    assert data["usage"]["llm_calls"] == 2
    assert data["usage"]["prompt_tokens"] > 0 and data["usage"]["completion_tokens"] > 0
    assert data["plan_attempts"][0]["text"].startswith("Thought: both at once.")
    assert data["tasks"][0]["tool"] == "country" and data["tasks"][0]["status"] == "done"


async def test_first_tool_starts_while_the_plan_is_still_being_written() -> None:
    started = anyio.Event()
    plan_finished_after_start: list[bool] = []

    @tool
    async def lookup(name: str) -> str:
        """Records that it started."""
        started.set()
        return name.upper()

    async def planner(
        messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str]:
        if "Results:" in messages[-1].content:
            yield "Thought: done.\nAction: Finish(A B)"
            return
        yield '1. lookup("a")\n'
        with anyio.fail_after(5):
            await started.wait()  # the planner only goes on once task 1 is running
        plan_finished_after_start.append(True)
        yield '2. lookup("b")\n3. join()<END_OF_PLAN>'

    result = await Agent(tools=[lookup], model=FunctionModel(planner), grammar=False).run("?")
    assert plan_finished_after_start == [True]
    assert result.answer == "A B"
    timings = result.timings
    assert timings.first_dispatch_s is not None and timings.first_dispatch_s < timings.planner_s


async def test_invalid_plan_is_repaired_and_valid_tasks_keep_running() -> None:
    model = ScriptedModel(
        [
            '1. country("France")\n2. contry("Spain")\n3. join()',
            '2. country("Spain")\n3. math("$1.population + $2.population")\n4. join()',
            "Thought: ok.\nAction: Finish(the sum)",
        ]
    )
    result = await Agent(tools=WORLD_TOOLS, model=model, grammar=False).run("France + Spain?")
    assert [a.valid for a in result.plan_attempts] == [False, True]
    assert "unknown tool 'contry'" in (result.plan_attempts[0].error or "")
    repair_prompt = model.calls[1][-1].content
    assert "unknown tool 'contry'" in repair_prompt
    assert '1. country("France")' in repair_prompt
    assert "Number the new calls from 2" in repair_prompt or "from its first call" in repair_prompt
    (run,) = result.rounds
    assert [run.tasks[i].status for i in ("1", "2", "3")] == ["done", "done", "done"]


async def test_replan_continues_numbering_and_reuses_earlier_results() -> None:
    calls: list[str] = []

    @tool
    async def lookup(name: str) -> dict[str, Any]:
        """Counts calls."""
        calls.append(name)
        return {"name": name, "size": len(name)}

    model = ScriptedModel(
        [
            '1. lookup("alpha")\n2. lookup("be")\n3. join()',
            "Thought: need more.\nAction: Replan(compare them)",
            '3. lookup("gamma")\n4. lookup("x$1.size")\n5. join()',
            "Thought: done.\nAction: Finish(alpha)",
        ]
    )
    result = await Agent(tools=[lookup], model=model, grammar=False).run("which is longest?")
    assert result.answer == "alpha"
    assert calls == ["alpha", "be", "gamma", "x5"]  # nothing repeated; $1 from round 1 resolved
    assert [type(d) for d in result.decisions] == [Replan, Finish]
    second_planner_prompt = model.calls[2][-1].content
    assert "Number the new calls from 3" in second_planner_prompt
    assert '1. lookup(name="alpha") -> {"name": "alpha", "size": 5}' in second_planner_prompt
    assert "compare them" in second_planner_prompt
    assert [list(r.tasks) for r in result.rounds] == [["1", "2"], ["3", "4"]]


async def test_replans_are_capped_and_the_last_round_must_answer() -> None:
    plans = [f'{i}. math("{i} + 1")\n{i + 1}. join()' for i in (1, 2, 3)]
    model = ScriptedModel(
        [
            plans[0],
            "Action: Replan(more)",
            plans[1],
            "Action: Replan(more)",
            plans[2],
            "Action: Replan(still more)",
        ]
    )
    result = await Agent(tools=WORLD_TOOLS, model=model, grammar=False, max_replans=2).run("?")
    assert len(result.rounds) == 3
    assert result.status == "answered"
    assert result.answer == "4"  # forced to finish: the last result stands in
    assert "last round" in model.calls[-1][0].content


async def test_model_down_fails_clearly_without_hanging() -> None:
    model = ScriptedModel([ModelError("scripted", "connection refused", retryable=True)])
    with anyio.fail_after(5):
        result = await Agent(tools=WORLD_TOOLS, model=model, grammar=False).run(
            "Population of Peru?"
        )
    assert result.status == "failed"
    assert result.answer is None
    assert "connection refused" in (result.error or "")


async def test_stream_cut_mid_plan_keeps_what_was_completed() -> None:
    planner_calls = 0

    async def planner(
        messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str]:
        if "Results:" in messages[-1].content:
            yield "Action: Finish(from what ran)"
            return
        nonlocal planner_calls
        planner_calls += 1
        if planner_calls > 1:
            raise ModelError("fn", "still down")
        yield '1. country("Peru")\n2. country("Ch'
        raise ModelError("fn", "the stream broke after 30 characters")

    result = await Agent(tools=WORLD_TOOLS, model=FunctionModel(planner), grammar=False).run("?")
    (run,) = result.rounds
    assert run.tasks["1"].output["name"] == "Peru"
    assert "stream broke" in (result.plan_attempts[0].error or "")
    assert result.answer == "from what ran"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thought: ok\nAction: Finish(42)", Finish(answer="42", thought="ok")),
        ("Action: Finish(about 5 (five) km)", Finish(answer="about 5 (five) km")),
        (
            "Thought: x\nAction: Finish(line one\nline two)",
            Finish(answer="line one\nline two", thought="x"),
        ),
        ("Action: Finish(no close paren", Finish(answer="no close paren")),
        ("Action: Finish(42) trailing words", Finish(answer="42")),
        ("Action: Replan(look up Lima)", Replan(reason="look up Lima")),
        ("Paris", Finish(answer="Paris")),
        ("", Finish(answer="")),
        ("Thought: only a thought", Finish(answer="", thought="only a thought")),
        ("action: finish(lower case)", Finish(answer="lower case")),
    ],
)
def test_parse_decision_is_tolerant(text: str, expected: object) -> None:
    assert parse_decision(text) == expected


async def test_empty_answer_falls_back_to_the_last_result() -> None:
    model = ScriptedModel(['1. math("6 * 7")\n2. join()', "Thought: hmm\nAction: Finish()"])
    result = await Agent(tools=WORLD_TOOLS, model=model, grammar=False).run("6 times 7?")
    assert result.answer == "42"


async def test_react_calls_one_tool_per_step() -> None:
    model = ScriptedModel(
        [
            'Thought: France first.\nAction: country("France")',
            'Thought: now Germany.\nAction: country(name="Germany")',
            'Thought: add.\nAction: math("66987244 + 82927922")',
            "Thought: done.\nAction: Finish(149915166)",
        ]
    )
    result = await ReActAgent(tools=WORLD_TOOLS, model=model, grammar=False).run(
        "France + Germany?"
    )
    assert result.agent == "react"
    assert result.answer == "149915166"
    assert len(result.rounds) == 3 and len(result.llm_calls) == 4
    assert "Observation: 149915166" in model.calls[3][-1].content


async def test_react_turns_a_bad_call_into_an_observation() -> None:
    model = ScriptedModel(
        ['Thought: x\nAction: countryy("France")', "Thought: fix.\nAction: Finish(gave up)"]
    )
    result = await ReActAgent(tools=WORLD_TOOLS, model=model, grammar=False).run("?")
    assert "unknown tool 'countryy'" in model.calls[1][-1].content
    # No call succeeded, so "gave up" is no answer: the request failed.
    assert result.status == "failed" and result.answer is None


def counting_lookup(calls: list[str]) -> Tool:
    """A cacheable tool that records each call it gets."""

    @tool(cacheable=True)
    async def lookup(name: str) -> str:
        """Counts calls."""
        calls.append(name)
        return name.upper()

    return lookup


async def test_a_repeated_cacheable_call_is_not_run_again() -> None:
    calls: list[str] = []
    lookup = counting_lookup(calls)
    model = ScriptedModel(
        [
            '1. lookup("a")\n2. join()',
            "Action: Replan(again)",
            '2. lookup("a")\n3. lookup("b")\n4. join()',
            "Action: Finish(A B)",
        ]
    )
    result = await Agent(tools=[lookup], model=model, grammar=False).run("?")
    assert calls == ["a", "b"]
    assert result.rounds[1].tasks["2"].output == "A"


async def test_a_plan_that_writes_a_call_again_ends_there() -> None:
    calls: list[str] = []
    lookup = counting_lookup(calls)
    model = ScriptedModel(
        [
            '1. lookup("a")\n2. lookup("b")\n3. lookup("a")\n4. lookup("c")\n5. join()',
            "Action: Finish(A B)",
        ]
    )
    result = await Agent(tools=[lookup], model=model, grammar=False).run("?")
    assert sorted(calls) == ["a", "b"]
    assert list(result.rounds[0].tasks) == ["1", "2"]
    assert result.plan_attempts[0].valid


async def test_a_tool_with_side_effects_may_be_called_twice_in_a_plan() -> None:
    sent: list[str] = []

    @tool
    async def send(text: str) -> str:
        """Has a side effect each time."""
        sent.append(text)
        return "sent"

    model = ScriptedModel(['1. send("hi")\n2. send("hi")\n3. join()', "Action: Finish(sent)"])
    await Agent(tools=[send], model=model, grammar=False).run("?")
    assert sent == ["hi", "hi"]


class WarmableScripted(ScriptedModel):
    """A scripted model that records what it was asked to read ahead."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(replies)
        self.warmed: list[tuple[Message, ...]] = []

    async def warm(self, messages: Any) -> None:
        self.warmed.append(tuple(messages))


async def test_the_joiner_prompt_is_read_ahead_while_tools_run() -> None:
    first_read = anyio.Event()

    class Signalling(WarmableScripted):
        async def warm(self, messages: Any) -> None:
            await super().warm(messages)
            first_read.set()

    world_country = next(t for t in WORLD_TOOLS if t.name == "country")

    @tool(name="country")
    async def country(name: str) -> Any:
        """The world tool, answering only once the model has started reading ahead."""
        await first_read.wait()
        return world_country.fn(name=name)

    tools = [country, *(t for t in WORLD_TOOLS if t.name != "country")]
    model = Signalling([PLAN, "Thought: added.\nAction: Finish(149915166)"])
    result = await Agent(tools=tools, model=model, grammar=False).run("France + Germany?")
    assert result.answer == "149915166"
    joiner = model.calls[1]
    assert model.warmed
    for warmed in model.warmed:
        # Every message but the last is the joiner's own; the last is a true prefix of its last.
        assert warmed[:-1] == joiner[:-1]
        assert joiner[-1].content.startswith(warmed[-1].content)
    assert model.warmed[0][-1].content == "Question: France + Germany?\nResults:\n"


async def test_each_result_line_is_read_ahead_as_its_task_settles() -> None:
    warmed_enough = [anyio.Event() for _ in range(2)]

    class Gated(WarmableScripted):
        async def warm(self, messages: Any) -> None:
            await super().warm(messages)
            assert len(self.warmed) <= len(warmed_enough), "read ahead after the round ended"
            warmed_enough[len(self.warmed) - 1].set()

    @tool
    async def step(name: str, after: int) -> str:
        """Finishes once the model has read ahead `after` times."""
        await warmed_enough[after - 1].wait()
        return name.upper()

    plan = '1. step("a", 1)\n2. step("b", 2)\n3. join()<END_OF_PLAN>'
    model = Gated([plan, "Thought: ok.\nAction: Finish(A B)"])
    result = await Agent(tools=[step], model=model, grammar=False).run("a and b?")
    assert result.answer == "A B"
    heads = [w[-1].content for w in model.warmed]
    joiner = model.calls[1][-1].content
    assert heads == [
        "Question: a and b?\nResults:\n",
        'Question: a and b?\nResults:\n1. step(name="a", after=1) -> A\n',
    ]
    # The last line is left to the joiner: once every task settled, the round is over.
    assert joiner.startswith(heads[-1])
    assert joiner.endswith('2. step(name="b", after=2) -> B')


async def test_the_joiner_reads_intermediate_records_compactly() -> None:
    model = ScriptedModel([PLAN, "Thought: added.\nAction: Finish(149915166)"])
    await Agent(tools=WORLD_TOOLS, model=model, grammar=False).run("France + Germany?")
    joiner_prompt = model.calls[1][-1].content
    # Only the name and the field the sum used; not the whole country record.
    assert '1. country(name="France") -> {"name": "France", "population": 66987244}' in (
        joiner_prompt
    )
    assert "capital" not in joiner_prompt.split("Question: France + Germany?")[-1]


async def test_a_record_used_whole_or_not_at_all_is_shown_in_full() -> None:
    plan = '1. country("France")\n2. join()<END_OF_PLAN>'
    model = ScriptedModel([plan, "Thought: ok.\nAction: Finish(Paris)"])
    await Agent(tools=WORLD_TOOLS, model=model, grammar=False).run("Capital of France?")
    assert '"capital": "Paris"' in model.calls[1][-1].content


async def test_with_grammars_the_joiner_may_finish_only_with_values_from_the_results() -> None:
    model = ScriptedModel([PLAN, "Thought: added.\nAction: Finish(149915166)"])
    await Agent(tools=WORLD_TOOLS, model=model, grammar=True).run("France + Germany?")
    joiner = model.options[1].grammar
    assert joiner is not None
    # The final result (the sum) is quotable and nameable; the records it added up, which
    # a small model tends to name instead, are not, nor is a number it never saw.
    assert '"149915166"' in joiner and 'ref ::= "$3"' in joiner
    assert '"66987244"' not in joiner and '"$1' not in joiner and "1154308" not in joiner


async def test_when_the_combining_call_failed_the_joiner_may_name_its_inputs() -> None:
    plan = '1. country("France")\n2. country("Germany")\n3. math("$1.population / 0")\n'
    model = ScriptedModel([plan + "4. join()<END_OF_PLAN>", "Thought: no.\nAction: Finish($1)"])
    await Agent(tools=WORLD_TOOLS, model=model, grammar=True, max_replans=0).run("France?")
    joiner = model.options[1].grammar
    assert joiner is not None and '"$1"' in joiner and '"66987244"' in joiner


def test_result_values_are_the_fields_and_results_as_written() -> None:
    seen = [
        ("1", 'country(name="France")', '{"name": "France", "population": 66987244}'),
        ("2", 'math(expression="1 / 4")', "0.25"),
        ("3", 'city(name="Atlantis")', "error: no such city"),
        ("4", "convert(value=2)", '{"value": 3.5, "unit": "mile", "exact": true}'),
    ]
    texts = (text for _, _, text in seen)
    # A boolean gives both yes and no: the question says which it means.
    assert result_values(texts) == ["France", "66987244", "0.25", "3.5", "mile", "yes", "no"]


async def test_react_finishes_with_observed_values_under_a_grammar() -> None:
    model = ScriptedModel(
        [
            'Thought: look.\nAction: country("France")',
            "Thought: done.\nAction: Finish(66987244)",
        ]
    )
    result = await ReActAgent(tools=WORLD_TOOLS, model=model, grammar=True).run("France?")
    assert result.answer == "66987244"
    first, second = (o.grammar for o in model.options)
    assert first is not None and second is not None
    assert "value ::=" not in first  # nothing observed yet: any answer
    assert '"66987244"' in second and '"Paris"' in second


async def test_a_new_plan_may_not_refer_to_an_earlier_round_s_failed_call() -> None:
    first = '1. city("Xqzzyville")\n2. country("France")\n3. join()<END_OF_PLAN>'
    second = "3. city($2.capital)\n4. join()<END_OF_PLAN>"
    model = ScriptedModel(
        [
            first,
            "Thought: more.\nAction: Replan(the capital's city)",
            second,
            "Thought: done.\nAction: Finish($3.population)",
        ]
    )
    result = await Agent(tools=WORLD_TOOLS, model=model, grammar=True, max_replans=1).run("?")
    assert result.status == "answered"
    planner = model.options[2].grammar
    assert planner is not None
    # Task 1 failed: no reference to it is offered, so no plan can be lost on one.
    assert 'ref-3 ::= "$" ("2") path' in planner
