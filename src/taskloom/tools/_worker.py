"""The worker processes of isolated tools (run as a script: it imports only the stdlib).

Each worker is two processes. The keeper starts first: it dies with the
taskloom process (PR_SET_PDEATHSIG), is a child subreaper, forks the worker
proper and then only reaps; when the worker dies it reports the wait status on
its own pipe and kills what is left of the worker's process group. The worker
proper, in a process group of its own, reads calls from its request pipe, runs
each under the call's limits, and writes the result. Processes that a call
leaves behind are killed after it; a keeper reaps them, so none stays a zombie.

Frames on every pipe are a 4-byte big-endian length and a pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import importlib.util
import io
import math
import os
import pickle
import resource
import selectors
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEADER = struct.Struct("!I")
"""A frame's length, before its pickle."""
ENV = "TASKLOOM_WORKER"
"""The environment variable that hands a worker its pipes and parent: `req,reply,status,pid`."""
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_MIB = 1024 * 1024
_LIMITED = (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC)
"""The limits a call sets on its worker, and the worker puts back after it."""
_STDERR_TAIL = 2000
"""Characters of a failed command's stderr kept for its error."""


def send(fd: int, message: object) -> None:
    """Write one frame (blocking)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    write_all(fd, HEADER.pack(len(data)) + data)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to a blocking fd."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def receive(fd: int) -> Any:
    """Read one frame (blocking); None at the end of the pipe."""
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    body = _read_exactly(fd, HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _die_with(parent: int) -> None:
    """Be killed when `parent` dies; exit now if it already has (the race before prctl)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


def main() -> None:
    """Run the keeper; whatever goes wrong ends it quietly (taskloom reports the worker's end)."""
    try:
        _keep()
    except BaseException:  # a fork refused as the pool closes, a pipe closed at exit
        os._exit(1)


def _keep() -> None:
    """The keeper: fork the worker, then reap until every descendant is gone."""
    request, reply, status, parent = (int(part) for part in os.environ.pop(ENV).split(","))
    _die_with(parent)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    init = receive(request)  # sent once the keeper is in its cgroup: the worker forks after
    if init is None:
        os._exit(0)
    keeper = os.getpid()
    worker = os.fork()
    if worker == 0:
        os.close(status)
        os.setpgid(0, 0)
        _die_with(keeper)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # what a call leaves behind comes back to it
        try:
            Worker(request, reply, init).serve()
        except OSError:  # taskloom closed the pipes (it exited): nobody waits for an answer
            os._exit(0)
        os._exit(0)
    os.close(request)
    os.close(reply)
    _reap(worker, status)
    os._exit(0)


def _reap(worker: int, status: int) -> None:
    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            return
        if pid == worker:
            with contextlib.suppress(OSError):  # the taskloom process may be gone
                send(status, ("exited", wait_status))
            with contextlib.suppress(OSError):
                os.killpg(worker, signal.SIGKILL)


