"""WorldQA and ElementQA: the taskloom agent against ReAct, on the same model and tools.

Question sets: WorldQA over the built-in world tools, in two halves drawn with
different seeds (bench/worldqa/questions.jsonl, the tuning half, and
heldout.jsonl, the held-out half, on which the targets are read), and
ElementQA over the tools of bench/elementqa/tools.py, which share nothing with
the world tools.

Phases (each a table in docs/benchmarks.md, and accuracy by family and width):

- validity: the taskloom agent on every WorldQA question of each half, no tool
  latency, with the world tools' bank of worked examples: plan validity
  (first try or repaired), accuracy, latency, first dispatch;
- speedup: WorldQA questions of width >= 4 with `--tool-latency 0.5`, both agents;
- mixed: a sample of every width with no tool latency, both agents;
- elements: ElementQA with no examples written for it (the notional ones only);
- elements-examples: ElementQA with its 3 worked examples
  (bench/elementqa/examples.jsonl, what `--examples` passes).

Backends: `embedded` (the bundled Gemma 3 270M in-process) and `server`
(the same model behind llama.cpp's OpenAI-compatible server on loopback,
constrained with the same grammars).

    .venv/bin/python bench/agent.py                       # everything
    .venv/bin/python bench/agent.py --backend embedded --phases speedup --limit 4
    .venv/bin/python bench/agent.py --backend embedded --questions heldout --phases validity
    .venv/bin/python bench/agent.py --backend embedded --phases elements,elements-examples
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).parent))

from agent_tables import SUMMARY_HEADER, breakdown, breakdown_header, summarise  # noqa: E402
from report import write_section  # noqa: E402
from taskloom.agent import Agent, AgentResult, Example, load_examples  # noqa: E402
from taskloom.agent.react import ReActAgent  # noqa: E402
from taskloom.llm import ChatModel, Local, OpenAICompatible, bundled_model_path  # noqa: E402
from taskloom.tools import Tool, world  # noqa: E402
from worldqa.score import HELDOUT_PATH, QUESTIONS_PATH, load_questions, score  # noqa: E402

RESULTS = Path(__file__).parents[1] / "docs" / "agent-runs.jsonl"
ELEMENTQA = Path(__file__).parent / "elementqa"
WORLD_PHASES = ("validity", "speedup", "mixed")
ELEMENT_PHASES = ("elements", "elements-examples")
# -- backends -------------------------------------------------------------------


Models = dict[str, ChatModel]
"""Each agent's model, by agent name ("taskloom", "react")."""


@contextlib.contextmanager
def backend(name: str) -> Iterator[Models]:
    """The models the agents ask.

    Embedded: one model each, as two deployments would have, so neither
    agent's saved prompt states push the other's out of the model's cache
    (ReAct's dozen calls a question save states of a few thousand tokens
    each, which evicted the planner's within a question). Server: one server
    for both.
    """
    if name == "embedded":
        yield {"taskloom": Local(), "react": Local()}
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
        shared = OpenAICompatible(
            f"http://127.0.0.1:{port}/v1", "gemma-3-270m", json_mode="json_object"
        )
        yield {"taskloom": shared, "react": shared}
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- what an agent is built with ---------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """The tools and worked examples the agents of a phase are built with."""

    tools: tuple[Tool, ...]
    """The tools plans may call."""
    examples: tuple[Example, ...]
    """The worked examples; empty: the agent shows its notional ones."""
    label: str
    """How the table names the examples: "world bank", "notional", "3 examples"."""
    warm_up: str
    """An untimed question asked first (not a benchmark question)."""


def world_setup() -> Setup:
    """The world tools with their bank of worked examples.

    Raises:
        SystemExit: the bank is missing, with what to do about it.

    """
    path = Path(world.EXAMPLES_PATH)
    if not path.exists():
        raise SystemExit(
            f"bench/agent.py: the world tools' worked examples are missing ({path}); "
            "the WorldQA phases use them. Run only the ElementQA phases "
            "(--phases elements,elements-examples) until the file exists."
        )
    return Setup(
        tools=tuple(world.WORLD_TOOLS),
        examples=tuple(load_examples(path)),
        label="world bank",
        warm_up="What is the combined population of France and Germany?",
    )


