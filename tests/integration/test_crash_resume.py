"""Kill a run with SIGKILL at seeded random moments, resume it, and check nothing repeats.

The plan mixes side-effecting tools (each appends one unique line to a file)
with slow idempotent ones, maps of both over a list, conditions, and a
sub-plan (`twice.plan`, a side effect between two idempotent calls) called
once and mapped over a list. After
every crash and resume the run must end as an uninterrupted run does, and no
line may appear twice. The one outcome a crash may change: a side-effecting
task killed mid-call comes back `interrupted` (its dependents skipped, the
map it is an element of or the sub-plan call it is part of failed) instead
of being called again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
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
    lines.append(f"{n + 6}. twice(${n + 1}[*])")  # a map over a sub-plan
    lines.append(f"{n + 7}. twice(50)")  # and one call of it
    lines.append(f'{n + 8}. append("twice: ${n + 6} ${n + 7}")')
    return "\n".join(lines) + "\n"


SUBPLAN = """# name: twice
# inputs: x: int
1. slow($x)
2. append("sub ${x}: $1")
3. slow($1)
"""
"""A sub-plan with a side effect between two idempotent calls (`--tools twice.plan`)."""


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
    (root / "twice.plan").write_text(SUBPLAN)
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
        "--tools",
        str(root / "twice.plan"),
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
    # A map fails when one of its elements was interrupted, a sub-plan call when one of
    # its tasks was, and a map over calls when one call failed so (dependencies name them).
    broken = set(interrupted)
    while True:
        more = {
            i
            for i, t in tasks.items()
            if t["status"] == "failed" and any(d in broken for d in t["dependencies"])
        }
        if more <= broken:
            break
        broken |= more
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


# -- a run edited live, then killed --------------------------------------------

EDIT_TOOLS = '''
import os

import anyio

import taskloom



def ON_HANG(name: str) -> None:
    """The driver replaces this to learn that a call hangs."""


def _write(line: str) -> None:
    with open(os.environ["CRASH_OUT"], "a") as out:
        out.write(line + "\\n")


@taskloom.tool
def append(line: str) -> str:
    """Append one line to the output file: a side effect that must never repeat."""
    _write(line)
    return line


@taskloom.tool
async def stall(line: str) -> str:
    """Append a line, then (in the process to be killed) never return."""
    _write(line)
    if os.environ.get("EDIT_HANG"):
        ON_HANG("stall")
        await anyio.sleep_forever()
    return line


@taskloom.tool(idempotent=True)
async def hold(x: int) -> int:
    """x * 10; in the process to be killed, it never returns."""
    if os.environ.get("EDIT_HANG"):
        ON_HANG("hold")
        await anyio.sleep_forever()
    return x * 10
'''

EDIT_DRIVER = """
import sys
from pathlib import Path

import anyio

import edit_tools
import taskloom
from taskloom import Plan, Ref, Task, TaskId, Template
from taskloom.engine import events as ev

PLAN = (
    '1. hold(1)\\n2. append("two $1")\\n3. append("three $1")\\n'
    '4. append("four $3")\\n5. append("five")\\n'
)
ONE = Ref(TaskId("1"))


def text(before: str, after: str = "") -> Template:
    return Template(parts=(before, ONE, after) if after else (before, ONE))


def say(line: str) -> None:
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()


async def main(last_tool: str) -> None:
    entered = {"hold": anyio.Event(), "stall": anyio.Event()}
    edit_tools.ON_HANG = lambda name: entered[name].set()
    finished = {"5": anyio.Event(), "7": anyio.Event()}

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.TaskFinished) and event.task_id in finished:
            finished[event.task_id].set()

    plan = Plan.parse(PLAN)
    tools = [edit_tools.append, edit_tools.stall, edit_tools.hold]
    source = str(Path(edit_tools.__file__).resolve())
    with taskloom.Store.open() as store:
        journal = store.journal(request="edited", config={"tools": source}, plan=plan)
        store.flush()
        say(f"run {journal.run_id}")
        with anyio.fail_after(30):
            async with taskloom.open_run(tools=tools, journal=journal, on_event=on_event) as run:
                await run.add_plan(plan)
                await entered["hold"].wait()
                await finished["5"].wait()
                run.rewrite("2", args=(text("two rewritten "),))
                run.cancel("3")
                run.add(Task(id=TaskId("6"), tool="append", args=(text("six "),)))
                run.add(Task(id=TaskId("7"), tool=last_tool, args=("seven",)))
                run.rewrite("6", args=(text("six ", " again"),))
                run.rewrite("6", args=(text("six ", " final"),))
                if last_tool == "stall":
                    await entered["stall"].wait()
                else:
                    await finished["7"].wait()
                await journal.flush()
                say("edited")
                await anyio.sleep_forever()


anyio.run(main, sys.argv[1])
"""


@pytest.mark.parametrize("last_tool", ["append", "stall"])
def test_a_run_edited_live_then_killed_resumes_as_edited(tmp_path: Path, last_tool: str) -> None:
    """Killed once its live edits are on disk: the resumed run is the edited plan, and
    no side effect happens twice (task 7 is either done, or killed mid-call)."""
    (tmp_path / "edit_tools.py").write_text(EDIT_TOOLS)
    (tmp_path / "edit_driver.py").write_text(EDIT_DRIVER)
    env = environment(tmp_path, "edited")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    driver = subprocess.Popen(
        [sys.executable, str(tmp_path / "edit_driver.py"), last_tool],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env | {"EDIT_HANG": "1"},
    )
    assert driver.stdout is not None
    first, edited = driver.stdout.readline(), driver.stdout.readline()
    driver.send_signal(signal.SIGKILL)
    _, err = driver.communicate(timeout=30)
    assert first.startswith("run ") and edited == "edited\n", err
    run_id = first.split()[1]
    (run,) = [r for r in recorded_runs(env) if r["id"] == run_id]
    assert run["status"] == "abandoned"

    result = finish(taskloom("resume", run_id, "--json", env=env))

    lines = Path(env["CRASH_OUT"]).read_text().splitlines()
    assert sorted(lines) == sorted(["five", "seven", "two rewritten 10", "six 10 final"])
    tasks = result["tasks"]
    assert {i: t["status"] for i, t in tasks.items()} == {
        "1": "done",
        "2": "done",
        "3": "cancelled",
        "4": "cancelled",
        "5": "done",
        "6": "done",
        "7": "done" if last_tool == "append" else "interrupted",
    }
    assert tasks["2"]["output"] == "two rewritten 10"
    assert tasks["6"]["output"] == "six 10 final"

    store = Path(env["TASKLOOM_STORE"])
    with closing(sqlite3.connect(store)) as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM events WHERE run_id = ?", (run_id,))]
        kinds = [r[0] for r in db.execute("SELECT kind FROM events WHERE run_id = ?", (run_id,))]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))
    assert kinds.count("task_rewritten") == 3
