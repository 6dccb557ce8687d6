import ctypes
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")  # comes with the local extra, as does this module

from taskloom.llm._checkpoints import DiskCheckpoints, folder_key  # noqa: E402


def tokens(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.intc)


def state(text: bytes) -> ctypes.Array[ctypes.c_uint8]:
    return (ctypes.c_uint8 * len(text)).from_buffer_copy(text)


def test_a_saved_checkpoint_is_found_by_a_longer_prompt_that_starts_with_it(
    tmp_path: Path,
) -> None:
    disk = DiskCheckpoints(tmp_path / "kv")
    disk.put(tokens(1, 2, 3), state(b"short"))
    disk.put(tokens(1, 2, 3, 4, 5), state(b"longer"))
    found = disk.find(tokens(1, 2, 3, 4, 5, 6, 7))
    assert found is not None
    assert found[0].tolist() == [1, 2, 3, 4, 5] and bytes(found[1]) == b"longer"
    found = DiskCheckpoints(tmp_path / "kv").find(tokens(1, 2, 3, 9))  # another process
    assert found is not None and bytes(found[1]) == b"short"
    assert disk.find(tokens(1, 2, 9)) is None
    assert disk.find(tokens(1, 2, 3, 4, 5, 6), longer_than=5) is None


def test_a_damaged_checkpoint_is_ignored_and_removed(tmp_path: Path) -> None:
    disk = DiskCheckpoints(tmp_path)
    disk.put(tokens(1, 2, 3), state(b"state"))
    (saved,) = tmp_path.glob("*.kv")
    raw = bytearray(saved.read_bytes())
    raw[-1] ^= 0xFF
    saved.write_bytes(bytes(raw))
    assert disk.find(tokens(1, 2, 3, 4)) is None
    assert not saved.exists()


def test_the_oldest_checkpoints_go_beyond_the_capacity(tmp_path: Path) -> None:
    disk = DiskCheckpoints(tmp_path, capacity_bytes=4096)
    for n in range(1, 6):
        disk.put(tokens(*range(n)), state(bytes(1000)))
    assert disk.find(tokens(0, 1, 2, 3, 4)) is not None
    assert sum(p.stat().st_size for p in tmp_path.glob("*.kv")) <= 4096
    assert disk.find(tokens(0, 9)) is None  # the first one went


def test_recent_prompts_survive_the_process(tmp_path: Path) -> None:
    DiskCheckpoints(tmp_path).remember([tokens(1, 2), tokens(3, 4, 5)])
    assert [p.tolist() for p in DiskCheckpoints(tmp_path).recent()] == [[1, 2], [3, 4, 5]]
    (tmp_path / "recent.npz").write_bytes(b"not a zip")
    assert DiskCheckpoints(tmp_path).recent() == []


def test_a_folder_that_cannot_be_written_only_makes_it_slower(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("in the way")
    disk = DiskCheckpoints(blocked / "kv")
    disk.put(tokens(1, 2), state(b"x"))
    disk.remember([tokens(1)])
    assert disk.find(tokens(1, 2, 3)) is None and disk.recent() == []


@pytest.mark.parametrize("change", [("b", 1, 2), ("a", 2, 2), ("a", 1, 3)])
def test_the_folder_key_changes_with_model_build_or_context(change: tuple[str, int, int]) -> None:
    assert folder_key("a", 1, 2) != folder_key(*change)
