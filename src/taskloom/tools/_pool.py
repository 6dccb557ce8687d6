"""The warm pool of worker processes that isolated tools run in, and one call through it.

The pool belongs to the process, not to an event loop: workers are plain
processes with pipes, and a call waits for its reply with the running loop's
`add_reader`, so the loop never blocks and any loop may use any worker.
Workers are started on one long-lived thread (PR_SET_PDEATHSIG fires when
the *thread* that forked a child ends), at most `max_workers` run calls at
once, and idle ones are reused: a call costs a pickle each way and two pipe
writes. See `_worker.py` for the other side.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import os
import pickle
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from taskloom.errors import (
    CallTimedOut,
    CommandFailed,
    LimitExceeded,
    OutputTooLarge,
    ProcessToolError,
    ToolDefinitionError,
    WorkerCrashed,
    signal_name,
)
from taskloom.tools import _worker
from taskloom.tools._cgroup import Cgroup
from taskloom.tools._limits import ProcessLimits, function_target

if TYPE_CHECKING:
    from taskloom.tools._tool import CallTimes, Tool

__all__ = ["POOL", "WorkerPool", "call_isolated"]

T = TypeVar("T")

_BOOT = (
    "import importlib.util as u; s = u.spec_from_file_location('taskloom_worker', {path!r}); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m.main()"
)
"""How a worker starts: its module by file, so it imports no taskloom (and no pydantic)."""
_FRAME_SLACK = 64 * 1024
"""Bytes a reply frame may hold beyond the output limit (the pickle's own framing)."""
_READY_S = 120.0
"""How long a worker started in the background may take to import its modules."""
_GRACE_S = 1.0
"""How long a worker asked to exit gets before it and its processes are killed."""
_REAP_S = 5.0
"""How long a retired worker's keeper gets to exit before it is killed."""


class _Worker:
    """The parent's handle on one worker: its keeper process, pipes and cgroup."""

    def __init__(
        self, keeper: subprocess.Popen[bytes], request: int, reply: int, status: int
    ) -> None:
        self.keeper = keeper
        self.request = request
        self.reply = reply
        self.status = status
        self.pid: int | None = None
        """The worker proper's pid, which is also its process group's id."""
        self.cgroup: Cgroup | None = None
        self.loaded: set[tuple[str, str | None]] = set()
        """Modules (name, file) the worker has imported."""
        self.buffer = bytearray()
        self.reply_open = True
        self.retired = False
        """Handed to a reaper, which closes its pipes once it is gone."""
        self.sources: list[tuple[str, str | None]] = []
        """The modules it was started to import before its first call."""

    def died(self) -> bool:
        """Whether the worker has died while idle (its keeper reported it)."""
        try:
            os.read(self.status, 1)
        except BlockingIOError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the worker's process group and every other process of its cgroup."""
        if self.cgroup is not None:
            self.cgroup.kill(keep=self.keeper.pid)
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)

    async def send(self, message: object) -> None:
        """Write one frame to the worker without blocking the loop."""
        await self.send_frame(frame_of(message))

    async def send_frame(self, frame: bytes) -> None:
        """Write a frame made by `frame_of` without blocking the loop."""
        view = memoryview(frame)
        while view:
            try:
                view = view[os.write(self.request, view) :]
            except BlockingIOError:
                await _ready(self.request, write=True)

    async def receive(self, limit: int) -> tuple[Any, ...]:
        """The next frame from the worker, or ("exited", status) if it died first.

        Raises:
            OutputTooLarge: the frame is larger than `limit` (and slack): it is not read.

        """
        while True:
            frame = self._frame(limit)
            if frame is not None:
                return frame
            if self.reply_open:
                try:
                    chunk: bytes | None = os.read(self.reply, 1 << 20)
                except BlockingIOError:
                    chunk = None
                if chunk:
                    self.buffer += chunk
                    continue
                if chunk == b"":
                    self.reply_open = False  # the worker is gone: its keeper says how
            try:
                status = _worker.receive(self.status)  # one small frame, written at once
            except BlockingIOError:
                await (_ready(self.reply, self.status) if self.reply_open else _ready(self.status))
                continue
            return ("exited", None if status is None else status[1])

    def _frame(self, limit: int) -> tuple[Any, ...] | None:
        header = _worker.HEADER.size
        if len(self.buffer) < header:
            return None
        size = _worker.HEADER.unpack_from(self.buffer)[0]
        if size > limit + _FRAME_SLACK:
            raise OutputTooLarge("", size, limit)
        if len(self.buffer) < header + size:
            return None
        body = bytes(self.buffer[header : header + size])
        del self.buffer[: header + size]
        try:
            frame: tuple[Any, ...] = pickle.loads(body)
        except Exception as exc:  # a result of a class this process cannot import, say
            return ("unreadable", f"{type(exc).__name__}: {exc}")
        return frame

    def close_requests(self) -> None:
        """Close the request pipe (once: a second close could close another worker's)."""
        if self.request >= 0:
            os.close(self.request)
            self.request = -1

    def close_pipes(self) -> None:
        """Close every pipe of a worker that has been reaped."""
        self.close_requests()
        os.close(self.reply)
        os.close(self.status)


