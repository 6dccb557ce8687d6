"""Which process runs a run, told apart from a later process that got its pid.

A run's row names its owner as `host:pid`, plus the owner's *start*: the
machine's boot id and the process's start time in clock ticks since boot,
both read from `/proc` (Linux). A pid is reused once its process is gone;
the pair (boot id, start time) is not: a process with the same pid started
later, or after a reboot, has a different start.

A run whose row says `running` is reported `abandoned` when its owner is
provably gone: on this host, no process has its pid, or the one that has it
started at another time (or is a zombie). Where `/proc` is missing, only the
pid is checked. A run owned by another host, or by no recorded process (a
file from before owners were kept), stays `running`: nothing here can tell.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

__all__ = ["owner_gone", "this_owner"]

_PROC = Path("/proc")


def this_owner() -> tuple[str, str | None]:
    """This process as a run's owner: (`host:pid`, its start or None without /proc)."""
    return f"{socket.gethostname()}:{os.getpid()}", _start_of(os.getpid())


def owner_gone(owner: str | None, start: str | None) -> bool:
    """Whether the process that owns a run is provably no longer running.

    Args:
        owner: the recorded `host:pid`, or None when none was recorded.
        start: the recorded start (`boot id/ticks`), or None when unknown.

    Returns:
        True only when the owner ran on this host and is gone; False when it
        is alive or cannot be checked from here.

    """
    if owner is None:
        return False
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if start is not None and _boot_id() is not None:
        return _start_of(pid) != start
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False  # alive and someone else's; or no such pid can exist
    return False


@functools.cache
def _boot_id() -> str | None:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_of(pid: int) -> str | None:
    """`boot id/start ticks` of a live process; None if it is gone, a zombie, or unknowable."""
    boot = _boot_id()
    if boot is None:
        return None
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has stopped running
        return None
    return f"{boot}/{fields[19]}"
