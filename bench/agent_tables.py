"""The tables of bench/agent.py: agents side by side, and accuracy by family and by width.

Every function here takes the rows `bench/agent.py` logs (one per question
and agent, as in docs/agent-runs.jsonl) and returns table rows of text.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["SUMMARY_HEADER", "breakdown", "breakdown_header", "summarise", "width_band"]

Row = dict[str, Any]

SUMMARY_HEADER = [
    "backend",
    "set",
    "examples",
    "phase",
    "agent",
    "questions",
    "plan validity",
    "accuracy",
    "mean latency s",
    "mean first dispatch s",
    "median dispatch ÷ planner call (≥4 tasks)",
    "same, generation only",
    "mean tokens",
    "mean LLM calls",
]
"""The columns of `summarise`'s rows."""


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _percent(hits: Sequence[bool]) -> str:
    return f"{100 * sum(hits) / len(hits):.0f}%" if hits else "-"


def _validity(rows: Sequence[Row]) -> str:
    valid = [r["valid"] for r in rows if r["valid"] is not None]
    return f"{100 * sum(valid) / len(valid):.1f}%" if valid else "-"


def _agent_row(prefix: list[str], agent: str, mine: Sequence[Row]) -> list[str]:
    dispatch = [
        r["first_dispatch_s"] / r["planner_call_s"]
        for r in mine
        if r["planned_tasks"] >= 4 and r["first_dispatch_s"] and r["planner_call_s"]
    ]
    dispatch_gen = [
        (r["first_dispatch_s"] - r["planner_ttft_s"]) / (r["planner_call_s"] - r["planner_ttft_s"])
        for r in mine
        if r["planned_tasks"] >= 4
        and r["first_dispatch_s"]
        and r["planner_ttft_s"] is not None
        and r["planner_call_s"]
        and r["planner_call_s"] > r["planner_ttft_s"]
    ]
    return [
        *prefix,
        agent,
        str(len(mine)),
        _validity(mine),
        _percent([r["correct"] for r in mine]),
        f"{mean([r['total_s'] for r in mine]):.1f}",
        f"{mean([r['first_dispatch_s'] for r in mine if r['first_dispatch_s']]):.2f}",
        f"{statistics.median(dispatch):.2f}" if dispatch else "-",
        f"{statistics.median(dispatch_gen):.2f}" if dispatch_gen else "-",
        f"{mean([r['tokens'] for r in mine]):.0f}",
        f"{mean([r['llm_calls'] for r in mine]):.1f}",
    ]


def _speedup_rows(prefix: list[str], rows: Sequence[Row]) -> list[list[str]]:
    ours = {r["id"]: r for r in rows if r["agent"] == "taskloom"}
    theirs = {r["id"]: r for r in rows if r["agent"] == "react"}
    both = [i for i in ours if i in theirs]
    if not both:
        return []
    speed = statistics.geometric_mean([theirs[i]["total_s"] / ours[i]["total_s"] for i in both])
    ratio_of_means = mean([theirs[i]["total_s"] for i in both]) / mean(
        [ours[i]["total_s"] for i in both]
    )
    tokens = mean([ours[i]["tokens"] for i in both]) / mean([theirs[i]["tokens"] for i in both])
    table = [
        [
            *prefix,
            "ReAct ÷ taskloom",
            str(len(both)),
            "",
            "",
            f"{speed:.2f}x (geo. mean), {ratio_of_means:.2f}x (of means)",
            "",
            "",
            "",
            f"taskloom uses {tokens:.2f}x the tokens",
            "",
        ]
    ]
    # Where ReAct did the lookups (at least one call per lookup, then an answer): a
    # model that gives up early makes ReAct fast and wrong, which the ratio above mixes in.
    worked = [i for i in both if theirs[i]["llm_calls"] >= theirs[i]["width"] + 1]
    if worked:
        speed = statistics.geometric_mean(
            [theirs[i]["total_s"] / ours[i]["total_s"] for i in worked]
        )
        table.append(
            [
                *prefix,
                "same, where ReAct made ≥ width + 1 calls",
                str(len(worked)),
                "",
                "",
                f"{speed:.2f}x (geo. mean)",
                *[""] * 5,
            ]
        )
    return table


def summarise(
    backend: str, question_set: str, examples: str, phase: str, rows: Sequence[Row]
) -> list[list[str]]:
    """One row per agent of a phase, then how much faster taskloom was where both ran.

    Returns:
        Rows with the columns of `SUMMARY_HEADER`.

    """
    prefix = [backend, question_set, examples, phase]
    table = [
        _agent_row(prefix, agent, mine)
        for agent in ("taskloom", "react")
        if (mine := [r for r in rows if r["agent"] == agent])
    ]
    return table + _speedup_rows(prefix, rows)


def width_band(width: int) -> str:
    """The width group a question falls in: "1", "2", "3" or "≥ 4".

    Returns:
        The group's label.

    """
    return str(width) if width < 4 else "≥ 4"


def breakdown_header(variants: Sequence[str]) -> list[str]:
    """The columns of `breakdown`: for each variant, questions, accuracy and plan validity.

    Returns:
        The header row.

    """
    if len(variants) == 1:
        return ["family / width", "questions", "accuracy", "plan validity"]
    columns = ["family / width"]
    for variant in variants:
        columns += [f"questions ({variant})", f"accuracy ({variant})", f"validity ({variant})"]
    return columns


def breakdown(by_variant: Mapping[str, Sequence[Row]]) -> list[list[str]]:
    """Accuracy and plan validity by question family, then by width, then overall.

    Args:
        by_variant: the taskloom rows of one question set, for each way the
            agent was set up (say "notional" and "3 examples").

    Returns:
        Rows: one per family (in order of kind, then name), one per width
        band (1, 2, 3, ≥ 4), and "all", with the columns of `breakdown_header`.

    """
    everything = [r for rows in by_variant.values() for r in rows]
    families = sorted({(r["kind"], r["family"]) for r in everything})
    groups: list[tuple[str, Any]] = [
        (f"{family} ({kind})", lambda r, f=family: r["family"] == f) for kind, family in families
    ]
    bands = sorted({width_band(r["width"]) for r in everything})
    groups += [(f"width {b}", lambda r, b=b: width_band(r["width"]) == b) for b in bands]
    groups.append(("all", lambda r: True))
    table = []
    for label, belongs in groups:
        line = [label]
        for rows in by_variant.values():
            mine = [r for r in rows if belongs(r)]
            line += [str(len(mine)), _percent([r["correct"] for r in mine]), _validity(mine)]
        table.append(line)
    return table