def frame_of(message: object) -> bytes:
    """A message as one frame: its pickle's length, then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _worker.HEADER.pack(len(data)) + data


async def _ready(*fds: int, write: bool = False) -> None:
    """Wait until one of `fds` can be read (or written), with the running loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    for fd in fds:
        (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await future
    finally:
        for fd in fds:
            (loop.remove_writer if write else loop.remove_reader)(fd)


class _Spawner:
    """The one thread that starts every worker, alive as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked a child ends. A
    thread pool's threads are joined at interpreter shutdown, before `atexit`
    runs, which would kill every worker before the pool could end them in
    order; a daemon thread is never joined.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Any, tuple[Any, ...]]]
        self._jobs = queue.SimpleQueue()
        threading.Thread(target=self._run, name="taskloom-spawner", daemon=True).start()

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run `fn(*args)` on the spawner thread; its outcome comes back in the future."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever waits for the worker
                future.set_exception(exc)
            del future, fn, args


class WorkerPool:
    """Worker processes shared by every event loop of the process."""

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or os.cpu_count() or 2
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._busy = 0
        self._starting: set[_Worker] = set()
        """Replacements started in the background that are not ready yet."""
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sources: list[tuple[str, str | None]] = []
        self._spawner: _Spawner | None = None
        self._shut = False
        """The process is exiting: no worker is started any more."""
        self._reapers: list[threading.Thread] = []

    # -- slots and workers ------------------------------------------------------

    async def acquire(self) -> _Worker:
        """A ready worker for one call; waits while `max_workers` are busy.

        Raises:
            ProcessToolError: a new worker could not be started.

        """
        with self._lock:
            waiter = None
            if self._busy >= self.max_workers or self._waiters:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
            else:
                self._busy += 1
        if waiter is not None:
            try:
                await waiter  # the slot was handed over by `release`
            except BaseException:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                    elif not waiter.cancelled():
                        self._give_back()
                raise
        try:
            while True:
                with self._lock:
                    worker = self._idle.pop() if self._idle else None
                if worker is None:
                    return await self._start()
                if not worker.died():
                    return worker
                self.retire(worker, kill=True)
        except BaseException:
            with self._lock:
                self._give_back()
            raise

    def release(self, worker: _Worker) -> None:
        """A worker is done with its call and can take the next."""
        with self._lock:
            surplus = len(self._all) > self.max_workers  # a replacement came up meanwhile
            if not surplus:
                self._idle.append(worker)
            self._give_back()
        if surplus:
            self.retire(worker, kill=False)

    def retire(self, worker: _Worker, *, kill: bool) -> None:
        """End a worker: killed at once (`kill`), or asked to exit; reaped on a thread."""
        with self._lock:
            if worker.retired:
                return  # its reaper closes its pipes: only once
            worker.retired = True
            self._starting.discard(worker)
        if kill:
            worker.kill()
        worker.close_requests()  # the worker reads the end of its requests and exits
        reaper = threading.Thread(target=_reap, args=(worker,), daemon=True)
        reaper.start()
        with self._lock:
            self._all.discard(worker)
            self._reapers = [t for t in self._reapers if t.is_alive()] + [reaper]

    def done_with(self, worker: _Worker, *, kill: bool) -> None:
        """Retire a worker that held a slot, give the slot back, and start its replacement."""
        self.retire(worker, kill=kill)
        with self._lock:
            self._give_back()
        self._replace()

    def _replace(self) -> None:
        """Start a worker in the background, so the next call finds one warm."""
        with self._lock:
            if self._spawner is None or len(self._all) >= self.max_workers:
                return
            spawner, sources = self._spawner, list(self._sources)
        spawner.submit(self._spawn, sources).add_done_callback(self._when_spawned)

    def _when_spawned(self, spawned: concurrent.futures.Future[_Worker]) -> None:
        if spawned.cancelled() or spawned.exception() is not None:
            return  # the next call starts one itself, and says what fails
        worker = spawned.result()
        if self._shut:
            self.retire(worker, kill=True)
            return
        with self._lock:
            self._starting.add(worker)
        # Its imports take a while: not on the spawner thread, which starts the others.
        threading.Thread(target=self._when_ready, args=(worker,), daemon=True).start()

    def _when_ready(self, worker: _Worker) -> None:
        """Wait (on a thread of its own) for a background worker's `ready`, then idle it."""
        ready = False
        with contextlib.suppress(OSError, EOFError, pickle.UnpicklingError):
            readable, _, _ = select.select([worker.reply, worker.status], [], [], _READY_S)
            if worker.reply in readable:
                os.set_blocking(worker.reply, True)
                try:
                    frame = _worker.receive(worker.reply)
                finally:
                    os.set_blocking(worker.reply, False)
                if frame is not None and frame[0] == "ready":
                    worker.pid = frame[1]
                    ready = True
        if not ready:
            self.retire(worker, kill=True)
            return
        worker.loaded.update(worker.sources)
        with self._lock:
            self._starting.discard(worker)
            if not worker.retired:
                self._idle.insert(0, worker)  # the warm ones, last used, are taken first

    def _give_back(self) -> None:
        """Hand a slot to the first waiter still waiting, or free it (lock held)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_wake, waiter, self)
                return
        self._busy -= 1

    def remember(self, module: str, file: str | None) -> None:
        """A module calls come from: new workers import it before their first call."""
        with self._lock:
            if (module, file) not in self._sources:
                self._sources.append((module, file))

    async def _start(self) -> _Worker:
        with self._lock:
            if self._spawner is None:
                self._spawner = _Spawner()
            spawner, sources = self._spawner, list(self._sources)
        spawned = spawner.submit(self._spawn, sources)
        try:
            worker = await asyncio.wrap_future(spawned)
        except OSError as exc:
            raise ProcessToolError("", f"cannot start a worker process: {exc}") from exc
        except BaseException:
            # Cancelled while it started: the worker must not live on unowned.
            spawned.add_done_callback(self._retire_spawned)
            raise
        try:
            frame = await worker.receive(1 << 16)
        except BaseException:
            self.retire(worker, kill=True)
            raise
        if frame[0] != "ready":
            self.retire(worker, kill=True)
            raise ProcessToolError("", f"a worker process failed to start ({frame[0]})")
        worker.pid = frame[1]
        worker.loaded.update(worker.sources)
        return worker

    def _spawn(self, sources: list[tuple[str, str | None]]) -> _Worker:
        if self._shut:
            raise ProcessToolError("", "the process is exiting: no new worker is started")
        worker = _spawn(sources)
        with self._lock:
            self._all.add(worker)  # from here `close` ends it, whoever holds it
        return worker

    def _retire_spawned(self, spawned: concurrent.futures.Future[_Worker]) -> None:
        if not spawned.cancelled() and spawned.exception() is None:
            self.retire(spawned.result(), kill=True)

    def close(self) -> None:
        """End every worker, and wait briefly for the idle ones to be reaped.

        A worker in a call is killed; the call fails (`WorkerCrashed`) and
        retires it itself: its pipes are the call's until then.
        """
        with self._lock:
            idle, self._idle = self._idle, []
            idle += self._starting  # started in the background, not in a call either
            self._starting = set()
            busy = self._all.difference(idle)
        for worker in idle:
            self.retire(worker, kill=True)
        for worker in busy:
            worker.kill()
        with self._lock:
            reapers, self._reapers = self._reapers, []
        for reaper in reapers:
            reaper.join(_REAP_S + 1)

    def shutdown(self) -> None:
        """At exit: start no more workers, let those being started finish, end them all."""
        self._shut = True
        if self._spawner is not None:
            # The spawner runs jobs in order: once this one ran, every earlier start is done.
            with contextlib.suppress(concurrent.futures.TimeoutError):
                self._spawner.submit(_nothing).result(timeout=_REAP_S)
        self.close()

    def forget(self) -> None:
        """After a fork: the parent's workers and threads are not the child's."""
        self._lock = threading.Lock()
        self._idle, self._all, self._busy, self._starting = [], set(), 0, set()
        self._waiters = collections.deque()
        self._spawner, self._reapers = None, []


def _nothing() -> None:
    """A job for the spawner that only marks its place in the queue."""


def _wake(waiter: asyncio.Future[None], pool: WorkerPool) -> None:
    if not waiter.done():
        waiter.set_result(None)
    else:  # cancelled after the slot was handed to it: pass the slot on
        with pool._lock:
            pool._give_back()


def _spawn(sources: list[tuple[str, str | None]]) -> _Worker:
    """Start a keeper (on the spawner thread); it forks the worker once it has its init."""
    request_read, request = os.pipe()
    reply, reply_write = os.pipe()
    status, status_write = os.pipe()
    child_ends = (request_read, reply_write, status_write)
    environment = dict(os.environ)
    environment[_worker.ENV] = ",".join(map(str, (*child_ends, os.getpid())))
    try:
        keeper = subprocess.Popen(
            [sys.executable, "-c", _BOOT.format(path=str(Path(_worker.__file__).resolve()))],
            stdin=subprocess.DEVNULL,
            stdout=2,  # what a tool prints goes to stderr, never into taskloom's output
            env=environment,
            pass_fds=child_ends,
            start_new_session=True,
        )
    finally:
        for fd in child_ends:
            os.close(fd)
    worker = _Worker(keeper, request, reply, status)
    worker.sources = list(sources)
    for fd in (request, reply, status):
        os.set_blocking(fd, False)
    worker.cgroup = Cgroup.make()
    if worker.cgroup is not None:
        try:
            worker.cgroup.add(keeper.pid)
        except OSError:
            worker.cgroup.remove()
            worker.cgroup = None
    init = {"path": list(sys.path), "preload": sources, "cgroup": worker.cgroup is not None}
    os.set_blocking(request, True)
    try:
        _worker.send(request, init)
    finally:
        os.set_blocking(request, False)
    return worker


def _reap(worker: _Worker) -> None:
    """Wait for a retired worker's keeper, killing stragglers in its cgroup; then tidy up."""
    began = time.monotonic()
    while True:
        try:
            worker.keeper.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            waited = time.monotonic() - began
            if waited > _GRACE_S:  # asked to exit and still there, or something escaped its group
                worker.kill()
            if waited > _REAP_S:
                with contextlib.suppress(OSError):
                    worker.keeper.kill()
    worker.close_pipes()
    if worker.cgroup is not None:
        for _ in range(100):  # emptied as soon as the last process is reaped
            if worker.cgroup.remove():
                break
            worker.cgroup.kill()
            time.sleep(0.01)


POOL = WorkerPool()
"""The process's pool."""
os.register_at_fork(after_in_child=POOL.forget)
atexit.register(POOL.shutdown)


# -- one call ---------------------------------------------------------------------


def target_of(tool: Tool) -> tuple[Any, ...]:
    """What the worker runs for `tool`: a function by name, a command, or Python code."""
    made = getattr(tool.fn, "isolated_target", None)
    if made is not None:
        target: tuple[Any, ...] = made
        return target
    return ("function", *function_target(tool.fn, tool.name))


async def call_isolated(
    tool: Tool,
    limits: ProcessLimits,
    arguments: Mapping[str, Any],
    *,
    times: CallTimes | None,
    timeout: float | None,  # noqa: ASYNC109  (counted once the call has a worker)
    pool: WorkerPool = POOL,
) -> Any:
    """Run one call of an isolated tool in a worker of `pool`.

    Returns:
        What the function returned (a command tool: its stdout).

    Raises:
        CallTimedOut: the call ran past `timeout`; the worker's group was killed.
        WorkerCrashed: the worker died in the call (a signal, os._exit).
        LimitExceeded: the call passed a memory, CPU or processes limit.
        OutputTooLarge: the output passed `max_output_bytes`.
        CommandFailed: a command tool's command exited with a non-zero status.
        ToolDefinitionError: the worker cannot import the function.
        BaseException: what the function raised, when it can be pickled back.

    """
    target = target_of(tool)
    if target[0] == "function":
        pool.remember(target[1], target[3])
    try:
        # Made before a worker is taken: arguments that cannot be pickled cost no worker.
        request = frame_of(("call", target, dict(arguments), _limits_message(limits)))
    except Exception as exc:
        raise ProcessToolError(
            tool.name, f"the arguments of {tool.name} cannot be sent to a worker process: {exc}"
        ) from exc
    try:
        worker = await pool.acquire()
    except ProcessToolError as exc:
        raise ProcessToolError(tool.name, f"{tool.name}: {exc}") from exc
    settled = False
    try:
        if target[0] == "function" and (target[1], target[3]) not in worker.loaded:
            await _load(worker, tool, target[1], target[3])
        if worker.cgroup is not None:
            worker.cgroup.set_limit(2 + limits.max_processes)  # the keeper and the worker
        ours = times is not None and times.started_at is None
        if times is not None and ours:
            times.started_at = time.monotonic()  # replaced by the worker's own, if it answers
        recorder = _Recorder(times, start=ours)
        try:
            await worker.send_frame(request)
        except BrokenPipeError:
            pass  # the worker died before it read the call: its keeper says how, below
        if timeout is None:
            frame = await worker.receive(limits.max_output_bytes)
        else:
            frame = None
            with anyio.move_on_after(timeout):
                frame = await worker.receive(limits.max_output_bytes)
            if frame is None:
                refused = worker.cgroup is not None and worker.cgroup.refused_since_last()
                pool.done_with(worker, kill=True)
                settled = True
                if refused:
                    how = f"and did not end within {timeout:g}s"
                    raise _processes_limit(tool.name, limits, how)
                raise CallTimedOut(tool.name, timeout)
        settled = True
        assert frame is not None
        return _settle(pool, worker, tool, limits, frame, recorder, python=target[0] == "python")
    except OutputTooLarge as exc:
        if not settled:
            settled = True
            pool.done_with(worker, kill=True)
        raise OutputTooLarge(tool.name, exc.size, limits.max_output_bytes) from None
    finally:
        if not settled:  # cancelled (invariant 9) or our own failure: the call ends here
            pool.done_with(worker, kill=True)


async def _load(worker: _Worker, tool: Tool, module: str, file: str | None) -> None:
    """Import a tool's module in the worker, outside the call's timeout."""
    await worker.send(("load", module, file))
    frame = await worker.receive(1 << 16)
    if frame[0] == "exited":
        raise WorkerCrashed(tool.name, **_death(frame[1]))
    if frame[1] is not None:
        raise ToolDefinitionError(f"the worker process cannot import {tool.name}: {frame[1]}")
    worker.loaded.add((module, file))


def _limits_message(limits: ProcessLimits) -> dict[str, Any]:
    return {
        "max_memory_mb": limits.max_memory_mb,
        "max_cpu_s": limits.max_cpu_s,
        "max_output_bytes": limits.max_output_bytes,
        "max_processes": limits.max_processes,
    }


def _settle(
    pool: WorkerPool,
    worker: _Worker,
    tool: Tool,
    limits: ProcessLimits,
    frame: tuple[Any, ...],
    recorder: _Recorder,
    *,
    python: bool,
) -> Any:
    """Turn a worker's reply into the call's result or error, and hand the worker back."""
    kind = frame[0]
    refused = worker.cgroup is not None and worker.cgroup.refused_since_last()
    if kind == "exited":
        pool.done_with(worker, kill=True)
        death = _death(frame[1])
        if refused:
            raise _processes_limit(tool.name, limits, _how(death))
        if death["signal_name"] is not None and death["signal_name"].startswith("SIGXCPU"):
            if limits.max_cpu_s is not None:
                raise LimitExceeded(tool.name, "max_cpu_s", limits.max_cpu_s, "killed by SIGXCPU")
        raise WorkerCrashed(tool.name, **death)
    if kind == "limit":  # a MemoryError: the worker's heap may be in any state, so retire it
        pool.done_with(worker, kill=False)
        value = getattr(limits, frame[1])
        raise LimitExceeded(tool.name, frame[1], value, frame[2])
    if python:
        pool.done_with(worker, kill=False)  # code may have changed the worker: never reused
    else:
        pool.release(worker)
    if kind == "ok":
        recorder.record(frame[2], frame[3])
        return frame[1]
    if kind == "raised":
        if refused or (frame[4] == "fork" and worker.cgroup is None):
            raise _processes_limit(tool.name, limits, f"a fork failed ({frame[3]})")
        raise _exception(frame[1], frame[2], frame[3])
    if kind == "too_large":
        raise OutputTooLarge(tool.name, frame[1], limits.max_output_bytes)
    if kind == "command_failed":
        raise CommandFailed(tool.name, frame[1], frame[2])
    if kind == "unreadable":
        raise ProcessToolError(tool.name, f"cannot read what {tool.name} returned: {frame[1]}")
    if kind == "unusable":
        raise ToolDefinitionError(f"the worker process cannot call {tool.name}: {frame[1]}")
    raise ProcessToolError(tool.name, f"the worker process of {tool.name} answered {kind!r}")


class _Recorder:
    """Writes the worker's own times of a call into the caller's `CallTimes`."""

    def __init__(self, times: CallTimes | None, *, start: bool) -> None:
        self.times = times
        self.start = start
        """Whether the start is ours to set (it was None when the call began)."""

    def record(self, started_at: float, finished_at: float) -> None:
        if self.times is not None:
            if self.start:
                self.times.started_at = started_at
            self.times.finished_at = finished_at


def _processes_limit(tool: str, limits: ProcessLimits, how: str) -> LimitExceeded:
    return LimitExceeded(tool, "max_processes", limits.max_processes, how)


def _death(status: int | None) -> dict[str, Any]:
    if status is None:
        return {"signal_name": None, "exit_code": None}
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return {"signal_name": signal_name(-code), "exit_code": None}
    return {"signal_name": None, "exit_code": code}


def _how(death: Mapping[str, Any]) -> str:
    if death["signal_name"] is not None:
        return f"its worker was killed by {death['signal_name']}"
    return f"its worker exited with status {death['exit_code']}"


def _exception(data: bytes | None, type_name: str, message: str) -> BaseException:
    """The tool's exception as raised in the worker, or a stand-in of the same name."""
    if data is not None:
        with contextlib.suppress(Exception):
            exc = pickle.loads(data)
            if isinstance(exc, BaseException):
                return exc
    stand_in: type[Exception] = type(type_name, (Exception,), {})
    return stand_in(message)
