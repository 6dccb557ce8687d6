"""Local's greedy decoding against llama-cpp-python's, on the bundled Gemma 3 270M.

At temperature 0 the fast path (the grammar asked about one token at a time)
must write exactly what llama-cpp-python's sampler writes. Both start from a
freshly evaluated prompt: llama.cpp's numbers depend slightly on how the
context was evaluated (in which batches), so a reused prefix could tip a
near tie.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from taskloom import Plan
from taskloom.agent._grammar import joiner_grammar, plan_grammar
from taskloom.llm import Completion, Local, Message, bundled_model_path
from taskloom.llm._sampling import LineLoops
from taskloom.tools.world import WORLD_TOOLS

llama_cpp = pytest.importorskip("llama_cpp")
np = pytest.importorskip("numpy")  # a dependency of llama-cpp-python
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PLAN_EXAMPLES = """\
Question: Which is bigger by population, Spain or Italy?
1. country("Spain")
2. country("Italy")
3. math("$1.population - $2.population")
4. join()<END_OF_PLAN>
"""
JOIN_EXAMPLES = """\
Question: What is the population of Spain?
1. country("Spain") -> {"name": "Spain", "capital": "Madrid", "population": 46723749}
Thought: The population of Spain is in the result.
Action: Finish(Spain has 46,723,749 people.)
"""
YES_NO = 'root ::= "yes" | "no"'
STORY = [Message("user", "Write a short story about a cat who learns to fly.")]


def plan_prompt(question: str) -> list[Message]:
    tools = "\n".join(f"- {t.signature()}" for t in WORLD_TOOLS)
    text = f"Write a plan of tool calls. Tools:\n{tools}\n\n{PLAN_EXAMPLES}\nQuestion: {question}\n"
    return [Message("user", text)]


def join_prompt(question: str, result: str) -> list[Message]:
    text = f"Answer, or ask for a new plan.\n\n{JOIN_EXAMPLES}\nQuestion: {question}\n{result}\n"
    return [Message("user", text)]


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    # No saved prompt states: every reply starts from a fresh evaluation.
    model = Local(bundled_model_path(), name="gemma-sampling", prompt_cache_bytes=0)
    yield model
    model._fast_greedy = True


async def both(
    local: Local, messages: list[Message], *, loop_guard: bool = False, **options: object
) -> tuple[Completion, ...]:
    """The reply of llama-cpp-python's sampler, then of the fast path.

    The fast path's loop guard (`LineLoops`) is off unless asked for: with it
    off, the fast path must pick exactly the tokens the slow one does.
    """
    replies = []
    for fast in (False, True):
        local._fast_greedy = fast
        await local.load()
        assert local._loaded is not None
        local._loaded.llama.reset()  # evaluate the whole prompt afresh
        with contextlib.ExitStack() as stack:
            if not loop_guard:
                stack.enter_context(mock.patch.object(LineLoops, "banned", return_value=set()))
            replies.append(await local.complete(messages, **options))  # type: ignore[arg-type]
    local._fast_greedy = True
    return tuple(replies)


def assert_same(slow: Completion, fast: Completion) -> None:
    assert fast.text == slow.text
    assert fast.finish_reason == slow.finish_reason
    assert fast.usage.completion_tokens == slow.usage.completion_tokens
    assert fast.usage.prompt_tokens == slow.usage.prompt_tokens


@pytest.mark.anyio
@pytest.mark.parametrize(
    "question",
    [
        "What is the combined population of France and Germany?",
        "How far is Paris from Berlin, in miles?",
        "Convert 100 degrees Fahrenheit to Celsius.",
    ],
)
async def test_fast_plans_are_the_slow_plans(local: Local, question: str) -> None:
    grammar = plan_grammar(WORLD_TOOLS, max_tasks=6)
    slow, fast = await both(local, plan_prompt(question), grammar=grammar, max_tokens=400)
    assert_same(slow, fast)
    plan = Plan.parse(fast.text, tools=WORLD_TOOLS)
    assert plan.joined and fast.finish_reason == "stop"
    print(
        f"\n{fast.text}\nslow {slow.usage.tokens_per_s:.1f} tokens/s, "
        f"fast {fast.usage.tokens_per_s:.1f} tokens/s"
    )


@pytest.mark.anyio
async def test_a_long_plan_is_the_same(local: Local) -> None:
    # How much faster the fast path writes it is measured by bench/sampling.py.
    grammar = plan_grammar(WORLD_TOOLS, min_tasks=5)
    prompt = plan_prompt("Compare the populations of France, Germany, Spain, Italy and Japan.")
    slow, fast = await both(local, prompt, grammar=grammar, max_tokens=120)
    assert_same(slow, fast)
    assert fast.usage.completion_tokens >= 80


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("question", "result"),
    [
        ("What is the population of France?", '1. country("France") -> {"population": 68000000}'),
        ("How far is Lyon from Atlantis?", '1. distance("Lyon", "Atlantis") -> error: no city'),
    ],
)
async def test_fast_decisions_are_the_slow_decisions(
    local: Local, question: str, result: str
) -> None:
    prompt = join_prompt(question, result)
    slow, fast = await both(local, prompt, grammar=joiner_grammar(), max_tokens=200)
    assert_same(slow, fast)
    assert fast.text.startswith("Thought: ")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "question", ["Is the sky blue? Answer yes or no.", "Is fire cold? Answer yes or no."]
)
async def test_fast_and_slow_agree_on_a_tiny_grammar(local: Local, question: str) -> None:
    slow, fast = await both(local, [Message("user", question)], grammar=YES_NO)
    assert_same(slow, fast)
    assert fast.text in ("yes", "no") and fast.finish_reason == "stop"


@pytest.mark.anyio
async def test_json_schema_goes_the_fast_way_too(local: Local) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "ok": {"type": "boolean"}},
        "required": ["city", "ok"],
    }
    prompt = [Message("user", "Name a city in France as JSON.")]
    slow, fast = await both(local, prompt, json_schema=schema, max_tokens=60)
    assert_same(slow, fast)


@pytest.mark.anyio
async def test_without_grammar_too(local: Local) -> None:
    slow, fast = await both(local, STORY, max_tokens=60)
    assert_same(slow, fast)
    assert fast.finish_reason == "length" and fast.usage.completion_tokens == 60


@pytest.mark.anyio
async def test_max_tokens_cuts_the_same_reply_short(local: Local) -> None:
    grammar = plan_grammar(WORLD_TOOLS)
    prompt = plan_prompt("How far is Paris from Berlin?")
    [whole] = (await both(local, prompt, grammar=grammar, max_tokens=200))[1:]
    slow, fast = await both(local, prompt, grammar=grammar, max_tokens=7)
    assert_same(slow, fast)
    assert (fast.finish_reason, fast.usage.completion_tokens) == ("length", 7)
    assert whole.text.startswith(fast.text) and len(fast.text) < len(whole.text)


@pytest.mark.anyio
async def test_stop_strings_cut_before_the_stop(local: Local) -> None:
    grammar = plan_grammar(WORLD_TOOLS)
    prompt = plan_prompt("How far is Paris from Berlin?")
    [whole] = (await both(local, prompt, grammar=grammar, max_tokens=200))[1:]
    assert "\n2. " in whole.text
    slow, fast = await both(local, prompt, grammar=grammar, max_tokens=200, stop=["\n2. "])
    assert_same(slow, fast)
    assert fast.text == whole.text.split("\n2. ")[0]
    assert fast.finish_reason == "stop"
    # The held-back start of a stop string ("\n") is sent once it is not one.
    [fast] = (await both(local, prompt, grammar=grammar, max_tokens=200, stop=["\n9. "]))[1:]
    assert fast.text == whole.text


@pytest.mark.anyio
async def test_streamed_chunks_are_whole_utf8_characters(local: Local) -> None:
    grammar = 'root ::= "Zürich, São Paulo, Kraków, 東京 and Αθήνα"'
    prompt = [Message("user", "Name five cities.")]
    slow, fast = await both(local, prompt, grammar=grammar, max_tokens=60)
    assert_same(slow, fast)
    assert fast.text == "Zürich, São Paulo, Kraków, 東京 and Αθήνα"
    stream = local.stream(prompt, grammar=grammar, max_tokens=60)
    chunks = [chunk async for chunk in stream]
    assert "".join(chunks) == fast.text
    assert "\ufffd" not in fast.text
    cut = await local.complete(prompt, grammar=grammar, stop=["東京"])
    assert (cut.text, cut.finish_reason) == ("Zürich, São Paulo, Kraków, ", "stop")


async def _ask_counting(model: Local, system: str, question: str) -> tuple[str, int, int]:
    """The reply, the prompt tokens evaluated for it, and the prompt's size."""
    await model.load()
    assert model._loaded is not None
    llama = model._loaded.llama
    evaluated: list[int] = []
    evaluate = llama.eval

    def counting(tokens: list[int]) -> None:
        evaluated.append(len(tokens))
        evaluate(tokens)

    llama.eval = counting
    try:
        messages = [Message("system", system), Message("user", question)]
        stream = model.stream(messages, grammar=YES_NO)
        reply = "".join([chunk async for chunk in stream])
    finally:
        llama.eval = evaluate
    assert stream.usage is not None
    return reply, sum(evaluated) - 1, stream.usage.prompt_tokens  # minus the reply token fed back


