"""MCP tools: per-call overhead over stdio and Streamable HTTP, and parallel calls in one session.

The same function runs three ways: in-process as a taskloom tool, and as a
tool of the SDK-built sample server (tests/mcp_sample_server.py) over stdio
and over Streamable HTTP on 127.0.0.1. Each way is measured for the cost of
one call (`Tool.call`, what the scheduler calls; median of `--calls`) and for
20 calls of a 0.5 s tool, one after another and all at once in one plan,
through one session.

    .venv/bin/python bench/mcp.py            # writes docs/benchmarks.md
    .venv/bin/python bench/mcp.py --quick    # fewer calls, no file
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

# This file shares its name with the MCP SDK's package: its folder goes last on
# the path (Python put it first), so that `import mcp` finds the SDK.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import taskloom  # noqa: E402
from report import write_section  # noqa: E402
from taskloom.tools import mcp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "tests" / "mcp_sample_server.py")
PARALLEL = 20
"""Calls in the parallel against sequential comparison."""
SECONDS = 0.5
"""How long each of those calls takes."""
TARGET = 15.0
"""Parallel must be at least this many times faster than sequential."""


@taskloom.tool(name="slow", idempotent=True)
async def slow_here(seconds: float, tag: str = "") -> str:
    """The sample server's `slow`, in-process."""
    await anyio.sleep(seconds)
    return f"sample:{tag}"


ToolSource = Callable[[], AbstractAsyncContextManager[list[taskloom.Tool]]]


@asynccontextmanager
async def in_process() -> Any:
    yield [slow_here]


def over_stdio() -> AbstractAsyncContextManager[list[taskloom.Tool]]:
    return mcp.connect({"mcpServers": {"s": {"command": sys.executable, "args": [SAMPLE]}}})


def over_http(url: str) -> ToolSource:
    return lambda: mcp.connect({"mcpServers": {"s": {"url": url}}})


async def per_call_us(source: ToolSource, calls: int, direct: Any = None) -> tuple[float, float]:
    """Median microseconds of one `slow(0)` call, and of the same call by the SDK alone.

    With `direct` (the server for the SDK's own `mcp.Client`), the two kinds
    of call alternate, so that a busy machine slows both alike; the SDK
    figure is NaN without it.
    """
    import mcp as sdk

    async with contextlib.AsyncExitStack() as stack:
        tools = await stack.enter_async_context(source())
        tool = next(t for t in tools if t.name == "slow")
        client = None if direct is None else await stack.enter_async_context(sdk.Client(direct))
        ours, theirs = [], []
        for round_ in range(10 + calls):
            began = time.perf_counter()
            await tool.call({"seconds": 0, "tag": "x"})
            mid = time.perf_counter()
            if client is not None:
                await client.call_tool("slow", {"seconds": 0, "tag": "x"})
            if round_ >= 10:  # the first ten warm both up
                ours.append(mid - began)
                theirs.append(time.perf_counter() - mid)
    sdk_us = statistics.median(theirs) * 1e6 if client is not None else math.nan
    return statistics.median(ours) * 1e6, sdk_us


async def sequential_and_parallel(source: ToolSource, repeat: int) -> tuple[float, float]:
    """Seconds for PARALLEL calls of `slow(SECONDS)` as a chain, then as a fan-out.

    The fan-out is the best of `repeat` runs; the chain (20 times longer,
    and made of waits) runs once.
    """
    chain = "".join(
        f'{i}. slow({SECONDS}, "{"$" + str(i - 1) if i > 1 else "start"}")\n'
        for i in range(1, PARALLEL + 1)
    )
    fan = "".join(f'{i}. slow({SECONDS}, "t{i}")\n' for i in range(1, PARALLEL + 1))
    async with source() as tools:
        timings = []
        for text in (chain, *[fan] * repeat):
            plan = taskloom.Plan.parse(text + f"{PARALLEL + 1}. join()", tools=tools)
            began = time.perf_counter()
            result = await taskloom.execute(plan, tools=tools)
            timings.append(time.perf_counter() - began)
            assert all(t.status == "done" for t in result.tasks.values()), result.tasks
    return timings[0], min(timings[1:])


