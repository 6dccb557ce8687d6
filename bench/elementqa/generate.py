"""Generate ElementQA, a question set over tools that share nothing with the world tools.

    .venv/bin/python bench/elementqa/generate.py [--seed 20250301] [--out PATH]

Writes `questions.jsonl` next to this file, one question a line, in WorldQA's
format (so bench/worldqa/score.py scores it and bench/agent.py runs it):

    {"id": "e001", "question": "...", "answer": 55.845 or "Gold", "kind": "aggregate",
     "family": "sum_mass", "width": 3, "needs_replan": false, "tolerance": 0.01,
     "reference_plan": "1. element(...)<newline>...5. join()", "answer_field": null,
     "answer_pick": null or {"by": "mass", "largest": true, "field": "name"}}

`kind` is lookup (one fact), aggregate (lookups combined by arithmetic),
derived (a lookup feeding arithmetic) or compare (the answer is the name of
the element best by some field). `width` counts the lookups of the reference
plan. `answer_field` names the field of the plan's last output holding the
answer; for a compare question `answer_pick` says which output's field it is.

The same seed and data give the same file. Every answer is computed from the
tools' functions, and before anything is written every reference plan is
parsed against the ElementQA tools and run with `taskloom.execute`; any
mismatch stops the generator with an error.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

if str(Path(__file__).parents[1]) not in sys.path:
    # Last: bench/mcp.py must not hide the MCP SDK from whoever imports this module.
    sys.path.append(str(Path(__file__).parents[1]))

import anyio  # noqa: E402

import taskloom  # noqa: E402
from elementqa.families import FAMILIES, Draft, Pick  # noqa: E402
from elementqa.tools import ELEMENT_TOOLS  # noqa: E402
from worldqa.score import score  # noqa: E402

QUESTIONS_PATH = Path(__file__).with_name("questions.jsonl")
"""Where the question set is written."""
EXAMPLES_PATH = Path(__file__).with_name("examples.jsonl")
"""The three worked examples a user would pass with `--examples`."""
DEFAULT_SEED = 20250301
MIN_QUESTIONS = 40
WIDTHS = range(1, 7)


class GenerationError(Exception):
    """A reference plan does not parse, run, or reach its question's answer."""

    def __init__(self, question: str, problem: str) -> None:
        self.question = question
        super().__init__(f"{question!r}: {problem}")


def render_plan(calls: Sequence[str]) -> str:
    """Number tool calls and close them with `join()`, as a planner writes a plan.

    Returns:
        The plan text, one task a line.

    """
    lines = [f"{i}. {c}" for i, c in enumerate(calls, start=1)]
    lines.append(f"{len(calls) + 1}. join()")
    return "\n".join(lines) + "\n"


def draw(seed: int) -> list[Draft]:
    """Draw every family's questions with one RNG, then shuffle them.

    Returns:
        The drafts in their final order (shuffled, so any first N sample every kind).

    Raises:
        AssertionError: two questions have the same wording.

    """
    rng = random.Random(seed)
    drafts = [draft for family in FAMILIES for draft in family(rng)]
    repeated = [q for q, n in Counter(d.question for d in drafts).items() if n > 1]
    if repeated:
        raise AssertionError(f"questions drawn twice: {repeated}")
    rng.shuffle(drafts)
    return drafts


def answer_of(
    outputs: Mapping[str, Any], last: str, field: str | None, pick: Mapping[str, Any] | None
) -> Any:
    """The answer a plan's outputs give, by a question's `answer_field` or `answer_pick`.

    Args:
        outputs: each task's output by task id.
        last: the id of the plan's last call.
        field: the field of the last output holding the answer; None: the whole output.
        pick: {"by", "largest", "field"}: the answer is `field` of the output
            whose `by` is largest (or smallest).

    Returns:
        The value the plan's results give for the question.

    """
    if pick is None:
        value = outputs[last]
        return value[field] if field is not None else value
    chosen = max if pick["largest"] else min
    best = chosen(outputs.values(), key=lambda output: output[pick["by"]])
    return best[pick["field"]]


