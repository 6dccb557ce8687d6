"""Generate WorldQA, a question set for benchmarking a planning agent against ReAct.

    .venv/bin/python bench/worldqa/generate.py [--seed 20240611] [--out PATH]
    .venv/bin/python bench/worldqa/generate.py --heldout   # = --seed 20250922 --out heldout.jsonl

WorldQA comes in two halves drawn from the same families with different
seeds: `questions.jsonl` (seed 20240611) is the tuning half, which prompts
and examples may be tuned on; `heldout.jsonl` (seed 20250922) is held out,
and the benchmark's targets are read on it. A file written anywhere but the
tuning half's place asks none of the tuning half's questions and none of the
world tools' worked examples (`taskloom.tools.world.EXAMPLES_PATH`): a drawn
question that is one of them is replaced by another draw of the same family
and width (and the file is checked before it is written). Each line is one
question:

    {"id": "q001", "question": "...", "answer": 123 or "Nairobi", "kind": "aggregate",
     "family": "sum_population", "width": 3, "needs_replan": false, "tolerance": 0.01,
     "reference_plan": "1. country(...)<newline>...5. join()", "answer_field": null}

`kind` is one of lookup (one fact), aggregate (independent lookups combined by
arithmetic), derived (lookups feeding arithmetic or unit conversion) and
replan (the first results decide what to look up next). `width` counts the
independent lookups of the reference plan. `answer_field`, when set, names the
field of the reference plan's last output that holds the answer. Replan
questions carry the first-round plan only, and `second_step` says what the
second round must do.

The same seed and data give the same file. Every answer is computed from the
world tools, and before anything is written every reference plan is parsed
against `WORLD_TOOLS` and run; for a replan question a second plan built from
the known winner is run too. Any mismatch stops the generator with an error.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import anyio  # noqa: E402
from families import (  # noqa: E402
    Draft,
    Family,
    aggregates,
    derived_distances,
    derived_facts,
    lookups,
)
from places import check_places  # noqa: E402
from replan import replans  # noqa: E402
from score import HELDOUT_PATH, QUESTIONS_PATH, load_questions, score  # noqa: E402

import taskloom  # noqa: E402
from taskloom.tools.world import EXAMPLES_PATH, WORLD_TOOLS  # noqa: E402

DEFAULT_SEED = 20240611
HELDOUT_SEED = 20250922
FAMILIES: tuple[Family, ...] = (lookups, aggregates, derived_facts, derived_distances, replans)
MIN_QUESTIONS = 120
MIN_WIDE = 25  # questions of width 4 or more
MIN_REPLAN = 15
MAX_REDRAWS = 200  # extra draws of a family to replace a question that is to be avoided


class GenerationError(Exception):
    """A reference plan does not parse, run, or reach its question's answer."""

    def __init__(self, draft: Draft, problem: str) -> None:
        self.draft = draft
        super().__init__(f"{draft.question!r}: {problem}")


def render_plan(calls: Sequence[str]) -> str:
    """Number tool calls and close them with `join()`, as a planner writes a plan.

    Returns:
        The plan text, one task a line.

    """
    lines = [f"{i}. {call}" for i, call in enumerate(calls, start=1)]
    lines.append(f"{len(calls) + 1}. join()")
    return "\n".join(lines) + "\n"


def _fold(question: str) -> str:
    return " ".join(question.casefold().split())


def _avoiding(
    family: Family, rng: random.Random, drafts: list[Draft], avoid: Collection[str]
) -> list[Draft]:
    """Replace each draft whose question is in `avoid` by a new draw of its family and width.

    Returns:
        The drafts, in order; unchanged (and no RNG used) when none is avoided.

    Raises:
        AssertionError: no replacement turned up in `MAX_REDRAWS` draws.

    """
    taken = {_fold(d.question) for d in drafts}
    spare: list[Draft] = []
    kept = []
    for draft in drafts:
        if _fold(draft.question) not in avoid:
            kept.append(draft)
            continue
        for _ in range(MAX_REDRAWS):
            fits = (
                s
                for s in spare
                if (s.family, s.width) == (draft.family, draft.width)
                and _fold(s.question) not in avoid
                and _fold(s.question) not in taken
            )
            if (found := next(fits, None)) is not None:
                break
            spare += family(rng)
        else:
            raise AssertionError(f"no replacement for {draft.question!r} in {MAX_REDRAWS} draws")
        spare.remove(found)
        taken.add(_fold(found.question))
        kept.append(found)
    return kept


def draw(seed: int, avoid: Collection[str] = ()) -> list[Draft]:
    """Draw every family's questions with one RNG, then shuffle them.

    Shuffling mixes the kinds, so that running only the first N questions
    still samples every kind.

    Args:
        seed: the RNG's seed.
        avoid: questions not to ask (compared ignoring case and spacing);
            each drawn one is replaced by another of its family and width.

    Returns:
        The drafts in their final order.

    Raises:
        AssertionError: two questions have the same wording, or an avoided
            question could not be replaced.

    """
    rng = random.Random(seed)
    folded = {_fold(q) for q in avoid}
    drafts = [draft for family in FAMILIES for draft in _avoiding(family, rng, family(rng), folded)]
    repeated = [q for q, n in Counter(d.question for d in drafts).items() if n > 1]
    if repeated:
        raise AssertionError(f"questions drawn twice: {repeated}")
    rng.shuffle(drafts)
    return drafts


