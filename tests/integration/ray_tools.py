"""Tools the Ray tests run on the cluster's workers, importable there by module reference.

Each reports where it ran: the Ray node id and the process id. A tool that
is told a folder writes a marker there when it starts, so the driver can see
which node holds which call while it runs.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import taskloom


def _here() -> dict[str, object]:
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def _run_marked(folder: str, name: str, seconds: float) -> dict[str, object]:
    """Sleep with two markers: `started.NAME.NODE.PID`, and `running.NAME.NODE` while it runs."""
    here = _here()
    Path(folder, f"started.{name}.{here['node']}.{here['pid']}").write_text("")
    running = Path(folder, f"running.{name}.{here['node']}")
    running.write_text("")
    try:
        time.sleep(seconds)
    finally:
        running.unlink()
    return here


@taskloom.tool(resources={"num_cpus": 0.25})
def where_sync(i: int, seconds: float = 0.0) -> dict[str, object]:
    """Wait, then say where this call ran."""
    time.sleep(seconds)
    return {"i": i, **_here()}


@taskloom.tool
async def where_async(i: int, seconds: float = 0.0) -> dict[str, object]:
    """Wait (asynchronously), then say where this call ran."""
    await asyncio.sleep(seconds)
    return {"i": i, **_here()}


@taskloom.tool(resources={"second_node": 1})
def pinned(i: int) -> dict[str, object]:
    """Run only where the custom resource `second_node` is."""
    return {"i": i, **_here()}


@taskloom.tool(resources={"nowhere": 1})
def infeasible(i: int) -> int:
    """Needs a resource that no node has."""
    return i


@taskloom.tool(idempotent=True, retries=2, backoff=0.01, resources={"num_cpus": 0.25})
def safe_slow(i: int, folder: str, seconds: float) -> dict[str, object]:
    """An idempotent call that marks its start and takes a while."""
    return {"i": i, **_run_marked(folder, f"safe-{i}", seconds)}


@taskloom.tool(resources={"num_cpus": 0.25})
def effect_slow(i: int, folder: str, seconds: float) -> dict[str, object]:
    """A call with side effects (not idempotent) that marks its start and takes a while."""
    return {"i": i, **_run_marked(folder, f"effect-{i}", seconds)}


@taskloom.tool(timeout=1.0, resources={"num_cpus": 0.25})
def sync_sleeper(folder: str) -> str:
    """Sleeps far past its timeout; writes its pid first so the test can see it killed."""
    Path(folder, "sync_sleeper.pid").write_text(str(os.getpid()))
    time.sleep(60)
    return "woke"


@taskloom.tool(timeout=1.0)
async def async_sleeper(folder: str) -> str:
    """Sleeps far past its timeout; writes a file if it ever wakes (it must not)."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        Path(folder, "async_sleeper.cancelled").write_text("")  # noqa: ASYNC240  (a marker)
        raise
    return "woke"


@taskloom.tool
def raises(message: str) -> str:
    """Raises a ValueError with the message."""
    raise ValueError(message)


@taskloom.tool(resources={"num_cpus": 0.25})
def big_text(megabytes: int) -> str:
    """A text of that many million characters (a large output)."""
    return "x" * (megabytes * 1_000_000)


@taskloom.tool(resources={"num_cpus": 0.25})
def length(data: str) -> dict[str, object]:
    """The length of a text, and where it was measured."""
    return {"length": len(data), **_here()}


@taskloom.tool
async def length_async(data: str) -> dict[str, object]:
    """The same, awaited on an async actor."""
    return {"length": len(data), **_here()}


@taskloom.tool(resources={"num_cpus": 0.25})
def count_items(items: list[int]) -> int:
    """How many items a list has (a list argument: a text is the wrong type)."""
    return len(items)


@taskloom.tool
async def big_text_async(megabytes: int) -> str:
    """A large text made on an async actor (it keeps it in the object store itself)."""
    return "y" * (megabytes * 1_000_000)