async def run_reference(question: str, plan_text: str) -> dict[str, Any]:
    """Parse and run one reference plan over the ElementQA tools.

    Returns:
        Each task's output by task id.

    Raises:
        GenerationError: the plan does not parse, or a task does not finish.

    """
    try:
        plan = taskloom.Plan.parse(plan_text, tools=ELEMENT_TOOLS)
    except taskloom.PlanError as exc:
        raise GenerationError(question, f"the plan does not parse: {exc}") from exc
    if not plan.joined:
        raise GenerationError(question, "the plan does not end with join()")
    result = await taskloom.execute(plan, tools=ELEMENT_TOOLS)
    outputs = {}
    for task in result.tasks.values():
        if task.status is not taskloom.TaskStatus.DONE:
            raise GenerationError(question, f"task {task.id} ended {task.status}: {task.error}")
        outputs[str(task.id)] = task.output
    return outputs


def _pick_record(pick: Pick | None) -> dict[str, Any] | None:
    return asdict(pick) if pick is not None else None


async def verify(drafts: Sequence[Draft]) -> None:
    """Run every reference plan and compare what it gives with the computed answer.

    Raises:
        GenerationError: for the first plan that fails to parse, to run, or
            to reach its question's answer.

    """
    for draft in drafts:
        outputs = await run_reference(draft.question, render_plan(draft.calls))
        value = answer_of(
            outputs, str(len(draft.calls)), draft.answer_field, _pick_record(draft.pick)
        )
        tolerance = 0.0 if isinstance(draft.answer, str) else 1e-5
        if not score(value, draft.answer, tolerance):
            raise GenerationError(
                draft.question, f"the plan gives {value!r}, the answer is {draft.answer!r}"
            )
        written = f"{draft.answer:,}" if isinstance(draft.answer, int | float) else draft.answer
        if not score(f"It is {written}.", draft.answer, 0.01 if tolerance else 0.0):
            raise GenerationError(draft.question, f"the scorer rejects its answer {written!r}")


def to_record(number: int, draft: Draft) -> dict[str, Any]:
    """Describe a draft as one line of `questions.jsonl`.

    Returns:
        The JSON-able record, with the id `e001` for number 1.

    """
    return {
        "id": f"e{number:03d}",
        "question": draft.question,
        "answer": draft.answer,
        "kind": draft.kind,
        "family": draft.family,
        "width": draft.width,
        "needs_replan": False,
        "tolerance": 0.0 if isinstance(draft.answer, str) else 0.01,
        "reference_plan": render_plan(draft.calls),
        "answer_field": draft.answer_field,
        "answer_pick": _pick_record(draft.pick),
    }


def check_mix(records: Sequence[dict[str, Any]], examples: Sequence[str] = ()) -> None:
    """Check that the set is big and varied enough, and holds none of the examples' questions.

    Raises:
        AssertionError: too few questions, a width from 1 to 6 missing, or a
            worked example's question among them.

    """
    widths = Counter(r["width"] for r in records)
    problems = []
    if len(records) < MIN_QUESTIONS:
        problems.append(f"{len(records)} questions, fewer than {MIN_QUESTIONS}")
    if missing := set(WIDTHS) - set(widths):
        problems.append(f"no question of width {sorted(missing)}")
    if shared := {r["question"] for r in records} & set(examples):
        problems.append(f"worked examples among the questions: {sorted(shared)}")
    if problems:
        raise AssertionError("; ".join(problems))


def summary(records: Sequence[dict[str, Any]]) -> str:
    """Count the questions by kind and by width, for the terminal.

    Returns:
        A few lines of text.

    """
    kinds = Counter(r["kind"] for r in records)
    widths = Counter(r["width"] for r in records)
    return "\n".join(
        [
            f"{len(records)} questions",
            "by kind:  " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
            "by width: " + ", ".join(f"{w}: {n}" for w, n in sorted(widths.items())),
        ]
    )


def example_questions() -> list[str]:
    """The questions of the worked examples in `examples.jsonl` (none when it is absent).

    Returns:
        The questions, in file order.

    """
    if not EXAMPLES_PATH.exists():
        return []
    lines = EXAMPLES_PATH.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="RNG seed")
    parser.add_argument("--out", type=Path, default=QUESTIONS_PATH, help="where to write")
    args = parser.parse_args(argv)

    drafts = draw(args.seed)
    anyio.run(verify, drafts)
    records = [to_record(i, d) for i, d in enumerate(drafts, start=1)]
    check_mix(records, example_questions())
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    args.out.write_text("".join(lines), encoding="utf-8")
    print(summary(records))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
