"""The plan and joiner grammars driving the bundled Gemma 3 270M, and random walks through them.

The model is the base model, so these tests check that its output always
parses, not that its plans are wise; they print the plans and the speed.
"""

from __future__ import annotations

import ctypes
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

import taskloom
from taskloom import Plan
from taskloom.agent import GrammarLimits
from taskloom.agent._grammar import joiner_grammar, plan_grammar, react_grammar
from taskloom.llm import Local, Message, bundled_model_path
from taskloom.plan import PlanParser
from taskloom.tools import Tool, tool
from taskloom.tools.world import WORLD_TOOLS

llama_cpp = pytest.importorskip("llama_cpp")
np = pytest.importorskip("numpy")  # a dependency of llama-cpp-python
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DECISION = re.compile(r"^Thought: .*\nAction: (Finish|Replan)\(.*\)$")

PLAN_EXAMPLES = """\
Question: Which is bigger by population, Spain or Italy?
Thought: Look up both countries at once, then compare.
1. country("Spain")
2. country("Italy")
3. math("$1.population - $2.population")
4. join()<END_OF_PLAN>

Question: How many kilometres is it from Rome to Madrid, in miles?
1. distance("Rome", "Madrid")
2. convert($1.km, "km", "mile")
3. join()<END_OF_PLAN>
"""

JOIN_EXAMPLES = """\
Question: What is the population of Spain?
1. country("Spain") -> {"name": "Spain", "capital": "Madrid", "population": 46723749}
Thought: The population of Spain is in the result.
Action: Finish(Spain has 46,723,749 people.)

Question: How far is Lyon from Atlantis?
1. distance("Lyon", "Atlantis") -> error: no city named 'Atlantis'
Thought: The city was not found, so there is no distance.
Action: Replan(Atlantis is not a known city)
"""

QUESTIONS = [
    "What is the combined population of France and Germany?",
    "How far is Paris from Berlin?",
    "What is the capital of Japan?",
    "Convert 100 degrees Fahrenheit to Celsius.",
    "Which city has more people, Tokyo or Delhi?",
]


def plan_prompt(question: str) -> list[Message]:
    tools = "\n".join(f"- {t.signature()}: {t.description.splitlines()[0]}" for t in WORLD_TOOLS)
    text = (
        f"Write a plan of tool calls that answers the question. Tools:\n{tools}\n\n"
        f"{PLAN_EXAMPLES}\nQuestion: {question}\n"
    )
    return [Message("user", text)]


def join_prompt(question: str, results: list[str]) -> list[Message]:
    text = (
        "Read the results and answer the question, or ask for a new plan.\n\n"
        f"{JOIN_EXAMPLES}\nQuestion: {question}\n" + "\n".join(results) + "\n"
    )
    return [Message("user", text)]


@pytest.fixture(scope="module")
def local() -> Local:
    return Local(bundled_model_path(), name="gemma-grammar")


@pytest.mark.anyio
@pytest.mark.parametrize("question", QUESTIONS)
async def test_the_model_plans_and_decides_within_the_grammars(local: Local, question: str) -> None:
    stream = local.stream(
        plan_prompt(question), grammar=plan_grammar(WORLD_TOOLS, max_tasks=6), max_tokens=200
    )
    text = "".join([chunk async for chunk in stream])
    plan = Plan.parse(text, tools=WORLD_TOOLS)  # raises PlanError if it does not
    assert plan.joined and len(plan) >= 1
    assert stream.usage is not None
    plan_speed = stream.usage.tokens_per_s

    result = await taskloom.execute(plan, tools=WORLD_TOOLS)
    results = []
    for task in plan:
        outcome = result.tasks[task.id]
        shown = (
            json.dumps(outcome.output) if outcome.status == "done" else f"error: {outcome.error}"
        )
        results.append(f"{task} -> {shown[:150]}")
    stream = local.stream(join_prompt(question, results), grammar=joiner_grammar(), max_tokens=200)
    decision = "".join([chunk async for chunk in stream])
    assert DECISION.match(decision), decision
    assert stream.usage is not None
    print(
        f"\n{question}\n{text}\n"
        + "\n".join(results)
        + f"\n{decision}\nplan {plan_speed:.1f} tokens/s, "
        f"decision {stream.usage.tokens_per_s:.1f} tokens/s"
    )


