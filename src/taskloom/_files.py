"""Writing a file so that readers and other processes see the old file or the whole new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["replace_atomically"]


def replace_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Call `write` on a temporary file next to `target`, then rename it over `target`.

    A crash, or a second process writing at the same time, never leaves a
    half-written file at `target`. The folder is created if needed.

    Raises:
        OSError: if the folder or the file cannot be written (the temporary
            file is removed).

    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
