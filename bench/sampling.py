"""Local's fast greedy path against llama-cpp-python's sampler: tokens per second.

The embedded model writes a long plan under the plan grammar twice from a
freshly evaluated prompt: once with llama-cpp-python's own sampling, once
with taskloom's fast greedy path (the grammar asked about one token at a
time). tests/integration/test_local_sampling.py checks that both write the
same text; this measures how much faster the fast path writes it.

    .venv/bin/python bench/sampling.py            # writes docs/benchmarks.md
    .venv/bin/python bench/sampling.py --quick    # one repeat, prints only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from report import write_section  # noqa: E402
from taskloom.agent._grammar import plan_grammar  # noqa: E402
from taskloom.llm import Completion, Local, Message, bundled_model_path  # noqa: E402
from taskloom.tools.world import WORLD_TOOLS  # noqa: E402

QUESTION = "Compare the populations of France, Germany, Spain, Italy and Japan."
EXAMPLE = """\
Question: Which is bigger by population, Spain or Italy?
1. country("Spain")
2. country("Italy")
3. math("$1.population - $2.population")
4. join()<END_OF_PLAN>
"""


def prompt() -> list[Message]:
    tools = "\n".join(f"- {t.signature()}" for t in WORLD_TOOLS)
    text = f"Write a plan of tool calls. Tools:\n{tools}\n\n{EXAMPLE}\nQuestion: {QUESTION}\n"
    return [Message("user", text)]


async def one_reply(model: Local, *, fast: bool) -> Completion:
    """A plan from a freshly evaluated prompt, by one sampler."""
    model._fast_greedy = fast
    await model.load()
    assert model._loaded is not None
    model._loaded.llama.reset()  # no reused prefix: both evaluate the same prompt
    grammar = plan_grammar(WORLD_TOOLS, min_tasks=5)
    return await model.complete(prompt(), grammar=grammar, max_tokens=120)


async def measure(repeat: int) -> list[list[str]]:
    model = Local(bundled_model_path(), name="gemma-sampling", prompt_cache_bytes=0)
    best: dict[bool, float] = {}
    tokens: dict[bool, int] = {}
    texts: dict[bool, str] = {}
    for _ in range(repeat):
        for fast in (False, True):
            reply = await one_reply(model, fast=fast)
            speed = reply.usage.tokens_per_s or 0.0
            best[fast] = max(best.get(fast, 0.0), speed)
            tokens[fast], texts[fast] = reply.usage.completion_tokens, reply.text
    same = "yes" if texts[False] == texts[True] else "NO"
    return [
        [
            "llama-cpp-python sampler",
            str(tokens[False]),
            f"{best[False]:.1f}",
            "1.00x",
            same,
        ],
        [
            "taskloom fast greedy",
            str(tokens[True]),
            f"{best[True]:.1f}",
            f"{best[True] / best[False]:.2f}x" if best[False] else "?",
            same,
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, print only")
    parser.add_argument("--repeat", type=int, default=3, help="best of N per sampler")
    args = parser.parse_args()
    rows = anyio.run(measure, 1 if args.quick else args.repeat)
    header = ["sampler", "tokens", "tokens / s (best)", "speed-up", "same text"]
    for row in rows:
        print(" | ".join(f"{h}: {v}" for h, v in zip(header, row, strict=True)))
    if not args.quick:
        write_section(
            "sampling",
            title="Fast greedy decoding under a grammar (embedded Gemma 3 270M)",
            command="python bench/sampling.py",
            header=header,
            rows=rows,
            notes=[
                "A five-country plan under the plan grammar, 120 tokens at most, from a "
                "freshly evaluated prompt; best of 3 per sampler.",
                "The speed-up was once a test assertion (more than 1.5x); on a loaded "
                "machine it is a figure to read here, not a pass or fail.",
            ],
        )


if __name__ == "__main__":
    main()