@pytest.mark.anyio
async def test_alternating_prompts_resume_from_checkpoints() -> None:
    model = Local(bundled_model_path(), name="gemma-checkpoints", checkpoints=False)
    planner = "You plan tool calls.\n\n" + PLAN_EXAMPLES * 12
    joiner = "You read results and decide.\n\n" + JOIN_EXAMPLES * 10
    questions = ["How far is Rome from Paris?", "What is the capital of Peru?"]
    prompt_sizes, prefills = [], []
    for round_ in range(3):
        for system in (planner, joiner):
            question = f"Question: {questions[round_ % 2]} ({round_})"
            reply, evaluated, size = await _ask_counting(model, system, question)
            assert reply in ("yes", "no")
            prompt_sizes.append(size)
            prefills.append(evaluated)
            print(f"prompt {prompt_sizes[-1]} tokens: evaluated {prefills[-1]}")
    assert min(prompt_sizes) > 600
    # The second round sets the checkpoints, the third resumes from them.
    assert all(p >= size - 64 for p, size in zip(prefills[:4], prompt_sizes, strict=False))
    assert all(p < 40 for p in prefills[4:])
    assert model._loaded is not None
    cache = model._loaded.session.cache
    assert cache is not None and len(cache) == 2
    assert cache.size_bytes < 64 * 2**20


