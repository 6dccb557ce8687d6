"""What runs on the Ray workers: a task for a sync tool's call, an async actor for async ones.

A call sends the function's key and its arguments; the function itself only
when the worker asked for it (it had not loaded that key yet), so a warm
worker's call carries nothing but the key. The answer is the tool's output
itself, or a `Failure`: the tool's own exception (as itself when it pickles,
else a stand-in of its name), word that the worker lacks the function, or
why it could not load it. Ray's own errors (a worker or node that died, a
cancellation) are Ray's exceptions on the driver.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any

import ray

from taskloom.ray._ship import _LOADED, Shipped, Unloadable, load, portable

__all__ = ["MISSING", "RAISED", "UNLOADABLE", "AsyncWorker", "Failure", "run_sync"]

RAISED = 1
"""The value is the tool's exception."""
UNLOADABLE = 2
"""The value says why the function could not be loaded on the worker."""
MISSING = 3
"""The worker has not loaded the function: send it again with the function."""


class Failure:
    """A call that gave no output: what kind of failure, and its value."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: int, value: Any) -> None:
        self.kind = kind
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (Failure, (self.kind, self.value))


def _function(key: str, shipped: Shipped | None) -> Callable[..., Any] | Failure:
    fn = _LOADED.get(key)
    if fn is not None:
        return fn
    if shipped is None:
        return Failure(MISSING, None)
    try:
        return load(shipped)
    except Unloadable as exc:
        return Failure(UNLOADABLE, str(exc))


@ray.remote(max_retries=0, retry_exceptions=False)  # type: ignore[untyped-decorator]
def run_sync(key: str, packed: Shipped | list[Any] | None, arguments: Mapping[str, Any]) -> Any:
    """Call a sync tool's function here (a Ray task).

    Returns:
        The tool's output, or a Failure.

    """
    if packed is not None and not isinstance(packed, Shipped) and key not in _LOADED:
        packed = ray.get(packed[0])  # a large function travels once, by reference
    fn = _function(key, packed)  # type: ignore[arg-type]
    if type(fn) is Failure:
        return fn
    try:
        return fn(**arguments)  # type: ignore[operator]
    except BaseException as exc:  # the tool's own failure (SystemExit too): sent back as data
        return Failure(RAISED, portable(exc))


@ray.remote
class AsyncWorker:
    """An async actor that awaits async tools' calls, many at once on its own event loop."""

    async def call(
        self, key: str, packed: Shipped | list[Any] | None, arguments: Mapping[str, Any]
    ) -> Any:
        """Await an async tool's function here.

        Returns:
            The tool's output, or a Failure.

        """
        if packed is not None and not isinstance(packed, Shipped) and key not in _LOADED:
            packed = await packed[0]  # not ray.get: that would block the actor's loop
        fn = _function(key, packed)  # type: ignore[arg-type]
        if type(fn) is Failure:
            return fn
        try:
            return await fn(**arguments)  # type: ignore[operator]
        except asyncio.CancelledError:
            raise  # ray.cancel: the actor's task really stops
        except BaseException as exc:
            return Failure(RAISED, portable(exc))

    def where(self) -> tuple[str, int]:
        """The node id and process id of this actor."""
        return ray.get_runtime_context().get_node_id(), os.getpid()