async def _run(draft: Draft, calls: Sequence[str]) -> Any:
    """Parse and run one plan; return its last task's output."""
    try:
        plan = taskloom.Plan.parse(render_plan(calls), tools=WORLD_TOOLS)
    except taskloom.PlanError as exc:
        raise GenerationError(draft, f"the plan does not parse: {exc}") from exc
    if not plan.joined or len(plan) != len(calls):
        raise GenerationError(draft, "the plan does not end with join() after every call")
    result = await taskloom.execute(plan, tools=WORLD_TOOLS)
    for task in result.tasks.values():
        if task.status is not taskloom.TaskStatus.DONE:
            raise GenerationError(draft, f"task {task.id} ended {task.status}: {task.error}")
    return result.tasks[taskloom.TaskId(str(len(calls)))].output


def _check_answer(draft: Draft, output: Any, field: str | None) -> None:
    value = output[field] if field is not None else output
    tolerance = 0.0 if isinstance(draft.answer, str) else 0.01
    if not score(value, draft.answer, tolerance):
        raise GenerationError(draft, f"the plan gives {value!r}, the answer is {draft.answer!r}")
    # The scorer must also accept the answer as a person would write it.
    written = f"{draft.answer:,}" if isinstance(draft.answer, int | float) else draft.answer.upper()
    if not score(f"It is {written}.", draft.answer, tolerance):
        raise GenerationError(draft, f"the scorer rejects its own answer written as {written!r}")


async def verify(drafts: Sequence[Draft]) -> None:
    """Run every reference plan (and every checking second plan) and compare answers.

    Raises:
        GenerationError: for the first plan that fails to parse, to run, or
            to reach its question's answer.

    """
    for draft in drafts:
        output = await _run(draft, draft.calls)
        if draft.second_calls:
            output = await _run(draft, draft.second_calls)
            _check_answer(draft, output, draft.second_field)
        elif draft.second_step is None:
            _check_answer(draft, output, draft.answer_field)
        else:
            raise GenerationError(draft, "a replan question has no second plan to check")


def to_record(number: int, draft: Draft) -> dict[str, Any]:
    """Describe a draft as one line of `questions.jsonl`.

    Returns:
        The JSON-able record, with the id `q001` for number 1.

    """
    record: dict[str, Any] = {
        "id": f"q{number:03d}",
        "question": draft.question,
        "answer": draft.answer,
        "kind": draft.kind,
        "family": draft.family,
        "width": draft.width,
        "needs_replan": draft.second_step is not None,
        "tolerance": 0.0 if isinstance(draft.answer, str) else 0.01,
        "reference_plan": render_plan(draft.calls),
        "answer_field": draft.answer_field,
    }
    if draft.second_step is not None:
        record["second_step"] = draft.second_step
    return record


def check_mix(records: Sequence[dict[str, Any]]) -> None:
    """Check that the set is big and varied enough to benchmark with.

    Raises:
        AssertionError: too few questions, wide questions or replan
            questions, or a width from 1 to 8 missing.

    """
    widths = Counter(r["width"] for r in records)
    problems = []
    if len(records) < MIN_QUESTIONS:
        problems.append(f"{len(records)} questions, fewer than {MIN_QUESTIONS}")
    if missing := set(range(1, 9)) - set(widths):
        problems.append(f"no question of width {sorted(missing)}")
    if (wide := sum(n for w, n in widths.items() if w >= 4)) < MIN_WIDE:
        problems.append(f"{wide} questions of width >= 4, fewer than {MIN_WIDE}")
    if (replan := sum(r["needs_replan"] for r in records)) < MIN_REPLAN:
        problems.append(f"{replan} replan questions, fewer than {MIN_REPLAN}")
    if problems:
        raise AssertionError("; ".join(problems))


def held_out_questions() -> set[str]:
    """The questions a held-out set may not ask: the tuning half's and the worked examples'.

    Returns:
        The questions as written.

    """
    taken = {q["question"] for q in load_questions(QUESTIONS_PATH)}
    if EXAMPLES_PATH.exists():
        taken |= {e["question"] for e in load_questions(EXAMPLES_PATH)}
    return taken


def check_disjoint(records: Sequence[dict[str, Any]], avoid: Collection[str]) -> None:
    """Check that a held-out set asks none of the questions it must avoid.

    Raises:
        AssertionError: naming the questions it asks all the same.

    """
    shared = sorted({_fold(r["question"]) for r in records} & {_fold(q) for q in avoid})
    if shared:
        raise AssertionError(
            f"{len(shared)} questions are in the tuning half or the worked examples: {shared[:3]}"
        )


def summary(records: Sequence[dict[str, Any]]) -> str:
    """Count the questions by kind and by width, for the terminal.

    Returns:
        A few lines of text.

    """
    kinds = Counter(r["kind"] for r in records)
    widths = Counter(r["width"] for r in records)
    replan = sum(r["needs_replan"] for r in records)
    return "\n".join(
        [
            f"{len(records)} questions, {replan} need a second plan",
            "by kind:  " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
            "by width: " + ", ".join(f"{w}: {n}" for w, n in sorted(widths.items())),
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help=f"RNG seed ({DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=None, help="where to write")
    parser.add_argument(
        "--heldout",
        action="store_true",
        help=f"write the held-out half: seed {HELDOUT_SEED}, {HELDOUT_PATH.name}",
    )
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = HELDOUT_SEED if args.heldout else DEFAULT_SEED
    if args.out is None:
        args.out = HELDOUT_PATH if args.heldout else QUESTIONS_PATH

    check_places()
    held_out = args.out.resolve() != QUESTIONS_PATH.resolve()
    avoid = held_out_questions() if held_out else set()
    drafts = draw(args.seed, avoid)
    anyio.run(verify, drafts)
    records = [to_record(i, d) for i, d in enumerate(drafts, start=1)]
    check_mix(records)
    check_disjoint(records, avoid)
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    args.out.write_text("".join(lines), encoding="utf-8")
    print(summary(records))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
