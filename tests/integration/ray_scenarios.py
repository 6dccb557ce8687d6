"""The Ray scenarios: a two-node cluster on this machine, runs on it, and what came back.

Run by tests/integration/test_ray.py inside a network namespace of its own
(only `lo` up), so every Ray address is 127.0.0.1. It starts the cluster,
runs each scenario through `taskloom.execute(..., executor=RayExecutor(...))`,
stops the cluster, and writes one JSON object with what each scenario saw.

    python tests/integration/ray_scenarios.py WORK_FOLDER   # writes WORK_FOLDER/out.json
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import ray
from ray.cluster_utils import Cluster

import taskloom
from taskloom import Task, TaskId
from taskloom.ray import RayExecutor

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ray_tools as rt  # noqa: E402

TOOLS = [
    rt.where_sync,
    rt.where_async,
    rt.pinned,
    rt.infeasible,
    rt.safe_slow,
    rt.effect_slow,
    rt.sync_sleeper,
    rt.async_sleeper,
    rt.raises,
    rt.big_text,
    rt.length,
    rt.length_async,
    rt.count_items,
    rt.big_text_async,
]


@taskloom.tool
def in_main(x: int) -> dict[str, object]:
    """Defined in __main__: no worker can import it, so it travels by value."""
    return {"double": 2 * x, "pid": os.getpid()}


def closure_tool() -> taskloom.Tool:
    offset = 40

    @taskloom.tool
    async def in_function(x: int) -> int:
        """Defined in a function: it travels by value, closure and all."""
        return x + offset

    return in_function


def unpicklable_tool() -> taskloom.Tool:
    lock = threading.Lock()

    @taskloom.tool
    def holds_a_lock(x: int) -> int:
        """Closes over a lock: neither importable nor picklable."""
        with lock:
            return x

    return holds_a_lock


def task(i: int, tool: str, *args: Any, **kwargs: Any) -> Task:
    return Task(id=TaskId(str(i)), tool=tool, args=args, kwargs=kwargs)


def summary(result: taskloom.RunResult) -> dict[str, Any]:
    return {
        "status": str(result.status),
        "tasks": {
            i: {
                "tool": t.tool,
                "status": str(t.status),
                "output": t.output,
                "error": None if t.error is None else str(t.error),
                "error_type": None if t.error is None else type(t.error).__name__,
                "attempts": t.attempts,
            }
            for i, t in result.tasks.items()
        },
    }


async def fan_out(executor: RayExecutor) -> dict[str, Any]:
    plan = [task(i, "where_sync", i, 0.5) for i in range(8)]
    plan += [task(100 + i, "where_async", i, 0.2) for i in range(8)]
    return summary(await taskloom.execute(plan, tools=TOOLS, executor=executor))


async def pinning(executor: RayExecutor) -> dict[str, Any]:
    plan = [task(i, "pinned", i) for i in range(6)]
    plan.append(task(50, "infeasible", 1))
    return summary(await taskloom.execute(plan, tools=TOOLS, executor=executor))


async def shipping(executor: RayExecutor) -> dict[str, Any]:
    tools = [*TOOLS, in_main, closure_tool(), unpicklable_tool()]
    plan = [
        task(1, "in_main", 21),
        task(2, "in_function", 2),
        task(3, "holds_a_lock", 1),
        task(4, "raises", "no such city"),
    ]
    return summary(await taskloom.execute(plan, tools=tools, executor=executor))


async def timeouts(executor: RayExecutor, folder: Path) -> dict[str, Any]:
    plan = [task(1, "sync_sleeper", str(folder)), task(2, "async_sleeper", str(folder))]
    out = summary(await taskloom.execute(plan, tools=TOOLS, executor=executor))
    pid = int((folder / "sync_sleeper.pid").read_text())
    out["sleeper_pid"] = pid
    out["sleeper_alive"] = _wait_until(lambda: not _alive(pid), 20.0) is False
    out["async_cancelled"] = _wait_until(
        lambda: (folder / "async_sleeper.cancelled").exists(), 20.0
    )
    return out


async def node_killed(executor: RayExecutor, cluster: Cluster, second: Any, folder: Path) -> dict:
    """Calls on the second node when it is killed: idempotent ones retried, the others not."""
    second_id = second.node_id
    plan = []
    for i in range(6):
        plan.append(task(2 * i, "safe_slow", i, str(folder), 4.0))
        plan.append(task(2 * i + 1, "effect_slow", i, str(folder), 4.0))
    seen: dict[str, Any] = {}

    def running_there() -> list[str]:
        return sorted(
            p.name
            for p in folder.iterdir()
            if p.name.startswith("running.") and second_id in p.name
        )

    async def kill_when_both_kinds_run_there() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = running_there()
            if any(".safe-" in r for r in running) and any(".effect-" in r for r in running):
                break
            await anyio.sleep(0.05)
        seen["running_on_second"] = running_there()  # noqa: ASYNC240
        await anyio.to_thread.run_sync(lambda: cluster.remove_node(second, allow_graceful=False))
        seen["killed"] = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(kill_when_both_kinds_run_there)
        result = await taskloom.execute(plan, tools=TOOLS, executor=executor)
    # The cluster lists a killed node as alive until its heartbeats time out:
    # the scenarios after this one start when it knows.
    deadline = time.monotonic() + 120
    while second_id in _alive_nodes() and time.monotonic() < deadline:  # noqa: ASYNC110 (polling the cluster: it sends no event)
        await anyio.sleep(0.2)
    return {**summary(result), **seen, "second_node": second_id}


async def held(executor: RayExecutor, folder: Path) -> dict[str, Any]:
    """A 10 MB output stays in the object store; dependents on the cluster take it from there."""
    from taskloom._held import Held

    plan = [
        task(1, "big_text", 10),
        task(2, "length", taskloom.Ref(TaskId("1"))),
        task(3, "length_async", taskloom.Ref(TaskId("1"))),
        task(4, "count_items", taskloom.Ref(TaskId("1"))),  # the wrong type: a clear failure
        task(5, "big_text", 0),  # small: comes back as itself
        task(6, "length", taskloom.Ref(TaskId("5"))),
        task(7, "big_text_async", 10),  # made on an async actor
        task(8, "length", taskloom.Ref(TaskId("7"))),
        task(9, "length_async", taskloom.Ref(TaskId("7"))),
    ]
    before = executor.stats.fetched_bytes
    with taskloom.Store.open(folder / "store.sqlite3") as store:
        journal = store.journal(request="held", config={}, plan=taskloom.Plan(plan))
        result = await taskloom.execute(plan, tools=TOOLS, executor=executor, journal=journal)
        recorded = store.load(journal.run_id).tasks
    out = summary(result)
    output = result.tasks[TaskId("1")].output
    out["held"] = {
        "is_held": isinstance(output, Held),
        "text": str(output),
        "recorded": {str(t.id): t.output for t in recorded if t.id in ("1", "5")},
        "fetched_during_run": executor.stats.fetched_bytes - before,
        "kept": executor.stats.held,
    }
    for i in ("1", "7"):
        if isinstance(out["tasks"][i]["output"], Held):
            out["tasks"][i]["output"] = str(out["tasks"][i]["output"])
    if isinstance(output, Held):
        out["held"]["fetched_length"] = len(await output.fetch())
        out["held"]["fetched_after"] = executor.stats.fetched_bytes - before
    return out


CLI_TOOLS = """
import os
import taskloom