def element_setup(with_examples: bool) -> Setup:
    """The ElementQA tools, with no examples or with the 3 of bench/elementqa/examples.jsonl.

    Returns:
        The setup; the tools are those `--tools bench/elementqa/tools.py` loads.

    """
    from elementqa.tools import ELEMENT_TOOLS

    examples = load_examples(ELEMENTQA / "examples.jsonl") if with_examples else []
    return Setup(
        tools=tuple(ELEMENT_TOOLS),
        examples=tuple(examples),
        label=f"{len(examples)} examples" if with_examples else "notional",
        warm_up="What is the atomic mass of boron?",
    )


# -- one question ------------------------------------------------------------------


def _valid(result: AgentResult) -> bool:
    rounds = {a.round for a in result.plan_attempts}
    return all(any(a.valid for a in result.plan_attempts if a.round == r) for r in rounds)


async def ask(
    model: ChatModel, agent: str, setup: Setup, question: dict[str, Any], latency: float
) -> dict[str, Any]:
    tools = [t.with_latency(latency) for t in setup.tools]
    runner: Agent | ReActAgent
    if agent == "taskloom":
        runner = Agent(tools=tools, model=model, grammar=True, examples=setup.examples)
    else:  # the same worked examples, replayed as ReAct conversations
        runner = ReActAgent(tools=tools, model=model, grammar=True, examples=setup.examples)
    result: AgentResult = await runner.run(question["question"])
    data = result.to_dict()
    first_round = [a for a in result.plan_attempts if a.round == 1]
    first_planner_call = next(
        (c.usage for c in result.llm_calls if c.purpose == "planner" and c.usage), None
    )
    ours = agent == "taskloom"
    return {
        "id": question["id"],
        "width": question["width"],
        "kind": question["kind"],
        "family": question.get("family", question["kind"]),
        "agent": agent,
        "examples": setup.label,
        "latency": latency,
        "answer": result.answer,
        "expected": question["answer"],
        "correct": score(result.answer, question["answer"], question.get("tolerance", 0.01)),
        "status": result.status,
        "valid": _valid(result) if ours else None,
        "first_try_valid": bool(first_round) and first_round[0].valid if ours else None,
        "planned_tasks": sum(a.tasks for a in first_round),
        "total_s": data["timings"]["total_s"],
        "first_dispatch_s": data["timings"]["first_dispatch_s"],
        "planner_s": data["timings"]["planner_s"],
        "planner_call_s": first_planner_call.duration_s if first_planner_call else None,
        "planner_ttft_s": first_planner_call.time_to_first_token_s if first_planner_call else None,
        "tokens": data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"],
        "llm_calls": data["usage"]["llm_calls"],
        "error": result.error,
    }


# -- phases -----------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionSet:
    """A named question file."""

    name: str
    """How tables name it: "worldqa-tuning", "worldqa-heldout", "elementqa", or a file's stem."""
    questions: list[dict[str, Any]]
    """Its questions, in file order."""


def world_sets(choice: str) -> list[QuestionSet]:
    """The WorldQA halves `--questions` names: tuning, heldout, both, or a file.

    Raises:
        SystemExit: the file is missing or unreadable, saying which.

    """
    named = {"tuning": QUESTIONS_PATH, "heldout": HELDOUT_PATH}
    if choice == "both":
        chosen = [("worldqa-tuning", QUESTIONS_PATH), ("worldqa-heldout", HELDOUT_PATH)]
    elif choice in named:
        chosen = [(f"worldqa-{choice}", named[choice])]
    else:
        chosen = [(Path(choice).stem, Path(choice))]
    sets = []
    for name, path in chosen:
        try:
            sets.append(QuestionSet(name, load_questions(path)))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"bench/agent.py: cannot read the questions {path}: {exc}") from exc
    return sets


