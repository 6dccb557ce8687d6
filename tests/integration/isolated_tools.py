"""Isolated tools for the process-tool tests: a worker process imports this module by name."""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from pathlib import Path

import taskloom


@taskloom.tool(isolated=True)
def worker_pid() -> int:
    """The pid of the process the call runs in."""
    return os.getpid()


@taskloom.tool(isolated=True)
def square(x: int) -> int:
    """x squared."""
    return x * x


@taskloom.tool(isolated=True)
async def async_square(x: int) -> int:
    """x squared, by a coroutine function (run in the worker's own event loop)."""
    return x * x


@taskloom.tool(isolated=True)
def segfault() -> int:
    """Read address 0."""
    return len(ctypes.string_at(0))


@taskloom.tool(isolated=True)
def hard_exit(code: int) -> int:
    """Leave the worker without cleanup."""
    os._exit(code)


@taskloom.tool(isolated=True, max_memory_mb=64)
def hog(mb: int) -> int:
    """Allocate `mb` megabytes."""
    return len(bytearray(mb * 1024 * 1024))


@taskloom.tool(isolated=True, max_cpu_s=1)
def spin() -> int:
    """Burn CPU forever."""
    n = 0
    while True:
        n += 1


@taskloom.tool(isolated=True)
def sleep_with_child(pid_file: str, seconds: float) -> int:
    """Start a child process, write both pids, and sleep."""
    child = subprocess.Popen(["sleep", "600"])
    Path(pid_file).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(seconds)
    return 0


@taskloom.tool(isolated=True, max_processes=4)
def fork_bomb(pid_file: str) -> int:
    """Fork without end: each child forks too."""
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)  # refused by the limit: keep trying, gently


@taskloom.tool(isolated=True, max_output_bytes=100_000)
def big_text(size: int) -> str:
    """A text of `size` characters."""
    return "x" * size


class Unpicklable(Exception):
    """An exception that cannot cross a pipe: its argument is a lock."""


@taskloom.tool(isolated=True)
def fails(kind: str) -> int:
    """Raise a ValueError, or an exception that cannot be pickled."""
    if kind == "value":
        raise ValueError("a bad value")
    import threading

    raise Unpicklable(threading.Lock())