@pytest.mark.anyio
async def test_a_checkpoint_gives_the_same_logits_as_evaluating_afresh() -> None:
    model = Local(bundled_model_path(), name="gemma-restore")
    await model.load()
    assert model._loaded is not None
    session, llama = model._loaded.session, model._loaded.llama

    def tokens(system: str, question: str) -> list[int]:
        prompt, add_bos = model._loaded.format(  # type: ignore[union-attr]
            (Message("system", system), Message("user", question))
        )
        return list(llama.tokenize(prompt.encode(), add_bos=add_bos, special=True))

    planner = "You plan tool calls.\n\n" + PLAN_EXAMPLES * 12  # past the 512-token window
    a1, a2, a3 = (tokens(planner, f"Question {n}: how far is it?") for n in ("one", "two", "six"))
    b1 = tokens("Be brief.", "Hello")
    for prompt in (a1, b1, a2, b1, a3):  # a2 sets the checkpoint, a3 resumes from it
        session.prefill(prompt)
    resumed = session.logits().copy()
    assert llama.n_tokens == len(a3)
    llama.reset()
    session.prefill(a3)
    fresh = session.logits().copy()
    assert int(np.argmax(resumed)) == int(np.argmax(fresh))
    # Only rounding: evaluating in other batches moves logits by up to about one.
    assert float(np.abs(resumed - fresh).max()) < 2.5


@pytest.mark.anyio
async def test_a_new_process_resumes_from_checkpoints_saved_on_disk(tmp_path: Path) -> None:
    planner = "You plan tool calls.\n\n" + PLAN_EXAMPLES * 12
    # Each Local below reads only the disk, as one `taskloom run` process after another would.
    first = Local(bundled_model_path(), name="gemma-disk-1", checkpoints=tmp_path)
    await _ask_counting(first, planner, "Question: How far is Rome from Paris?")
    # The second process's prompt starts like the first one's, which it finds among the
    # recent prompts on disk: it places a checkpoint there, and saves it.
    second = Local(bundled_model_path(), name="gemma-disk-2", checkpoints=tmp_path)
    _, evaluated, size = await _ask_counting(second, planner, "Question: Where is Peru?")
    assert size > 600 and evaluated >= size - 2
    assert any(name.endswith(".kv") for _, _, names in os.walk(tmp_path) for name in names)
    # The third resumes from it.
    third = Local(bundled_model_path(), name="gemma-disk-3", checkpoints=tmp_path)
    question = "Question: Is Lima in Peru?"
    reply, evaluated, _ = await _ask_counting(third, planner, question)
    assert evaluated < 40
    fresh = Local(bundled_model_path(), name="gemma-disk-4", checkpoints=False)
    again, evaluated_fresh, size = await _ask_counting(fresh, planner, question)
    assert evaluated_fresh >= size - 2
    assert again == reply