def select(phase: str, questions: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    if phase == "speedup":
        chosen = [q for q in questions if q["width"] >= 4]
    elif phase == "mixed":  # a spread over widths and kinds
        chosen = questions[::8]
    else:  # validity and the ElementQA phases: every question
        chosen = questions
    return chosen[:limit] if limit else chosen


def run_phase(
    models: Models,
    phase: str,
    setup: Setup,
    question_set: QuestionSet,
    questions: Sequence[dict[str, Any]],
    log: Any,
) -> list[dict[str, Any]]:
    agents = ["taskloom", "react"] if phase in ("speedup", "mixed") else ["taskloom"]
    latency = 0.5 if phase == "speedup" else 0.0
    rows = []
    for question in questions:
        for agent in agents:
            row = anyio.run(ask, models[agent], agent, setup, question, latency)
            row["phase"] = phase
            row["set"] = question_set.name
            rows.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            verdict = "ok " if row["correct"] else "BAD"
            print(
                f"{question_set.name} {phase} {question['id']} w{question['width']} {agent:8} "
                f"{verdict} {row['total_s']:6.1f}s {row['answer']!r:.60}",
                flush=True,
            )
    return rows


def warm_up(models: Models, setup: Setup, agents: Sequence[str]) -> None:
    """One untimed question per agent first: model load and first prompts are not measured."""
    question = {"id": "warm-up", "width": 2, "kind": "warm-up", "answer": 0}
    question["question"] = setup.warm_up
    for agent in agents:
        anyio.run(ask, models[agent], agent, setup, question, 0.0)


PhaseRows = dict[tuple[str, str, str], list[dict[str, Any]]]
"""The rows of each (backend, question set, phase)."""


def run_backend(
    backend_name: str,
    models: Models,
    phases: Sequence[str],
    world_halves: Sequence[QuestionSet],
    limit: int | None,
    log: Any,
) -> PhaseRows:
    """Run every phase asked for on one backend; each setup is warmed up before its first use.

    Returns:
        The rows of each (backend, set, phase) that ran.

    """
    if backend_name == "server" and limit is None:
        limit = 12  # the server repeats the embedded runs on a sample
    results: PhaseRows = {}
    warmed: set[str] = set()
    for phase in phases:
        if phase in WORLD_PHASES:
            setup, sets = world_setup(), list(world_halves)
        else:
            setup = element_setup(with_examples=phase == "elements-examples")
            sets = [QuestionSet("elementqa", load_questions(ELEMENTQA / "questions.jsonl"))]
        if setup.label not in warmed:
            warm_up(models, setup, ["taskloom", "react"] if phase in WORLD_PHASES else ["taskloom"])
            warmed.add(setup.label)
        for question_set in sets:
            chosen = select(phase, question_set.questions, limit)
            rows = run_phase(models, phase, setup, question_set, chosen, log)
            for row in rows:
                row["backend"] = backend_name
            results[(backend_name, question_set.name, phase)] = rows
    return results


def breakdowns(results: PhaseRows) -> dict[tuple[str, str], dict[str, list[dict[str, Any]]]]:
    """The taskloom rows behind each accuracy-by-family-and-width table.

    WorldQA halves: the validity phase (every question). ElementQA: both of
    its phases, side by side.

    Returns:
        For each (backend, set): the rows of each way the agent was set up.

    """
    tables: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for (backend_name, set_name, phase), rows in results.items():
        if phase not in ("validity", *ELEMENT_PHASES):
            continue
        ours = [r for r in rows if r["agent"] == "taskloom"]
        if ours:
            label = ours[0]["examples"]
            tables.setdefault((backend_name, set_name), {})[label] = ours
    return tables


_SUMMARY_NOTES = [
    "validity: every WorldQA question of each half, taskloom only, no tool latency. speedup: "
    "questions of width ≥ 4 with 0.5 s added to every tool call. mixed: every 8th question, "
    "no tool latency. elements / elements-examples: every ElementQA question, taskloom only.",
    "Sets: worldqa-tuning (bench/worldqa/questions.jsonl, seed 20240611) is the half prompts "
    "and examples may be tuned on; worldqa-heldout (heldout.jsonl, seed 20250922) is never "
    "tuned on, and the targets are read on it. elementqa (bench/elementqa/questions.jsonl) "
    "uses only the tools of bench/elementqa/tools.py.",
    "Examples: 'world bank' is the world tools' worked examples "
    "(taskloom.tools.world.EXAMPLES_PATH); 'notional' is none given, so the prompts show the "
    "built-in notional ones; '3 examples' is bench/elementqa/examples.jsonl (none of them a "
    "benchmark question).",
    "Plan validity: each round's plan parsed and validated, first try or after "
    "repair. Accuracy: bench/worldqa/score.py (1% numeric tolerance).",
    "Dispatch ÷ planner call: when the first tool call started, as a fraction of "
    "the first planner call's duration (from the request; 'generation only' "
    "counts from the first token, leaving out prompt processing).",
    "Every run is a line of docs/agent-runs.jsonl. Before the first phase of each "
    "setup on each backend, each agent answers one untimed question that is not a "
    "benchmark question, so model loading and the first reading of the fixed prompt text "
    "are not measured.",
    "Embedded backend: each agent asks its own instance of the model, as two deployments "
    "would (ReAct's many calls save prompt states large enough to push the planner's out "
    "of a shared model's cache); the server backend serves both from one server.",
    "ReAct ÷ taskloom: the ratio of mean latencies is how LLMCompiler computes its "
    "speedups over ReAct (average latency ÷ average latency), so the 3.7× target is "
    "read on it; the geometric mean of per-question ratios is shown beside it, and "
    "weighs every question alike.",
]


def report(results: PhaseRows, command: str) -> None:
    """Write the summary table and one accuracy breakdown per set into docs/benchmarks.md."""
    table = [
        line
        for (backend_name, set_name, phase), rows in results.items()
        if rows
        for line in summarise(backend_name, set_name, rows[0]["examples"], phase, rows)
    ]
    write_section(
        "agent",
        title="WorldQA and ElementQA: taskloom against ReAct (same model, same tools)",
        command=command,
        header=SUMMARY_HEADER,
        rows=table,
        notes=_SUMMARY_NOTES,
    )
    for (backend_name, set_name), variants in breakdowns(results).items():
        write_section(
            f"agent-{set_name}-{backend_name}",
            title=f"{set_name} on the {backend_name} model: accuracy by family and by width",
            command=command,
            header=breakdown_header(list(variants)),
            rows=breakdown(variants),
            notes=[
                "Families are named with their kind; width is the number of independent "
                "lookups in the question's reference plan. taskloom agent only, no tool latency.",
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="embedded,server")
    parser.add_argument(
        "--phases",
        default=",".join((*WORLD_PHASES, *ELEMENT_PHASES)),
        help=f"comma-separated, of: {', '.join((*WORLD_PHASES, *ELEMENT_PHASES))}",
    )
    parser.add_argument(
        "--questions",
        default="both",
        help="the WorldQA questions: tuning, heldout, both (reported separately) or a file",
    )
    parser.add_argument("--limit", type=int, default=None, help="questions per phase and set")
    parser.add_argument("--no-report", action="store_true", help="leave docs/benchmarks.md alone")
    parser.add_argument(
        "--runs", type=Path, default=RESULTS, help=f"where every run is logged ({RESULTS.name})"
    )
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(phases) - {*WORLD_PHASES, *ELEMENT_PHASES})
    if unknown:
        parser.error(f"unknown phases: {', '.join(unknown)}")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    world_halves = world_sets(args.questions) if set(phases) & set(WORLD_PHASES) else []
    if world_halves:
        world_setup()  # a missing example bank stops the run before any model is loaded
    results: PhaseRows = {}
    args.runs.parent.mkdir(parents=True, exist_ok=True)
    with args.runs.open("a") as log:
        for backend_name in args.backend.split(","):
            with backend(backend_name) as models:
                results |= run_backend(backend_name, models, phases, world_halves, args.limit, log)
    for (backend_name, set_name), variants in breakdowns(results).items():
        print(f"\n{set_name} ({backend_name})")
        for line in breakdown(variants):
            print(" | ".join(line))
    print()
    for line in (
        row
        for (b, s, p), rows in results.items()
        if rows
        for row in summarise(b, s, rows[0]["examples"], p, rows)
    ):
        print(" | ".join(line))
    if not args.no_report:
        report(results, "python bench/agent.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