class RandomWalker:
    """Writes random texts in a grammar's language: llama.cpp's sampler, no model.

    Candidates are the vocabulary's short, whole-UTF-8 tokens, so walks end in
    a reasonable number of steps; each step picks uniformly among the tokens
    the grammar allows.
    """

    _ENTRY = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])

    def __init__(self, model_path: str) -> None:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
        assert self.model
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        size = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.ends = {t for t in range(size) if llama_cpp.llama_vocab_is_eog(self.vocab, t)}
        self.pieces: dict[int, str] = {}
        buffer = ctypes.create_string_buffer(64)
        for token in range(size):
            length = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, 64, 0, True)
            try:
                piece = buffer.raw[:length].decode() if length > 0 else ""
            except UnicodeDecodeError:
                continue
            if 0 < len(piece.encode()) <= 3 or token in self.ends:
                self.pieces[token] = piece
        self.ids = np.array(sorted(self.pieces), dtype=np.int32)
        assert self._ENTRY.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)

    def close(self) -> None:
        llama_cpp.llama_model_free(self.model)

    def walk(self, grammar: str, rng: np.random.Generator, max_steps: int = 3000) -> str:
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        assert sampler, "invalid grammar"
        text = ""
        try:
            for _ in range(max_steps):
                entries = np.zeros(len(self.ids), dtype=self._ENTRY)
                entries["id"] = self.ids
                pointer = entries.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
                array = llama_cpp.llama_token_data_array(pointer, len(self.ids), -1, False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
                allowed = entries["id"][np.isfinite(entries["logit"])]
                assert len(allowed), f"the grammar allows nothing after {text!r}"
                token = int(rng.choice(allowed))
                if token in self.ends:
                    return text
                llama_cpp.llama_sampler_accept(sampler, token)
                text += self.pieces[token]
        finally:
            llama_cpp.llama_sampler_free(sampler)
        raise AssertionError(f"no end after {max_steps} tokens: {text!r}")


@pytest.fixture(scope="module")
def walker() -> Iterator[RandomWalker]:
    walker = RandomWalker(str(bundled_model_path()))
    yield walker
    walker.close()


@tool
def kinds(
    s: str,
    n: int,
    x: float,
    flag: bool,
    words: list[str],
    mapping: dict[str, Any],
    maybe: str | None = None,
    pair: tuple[int, str] | None = None,
    anything: Any = None,
) -> str:
    return ""


SHORT = GrammarLimits(max_thought=6, max_text=6, max_digits=4, max_parts=3, max_field=4)
"""Short bounds keep the random walks short; the structure is the same."""


@pytest.mark.parametrize("tools", [WORLD_TOOLS, [*WORLD_TOOLS, kinds]], ids=["world", "all-kinds"])
def test_random_walks_through_the_plan_grammar_parse(
    walker: RandomWalker, tools: list[Tool]
) -> None:
    grammar = plan_grammar(tools, max_tasks=3, limits=SHORT)
    rng = np.random.default_rng(7)
    for _ in range(15):
        text = walker.walk(grammar, rng)
        plan = Plan.parse(text, tools=tools)
        assert plan.joined, text


def test_random_walks_through_the_joiner_grammar_match(walker: RandomWalker) -> None:
    grammar = joiner_grammar(max_thought=8, max_answer=8)
    rng = np.random.default_rng(7)
    for _ in range(15):
        text = walker.walk(grammar, rng)
        assert DECISION.match(text), text


def test_random_walks_through_the_react_grammar_parse(walker: RandomWalker) -> None:
    tools = [*WORLD_TOOLS, kinds]
    grammar = react_grammar(tools, max_answer=8, limits=SHORT)
    rng = np.random.default_rng(7)
    for _ in range(15):
        text = walker.walk(grammar, rng)
        thought, action = text.split("\nAction: ")
        assert thought.startswith("Thought: ") and "\n" not in action
        if not action.startswith("Finish("):
            assert len(PlanParser(tools=tools).feed(f"1. {action}\n")) == 1, action
