"""Batches: WorldQA questions answered at once, against one after another.

Both modes use the same model, tools and tool latency, and both record into a
run store. The batch shares one `CallCache`, so a lookup that several
questions need runs once; one after another, each question has its own cache
(as separate `taskloom run` commands would).

Backends:

- `embedded`: the bundled Gemma 3 270M in-process. Its generation is one
  thread, so requests overlap only while others wait on tools.
- `oracle`: a planner that writes each question's reference plan after a
  fixed model delay, standing in for a remote model server that serves many
  requests at once. It measures the engine, not the model.

    .venv/bin/python bench/batch.py                           # both backends, 100 questions
    .venv/bin/python bench/batch.py --backend oracle --limit 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from report import write_section  # noqa: E402
from taskloom.agent import Agent, run_batch  # noqa: E402
from taskloom.llm import ChatModel, GenerationOptions, Local, Message  # noqa: E402
from taskloom.store import CacheStats, CallCache, Store  # noqa: E402
from taskloom.testing import FunctionModel  # noqa: E402
from taskloom.tools.world import WORLD_TOOLS  # noqa: E402
from worldqa.score import load_questions, score  # noqa: E402

ORACLE_MODEL_DELAY = 0.3
"""Seconds the oracle 'model' takes per call."""


def oracle(questions: list[dict[str, Any]]) -> ChatModel:
    """A model that plans each question with its reference plan."""
    plans = {q["question"]: q["reference_plan"] for q in questions}

    async def reply(messages: tuple[Message, ...], options: GenerationOptions) -> str:
        await anyio.sleep(ORACLE_MODEL_DELAY)
        prompt = messages[-1].content
        if "<END_OF_PLAN>" in options.stop:
            # The request is the question written last in the prompt.
            question = max(plans, key=lambda q: prompt.rfind(f"Question: {q}"))
            return str(plans[question]) + "<END_OF_PLAN>"
        last = prompt.rstrip().rsplit("->", 1)[-1].strip()
        return f"Thought: the last result answers it.\nAction: Finish({last})"

    return FunctionModel(reply, chunk_size=16, name="oracle")


@contextmanager
def model_for(name: str, questions: list[dict[str, Any]]) -> Iterator[ChatModel]:
    yield Local() if name == "embedded" else oracle(questions)


def add(total: CacheStats, part: CacheStats) -> None:
    for field in ("requested", "executed", "cancelled", "memory_hits", "store_hits", "joined"):
        setattr(total, field, getattr(total, field) + getattr(part, field))


async def one_after_another(
    model: ChatModel, questions: list[dict[str, Any]], latency: float, store: Store
) -> tuple[list[str | None], CacheStats, set[str]]:
    tools = [t.with_latency(latency) for t in WORLD_TOOLS]
    total = CacheStats()
    keys: set[str] = set()
    answers = []
    for question in questions:
        cache = CallCache()
        agent = Agent(tools=tools, model=model, grammar=True, store=store, cache=cache)
        answers.append((await agent.run(question["question"])).answer)
        add(total, cache.stats)
        keys |= cache._seen
    total.distinct = len(keys)
    return answers, total, keys


async def at_once(
    model: ChatModel,
    questions: list[dict[str, Any]],
    latency: float,
    store: Store,
    concurrency: int,
) -> tuple[list[str | None], CacheStats]:
    tools = [t.with_latency(latency) for t in WORLD_TOOLS]
    cache = CallCache(store, failure_ttl=None)  # as `taskloom batch` does
    agent = Agent(tools=tools, model=model, grammar=True, store=store, cache=cache)
    items = await run_batch(agent, [q["question"] for q in questions], concurrency=concurrency)
    return [i.result.answer if i.result else None for i in items], cache.stats


def measure(
    backend: str, questions: list[dict[str, Any]], latency: float, concurrency: int
) -> list[list[str]]:
    rows = []
    with model_for(backend, questions) as model, tempfile.TemporaryDirectory() as tmp:
        with Store.open(Path(tmp) / "sequential.sqlite3") as store:
            began = time.perf_counter()
            seq_answers, seq_stats, _ = anyio.run(
                one_after_another, model, questions, latency, store
            )
            seq_s = time.perf_counter() - began
        with Store.open(Path(tmp) / "batch.sqlite3") as store:
            began = time.perf_counter()
            batch_answers, batch_stats = anyio.run(
                at_once, model, questions, latency, store, concurrency
            )
            batch_s = time.perf_counter() - began
    n = len(questions)
    for mode, wall, answers, stats in (
        ("one after another", seq_s, seq_answers, seq_stats),
        (f"batch, {concurrency} at once", batch_s, batch_answers, batch_stats),
    ):
        correct = sum(
            score(a, q["answer"], q.get("tolerance", 0.01))
            for a, q in zip(answers, questions, strict=True)
        )
        rows.append(
            [
                backend,
                mode,
                str(n),
                f"{wall:.1f}",
                f"{n / wall * 60:.1f}",
                f"{seq_s / wall:.2f}x",
                str(stats.requested),
                str(stats.distinct),
                str(stats.executed),
                str(stats.cancelled),
                f"{correct}/{n}" if backend == "embedded" else "-",
            ]
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["embedded", "oracle", "all"], default="all")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    questions = load_questions()[: args.limit]
    backends = ["oracle", "embedded"] if args.backend == "all" else [args.backend]
    rows = []
    for name in backends:
        rows += measure(name, questions, args.latency, args.concurrency)
    command = "python bench/batch.py" + "".join(
        f" --{k} {v}" for k, v in vars(args).items() if v != parser.get_default(k)
    )
    write_section(
        "batch",
        title="Batches: many requests at once, against one after another",
        command=command,
        header=[
            "backend",
            "mode",
            "questions",
            "wall s",
            "questions/min",
            "throughput vs one by one",
            "tool calls requested",
            "distinct",
            "executed",
            "cancelled",
            "correct",
        ],
        rows=rows,
        notes=[
            f"WorldQA questions 1-{len(questions)}, tool latency {args.latency}s on every "
            "world tool call (remote tools), grammars on; both modes record into a run store.",
            "Executed: calls that ran to an end; cancelled: calls stopped before their end "
            "(their request was cancelled; a waiting twin then ran the lookup). Executed equal "
            "to distinct means each distinct lookup ran once. One after another, each question "
            "has its own cache, so a lookup repeats across questions.",
            f"The oracle backend writes each question's reference plan after "
            f"{ORACLE_MODEL_DELAY}s and answers with the last result: it measures the "
            "engine with a model server that serves requests concurrently.",
            "The embedded model generates on one thread, so its batch gains come from "
            "overlapping tool waits with other requests' planning.",
        ],
    )


if __name__ == "__main__":
    main()
