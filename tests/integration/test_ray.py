"""Tool calls on a real two-node Ray cluster on this machine (`taskloom.ray.RayExecutor`).

The cluster runs in a network namespace of its own with only loopback up
(`unshare --net`), so Ray's traffic never leaves 127.0.0.1: the scenarios
run as one subprocess there (tests/integration/ray_scenarios.py), which
starts the cluster, runs every scenario and stops it, and the tests here
read what it wrote. Skipped only where Ray is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
SCENARIOS_S = 600
"""A generous bound against a hang: the cluster alone takes 10-30 s to start here."""
_RAY_PROCESSES = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard", "log_monitor")


def _ray_pids() -> set[int]:
    """Ray's processes on this machine (any namespace: `ps` sees them all)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True)
    pids = set()
    for line in out.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if any(name in args for name in _RAY_PROCESSES) and int(pid) != os.getpid():
            pids.add(int(pid))
    return pids


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every scenario once, in a fresh network namespace; what they saw."""
    work = tmp_path_factory.mktemp("ray")
    before = _ray_pids()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)])}
    script = f"ip link set lo up && exec {sys.executable} {HERE / 'ray_scenarios.py'} {work}"
    done = subprocess.run(
        ["unshare", "--net", "--fork", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=SCENARIOS_S,
    )
    out = work / "out.json"
    assert done.returncode == 0 and out.exists(), done.stderr[-4000:]
    # Every process the cluster started has ended (a moment after its head stops).
    deadline = time.monotonic() + 30
    while _ray_pids() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _ray_pids() - before
    assert not left, f"Ray processes left behind: {sorted(left)}"
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("127.0.0.1:1", "error: Ray cluster 127.0.0.1:1: cannot connect: nothing answers there"),
        ("ray://127.0.0.1:1", "error: Ray cluster ray://127.0.0.1:1: cannot connect"),
        ("head-node", "error: Ray address 'head-node': write auto, local, ray://HOST:PORT"),
    ],
)
def test_a_cluster_that_is_not_there_is_a_clear_error_at_once(
    address: str, said: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from taskloom.cli import app

    plan = tmp_path / "plan.txt"
    plan.write_text("1. math('1 + 1')\n")
    result = CliRunner().invoke(app, ["exec", str(plan), "--no-store", "--ray", address])
    assert result.exit_code == 2
    assert said in " ".join(result.output.split())


def test_serve_with_a_cluster_that_is_not_there_stops_at_once_with_a_clear_error(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from taskloom.cli import app

    args = ["serve", "--no-auth", "--port", "0", "--store", str(tmp_path / "s.sqlite3")]
    result = CliRunner().invoke(app, [*args, "--ray", "127.0.0.1:1"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "error: Ray cluster 127.0.0.1:1: cannot connect: nothing answers there" in said
    assert "serving" not in said
    # TASKLOOM_RAY is the default, as for exec.
    result = CliRunner().invoke(app, args, env={"TASKLOOM_RAY": "ray://127.0.0.1:1"})
    assert result.exit_code == 2
    assert "error: Ray cluster ray://127.0.0.1:1: cannot connect" in " ".join(result.output.split())


def _tasks(seen: dict[str, Any], scenario: str, tool: str) -> list[dict[str, Any]]:
    return [t for t in seen[scenario]["tasks"].values() if t["tool"] == tool]


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_the_cluster_is_two_nodes_on_loopback(seen: dict[str, Any]) -> None:
    assert seen["nodes"]["head"] != seen["nodes"]["second"]
    assert seen["nodes"]["addresses"] == ["127.0.0.1"]


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_a_fan_out_runs_on_both_nodes_in_worker_processes(seen: dict[str, Any]) -> None:
    both = {seen["nodes"]["head"], seen["nodes"]["second"]}
    assert seen["fan_out"]["status"] == "completed"
    for tool in ("where_sync", "where_async"):
        calls = _tasks(seen, "fan_out", tool)
        assert len(calls) == 8 and all(t["status"] == "done" for t in calls)
        assert {t["output"]["node"] for t in calls} == both, tool
        assert seen["driver_pid"] not in {t["output"]["pid"] for t in calls}
        assert sorted(t["output"]["i"] for t in calls) == list(range(8))


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_a_custom_resource_pins_a_tool_to_its_node(seen: dict[str, Any]) -> None:
    calls = _tasks(seen, "pinning", "pinned")
    assert len(calls) == 6
    assert {t["output"]["node"] for t in calls} == {seen["nodes"]["second"]}


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_a_resource_no_node_has_fails_the_task_at_once(seen: dict[str, Any]) -> None:
    (call,) = _tasks(seen, "pinning", "infeasible")
    assert call["status"] == "failed"
    assert "no node of the Ray cluster has 1 of resource 'nowhere'" in call["error"]


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_tools_travel_by_reference_or_by_value_or_are_refused_clearly(
    seen: dict[str, Any],
) -> None:
    tasks = seen["shipping"]["tasks"]
    assert tasks["1"]["status"] == "done" and tasks["1"]["output"]["double"] == 42  # __main__
    assert tasks["1"]["output"]["pid"] != seen["driver_pid"]
    assert tasks["2"]["status"] == "done" and tasks["2"]["output"] == 42  # a closure
    assert tasks["3"]["status"] == "failed"
    assert "cannot be shipped to Ray workers" in tasks["3"]["error"]
    assert "cannot pickle" in tasks["3"]["error"]
    assert tasks["4"]["status"] == "failed"
    assert tasks["4"]["error"] == "raises raised ValueError: no such city"


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_the_command_line_runs_on_the_cluster_named_by_taskloom_ray(seen: dict[str, Any]) -> None:
    cli = seen["cli"]
    assert cli["exit_code"] == 0, cli["output"]
    tasks = cli["result"]["tasks"]
    assert tasks["1"]["status"] == "done" and tasks["1"]["output"]["x"] == 1
    # Its file is not on the workers' path: it was sent by value, and ran on a worker.
    assert tasks["1"]["output"]["pid"] != seen["driver_pid"]
    assert tasks["2"]["status"] == "done" and tasks["2"]["output"]["pid"] != seen["driver_pid"]


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_a_timeout_cancels_the_ray_task(seen: dict[str, Any]) -> None:
    timeouts = seen["timeouts"]
    sync, async_ = timeouts["tasks"]["1"], timeouts["tasks"]["2"]
    assert sync["status"] == "failed" and sync["error_type"] == "ToolTimedOut"
    assert "its Ray task was cancelled and its worker process killed" in sync["error"]
    assert timeouts["sleeper_alive"] is False  # force-cancelled: its worker process is gone
    assert async_["status"] == "failed" and async_["error_type"] == "ToolTimedOut"
    assert "its call on a Ray actor was cancelled" in async_["error"]
    assert timeouts["async_cancelled"] is True  # the coroutine on the actor saw the cancel


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_a_node_killed_mid_run_retries_safe_calls_and_interrupts_the_others(
    seen: dict[str, Any],
) -> None:
    killed = seen["node_killed"]
    assert killed["killed"] is True
    assert killed["status"] == "completed"  # the run went on and ended by itself
    running = killed["running_on_second"]  # what ran there when it was killed
    assert any(".safe-" in r for r in running)
    assert any(".effect-" in r for r in running)
    safe = _tasks(seen, "node_killed", "safe_slow")
    effects = _tasks(seen, "node_killed", "effect_slow")
    # Idempotent: every call finished; one running on the dead node ran again elsewhere.
    assert all(t["status"] == "done" for t in safe)
    assert any(t["attempts"] > 1 for t in safe)
    assert all(t["output"]["node"] == seen["nodes"]["head"] for t in safe if t["attempts"] > 1)
    # Side effects: a call on the dead node is interrupted, never called again.
    interrupted = [t for t in effects if t["status"] == "interrupted"]
    assert interrupted
    assert all(t["attempts"] == 1 and t["error_type"] == "TaskInterrupted" for t in interrupted)
    assert all("the Ray node running it died" in t["error"] for t in interrupted)
    assert all(t["status"] in ("done", "interrupted") for t in effects)


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_serve_runs_a_posted_plans_tools_on_the_cluster(seen: dict[str, Any]) -> None:
    served = seen["serve"]
    assert served["end"] == [{"status": "completed"}]
    assert served["status"] == "completed"
    tasks = served["tasks"]
    assert all(t["status"] == "done" for t in tasks.values()), tasks
    nodes = {seen["nodes"]["head"], seen["nodes"]["second"]}
    for i in ("1", "2", "3"):  # on a Ray worker: neither the server's process nor the driver's
        assert tasks[i]["output"]["pid"] not in (served["server_pid"], seen["driver_pid"])
    assert tasks["1"]["output"]["node"] in nodes and tasks["3"]["output"]["node"] in nodes
    assert tasks["3"]["output"]["x"] == 1


@pytest.mark.timeout(SCENARIOS_S + 60)
def test_a_large_output_stays_in_the_object_store_and_reaches_dependents_there(
    seen: dict[str, Any],
) -> None:
    held, tasks = seen["held"]["held"], seen["held"]["tasks"]
    assert held["is_held"] is True and held["kept"] >= 2
    assert held["text"] == "<str of 10,000,000 bytes, held in the Ray object store>"
    # The dependents on the cluster measured it there; the driver never fetched it.
    assert tasks["2"]["status"] == "done" and tasks["2"]["output"]["length"] == 10_000_000
    assert tasks["3"]["status"] == "done" and tasks["3"]["output"]["length"] == 10_000_000
    assert tasks["2"]["output"]["pid"] != seen["driver_pid"]
    # Made on an async actor (which keeps it), taken by a task and by an actor's call.
    assert tasks["7"]["output"] == "<str of 10,000,000 bytes, held in the Ray object store>"
    assert tasks["8"]["status"] == "done" and tasks["8"]["output"]["length"] == 10_000_000
    assert tasks["9"]["status"] == "done" and tasks["9"]["output"]["length"] == 10_000_000
    assert held["fetched_during_run"] == 0
    # What the store recorded: the placeholder, not the 10 MB.
    assert held["recorded"] == {"1": held["text"], "5": ""}
    # A held output of the wrong type for the argument is a clear failure.
    assert tasks["4"]["status"] == "failed" and tasks["4"]["error_type"] == "BadArguments"
    assert "items is a str of 10,000,000 bytes" in tasks["4"]["error"]
    # A small output comes back as itself.
    assert tasks["5"]["output"] == "" and tasks["6"]["output"]["length"] == 0
    # Asked for, it comes here whole, and is counted.
    assert held["fetched_length"] == 10_000_000 and held["fetched_after"] == 10_000_000
