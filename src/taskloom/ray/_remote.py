"""What runs on the Ray workers: a task for a sync tool's call, an async actor for async ones.

Both answer with a pair `(outcome, value)`: the tool's output, the tool's own
exception (as itself when it pickles, else a stand-in of its name), or word
that the function could not be loaded there. Ray's own errors (a worker or
node that died, a cancellation) are Ray's exceptions on the driver.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import ray

from taskloom.ray._ship import _LOADED, Shipped, Unloadable, load, portable

__all__ = ["OK", "RAISED", "UNLOADABLE", "AsyncWorker", "run_sync"]

OK = 0
"""The value is the tool's output."""
RAISED = 1
"""The value is the tool's exception."""
UNLOADABLE = 2
"""The value says why the function could not be loaded on the worker."""


def _shipped(packed: Shipped | list[Any]) -> Shipped:
    """A by-value function travels as a reference in a list, fetched only on a miss."""
    if isinstance(packed, Shipped):
        return packed
    shipped = ray.get(packed[0])
    assert isinstance(shipped, Shipped)
    return shipped


def _unpacked(packed: Shipped | list[Any], key: str) -> Any:
    fn = _LOADED.get(key)
    return fn if fn is not None else load(_shipped(packed))


@ray.remote(max_retries=0, retry_exceptions=False)  # type: ignore[untyped-decorator]
def run_sync(key: str, packed: Shipped | list[Any], arguments: Mapping[str, Any]) -> Any:
    """Call a sync tool's function here (a Ray task).

    Returns:
        (OK, output), (RAISED, exception) or (UNLOADABLE, reason).

    """
    try:
        fn = _unpacked(packed, key)
    except Unloadable as exc:
        return UNLOADABLE, str(exc)
    try:
        return OK, fn(**arguments)
    except BaseException as exc:  # the tool's own failure (SystemExit too): sent back as data
        return RAISED, portable(exc)


@ray.remote
class AsyncWorker:
    """An async actor that awaits async tools' calls, many at once on its own event loop."""

    async def call(
        self, key: str, packed: Shipped | list[Any], arguments: Mapping[str, Any]
    ) -> Any:
        """Await an async tool's function here.

        Returns:
            (OK, output), (RAISED, exception) or (UNLOADABLE, reason).

        """
        try:
            if not isinstance(packed, Shipped) and key not in _LOADED:
                packed = await packed[0]  # not ray.get: that would block the actor's loop
            fn = _unpacked(packed, key)
        except Unloadable as exc:
            return UNLOADABLE, str(exc)
        try:
            return OK, await fn(**arguments)
        except asyncio.CancelledError:
            raise  # ray.cancel: the actor's task really stops
        except BaseException as exc:
            return RAISED, portable(exc)

    def where(self) -> tuple[str, int]:
        """The node id and process id of this actor (for tests and the docs)."""
        return ray.get_runtime_context().get_node_id(), os.getpid()
