"""Orchestration overhead per task: taskloom against LangGraph, Dask and bare asyncio.

Every engine runs the same DAG shapes with no-op tools; only the execution is
timed (graphs are built beforehand). Each (engine, shape) runs in a fresh
subprocess so that peak RSS is its own; the best of `--repeat` runs is kept.

    .venv/bin/python bench/overhead.py            # all shapes, writes docs/benchmarks.md
    .venv/bin/python bench/overhead.py --quick    # the 1,000-task shapes only, no file
"""

import argparse
import json
import operator
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).parent))

from report import write_section  # noqa: E402
from shapes import SHAPES, Shape, layers_of  # noqa: E402

ENGINES = (
    "taskloom",
    "taskloom traced",
    "taskloom on uvloop",
    "langgraph",
    "dask",
    "asyncio.gather",
    "gather on uvloop",
)


# -- one engine, one shape (runs in the child process) -------------------------


class State(TypedDict):
    """LangGraph state: the level being run and the nodes done so far."""

    level: int
    done: Annotated[list[int], operator.add]


class Item(TypedDict):
    """LangGraph Send payload: one node and its inputs."""

    node: int
    inputs: list[int]


def run_taskloom(shape: Shape, uvloop: bool = False, traced: bool = False) -> float:
    """The plain row is tracing off (the default); `traced` builds every span, exports none."""
    import anyio

    import taskloom
    from taskloom import Ref, Task, TaskId

    if traced:
        from opentelemetry.sdk.trace import TracerProvider

        from taskloom import telemetry

        telemetry.instrument(TracerProvider(shutdown_on_exit=False))

    @taskloom.tool
    async def noop(inputs: list[Any]) -> None:
        """Do nothing."""

    plan = taskloom.Plan(
        [
            Task(id=TaskId(str(n)), tool="noop", args=([Ref(TaskId(str(d))) for d in deps],))
            for n, deps in shape
        ]
    )

    async def main() -> float:
        began = time.perf_counter()
        result = await taskloom.execute(plan, tools=[noop])
        took = time.perf_counter() - began
        assert all(t.status == "done" for t in result.tasks.values())
        return took

    return anyio.run(main, backend_options={"use_uvloop": uvloop})


def run_gather(shape: Shape, uvloop: bool = False) -> float:
    """Bare asyncio: one gather per level (a floor, not an engine: no dependencies tracked)."""
    import asyncio

    async def noop(inputs: list[Any]) -> None:
        return None

    async def main() -> float:
        began = time.perf_counter()
        for level in layers_of(shape):
            await asyncio.gather(*(noop(deps) for _, deps in level))
        return time.perf_counter() - began

    if uvloop:
        import uvloop as uv

        return uv.run(main())
    return asyncio.run(main())


def run_dask(shape: Shape) -> float:
    import dask

    def noop(*inputs: Any) -> None:
        return None

    nodes: dict[int, Any] = {}
    for n, deps in shape:
        nodes[n] = dask.delayed(noop, pure=False)(*(nodes[d] for d in deps))
    sinks = set(nodes) - {d for _, deps in shape for d in deps}
    began = time.perf_counter()
    dask.compute(*(nodes[s] for s in sinks), scheduler="threads")
    return time.perf_counter() - began


def run_langgraph(shape: Shape) -> float:
    """LangGraph map-reduce with the Send API: each level is sent out, then gathered."""
    import asyncio

    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    levels = layers_of(shape)

    async def work(item: Item) -> dict[str, Any]:
        return {"done": [item["node"]]}

    async def gather(state: State) -> dict[str, Any]:
        return {"level": state["level"] + 1}

    def fan(state: State) -> list[Send] | str:
        if state["level"] >= len(levels):
            return END
        return [Send("work", {"node": n, "inputs": d}) for n, d in levels[state["level"]]]

    graph = StateGraph(State)
    graph.add_node("work", work)
    graph.add_node("gather", gather)
    graph.add_conditional_edges(START, fan, ["work", END])
    graph.add_edge("work", "gather")
    graph.add_conditional_edges("gather", fan, ["work", END])
    app = graph.compile()

    async def main() -> float:
        began = time.perf_counter()
        final = await app.ainvoke(
            {"level": 0, "done": []}, {"recursion_limit": 2 * len(levels) + 10}
        )
        took = time.perf_counter() - began
        assert len(final["done"]) == len(shape)
        return took

    return asyncio.run(main())


RUNNERS = {
    "taskloom": run_taskloom,
    "langgraph": run_langgraph,
    "dask": run_dask,
    "asyncio.gather": run_gather,
    "taskloom traced": lambda shape: run_taskloom(shape, traced=True),
    "taskloom on uvloop": lambda shape: run_taskloom(shape, uvloop=True),
    "gather on uvloop": lambda shape: run_gather(shape, uvloop=True),
}


def child(engine: str, shape_name: str, repeat: int) -> None:
    import resource

    shape = SHAPES[shape_name]()
    times = [RUNNERS[engine](shape) for _ in range(repeat)]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": min(times), "tasks": len(shape), "rss_mb": rss_mb}))


# -- the parent: run every pair, print and record ------------------------------


def measure(engine: str, shape_name: str, repeat: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", engine, shape_name, "--repeat", str(repeat)],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    data["us_per_task"] = data["seconds"] / data["tasks"] * 1e6
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "SHAPE"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000-task shapes, no report")
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.repeat)
        return
    shapes = [s for s in SHAPES if not args.quick or "10,000" not in s]
    engines = args.engines.split(",")
    rows = []
    for shape_name in shapes:
        results = {e: measure(e, shape_name, args.repeat) for e in engines}
        for engine, data in results.items():
            ratio = ""
            if engine != "langgraph" and "langgraph" in results:
                ratio = f"{results['langgraph']['us_per_task'] / data['us_per_task']:.1f}x"
            rows.append(
                [
                    shape_name,
                    engine,
                    f"{data['us_per_task']:.1f}",
                    f"{data['seconds'] * 1e3:.1f}",
                    f"{data['rss_mb']:.0f}",
                    ratio,
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    if not args.quick:
        write_section(
            "overhead",
            title="Orchestration overhead (no-op tools)",
            command="python bench/overhead.py",
            header=["shape", "engine", "µs / task", "run ms", "peak RSS MB", "LangGraph ÷ engine"],
            rows=rows,
            notes=[
                "Best of 3 runs of the execution call only (graphs built beforehand), each "
                "engine and shape in its own process; peak RSS is that process's maximum, "
                "imports included.",
                "taskloom runs untraced by default (the `taskloom` rows: OpenTelemetry is "
                "not even imported); `taskloom traced` builds every run, tool span and "
                "attribute with the SDK's TracerProvider but exports none.",
                "LangGraph runs each level as a map-reduce with the Send API; Dask runs "
                "`delayed` on its threaded scheduler; asyncio.gather runs each level as "
                "one gather and tracks no dependencies, a floor rather than an engine.",
            ],
        )


if __name__ == "__main__":
    main()
