"""A pids cgroup (v1) per isolated worker, where the machine offers one.

RLIMIT_NPROC counts every process of a user and is not enforced for root; a
pids cgroup counts the worker's own processes and threads, root's included.
Each worker's cgroup is `taskloom/<owner pid>-<n>` under the pids hierarchy;
those of owners that died are emptied and removed when the next pool starts.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from pathlib import Path

__all__ = ["Cgroup"]

ROOT = Path("/sys/fs/cgroup/pids")
_BASE = ROOT / "taskloom"
_numbers = itertools.count(1)
_usable: bool | None = None
"""Whether making cgroups works here; None until first tried."""


class Cgroup:
    """One worker's pids cgroup."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.limit: int | None = None
        """The pids.max written last."""
        self.hits = 0
        """pids.events' count of forks refused, as last read."""

    @classmethod
    def make(cls) -> Cgroup | None:
        """A new cgroup, or None where pids cgroups cannot be made (not root, not mounted)."""
        global _usable
        if _usable is False:
            return None
        try:
            if _usable is None:
                _BASE.mkdir(exist_ok=True)
                _remove_orphans()
            path = _BASE / f"{os.getpid()}-{next(_numbers)}"
            path.mkdir()
        except OSError:
            _usable = False
            return None
        _usable = True
        return cls(path)

    def set_limit(self, pids: int) -> None:
        """Allow at most `pids` processes and threads in the cgroup (0: no new ones)."""
        if pids != self.limit:
            (self.path / "pids.max").write_text(str(pids))
            self.limit = pids

    def add(self, pid: int) -> None:
        """Move a process into the cgroup (its children follow it there)."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def refused_since_last(self) -> bool:
        """Whether a fork was refused for the limit since this was last asked."""
        try:
            text = (self.path / "pids.events").read_text()
        except OSError:
            return False
        hits = int(text.split()[1])
        refused, self.hits = hits > self.hits, hits
        return refused

    def processes(self) -> list[int]:
        """The processes in the cgroup now."""
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill(self, keep: int | None = None) -> None:
        """Stop new forks and SIGKILL every process in the cgroup but `keep`."""
        with contextlib.suppress(OSError):
            self.set_limit(0)
        for pid in self.processes():
            if pid != keep:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """Remove the cgroup once it is empty; whether it is gone."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True


def _remove_orphans() -> None:
    """Empty and remove the cgroups of taskloom processes that have died."""
    for path in _BASE.iterdir():
        owner = path.name.partition("-")[0]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        orphan = Cgroup(path)
        orphan.kill()
        orphan.remove()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
