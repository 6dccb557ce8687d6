"""WorldQA: the taskloom agent against ReAct, on the same model and tools.

Phases (each a table in docs/benchmarks.md):

- validity: the taskloom agent on every question, no tool latency: plan
  validity (first try or repaired), accuracy, latency, first dispatch;
- speedup: questions of width >= 4 with `--tool-latency 0.5`, both agents;
- mixed: a sample of every width with no tool latency, both agents.

Backends: `embedded` (the bundled Gemma 3 270M in-process) and `server`
(the same model behind llama.cpp's OpenAI-compatible server on loopback,
constrained with the same grammars).

    .venv/bin/python bench/agent.py                       # everything
    .venv/bin/python bench/agent.py --backend embedded --phases speedup --limit 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).parent))

from report import write_section  # noqa: E402
from taskloom.agent import Agent, AgentResult  # noqa: E402
from taskloom.agent.react import ReActAgent  # noqa: E402
from taskloom.llm import ChatModel, Local, OpenAICompatible, bundled_model_path  # noqa: E402
from taskloom.tools.world import WORLD_TOOLS  # noqa: E402
from worldqa.score import load_questions, score  # noqa: E402

RESULTS = Path(__file__).parents[1] / "docs" / "agent-runs.jsonl"


# -- backends -------------------------------------------------------------------


@contextlib.contextmanager
def backend(name: str) -> Iterator[ChatModel]:
    if name == "embedded":
        yield Local()
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(bundled_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "8192",
            "--n_threads",
            "2",
            "--chat_format",
            "gemma",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("llama.cpp server did not start")
            time.sleep(0.5)
        yield OpenAICompatible(
            f"http://127.0.0.1:{port}/v1", "gemma-3-270m", json_mode="json_object"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- one question ------------------------------------------------------------------


async def ask(
    model: ChatModel, agent: str, question: dict[str, Any], latency: float
) -> dict[str, Any]:
    tools = [t.with_latency(latency) for t in WORLD_TOOLS]
    runner: Agent | ReActAgent
    if agent == "taskloom":
        runner = Agent(tools=tools, model=model, grammar=True)
    else:
        runner = ReActAgent(tools=tools, model=model, grammar=True)
    result: AgentResult = await runner.run(question["question"])
    data = result.to_dict()
    first_round = [a for a in result.plan_attempts if a.round == 1]
    planned = sum(a.tasks for a in first_round)
    first_planner_call = next(
        (c.usage for c in result.llm_calls if c.purpose == "planner" and c.usage), None
    )
    round_one_planner = first_planner_call.duration_s if first_planner_call else None
    ttft = first_planner_call.time_to_first_token_s if first_planner_call else None
    return {
        "id": question["id"],
        "width": question["width"],
        "kind": question["kind"],
        "agent": agent,
        "latency": latency,
        "answer": result.answer,
        "expected": question["answer"],
        "correct": score(result.answer, question["answer"], question.get("tolerance", 0.01)),
        "status": result.status,
        "valid": all(
            any(a.valid for a in result.plan_attempts if a.round == r)
            for r in {a.round for a in result.plan_attempts}
        )
        if agent == "taskloom"
        else None,
        "first_try_valid": bool(first_round) and first_round[0].valid
        if agent == "taskloom"
        else None,
        "planned_tasks": planned,
        "total_s": data["timings"]["total_s"],
        "first_dispatch_s": data["timings"]["first_dispatch_s"],
        "planner_s": data["timings"]["planner_s"],
        "planner_call_s": round_one_planner,
        "planner_ttft_s": ttft,
        "tokens": data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"],
        "llm_calls": data["usage"]["llm_calls"],
        "error": result.error,
    }


# -- phases -----------------------------------------------------------------------


def select(phase: str, questions: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    if phase == "validity":
        chosen = questions
    elif phase == "speedup":
        chosen = [q for q in questions if q["width"] >= 4]
    else:  # mixed: a spread over widths and kinds
        chosen = questions[::8]
    return chosen[:limit] if limit else chosen


def run_phase(
    model: ChatModel, phase: str, questions: list[dict[str, Any]], log: Any
) -> list[dict[str, Any]]:
    agents = ["taskloom"] if phase == "validity" else ["taskloom", "react"]
    latency = 0.5 if phase == "speedup" else 0.0
    rows = []
    for question in questions:
        for agent in agents:
            row = anyio.run(ask, model, agent, question, latency)
            row["phase"] = phase
            rows.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            verdict = "ok " if row["correct"] else "BAD"
            print(
                f"{phase} {question['id']} w{question['width']} {agent:8} {verdict} "
                f"{row['total_s']:6.1f}s {row['answer']!r:.60}",
                flush=True,
            )
    return rows


def warm_up(model: ChatModel) -> None:
    """One untimed question per agent first: model load and first prompts are not measured."""
    question = {"id": "warm-up", "width": 2, "kind": "aggregate", "answer": 0}
    question["question"] = "What is the combined population of France and Germany?"
    for agent in ("taskloom", "react"):
        anyio.run(ask, model, agent, question, 0.0)


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def summarise(backend_name: str, phase: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    table = []
    for agent in ("taskloom", "react"):
        mine = [r for r in rows if r["agent"] == agent]
        if not mine:
            continue
        valid = [r for r in mine if r["valid"] is not None]
        dispatch = [
            r["first_dispatch_s"] / r["planner_call_s"]
            for r in mine
            if r["planned_tasks"] >= 4 and r["first_dispatch_s"] and r["planner_call_s"]
        ]
        dispatch_gen = [
            (r["first_dispatch_s"] - r["planner_ttft_s"])
            / (r["planner_call_s"] - r["planner_ttft_s"])
            for r in mine
            if r["planned_tasks"] >= 4
            and r["first_dispatch_s"]
            and r["planner_ttft_s"] is not None
            and r["planner_call_s"]
            and r["planner_call_s"] > r["planner_ttft_s"]
        ]
        table.append(
            [
                backend_name,
                phase,
                agent,
                str(len(mine)),
                f"{100 * sum(r['valid'] for r in valid) / len(valid):.1f}%" if valid else "-",
                f"{100 * sum(r['correct'] for r in mine) / len(mine):.0f}%",
                f"{mean([r['total_s'] for r in mine]):.1f}",
                f"{mean([r['first_dispatch_s'] for r in mine if r['first_dispatch_s']]):.2f}",
                f"{statistics.median(dispatch):.2f}" if dispatch else "-",
                f"{statistics.median(dispatch_gen):.2f}" if dispatch_gen else "-",
                f"{mean([r['tokens'] for r in mine]):.0f}",
                f"{mean([r['llm_calls'] for r in mine]):.1f}",
            ]
        )
    ours = {r["id"]: r for r in rows if r["agent"] == "taskloom"}
    theirs = {r["id"]: r for r in rows if r["agent"] == "react"}
    both = [i for i in ours if i in theirs]
    if both:
        speed = statistics.geometric_mean([theirs[i]["total_s"] / ours[i]["total_s"] for i in both])
        ratio_of_means = mean([theirs[i]["total_s"] for i in both]) / mean(
            [ours[i]["total_s"] for i in both]
        )
        tokens = mean([ours[i]["tokens"] for i in both]) / mean([theirs[i]["tokens"] for i in both])
        table.append(
            [
                backend_name,
                phase,
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
        )
        # Where ReAct did the lookups (at least one call per place, then an answer): a
        # model that gives up early makes ReAct fast and wrong, which the ratio above mixes in.
        worked = [i for i in both if theirs[i]["llm_calls"] >= theirs[i]["width"] + 1]
        if worked:
            speed = statistics.geometric_mean(
                [theirs[i]["total_s"] / ours[i]["total_s"] for i in worked]
            )
            table.append(
                [
                    backend_name,
                    phase,
                    "same, where ReAct made ≥ width + 1 calls",
                    str(len(worked)),
                    "",
                    "",
                    f"{speed:.2f}x (geo. mean)",
                    *[""] * 5,
                ]
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="embedded,server")
    parser.add_argument("--phases", default="validity,speedup,mixed")
    parser.add_argument("--limit", type=int, default=None, help="questions per phase")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    questions = load_questions()
    table: list[list[str]] = []
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as log:
        for backend_name in args.backend.split(","):
            with backend(backend_name) as model:
                warm_up(model)
                for phase in args.phases.split(","):
                    limit = args.limit
                    if backend_name == "server" and limit is None:
                        limit = 12  # the server repeats the embedded runs on a sample
                    chosen = select(phase, questions, limit)
                    rows = run_phase(model, phase, chosen, log)
                    for row in rows:
                        row["backend"] = backend_name
                    table += summarise(backend_name, phase, rows)
    for row in table:
        print(" | ".join(row))
    if not args.no_report:
        write_section(
            "agent",
            title="WorldQA: taskloom against ReAct (same model, same tools)",
            command="python bench/agent.py " + " ".join(sys.argv[1:]),
            header=[
                "backend",
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
            ],
            rows=table,
            notes=[
                "validity: every question, taskloom only, no tool latency. speedup: questions "
                "of width ≥ 4 with 0.5 s added to every tool call. mixed: every 8th question, "
                "no tool latency.",
                "Plan validity: each round's plan parsed and validated, first try or after "
                "repair. Accuracy: bench/worldqa/score.py (1% numeric tolerance).",
                "Dispatch ÷ planner call: when the first tool call started, as a fraction of "
                "the first planner call's duration (from the request; 'generation only' "
                "counts from the first token, leaving out prompt processing).",
                "Every run is a line of docs/agent-runs.jsonl. Before the first phase of each "
                "backend, each agent answers one untimed question (the Quickstart's), so model "
                "loading and the first reading of the fixed prompt text are not measured.",
                "ReAct ÷ taskloom: the ratio of mean latencies is how LLMCompiler computes its "
                "speedups over ReAct (average latency ÷ average latency), so the 3.7× target is "
                "read on it; the geometric mean of per-question ratios is shown beside it, and "
                "weighs every question alike.",
            ],
        )


if __name__ == "__main__":
    main()