class Worker:
    """The worker proper: calls in, results out, one at a time."""

    def __init__(self, request: int, reply: int, init: dict[str, Any]) -> None:
        self.request = request
        self.reply = reply
        self.pid = os.getpid()
        self.functions: dict[tuple[str, str, str | None], Callable[..., Any]] = {}
        self.cgroup: bool = init["cgroup"]
        self.users_processes = 0 if self.cgroup else _count_processes(os.getuid())
        sys.path[:] = init["path"]
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash writes no core file
        self.initial = {which: resource.getrlimit(which) for which in _LIMITED}
        for module, file in init["preload"]:
            with contextlib.suppress(BaseException):  # the first call says what is wrong
                _load_module(module, file)

    def serve(self) -> None:
        """Answer calls until the request pipe ends."""
        send(self.reply, ("ready", self.pid))
        while True:
            message = receive(self.request)
            if message is None:
                return
            if message[0] == "load":
                send(self.reply, ("loaded", _loading_error(message[1], message[2])))
                continue
            _, target, arguments, limits = message
            answer = self.answer(target, arguments, limits)
            try:
                data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # a result of a class only the call knew, say
                data = pickle.dumps(("unreadable", f"{type(exc).__name__}: {exc}"))
            if len(data) > limits["max_output_bytes"]:
                data = pickle.dumps(("too_large", len(data)))
            write_all(self.reply, HEADER.pack(len(data)) + data)

    def answer(
        self, target: tuple[Any, ...], arguments: dict[str, Any], limits: dict[str, Any]
    ) -> Any:
        """Run one call; what it gave, or why it gave nothing, as a tuple."""
        kind = target[0]
        try:
            if kind == "command":
                return self.command(target[1], target[2], arguments, limits)
            fn = run_python if kind == "python" else self.function(*target[1:])
        except Exception as exc:
            return ("unusable", f"{type(exc).__name__}: {exc}")
        started = time.monotonic()
        self.limit_self(limits)
        try:
            result = fn(**arguments)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
        except MemoryError:
            return ("limit", "max_memory_mb", "a MemoryError: the address space limit was reached")
        except BlockingIOError as exc:  # EAGAIN from fork: the processes limit
            return ("raised", _pickled(exc), type(exc).__name__, str(exc), "fork")
        except BaseException as exc:
            return ("raised", _pickled(exc), type(exc).__name__, str(exc), None)
        finally:
            if os.getpid() != self.pid:
                os._exit(0)  # a process the tool forked returned out of it: it ends here
            self.unlimit_self()
            self.end_descendants()
        return ("ok", result, started, time.monotonic())

    def function(self, module: str, qualname: str, file: str | None) -> Callable[..., Any]:
        """The function a target names, imported once per worker."""
        key = (module, qualname, file)
        found = self.functions.get(key)
        if found is None:
            value: Any = _load_module(module, file)
            for part in qualname.split("."):
                if not hasattr(value, part):
                    raise LookupError(f"{module} has no attribute {qualname} in the worker")
                value = getattr(value, part)
            tool_class = getattr(sys.modules.get("taskloom.tools._tool"), "Tool", None)
            if tool_class is not None and isinstance(value, tool_class):
                value = value.fn  # the module attribute is the Tool the decorator made
            found = self.functions[key] = value
        return found

    def limit_self(self, limits: dict[str, Any]) -> None:
        """Apply a call's limits to this process: its additions, from what it uses now."""
        memory, cpu = limits["max_memory_mb"], limits["max_cpu_s"]
        if memory is not None:
            _lower(resource.RLIMIT_AS, _address_space() + int(memory * _MIB))
        if cpu is not None:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            _lower(resource.RLIMIT_CPU, math.ceil(usage.ru_utime + usage.ru_stime + cpu))
        if not self.cgroup:
            _lower(resource.RLIMIT_NPROC, self.users_processes + limits["max_processes"])

    def unlimit_self(self) -> None:
        """Put back the limits the worker started with."""
        for which, limits in self.initial.items():
            resource.setrlimit(which, limits)

    def end_descendants(self) -> None:
        """Kill and reap what a call left running (orphans come back here: a subreaper)."""
        while pids := [
            pid for task in Path("/proc/self/task").iterdir() for pid in _children(task)
        ]:
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            for pid in pids:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(pid), 0)

    def command(
        self,
        argv: list[str],
        options: dict[str, Any],
        arguments: dict[str, Any],
        limits: dict[str, Any],
    ) -> Any:
        """Run a command line under the call's limits; its stdout, or why not."""
        line = [part.format(**arguments) for part in argv]
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                line,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=options.get("cwd"),
                env=options.get("env"),
                preexec_fn=lambda: _limit_command(limits, self.cgroup, self.users_processes),  # noqa: PLW0108
            )
        except OSError as exc:
            return ("raised", _pickled(exc), type(exc).__name__, str(exc), None)
        try:
            out, err, too_large = _read_bounded(process, limits["max_output_bytes"])
            if too_large is not None:
                process.kill()
                return ("too_large", too_large)
            status = process.wait()
        finally:
            self.end_descendants()
        if status == -signal.SIGXCPU and limits["max_cpu_s"] is not None:
            return ("limit", "max_cpu_s", "the command was killed by SIGXCPU")
        if status != 0:
            return ("command_failed", status, err.decode(errors="replace"))
        return ("ok", out.decode(errors="replace"), started, time.monotonic())