@taskloom.tool
def elsewhere(x: int) -> dict:
    \"\"\"A tool in a file the workers do not have: it goes by value.\"\"\"
    import ray

    return {"x": x, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}


@taskloom.tool
async def elsewhere_async(x: int) -> dict:
    \"\"\"The same, awaited on an async actor.\"\"\"
    return {"x": x, "pid": os.getpid()}
"""


def command_line(address: str, folder: Path) -> dict[str, Any]:
    """`taskloom exec` with TASKLOOM_RAY set, tools from a file only this process can read."""
    from typer.testing import CliRunner

    from taskloom.cli import app

    (folder / "cli_tools.py").write_text(CLI_TOOLS)
    (folder / "plan.txt").write_text("1. elsewhere(1)\n2. elsewhere_async(2)\n")
    result = CliRunner().invoke(
        app,
        ["exec", str(folder / "plan.txt"), "--tools", str(folder / "cli_tools.py"), "--json"],
        env={"TASKLOOM_RAY": address, "TASKLOOM_STORE": str(folder / "store.sqlite3")},
    )
    data = json.loads(result.stdout) if result.exit_code == 0 else {}
    return {"exit_code": result.exit_code, "output": result.output[-2000:], "result": data}


def served(address: str, folder: Path) -> dict[str, Any]:
    """`taskloom serve --ray ADDRESS` in a process of its own: a POSTed plan runs on the cluster."""
    from http_api_server import serving

    tools_file = folder / "serve_tools.py"
    tools_file.write_text(CLI_TOOLS)
    plan = "1. elsewhere(1)\n2. elsewhere_async(2)\n3. elsewhere($1.x)\n"
    args = ("--no-auth", "--ray", address)
    with serving(folder / "store.sqlite3", tools_file, folder / "serve.log", *args) as server:
        run_id = server.start_plan(plan)
        ends = [e.data for e in server.events(run_id) if e.event == "end"]
        shown = server.client.get(f"/v1/runs/{run_id}").json()
        server_pid = server.process.pid
    return {
        "end": ends,
        "status": shown["status"],
        "tasks": {t["id"]: {"status": t["status"], "output": t["output"]} for t in shown["tasks"]},
        "server_pid": server_pid,
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def main() -> None:
    work = Path(sys.argv[1])
    started = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"head_node": 1}},
    )
    second = cluster.add_node(num_cpus=2, resources={"second_node": 1})
    out: dict[str, Any] = {"driver_pid": os.getpid()}
    try:
        executor = RayExecutor(address=cluster.address, log_to_driver=False)
        with executor:
            cluster.wait_for_nodes()
            out["nodes"] = {
                "head": ray.get_runtime_context().get_node_id(),
                "second": second.node_id,
                "addresses": sorted({n["NodeManagerAddress"] for n in ray.nodes()}),
            }
            out["cluster_start_s"] = time.monotonic() - started
            for name, scenario in (
                ("fan_out", lambda: fan_out(executor)),
                ("pinning", lambda: pinning(executor)),
                ("shipping", lambda: shipping(executor)),
                ("held", lambda: held(executor, _folder(work, "held"))),
                ("timeouts", lambda: timeouts(executor, _folder(work, "timeouts"))),
                (
                    "node_killed",
                    lambda: node_killed(executor, cluster, second, _folder(work, "killed")),
                ),
            ):
                began = time.monotonic()
                out[name] = anyio.run(scenario)
                out[name]["seconds"] = time.monotonic() - began
            out["cli"] = command_line(cluster.address, _folder(work, "cli"))
            out["serve"] = served(cluster.address, _folder(work, "serve"))
    finally:
        cluster.shutdown()
    (work / "out.json").write_text(json.dumps(out))  # not stdout: Ray prints its logs there


def _alive_nodes() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def _folder(work: Path, name: str) -> Path:
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


if __name__ == "__main__":
    main()
