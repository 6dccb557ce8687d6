"""What runs on the Ray workers: a task for a sync tool's call, an async actor for async ones.

A call sends the function's key and its arguments; the function itself only
when the worker asked for it (it had not loaded that key yet), so a warm
worker's call carries nothing but the key. The answer is the tool's output
itself, or a `Failure`: the tool's own exception (as itself when it pickles,
else a stand-in of its name), word that the worker lacks the function, or
why it could not load it. Ray's own errors (a worker or node that died, a
cancellation) are Ray's exceptions on the driver.

An output larger than the driver's threshold stays in the object store, and
the answer is only `Kept`: its size, its type and where it is. A sync tool's
task has two returns: the answer, and None or the large output (owned by the
driver, kept on this node); an async actor's call has one, and puts a large
output in the store itself (owned by the actor, which lives as long as the
executor). A later call that takes it whole gets it from the node that has
it, never through the driver: a task as one of its top-level arguments, an
actor's call by awaiting the references it is given.
"""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import ray

from taskloom.ray._ship import _LOADED, Shipped, Unloadable, load, portable

__all__ = [
    "MISSING",
    "RAISED",
    "UNLOADABLE",
    "AsyncWorker",
    "Failure",
    "Kept",
    "pickled_size",
    "run_sync",
]

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


class Kept:
    """The output is large and stayed in the object store: as `ref`, or the call's second return."""

    __slots__ = ("kind", "ref", "size")

    def __init__(self, size: int, kind: str, ref: Any = None) -> None:
        self.size = size
        self.kind = kind
        self.ref = ref

    def __reduce__(self) -> tuple[Any, ...]:
        return (Kept, (self.size, self.kind, self.ref))


class _Over(Exception):  # noqa: N818  (a signal inside pickled_size, never seen outside)
    pass


class _Counter:
    """A file that only counts what is written to it, and stops past a limit."""

    def __init__(self, limit: int | None) -> None:
        self.count = 0
        self.limit = limit

    def write(self, data: Any) -> int:
        size = len(memoryview(data).cast("B"))
        self.count += size
        if self.limit is not None and self.count > self.limit:
            raise _Over
        return size


def pickled_size(value: Any, limit: int | None = None) -> int | None:
    """The value's size pickled (nothing is kept); None once it passes `limit`.

    Returns:
        Its size in bytes, None if it is larger than `limit`, or 0 if it
        cannot be pickled (Ray will say why when it returns it).

    """
    if isinstance(value, str | bytes):  # the common large output: no pickling needed
        size = len(value)
        return None if limit is not None and size > limit else size
    counter = _Counter(limit)
    try:
        pickle.Pickler(counter, protocol=5).dump(value)
    except _Over:
        return None
    except Exception:
        return 0
    return counter.count


def _returned(output: Any, hold_over: int | None) -> tuple[Any, Any]:
    """The call's two returns: the output and None, or `Kept` and the large output.

    A large output is checked (and made JSON-able) here, as the scheduler
    checks the others, so the driver never needs to see it.
    """
    if hold_over is None or pickled_size(output, hold_over) is not None:
        return output, None
    from taskloom.engine._node import _Unstorable, storable

    value = storable(output)
    if type(value) is _Unstorable:
        return output, None  # the driver fails the task with its BadOutput
    size = pickled_size(value)
    return Kept(size or 0, type(value).__name__), value


def _with_held(
    arguments: Mapping[str, Any], names: tuple[str, ...], values: tuple[Any, ...]
) -> Any:
    """The arguments with the outputs Ray resolved on this node put in by name."""
    if not names:
        return arguments
    return {**arguments, **dict(zip(names, values, strict=True))}


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


@ray.remote(max_retries=0, retry_exceptions=False, num_returns=2)  # type: ignore[untyped-decorator]
def run_sync(
    key: str,
    packed: Shipped | list[Any] | None,
    arguments: Mapping[str, Any],
    hold_over: int | None,
    held: tuple[str, ...],
    *values: Any,
) -> tuple[Any, Any]:
    """Call a sync tool's function here (a Ray task).

    `values` are the outputs of earlier calls kept in the object store, named
    by `held`: Ray fetched them to this node (not through the driver).

    Returns:
        The tool's output (or a Failure) and None; or `Kept` and the output,
        when the output is larger than `hold_over` bytes.

    """
    if packed is not None and not isinstance(packed, Shipped) and key not in _LOADED:
        packed = ray.get(packed[0])  # a large function travels once, by reference
    fn = _function(key, packed)  # type: ignore[arg-type]
    if type(fn) is Failure:
        return fn, None
    try:
        output = fn(**_with_held(arguments, held, values))  # type: ignore[operator]
    except BaseException as exc:  # the tool's own failure (SystemExit too): sent back as data
        return Failure(RAISED, portable(exc)), None
    return _returned(output, hold_over)


@ray.remote
class AsyncWorker:
    """An async actor that awaits async tools' calls, many at once on its own event loop."""

    async def call(
        self,
        key: str,
        packed: Shipped | list[Any] | None,
        arguments: Mapping[str, Any],
        hold_over: int | None,
        held: tuple[str, ...],
        refs: list[Any],
    ) -> Any:
        """Await an async tool's function here (one return: see the module's docstring).

        Returns:
            The tool's output (or a Failure); or a `Kept` holding the
            reference of a large output, put in the object store here.

        """
        if packed is not None and not isinstance(packed, Shipped) and key not in _LOADED:
            packed = await packed[0]  # not ray.get: that would block the actor's loop
        fn = _function(key, packed)  # type: ignore[arg-type]
        if type(fn) is Failure:
            return fn
        values = tuple(await asyncio.gather(*refs)) if refs else ()
        try:
            output = await fn(**_with_held(arguments, held, values))  # type: ignore[operator]
        except asyncio.CancelledError:
            raise  # ray.cancel: the actor's task really stops
        except BaseException as exc:
            return Failure(RAISED, portable(exc))
        first, large = _returned(output, hold_over)
        if type(first) is Kept:
            first.ref = ray.put(large)  # owned by this actor, which lives as long as the executor
        return first

    def where(self) -> tuple[str, int]:
        """The node id and process id of this actor."""
        return ray.get_runtime_context().get_node_id(), os.getpid()
