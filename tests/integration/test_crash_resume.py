"""Kill a run with SIGKILL at seeded random moments, resume it, and check nothing repeats.

The plan mixes side-effecting tools (each appends one unique line to a file)
with slow idempotent ones, maps of both over a list, and conditions. After
every crash and resume the run must end as an uninterrupted run does, and no
line may appear twice. The one outcome a crash may change: a side-effecting
task killed mid-call comes back `interrupted` (its dependents skipped, the
map it is an element of failed) instead of being called again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

TOOLS = '''
import os

import anyio

import taskloom


@taskloom.tool
def append(line: str) -> str:
    """Append one line to the output file: a side effect that must never repeat."""
    with open(os.environ["CRASH_OUT"], "a") as out:
        out.write(line + "\\n")
    return line


@taskloom.tool(idempotent=True)
async def slow(x: int) -> int:
    """Double x, slowly."""
    await anyio.sleep(0.06)
    return x * 2


@taskloom.tool(idempotent=True)
async def span(n: int) -> list[int]:
    """0 to n - 1, slowly."""
    await anyio.sleep(0.06)
    return list(range(n))
'''

WIDTH = 6


def plan_text() -> str:
    lines = []
    for i in range(1, WIDTH + 1):
        lines.append(f"{i}. slow({i})")
    for i in range(1, WIDTH + 1):
        lines.append(f'{WIDTH + i}. append("first {i}: ${i}")')
    for i in range(1, WIDTH + 1):
        lines.append(f"{2 * WIDTH + i}. slow(${i})")
    for i in range(1, WIDTH + 1):
        lines.append(f'{3 * WIDTH + i}. append("second {i}: ${2 * WIDTH + i}")')
    n = 4 * WIDTH
    lines.append(f"{n + 1}. span({WIDTH})")
    lines.append(f"{n + 2}. slow(${n + 1}[*])")  # a map of idempotent calls
    lines.append(f'{n + 3}. append("each {{}}: ${n + 2}[*]")'.replace("{}", "$" + f"{n + 1}[*]"))
    lines.append(f'{n + 4}. append("never") if ${n + 1}[0] > 100')  # condition false
    lines.append(f'{n + 5}. append("mapped: ${n + 3}") if len(${n + 2}) == {WIDTH}')
    return "\n".join(lines) + "\n"


def taskloom(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskloom", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash")
    (root / "crash_tools.py").write_text(TOOLS)
    (root / "crash.plan").write_text(plan_text())
    return root


def environment(root: Path, name: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CRASH_OUT"] = str(root / f"{name}.out")
    env["TASKLOOM_STORE"] = str(root / f"{name}.sqlite3")
    return env


def exec_args(root: Path) -> list[str]:
    return [
        "exec",
        str(root / "crash.plan"),
        "--tools",
        str(root / "crash_tools.py"),
        "--json",
        "--max-concurrency",
        "3",
    ]


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 1), err
    return json.loads(out)


@pytest.fixture(scope="module")
def reference(workdir: Path) -> dict[str, Any]:
    """The outputs of the same plan, run without a crash."""
    result = finish(taskloom(*exec_args(workdir), env=environment(workdir, "reference")))
    assert all(t["status"] == "done" or not_taken(t) for t in result["tasks"].values())
    return {i: t["output"] for i, t in result["tasks"].items()}


def not_taken(task: dict[str, Any]) -> bool:
    """Skipped by a false condition, as the plan meant, in every run."""
    return task["status"] == "skipped" and task["error_type"] == "ConditionFalse"


def recorded_runs(env: dict[str, str]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "taskloom", "runs", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    runs: list[dict[str, Any]] = json.loads(proc.stdout)
    return runs


def start_and_kill(root: Path, env: dict[str, str], delay: float) -> str:
    """Start the plan, SIGKILL it `delay` seconds after its run is recorded; return the run id."""
    proc = taskloom(*exec_args(root), env=env)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "run <id>": the run is being recorded
    assert first.startswith("run "), first
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reaps it and closes its pipes
    return first.split()[1]


@pytest.mark.parametrize("seed", range(50))
def test_killed_run_resumes_without_repeating_side_effects(
    seed: int, workdir: Path, reference: dict[str, Any]
) -> None:
    rng = random.Random(seed)
    env = environment(workdir, f"trial{seed}")
    delay = rng.uniform(0.0, 0.3)
    for _ in range(6):
        run_id = start_and_kill(workdir, env, delay)
        (run,) = [r for r in recorded_runs(env) if r["id"] == run_id]
        if run["status"] == "abandoned":
            break  # killed mid-run, as wanted: its process is gone
        # It finished first (a slow start, a busy machine): start over, sooner.
        Path(env["CRASH_OUT"]).unlink(missing_ok=True)
        delay /= 2
    else:
        pytest.fail("the run always finished before it could be killed")
    if rng.random() < 0.3:  # crash the resume too, sometimes
        again = taskloom("resume", run_id, "--json", env=env)
        time.sleep(rng.uniform(0.3, 0.8))
        again.send_signal(signal.SIGKILL)
        again.communicate()
    result = finish(taskloom("resume", run_id, "--json", env=env))

    out = Path(env["CRASH_OUT"])
    lines = out.read_text().splitlines() if out.exists() else []
    repeated = [line for line, n in Counter(lines).items() if n > 1]
    assert not repeated, f"side effects repeated: {repeated}"

    tasks = result["tasks"]
    interrupted = {i for i, t in tasks.items() if t["status"] == "interrupted"}
    # A map fails when one of its elements was interrupted (its dependencies name them).
    broken = interrupted | {
        i
        for i, t in tasks.items()
        if t["status"] == "failed" and any(d in interrupted for d in t["dependencies"])
    }
    assert "never" not in lines
    for task_id, task in tasks.items():
        if task["status"] == "done":
            assert task["output"] == reference[task_id], task_id
            if task["tool"] == "append":  # a map's output is its elements' lines
                written = task["output"] if isinstance(task["output"], list) else [task["output"]]
                assert set(written) <= set(lines)
        elif task["status"] == "interrupted":
            assert task["tool"] == "append"  # only side-effecting tools end this way
        elif not_taken(task):
            assert reference[task_id] is None
        else:
            assert task["status"] in ("skipped", "failed"), task
            assert any(d in broken for d in task["dependencies"]), task
    assert len(tasks) == len(reference)
