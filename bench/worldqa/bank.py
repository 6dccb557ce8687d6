"""Write the world tools' bank of worked examples, shipped with the package.

    .venv/bin/python bench/worldqa/bank.py [--out PATH]

Draws every WorldQA family with seeds of its own (not the benchmark's),
drops any question that is in a benchmark file, runs each reference plan on
the world tools for its real results, and writes one `taskloom.agent.Example`
a line to `src/taskloom/tools/world_examples.jsonl`: the question, the plan,
the results, and the decision — `Finish($N)` for a computed answer,
`Finish($1.field)` for a looked-up one, `Replan(...)` where the first
results decide what to look up next, with the next round's plan
(`next_plan`), which takes the winner by reference. The agent shows the few closest to
each question.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import anyio  # noqa: E402
from generate import draw, render_plan  # noqa: E402
from score import QUESTIONS_PATH, load_questions  # noqa: E402

import taskloom  # noqa: E402
from taskloom.tools.world import EXAMPLES_PATH, WORLD_TOOLS  # noqa: E402

BANK_SEEDS = (101, 202)
"""Seeds for the bank's draws; the benchmark's are in generate.py and its callers."""
BENCHMARK_FILES = (QUESTIONS_PATH, QUESTIONS_PATH.with_name("heldout.jsonl"))


def _benchmark_questions() -> set[str]:
    return {
        q["question"] for path in BENCHMARK_FILES if path.exists() for q in load_questions(path)
    }


async def _results(calls: Sequence[str]) -> dict[str, Any]:
    """Every task's output; a task whose condition was false has none."""
    plan = taskloom.Plan.parse(render_plan(calls), tools=WORLD_TOOLS)
    run = await taskloom.execute(plan, tools=WORLD_TOOLS)
    failed = [
        t.id
        for t in run.tasks.values()
        if t.status != "done" and not (t.status == "skipped" and plan[t.id].guard is not None)
    ]
    if failed:
        raise SystemExit(f"bank plan failed at tasks {failed}:\n{render_plan(calls)}")
    return {task_id: task.output for task_id, task in run.tasks.items() if task.status == "done"}


_CHAIN = re.compile(r"\$\d+\.\w+(?:(?: \+ |, )\$\d+\.\w+)+")


def _counting_down(call: str) -> str:
    """A sum or list of references written last to first: `$3.x + $2.x + $1.x`.

    Counting down ends at `$1`, past which no task exists, so a small model
    copying the form has nowhere to go but the end of the string; counting
    up, it tends to go on past the last lookup (`... + $7.x + $6.x`).
    """

    def reverse(match: re.Match[str]) -> str:
        chain = match[0]
        separator = " + " if " + " in chain else ", "
        return separator.join(reversed(chain.split(separator)))

    return _CHAIN.sub(reverse, call)


def _decision(draft: Any, results: dict[str, Any]) -> str:
    if draft.kind == "replan":
        return f"Replan({draft.second_step})"
    last = str(len(results))
    if draft.answer_field is not None:
        return f"Finish(${last}.{draft.answer_field})"
    return f"Finish(${last})"


async def build() -> list[dict[str, Any]]:
    taken = _benchmark_questions()
    seen: set[str] = set()
    examples = []
    for seed in BANK_SEEDS:
        for draft in draw(seed):
            if draft.question in taken or draft.question in seen:
                continue
            seen.add(draft.question)
            if draft.one_round:
                examples.append(await _one_round(draft))
                continue
            calls = [_counting_down(call) for call in draft.calls]
            results = await _results(calls)
            plan = render_plan(calls).rstrip().rsplit("\n", 1)[0]  # without join()
            example = {
                "question": draft.question,
                "plan": plan,
                "results": results,
                "decision": _decision(draft, results),
            }
            if draft.second_plan:
                example["next_plan"] = await _next_plan(draft, calls)
            examples.append(example)
    return examples


async def _one_round(draft: Any) -> dict[str, Any]:
    """A question that needed two rounds, answered in one plan with conditions."""
    results = await _results(draft.one_round)
    ran = max(int(i) for i in results)  # the conditional call whose condition held
    output = results[str(ran)][draft.second_field]
    if str(output) != str(draft.answer) and not _close(output, draft.answer):
        raise SystemExit(f"the plan of {draft.question!r} gives {output}, not {draft.answer}")
    return {
        "question": draft.question,
        "plan": render_plan(draft.one_round).rstrip().rsplit("\n", 1)[0],
        "results": results,
        "decision": f"Finish(${ran}.{draft.second_field})",
    }


async def _next_plan(draft: Any, calls: Sequence[str]) -> str:
    """The second round's calls, numbered on from the first's; checked to reach the answer."""
    first = len(calls) + 1
    outputs = await _results([*calls, *draft.second_plan])
    output = outputs[str(first + len(draft.second_plan) - 1)]
    if draft.second_field is not None:
        output = output[draft.second_field]
    if str(output) != str(draft.answer) and not _close(output, draft.answer):
        raise SystemExit(
            f"the second plan of {draft.question!r} gives {output}, not {draft.answer}"
        )
    return "\n".join(f"{first + i}. {call}" for i, call in enumerate(draft.second_plan))


def _close(a: Any, b: Any) -> bool:
    try:
        return abs(float(a) - float(b)) <= 0.01 * abs(float(b))
    except (TypeError, ValueError):
        return False


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES_PATH)
    args = parser.parse_args(argv)
    examples = anyio.run(build)
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples)
    args.out.write_text(text, encoding="utf-8")
    # Every example must load and fit the tools, as the agent will check them.
    from taskloom.agent import load_examples
    from taskloom.agent._example import check_examples

    check_examples(load_examples(args.out), WORLD_TOOLS)
    print(f"wrote {len(examples)} examples to {args.out}")


if __name__ == "__main__":
    main()
