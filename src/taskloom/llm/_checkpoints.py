"""Prompt checkpoints kept on disk, so that the next process starts where this one left off.

A `Session` makes a checkpoint where two recent prompts part (after a shared
system prompt and examples, typically). In memory that serves one process;
`taskloom run` is one process per question, so every run would read its
fixed prompt text afresh. This folder keeps the checkpoints, and the recent
prompts they are placed by, for the next process.

It is a cache: a file that is missing, unreadable, damaged or from another
model is ignored (and removed when it is damaged), never an error. Files are
written whole to a temporary name and renamed, so concurrent processes see
either nothing or a complete file. The folder is specific to one model file,
llama.cpp build and context size (`folder_key`), since a saved state is only
valid for those.

Needs numpy (the `local` extra), like `_sampling.py`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from taskloom._files import replace_atomically

__all__ = ["DiskCheckpoints", "folder_key"]

Tokens = npt.NDArray[np.intc]

_MAGIC = b"taskloom-kv-1\n"
_HEADER = struct.Struct("<Q32s")
"""Token count, then the sha256 of the tokens and the state together."""
_RECENT = "recent.npz"


def folder_key(*parts: object) -> str:
    """A short name for what a saved state depends on: model, llama.cpp build, context size."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


class DiskCheckpoints:
    """A folder of checkpoints (token prefix → llama.cpp sequence state) and recent prompts."""

    def __init__(self, folder: Path, *, capacity_bytes: int = 256 * 2**20) -> None:
        """Use `folder`, created on first write; keep at most `capacity_bytes` of states."""
        self.folder = folder
        self.capacity_bytes = capacity_bytes
        self._index: dict[str, int] | None = None
        """File name -> token count of the checkpoints, listed once: every request looks."""

    def recent(self) -> list[Tokens]:
        """The prompts the last process remembered, oldest first; none if unreadable."""
        try:
            with np.load(self.folder / _RECENT) as saved:
                return [saved[f"arr_{i}"].astype(np.intc) for i in range(len(saved.files))]
        except (OSError, ValueError, KeyError):
            return []

    def remember(self, prompts: Iterable[Tokens]) -> None:
        """Replace the remembered prompts."""
        arrays = list(prompts)
        self._write(_RECENT, lambda file: np.savez(file, *arrays))

    def find(self, tokens: Tokens, *, longer_than: int = 0) -> tuple[Tokens, Any] | None:
        """The longest saved checkpoint whose tokens start `tokens`: (its tokens, its state).

        Only checkpoints of more than `longer_than` tokens are looked at.
        """
        for size, path in sorted(self._files(), reverse=True):
            if size <= longer_than:
                break
            if size > len(tokens) or path.name != _name(tokens[:size]):
                continue
            loaded = self._load(path, tokens[:size])
            if loaded is not None:
                return tokens[:size].copy(), loaded
        return None

    def put(self, tokens: Tokens, state: Any) -> None:
        """Save a checkpoint, then drop the oldest files beyond the capacity."""
        if len(state) > self.capacity_bytes:
            return
        data = memoryview(state).cast("B")
        digest = hashlib.sha256(tokens.astype("<i4").tobytes())
        digest.update(data)
        header = _MAGIC + _HEADER.pack(len(tokens), digest.digest())

        def write(file: BinaryIO) -> None:
            file.write(header)
            file.write(tokens.astype("<i4").tobytes())
            file.write(data)

        self._write(_name(tokens), write)
        self._trim()

    def _load(self, path: Path, tokens: Tokens) -> Any:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        start = len(_MAGIC) + _HEADER.size
        body = start + 4 * len(tokens)
        if len(raw) > body and raw.startswith(_MAGIC):
            count, expected = _HEADER.unpack_from(raw, len(_MAGIC))
            saved = np.frombuffer(raw, dtype="<i4", count=len(tokens), offset=start)
            digest = hashlib.sha256(raw[start:body])
            digest.update(raw[body:])
            intact = count == len(tokens) and digest.digest() == expected
            if intact and np.array_equal(saved, tokens):
                return (ctypes.c_uint8 * (len(raw) - body)).from_buffer_copy(raw, body)
        self._forget(path)  # damaged: it would only be read and rejected again
        return None

    def _files(self) -> list[tuple[int, Path]]:
        if self._index is None:
            self._index = {}
            with contextlib.suppress(OSError):
                for path in self.folder.glob("*.kv"):
                    size, _, _ = path.name.partition("-")
                    if size.isdigit():
                        self._index[path.name] = int(size)
        return [(size, self.folder / name) for name, size in self._index.items()]

    def _trim(self) -> None:
        files = []
        for _, path in self._files():
            with contextlib.suppress(OSError):
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.capacity_bytes:
                break
            self._forget(path)
            total -= size

    def _forget(self, path: Path) -> None:
        if self._index is not None:
            self._index.pop(path.name, None)
        with contextlib.suppress(OSError):
            path.unlink()

    def _write(self, name: str, write: Callable[[BinaryIO], object]) -> None:
        def to_file(tmp: Path) -> None:
            with tmp.open("wb") as file:
                write(file)

        try:
            replace_atomically(self.folder / name, to_file)
        except OSError:
            return  # a cache that cannot be written is only slower
        if self._index is not None and name.endswith(".kv"):
            self._index[name] = int(name.partition("-")[0])


def _name(tokens: Tokens) -> str:
    return f"{len(tokens)}-{hashlib.sha256(tokens.astype('<i4').tobytes()).hexdigest()[:32]}.kv"
