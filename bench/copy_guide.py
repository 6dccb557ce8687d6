"""WorldQA's tuning half with and without the embedded model's copy guide.

    .venv/bin/python bench/copy_guide.py --margin 3 --max-width 2 --out on.jsonl
    .venv/bin/python bench/copy_guide.py --margin off --max-width 2 --out off.jsonl \
        --ids q016,q022

Each line of the output is one question: its answer, whether it is right, and
the picks the guide replaced (text so far, the model's pick, the stand-in).
Greedy decoding does not depend on the machine's load, so a busy machine
gives the same answers, only later. Only the tuning half: nothing is tuned on
the held-out one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from taskloom.agent import Agent, load_examples  # noqa: E402
from taskloom.llm import _copying  # noqa: E402
from taskloom.llm.local import Local  # noqa: E402
from taskloom.tools.world import EXAMPLES_PATH, WORLD_TOOLS  # noqa: E402
from worldqa.score import load_questions, score  # noqa: E402

QUESTIONS = Path(__file__).parent / "worldqa" / "questions.jsonl"


def record_steering(log: list[tuple[str, str, str]]) -> None:
    """Log every pick the guide replaces."""
    steer = _copying.CopyGuide.steer

    def logged(self: _copying.CopyGuide, logits: Any, token: int, allowed: Any, piece: Any) -> int:
        chosen = steer(self, logits, token, allowed, piece)
        if chosen != token:
            text = self._content  # noqa: SLF001
            log.append((text, piece(token).decode(errors="ignore"), piece(chosen).decode()))
        return chosen

    _copying.CopyGuide.steer = logged  # type: ignore[method-assign]


async def run(margin: float | None, questions: list[dict[str, Any]], out: Path) -> None:
    """Answer the questions one by one and write a line each."""
    log: list[tuple[str, str, str]] = []
    record_steering(log)
    agent = Agent(
        tools=WORLD_TOOLS, model=Local(copy_margin=margin), examples=load_examples(EXAMPLES_PATH)
    )
    await agent.run("What is the combined population of France and Germany?")  # warm-up
    right = 0
    with out.open("w") as rows:
        for question in questions:
            log.clear()
            began = time.monotonic()
            result = await agent.run(question["question"])
            correct = score(result.answer, question["answer"], question.get("tolerance", 0.01))
            right += correct
            row = {
                "id": question["id"],
                "family": question["family"],
                "width": question["width"],
                "answer": result.answer,
                "correct": correct,
                "steered": list(log),
                "seconds": round(time.monotonic() - began, 2),
            }
            rows.write(json.dumps(row, default=str) + "\n")
            rows.flush()
    print(f"{right} of {len(questions)} right; rows in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margin", default="3", help="the copy margin in logits, or 'off'")
    parser.add_argument("--max-width", type=int, default=2)
    parser.add_argument("--ids", default=None, help="only these question ids (comma-separated)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    only = set(args.ids.split(",")) if args.ids else None
    questions = [
        q
        for q in load_questions(QUESTIONS)
        if q["width"] <= args.max_width and (only is None or q["id"] in only)
    ]
    margin = None if args.margin == "off" else float(args.margin)
    anyio.run(run, margin, questions, args.out)


if __name__ == "__main__":
    main()