def _children(task: Path) -> list[str]:
    """The pids of a thread's children (a thread that ended has none)."""
    try:
        return (task / "children").read_text().split()
    except OSError:
        return []


def _lower(which: int, soft: int) -> None:
    hard = resource.getrlimit(which)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def _limit_command(limits: dict[str, Any], cgroup: bool, users_processes: int) -> None:
    """In a command's child, before exec: its own limits, counted from zero."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if limits["max_memory_mb"] is not None:
        _lower(resource.RLIMIT_AS, int(limits["max_memory_mb"] * _MIB))
    if limits["max_cpu_s"] is not None:
        _lower(resource.RLIMIT_CPU, math.ceil(limits["max_cpu_s"]))
    if not cgroup:
        _lower(resource.RLIMIT_NPROC, users_processes + limits["max_processes"])


def _read_bounded(process: subprocess.Popen[bytes], limit: int) -> tuple[bytes, bytes, int | None]:
    """A command's stdout (at most `limit` bytes) and the tail of its stderr.

    Returns:
        (stdout, stderr's tail, None), or (..., the bytes read so far) once
        stdout passed `limit`: the rest is never read.

    """
    assert process.stdout is not None and process.stderr is not None
    out, err = bytearray(), bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, out)
        selector.register(process.stderr, selectors.EVENT_READ, err)
        while selector.get_map():
            for key, _ in selector.select():
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if key.data is err and len(err) > _STDERR_TAIL * 2:
                    del err[: len(err) - _STDERR_TAIL]
                if len(out) > limit:
                    return bytes(out), bytes(err), len(out)
    return bytes(out), bytes(err[-_STDERR_TAIL:]), None


def run_python(code: str) -> Any:
    """Run Python source: the value of its last expression, else what it printed."""
    import ast

    tree = ast.parse(code, "<python tool>")
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
    else:
        last = None
    namespace: dict[str, Any] = {"__name__": "__python_tool__"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(tree, "<python tool>", "exec"), namespace)  # noqa: S102  (the tool's purpose)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<python tool>", "eval"), namespace)  # noqa: S307
            if value is not None:
                return value
    return printed.getvalue()


def _pickled(exc: BaseException) -> bytes | None:
    """The exception as a pickle the parent can read back, or None if it has none."""
    try:
        data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)
    except Exception:
        return None
    return data


def _address_space() -> int:
    """Bytes of address space this process has mapped now."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _count_processes(uid: int) -> int:
    """How many processes `uid` runs: RLIMIT_NPROC counts them all, not this worker's."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += 1
    return count


def _loading_error(module: str, file: str | None) -> str | None:
    """Import a module ahead of calls; None, or what went wrong."""
    try:
        _load_module(module, file)
    except BaseException as exc:  # SystemExit at import too: the call reports it
        return f"{type(exc).__name__}: {exc}"
    return None


def _load_module(module: str, file: str | None) -> Any:
    """A module by name, or from its file when the name leads elsewhere (a --tools file)."""
    loaded = sys.modules.get(module)
    if loaded is not None and _same_file(getattr(loaded, "__file__", None), file):
        return loaded
    if file is None or _same_file(_origin(module), file):
        return importlib.import_module(module)
    spec = importlib.util.spec_from_file_location(module, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    made = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(module, made)
    spec.loader.exec_module(made)
    return made


def _origin(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return None if spec is None else spec.origin


def _same_file(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return b is None
    return Path(a).resolve() == Path(b).resolve()


if __name__ == "__main__":
    main()