@contextmanager
def http_server() -> Iterator[str]:
    """The sample server over Streamable HTTP on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, SAMPLE, "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("the sample HTTP server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def measure(calls: int, repeat: int, url: str) -> dict[str, dict[str, float]]:
    ways: dict[str, ToolSource] = {
        "in-process": in_process,
        "stdio": over_stdio,
        "HTTP": over_http(url),
    }
    import mcp as sdk

    direct: dict[str, Any] = {
        "stdio": sdk.StdioServerParameters(command=sys.executable, args=[SAMPLE]),
        "HTTP": url,
    }
    figures: dict[str, dict[str, float]] = {}
    for name, source in ways.items():
        sequential, parallel = await sequential_and_parallel(source, repeat)
        us, sdk_us = await per_call_us(source, calls, direct.get(name))
        figures[name] = {
            "us": us,
            "sdk_us": sdk_us,
            "sequential": sequential,
            "parallel": parallel,
        }
        print(name, figures[name], flush=True)
    return figures


def table(figures: dict[str, dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    ways = list(figures)
    base = figures["in-process"]["us"]
    header = ["measure", *ways]
    speedups = {w: f["sequential"] / f["parallel"] for w, f in figures.items()}
    rows = [
        ["one call, µs (median)", *(f"{figures[w]['us']:.0f}" for w in ways)],
        [
            "overhead over in-process, µs",
            *("-" if w == "in-process" else f"+{figures[w]['us'] - base:.0f}" for w in ways),
        ],
        [
            "the same call with the SDK's Client alone, µs",
            *(
                "-" if math.isnan(figures[w]["sdk_us"]) else f"{figures[w]['sdk_us']:.0f}"
                for w in ways
            ),
        ],
        [f"{PARALLEL} × {SECONDS} s one after another, s"]
        + [f"{figures[w]['sequential']:.2f}" for w in ways],
        [f"{PARALLEL} × {SECONDS} s at once (one session), s"]
        + [f"{figures[w]['parallel']:.3f}" for w in ways],
        ["speed-up"] + [f"{speedups[w]:.1f}×" for w in ways],
        [f"target ≥ {TARGET:g}×"] + ["PASS" if speedups[w] >= TARGET else "FAIL" for w in ways],
    ]
    return header, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls timed per transport")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the fan-out; the best")
    parser.add_argument("--quick", action="store_true", help="50 calls, no report")
    args = parser.parse_args()
    calls = 50 if args.quick else args.calls
    with http_server() as url:
        figures = anyio.run(measure, calls, args.repeat, url)
    load = os.getloadavg()[0]  # other work on the machine slows every column alike
    header, rows = table(figures)
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(row))
    if not args.quick:
        write_section(
            "mcp",
            title="MCP tools: per-call overhead and parallel calls through one session",
            command="python bench/mcp.py",
            header=header,
            rows=rows,
            notes=[
                f"One call: `Tool.call` of `slow(0)`, median of {calls} after 10 untimed, "
                "through one session; the MCP figures include the JSON-RPC round trip "
                "to the sample server (tests/mcp_sample_server.py, the SDK's MCPServer) "
                "and its handling of the call. The SDK's own `mcp.Client` calling the same "
                "server (no taskloom) is the floor of the MCP columns; its calls "
                "alternate with taskloom's, so that load on the machine slows both alike.",
                f"{PARALLEL} × {SECONDS} s: one plan each, run by `taskloom.execute`: a "
                f"chain of {PARALLEL} `slow` calls (each waits for the one before), run once, "
                f"against {PARALLEL} independent ones, which all go out at once on the one "
                f"session, best of {args.repeat}.",
                f"Load average at the end of the run: {load:.1f} on {os.cpu_count()} cores.",
            ],
        )


if __name__ == "__main__":
    main()
