"""RayExecutor: tool calls as Ray tasks (sync tools) and calls on async actors (async tools)."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from taskloom._held import Held
from taskloom._text import clip, short_repr
from taskloom.engine._executor import Executor
from taskloom.errors import CallInterrupted, CallTimedOut, ConfigError, ExecutorLost, UserError
from taskloom.ray._ship import BY_REFERENCE, Shipped, by_reference, by_value
from taskloom.tools import Tool
from taskloom.tools._limits import Resources
from taskloom.tools._tool import CallTimes

__all__ = ["HeldStats", "RayExecutor", "RayHeld"]

HOLD_OVER = 100_000
"""Outputs larger than this (bytes, pickled) stay in the object store by default."""

_ACTOR_CONCURRENCY = 1000
"""Calls one async actor awaits at once."""

_SHIPPED_INLINE = 64 * 1024
"""A function pickled by value up to this size travels in each call; larger ones once, by ref."""


class RayExecutor(Executor):
    """Runs tool calls on a Ray cluster; the scheduler, the store and the cache stay here.

    A sync tool's call is a Ray task (one CPU unless its `resources` say
    otherwise); an async tool's call is awaited on a small pool of async
    actors spread over the nodes. Either is awaited on the run's event loop
    (never `ray.get`), and a timeout or a cancellation cancels the Ray task
    (a sync one's worker process is killed). MCP tools, command tools and
    isolated tools run here, in this process, as they do without Ray.

        with RayExecutor(address="auto") as ray_executor:
            result = await taskloom.execute(plan, tools=tools, executor=ray_executor)

    Ray retries nothing by itself: a worker or node that dies in a call
    fails that call, and the scheduler retries it only if the tool is
    idempotent (under its policy); any other call ends `interrupted`.

    An output larger than `hold_over` bytes stays in Ray's object store: the
    task's output is then a `RayHeld` (its size and type; the store, the
    events and the joiner see `str(held)`, a placeholder), and a later call
    on the cluster that takes it whole (`$N`) gets the value straight from
    the node that holds it. `await held.fetch()` brings it here; so does a
    call that runs here (a cached tool, an MCP or isolated one). `stats`
    counts what was kept and what was fetched.
    """

    def __init__(
        self,
        address: str = "auto",
        *,
        async_actors: int | None = None,
        log_to_driver: bool = True,
        init_options: Mapping[str, Any] | None = None,
        hold_over: int | None = HOLD_OVER,
    ) -> None:
        """Describe the cluster; nothing connects until the first call or `connect()`.

        Args:
            address: `auto` (the cluster this machine belongs to, or
                RAY_ADDRESS), `ray://HOST:PORT` (Ray Client), `HOST:PORT`
                (a head node's GCS), or `local` to start a private cluster
                on this machine for as long as the executor is open.
            async_actors: async actors that await async tools' calls, per
                kind of resources; None: one on each node alive when the
                first such call comes (a tool with custom resources: one).
            log_to_driver: print what tools print on the workers here.
            init_options: more keywords for `ray.init` (`runtime_env`,
                `num_cpus` for a local cluster, ...).
            hold_over: an output larger than this many bytes (pickled) stays
                in the object store, and reaches a dependent that runs on the
                cluster as a reference; None brings every output here.

        Raises:
            ConfigError: for an empty address or a bad option.

        """
        if not isinstance(address, str) or not address.strip():
            raise ConfigError(
                "a Ray address is auto, local, ray://HOST:PORT or HOST:PORT, "
                f"got {short_repr(address)}"
            )
        if async_actors is not None and (
            isinstance(async_actors, bool) or not isinstance(async_actors, int) or async_actors < 1
        ):
            raise ConfigError(
                f"async_actors must be a whole number >= 1, got {short_repr(async_actors)}"
            )
        if hold_over is not None and (
            isinstance(hold_over, bool) or not isinstance(hold_over, int) or hold_over < 0
        ):
            raise ConfigError(
                "hold_over must be a whole number of bytes >= 0 or None, "
                f"got {short_repr(hold_over)}"
            )
        self.hold_over = hold_over
        self.stats = HeldStats()
        """Outputs kept in the object store, and those fetched here."""
        self.address = address.strip()
        _host_port(self.address)  # a malformed address fails here, not at the first call
        self._async_actors = async_actors
        self._log_to_driver = log_to_driver
        self._init_options = dict(init_options or {})
        self._lock = threading.Lock()
        self._connected = False
        self._owns_ray = False
        self._shipped: dict[int, tuple[Any, str, Shipped | list[Any], str]] = {}
        self._tasks: dict[tuple[Any, ...], Any] = {}
        self._pools: dict[tuple[Any, ...], list[Any]] = {}
        self._turn: dict[tuple[Any, ...], int] = {}
        self._feasible: set[tuple[Any, ...]] = set()

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r})"

    # -- lifecycle --------------------------------------------------------------

    def connect(self) -> None:
        """Connect to the cluster (or start the private one); blocks, so not on an event loop.

        Raises:
            ExecutorLost: if the cluster cannot be reached or started.

        """
        with self._lock:
            if self._connected:
                return
            import ray

            if not ray.is_initialized():
                _check_reachable(self.address)
                options: dict[str, Any] = {
                    "logging_level": logging.WARNING,
                    "log_to_driver": self._log_to_driver,
                }
                if self.address == "local":
                    options["include_dashboard"] = False
                options |= self._init_options
                try:
                    ray.init(address=self.address, **options)
                except Exception as exc:
                    raise ExecutorLost(
                        f"Ray cluster {self.address}",
                        f"cannot connect: {type(exc).__name__}: {exc}",
                    ) from exc
                self._owns_ray = True
            self._connected = True

    def close(self) -> None:
        """Stop the async actors, and Ray itself if this executor started it; blocks."""
        with self._lock:
            if not self._connected:
                return
            import ray

            for pool in self._pools.values():
                for actor in pool:
                    try:
                        ray.kill(actor)
                    except Exception:  # noqa: S110  (gone with its node already)
                        pass
            self._pools.clear()
            self._tasks.clear()
            self._shipped.clear()
            self._feasible.clear()
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False
            self._connected = False

    def __enter__(self) -> RayExecutor:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> RayExecutor:
        await anyio.to_thread.run_sync(self.connect)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)

    # -- calls ------------------------------------------------------------------

    async def call(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the tool's own: see Tool.call)
    ) -> Any:
        """Run one call of `tool` on the cluster (see `Executor.call`).

        Returns:
            What the tool returned.

        Raises:
            CallTimedOut: the call ran past `timeout`; its Ray task was cancelled.
            CallInterrupted: the worker, actor or node running it died.
            ExecutorLost: the cluster cannot be reached any more.
            UserError: the tool's function cannot be shipped to the workers,
                or it needs a resource that no node of the cluster has.
            BaseException: whatever the tool raised.

        """
        return await self._call(tool, arguments, times, timeout, self.hold_over)

    async def _call(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        times: CallTimes | None,
        timeout: float | None,  # noqa: ASYNC109
        hold_over: int | None,
    ) -> Any:
        through = getattr(tool, "call_through", None)
        if through is not None:  # a cache: kept here, the tool it wraps runs on the cluster
            # It keys and keeps values: held arguments come here, outputs too.
            arguments = await self._fetched(arguments)
            return await through(_Unheld(self), arguments, times=times, timeout=timeout)
        if type(tool).call is not Tool.call or tool.policy.isolation is not None:
            arguments = await self._fetched(arguments)
            return await tool.call(arguments, times=times, timeout=timeout)  # runs here
        if not self._connected:
            await anyio.to_thread.run_sync(self.connect)
        send_function = False
        for _ in range(4):
            outcome = await self._submit(tool, arguments, times, timeout, send_function, hold_over)
            if outcome is _RESEND:  # that worker had not loaded it: once more, with it
                send_function = True
            elif outcome is not _RELOAD:  # _RELOAD: not importable there, by value now
                return outcome
        raise AssertionError("unreachable: a function sent with its call is loaded or refused")

    async def _submit(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        times: CallTimes | None,
        timeout: float | None,  # noqa: ASYNC109
        send_function: bool,
        hold_over: int | None,
    ) -> Any:
        import ray

        from taskloom.ray._remote import Failure, Kept

        fn, key, shipped, how = self._packed(tool)
        packed = shipped if send_function else None
        resources = tool.policy.resources
        sync = not tool.is_async
        actor = None
        plain: Mapping[str, Any] = arguments
        names: tuple[str, ...] = ()
        refs: list[Any] = []
        if any(isinstance(v, Held) for v in arguments.values()):
            plain, names, refs = await self._split(arguments)
        try:
            if sync:
                ref, second = self._task(resources).remote(
                    key, packed, dict(plain), hold_over, names, *refs
                )
            else:
                actor = self._actor(resources)
                ref = actor.call.remote(key, packed, dict(plain), hold_over, names, refs)
                second = None
        except Exception as exc:
            raise _translated(exc, tool.name) from exc
        if times is not None and times.started_at is None:
            times.started_at = time.monotonic()
        try:
            if timeout is None:
                outcome = await ref
            else:
                outcome = None
                with anyio.move_on_after(timeout) as scope:
                    outcome = await ref
                if scope.cancelled_caught:
                    _cancel(ref, force=sync)
                    how_stopped = (
                        "its Ray task was cancelled and its worker process killed"
                        if sync
                        else "its call on a Ray actor was cancelled"
                    )
                    raise CallTimedOut(tool.name, timeout, stopped=how_stopped)
        except anyio.get_cancelled_exc_class():
            _cancel(ref, force=sync)  # the caller's cancellation stops the call on the cluster
            raise
        except (CallTimedOut, UserError):
            raise
        except Exception as exc:
            if actor is not None and isinstance(exc, ray.exceptions.RayActorError):
                self._replace(resources, actor)
            raise _translated(exc, tool.name) from exc
        if type(outcome) is not Failure:
            if times is not None:
                times.finished_at = time.monotonic()
            if type(outcome) is Kept:
                self.stats.held += 1
                self.stats.held_bytes += outcome.size
                kept = second if outcome.ref is None else outcome.ref
                return RayHeld(kept, outcome.size, outcome.kind, self.stats)
            return outcome
        return self._failed(tool, fn, how, outcome, times)

    async def _split(
        self, arguments: Mapping[str, Any]
    ) -> tuple[dict[str, Any], tuple[str, ...], list[Any]]:
        """The arguments sent as they are; and the names and refs of those held in the store.

        A held output of another executor (another cluster) is fetched here first.
        """
        plain = dict(arguments)
        names: list[str] = []
        refs: list[Any] = []
        for name, value in arguments.items():
            if isinstance(value, RayHeld) and value.stats is self.stats:
                names.append(name)
                refs.append(value.ref)
                del plain[name]
            elif isinstance(value, Held):
                plain[name] = await value.fetch()
        return plain, tuple(names), refs

    async def _fetched(self, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """The arguments with every held output in them brought here (for calls that run here)."""
        if not any(isinstance(v, Held) for v in arguments.values()):
            return arguments
        return {k: await v.fetch() if isinstance(v, Held) else v for k, v in arguments.items()}

    def _failed(self, tool: Tool, fn: Any, how: str, failure: Any, times: CallTimes | None) -> Any:
        """What a call that gave no output means: the tool raised, or its function must travel.

        Returns:
            `_RESEND` or `_RELOAD`: call again, with the function, or by value.

        Raises:
            BaseException: what the tool raised.
            UserError: if the workers could not load the function by value either.

        """
        from taskloom.ray._remote import MISSING, RAISED

        kind, value = failure.kind, failure.value
        if kind == RAISED:
            if times is not None:
                times.finished_at = time.monotonic()
            raise value
        if kind == MISSING:
            return _RESEND
        if how == BY_REFERENCE:  # the workers cannot import it: by value from now on
            self._shipped[id(fn)] = self._by_value(
                fn, tool, why_not=f"the workers cannot import it ({value})"
            )
            return _RELOAD
        raise UserError(
            f"tool {tool.name} cannot be loaded on the Ray workers: {clip(str(value), 400)}"
        )

    def _packed(self, tool: Tool) -> tuple[Any, str, Shipped | list[Any], str]:
        """How `tool`'s function travels, decided once per function: by reference first."""
        fn = tool.fn
        entry = self._shipped.get(id(fn))
        if entry is not None and entry[0] is fn:
            return entry
        # Unique, not id(fn): a function made later may reuse a dead one's id,
        # and the workers keep what they loaded under its key.
        key = f"{tool.name}-{uuid.uuid4().hex[:12]}"
        shipped = by_reference(fn, key + "-r")
        if shipped is not None:
            entry = (fn, shipped.key, shipped, BY_REFERENCE)
        else:
            entry = self._by_value(fn, tool, why_not="it is not at the top level of a module")
        self._shipped[id(fn)] = entry
        return entry

    def _by_value(
        self, fn: Any, tool: Tool, *, why_not: str
    ) -> tuple[Any, str, Shipped | list[Any], str]:
        import ray

        shipped = by_value(fn, f"{tool.name}-{uuid.uuid4().hex[:12]}-v", tool.name, why_not)
        packed: Shipped | list[Any] = shipped
        if len(shipped.data) > _SHIPPED_INLINE:
            packed = [ray.put(shipped)]  # in a list: the worker fetches it only when not loaded
        return fn, shipped.key, packed, shipped.how

    def _options(self, resources: Resources | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        options = resources.ray_options() if resources is not None else {}
        key = tuple(
            sorted(
                (k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                for k, v in options.items()
            )
        )
        if key not in self._feasible:
            _check_feasible(options)
            self._feasible.add(key)
        return key, options

    def _task(self, resources: Resources | None) -> Any:
        key, options = self._options(resources)
        remote = self._tasks.get(key)
        if remote is None:
            from taskloom.ray._remote import run_sync

            remote = self._tasks[key] = run_sync.options(**options) if options else run_sync
        return remote

    def _actor(self, resources: Resources | None) -> Any:
        key, options = self._options(resources)
        pool = self._pools.get(key)
        if pool is None:
            nodes = _alive_nodes() if "resources" not in options else []
            count = self._async_actors or max(1, len(nodes))
            pool = self._pools[key] = [
                self._new_actor(options, nodes[i % len(nodes)] if nodes else None)
                for i in range(count)
            ]
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        return pool[turn % len(pool)]

    def _new_actor(self, options: Mapping[str, Any], node: str | None = None) -> Any:
        """An async actor; on `node` if given (a replacement for a dead one goes anywhere)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from taskloom.ray._remote import AsyncWorker

        made: dict[str, Any] = {
            "num_cpus": 0,
            "max_concurrency": _ACTOR_CONCURRENCY,
            "max_restarts": 0,
        }
        if node is not None:
            made["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        return AsyncWorker.options(**(made | dict(options))).remote()  # type: ignore[attr-defined]

    def _replace(self, resources: Resources | None, actor: Any) -> None:
        """An actor died (its node with it): the pool gets a new one in its place."""
        key, options = self._options(resources)
        pool = self._pools.get(key, [])
        for i, member in enumerate(pool):
            if member is actor:
                pool[i] = self._new_actor(options)


@dataclass(slots=True)
class HeldStats:
    """What a RayExecutor kept in the object store, and what it brought back here."""

    held: int = 0
    """Outputs kept in the object store (larger than `hold_over`)."""
    held_bytes: int = 0
    """Their bytes, pickled."""
    fetched: int = 0
    """Held outputs brought to this process (`RayHeld.fetch`)."""
    fetched_bytes: int = 0
    """Their bytes."""


class RayHeld(Held):
    """A task's output kept in Ray's object store (see `RayExecutor`'s `hold_over`).

    Its `str()` is the placeholder that the store and the events record.
    """

    __slots__ = ("ref", "stats")

    def __init__(self, ref: Any, size: int, kind: str, stats: HeldStats) -> None:
        super().__init__(size=size, kind=kind, where="the Ray object store")
        self.ref = ref
        """The ObjectRef of the value (owned by this process)."""
        self.stats = stats
        """The counters of the executor that made it."""

    async def fetch(self) -> Any:
        """Bring the value here, awaited (never `ray.get` on the loop).

        Returns:
            The output.

        Raises:
            CallInterrupted: if the node that held it died (the value is lost).
            ExecutorLost: if the cluster cannot be reached any more.

        """
        try:
            value = await self.ref
        except Exception as exc:
            raise _translated(exc, "fetch") from exc
        self.stats.fetched += 1
        self.stats.fetched_bytes += self.size
        return value


class _Unheld:
    """The executor as a call cache sees it: every output comes back here, whole."""

    def __init__(self, executor: RayExecutor) -> None:
        self._executor = executor

    async def call(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (the tool's own: see Tool.call)
    ) -> Any:
        return await self._executor._call(tool, arguments, times, timeout, None)


_RELOAD = object()
"""The workers could not load the function by reference: call again, by value."""
_RESEND = object()
"""The worker had not loaded the function: call again, sending it."""


_CONNECT_S = 5.0
"""Seconds to wait for a head node's port to answer before `ray.init` (which waits minutes)."""


def _check_reachable(address: str) -> None:
    """Fail fast when nothing listens at a `HOST:PORT` or `ray://HOST:PORT` address.

    Raises:
        ConfigError: for an address with no port number.
        ExecutorLost: if nothing answers there within `_CONNECT_S`.

    """
    where = _host_port(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=_CONNECT_S):
            pass
    except OSError as exc:
        raise ExecutorLost(
            f"Ray cluster {address}", f"cannot connect: nothing answers there ({exc})"
        ) from exc


def _host_port(address: str) -> tuple[str, int] | None:
    """The head node's host and port in an address; None for `auto` and `local`.

    Raises:
        ConfigError: for an address of another form.

    """
    if address in ("auto", "local"):
        return None
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit() or not host or int(port) > 65535:
        raise ConfigError(
            f"Ray address {address!r}: write auto, local, ray://HOST:PORT or HOST:PORT"
        )
    return host.strip("[]"), int(port)


def _alive_nodes() -> list[str]:
    """The ids of the cluster's live nodes, in a stable order."""
    import ray

    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def _cancel(ref: Any, *, force: bool) -> None:
    import ray

    try:
        ray.cancel(ref, force=force)
    except Exception:  # noqa: S110  (finished or gone already: nothing left to stop)
        pass


def _check_feasible(options: Mapping[str, Any]) -> None:
    """Refuse at once a call that no node could ever take (Ray would wait for one forever).

    Raises:
        UserError: naming the resource that the cluster does not have enough of.

    """
    import ray

    wanted = dict(options.get("resources") or {})
    for name, ray_name in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
        if options.get(name):
            wanted[ray_name] = options[name]
    if not wanted:
        return
    best: dict[str, float] = {}
    for node in ray.nodes():
        if node.get("Alive"):
            for name, amount in node.get("Resources", {}).items():
                best[name] = max(best.get(name, 0.0), amount)
    for name, amount in wanted.items():
        if best.get(name, 0.0) < amount:
            raise UserError(
                f"no node of the Ray cluster has {amount:g} of resource {name!r} "
                f"(the most one node has: {best.get(name, 0.0):g})"
            )


def _translated(exc: Exception, tool: str) -> BaseException:
    """Ray's exception as taskloom's: a dead worker interrupts a call, a lost cluster the run."""
    import ray.exceptions as rx

    if isinstance(exc, rx.NodeDiedError):
        return CallInterrupted(tool, "the Ray node running it died")
    if isinstance(exc, rx.WorkerCrashedError):
        return CallInterrupted(tool, "the Ray worker process running it died")
    if isinstance(exc, rx.RayActorError):
        return CallInterrupted(tool, "the Ray actor running it died (with its node, or killed)")
    if isinstance(exc, rx.OutOfMemoryError):
        return CallInterrupted(tool, "Ray's memory monitor killed the worker running it")
    if isinstance(exc, rx.ObjectLostError):
        return CallInterrupted(tool, "its result was lost with the Ray node that held it")
    if isinstance(exc, rx.RayTaskError):
        cause = exc.cause if isinstance(exc.cause, BaseException) else None
        return cause or exc
    if isinstance(exc, rx.LocalRayletDiedError | rx.RaySystemError | rx.RpcError | ConnectionError):
        return ExecutorLost("the Ray cluster", f"{type(exc).__name__}: {clip(str(exc), 300)}")
    return exc
