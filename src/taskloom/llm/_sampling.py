"""Greedy decoding for `Local`, and the prompt states it keeps for reuse.

llama-cpp-python runs a grammar sampler over the whole vocabulary (262k
tokens for Gemma 3) before every greedy pick, which costs more than the
forward pass. llama.cpp's own `common/sampling.cpp` first takes the best
token and asks the grammar about that one only; the vocabulary is filtered
only when the grammar rejects it. `pick()` does the same and, before the
full filter, tries the best few hundred tokens: the result is still exactly
the argmax over the tokens the grammar allows.

`Session` keeps the llama context between replies: a prompt that starts like
the tokens already in the context evaluates only the rest, and checkpoints
let prompts that take turns (a planner's, a joiner's) each resume from their
own shared start. It saves llama.cpp's sequence state; llama-cpp-python's
`LlamaRAMCache` would also copy up to 512 rows of full-vocabulary scores
(512 MB for Gemma 3) per entry, outside its memory budget.

Needs the `local` extra (numpy, llama-cpp-python), like `local.py`.
"""

from __future__ import annotations

import codecs
import ctypes
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from taskloom.llm._checkpoints import DiskCheckpoints
from taskloom.llm._copying import CopyGuide

__all__ = ["Grammar", "LineLoops", "Outcome", "Session", "greedy", "pick", "sampled"]

Logits = npt.NDArray[np.float32]
Tokens = npt.NDArray[np.intc]
Allowed = Callable[[Tokens], npt.NDArray[np.bool_]]

# How many of the best tokens to offer the grammar, in turn, before all of
# them: a rejected favourite is usually replaced by one of the next few.
_TIERS = (64, 1024)
# llama.cpp's `llama_token_data`: id, logit, p.
_ENTRY = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
# A run of this many tokens may not come twice in one line of a greedy reply
# (`LineLoops`): shorter runs repeat in a sum of references ("population + $").
_LOOP_TOKENS = 8
# A checkpoint must save evaluating at least this many tokens.
_MIN_CHECKPOINT_GAIN = 64
# How many recent prompts to compare a new one with, to place checkpoints:
# enough that a dozen ReAct steps between two planner prompts do not hide
# the first from the second.
_RECENT_PROMPTS = 32
# How far back to look for a line start to move a checkpoint to.
_MAX_LINE_TOKENS = 256


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """How a reply ended."""

    finish_reason: str | None
    """"stop" (end token, stop string, grammar complete) or "length"."""
    completion_tokens: int
    """Every token sampled, the one that ended the reply included."""


def pick(logits: Logits, allowed: Allowed | None) -> int | None:
    """Choose the greedy token: the best-scored one among those allowed.

    Ties go to the lowest token id, as in llama.cpp's greedy sampler.

    Args:
        logits: One score per token id.
        allowed: Which of the given token ids the grammar accepts; None
            allows all.

    Returns:
        The token id, or None if no token is allowed.

    """
    best = int(np.argmax(logits))
    if allowed is None or allowed(np.array([best], dtype=np.intc))[0]:
        return best
    size = len(logits)
    for count in _TIERS:
        if count >= size:
            break
        top = np.argpartition(logits, size - count)[size - count :].astype(np.intc)
        top = top[np.lexsort((top, -logits[top]))]  # best first, then lower ids
        ok = allowed(top)
        if ok.any():
            token = int(top[int(np.argmax(ok))])
            # Every token outside the tier scores at most its lowest score:
            # strictly above that, nothing outside can beat or tie this one.
            if logits[token] > logits[top[-1]]:
                return token
    ids = np.flatnonzero(allowed(np.arange(size, dtype=np.intc)))
    if ids.size == 0:
        return None
    return int(ids[int(np.argmax(logits[ids]))])


class LineLoops:
    """The tokens of a reply's current line, to keep greedy decoding out of a loop.

    A small model at temperature 0 can fall into repeating a phrase inside
    one line ("1.atomic_number: 1.atomic_number: ..."), and nothing but the
    token budget ends it: the plan's string never closes. A token that would
    make the line repeat a run of `size` tokens it already holds is set
    aside for the next best; lines are never that repetitive when the model
    is not looping.
    """

    def __init__(self, size: int = _LOOP_TOKENS) -> None:
        self._size = size
        self._line: list[int] = []

    def banned(self) -> set[int]:
        """The tokens that would repeat a run of the line if they came next."""
        line, head = self._line, self._size - 1
        if len(line) < self._size:
            return set()
        tail = line[-head:]
        return {
            line[i + head]
            for i in range(len(line) - head)
            if line[i + head - 1] == tail[-1] and line[i : i + head] == tail
        }

    def advance(self, token: int, piece: bytes) -> None:
        """Take the token that came next; a newline starts a new line."""
        if b"\n" in piece:
            self._line.clear()
        else:
            self._line.append(token)


def _without(allowed: Allowed | None, banned: set[int]) -> Allowed:
    """`allowed`, less the banned tokens."""
    ban = np.fromiter(banned, dtype=np.intc)

    def check(ids: Tokens) -> npt.NDArray[np.bool_]:
        ok = ~np.isin(ids, ban)
        if allowed is not None and ok.any():
            ok &= allowed(ids)
        return ok

    return check


class Grammar:
    """A llama.cpp grammar sampler: which tokens may come next, and advancing it."""

    def __init__(self, llama_cpp: Any, vocab: Any, gbnf: str) -> None:
        """Parse a GBNF grammar with llama.cpp, rooted at `root`.

        Raises:
            ValueError: if llama.cpp cannot parse it.

        """
        self._lib = llama_cpp
        self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
        # llama-cpp-python would dereference this NULL and crash the process.
        if not self._sampler:
            raise ValueError("invalid GBNF grammar (llama.cpp printed details to stderr)")

    def allowed(self, ids: Tokens) -> npt.NDArray[np.bool_]:
        """Whether the grammar accepts each of these tokens next."""
        entries = np.zeros(len(ids), dtype=_ENTRY)
        entries["id"] = ids
        data = entries.ctypes.data_as(ctypes.POINTER(self._lib.llama_token_data))
        array = self._lib.llama_token_data_array(data, len(ids), -1, False)
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(array))
        ok: npt.NDArray[np.bool_] = np.isfinite(entries["logit"])  # rejected: -inf
        return ok

    def accept(self, token: int) -> None:
        """Advance past a token that `allowed` accepted."""
        self._lib.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        """Free the sampler; idempotent."""
        if self._sampler:
            self._lib.llama_sampler_free(self._sampler)
            self._sampler = None


class _Text:
    """Token bytes in, text out: whole UTF-8 characters, cut before a stop string.

    Text that could be the start of a stop string is held back until the
    next token shows whether it is one.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        # Bytes of an unfinished character wait in the decoder; any left at
        # the end are dropped, as llama-cpp-python drops them.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(stop)
        self._held = ""
        self.stopped = False

    def add(self, data: bytes) -> str:
        text = self._held + self._decoder.decode(data)
        found = [i for i in (text.find(s) for s in self._stop) if i >= 0]
        if found:
            self.stopped, self._held = True, ""
            return text[: min(found)]
        keep = max((_overlap(text, s) for s in self._stop), default=0)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The held text: no stop string followed."""
        text, self._held = self._held, ""
        return text


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of `text` that `stop` starts with."""
    for size in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0


def greedy(
    session: Session,
    prompt: Sequence[int],
    *,
    grammar: Grammar | None,
    end_ids: frozenset[int],
    stop: Sequence[str],
    max_tokens: int,
    guide: CopyGuide | None = None,
) -> Generator[str, None, Outcome]:
    """Generate a reply at temperature 0, a token's text at a time.

    Under a grammar, a token that would repeat a run of 8 tokens within a
    line is passed over for the next best (`LineLoops`). Each step evaluates the previous
    token, then picks the next: a reader
    that stops early leaves no token evaluated for nothing, and the last
    token sampled is never fed back (as in `llama_cpp.Llama.generate`).

    Args:
        session: The model's context.
        prompt: The prompt's tokens.
        grammar: The grammar the reply must match, or None.
        end_ids: Tokens besides the model's end-of-generation ones that end
            the reply; not part of its text.
        stop: Strings that end the reply; not part of its text.
        max_tokens: Sampled tokens after which the reply ends ("length").
        guide: Keeps the reply's quoted strings copies of a source text
            where the model nearly prefers that anyway (see `CopyGuide`).

    Yields:
        Non-empty pieces of text.

    Returns:
        Why the reply ended and how many tokens were sampled.

    """
    session.prefill(prompt)
    text = _Text(stop)
    allowed = grammar.allowed if grammar is not None else None
    # Under a grammar the reply is a plan or a decision, which a loop can only
    # ruin; free text is left exactly as the model writes it.
    loops = LineLoops() if grammar is not None else None
    sampled = 0
    previous: int | None = None
    finish = "length"
    while sampled < max_tokens:
        if previous is not None:
            session.feed(previous)
        logits = session.logits()
        token = pick(logits, allowed)
        if token is None:  # the grammar allows nothing, not even an end token
            finish = "stop"
            break
        if guide is not None:
            token = guide.steer(logits, token, allowed, session.piece)
        if loops is not None and token in (banned := loops.banned()):  # a loop: the next best
            other = pick(logits, _without(allowed, banned))
            token = token if other is None else other
        sampled += 1
        if token in end_ids or session.is_end(token):
            finish = "stop"
            break
        if grammar is not None:
            grammar.accept(token)
        data = session.piece(token)
        if loops is not None:
            loops.advance(token, data)
        if guide is not None:
            guide.advance(data)
        chunk = text.add(data)
        if chunk:
            yield chunk
        if text.stopped:
            return Outcome(finish_reason="stop", completion_tokens=sampled)
        previous = token
    if rest := text.flush():
        yield rest
    return Outcome(finish_reason=finish, completion_tokens=sampled)


def sampled(
    session: Session,
    prompt: list[int],
    *,
    grammar: str | None,
    end_ids: frozenset[int],
    stop: Sequence[str],
    max_tokens: int,
    temperature: float,
    seed: int,
) -> Generator[str, None, Outcome]:
    """Generate a reply with llama-cpp-python's own sampling, at any temperature.

    Args:
        session: The model's context.
        prompt: The prompt's tokens.
        grammar: The GBNF grammar the reply must match, or None.
        end_ids: Tokens besides the model's end-of-generation ones that end
            the reply. llama-cpp-python notices them a token late: one more
            token is evaluated and sampled (and counted), but not returned.
        stop: Strings that end the reply; not part of its text.
        max_tokens: Tokens after which the reply ends ("length").
        temperature: The sampling temperature.
        seed: The sampling seed.

    Yields:
        Non-empty pieces of text.

    Returns:
        Why the reply ended and how many tokens were sampled.

    """
    import llama_cpp

    llama = session.llama
    # Saved prompt states help here too: create_completion then finds the
    # whole prompt evaluated and samples at once.
    session.prefill(prompt)

    def stop_on_token(ids: Any, logits: Any) -> bool:
        return int(ids[-1]) in end_ids

    finish_reason = None
    for chunk in llama.create_completion(
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        stop=list(stop),
        seed=seed,
        grammar=llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) if grammar else None,
        stopping_criteria=llama_cpp.StoppingCriteriaList([stop_on_token]),
        stream=True,
    ):
        choice = chunk["choices"][0]
        if choice["finish_reason"] is not None:
            finish_reason = choice["finish_reason"]
        if choice["text"]:
            yield str(choice["text"])
    # Tokens in the context now, minus the prompt, plus the final sampled
    # token that was never fed back: every sampled token.
    count = max(0, llama.n_tokens - len(prompt) + 1)
    return Outcome(finish_reason=finish_reason, completion_tokens=count)


class Session:
    """A llama context between replies: the tokens it holds, and moving it to others.

    A prompt is evaluated only from where it differs from the context, or
    from a checkpoint: a saved state of the context at the start of the line
    where two recent prompts went separate ways (after a shared system
    prompt, typically), so that a third prompt with that start resumes there.

    Checkpoints, not snapshots of whole contexts: with sliding-window
    attention (Gemma 3's layers mostly see the last 512 tokens) a saved state
    keeps only the window before its end, so it can be continued but not cut
    shorter. For the same reason a context is cut short only if its window
    is still there (`_can_resume`).
    """

    def __init__(
        self, llama: Any, *, cache_bytes: int, disk: DiskCheckpoints | None = None
    ) -> None:
        """Wrap a loaded `llama_cpp.Llama`.

        Args:
            llama: The model; only this session may move its context.
            cache_bytes: Memory for checkpoints; 0 keeps none.
            disk: Where checkpoints and recent prompts are also kept for
                later processes (needs `cache_bytes` > 0).

        """
        import llama_cpp

        self._lib = llama_cpp
        self.llama = llama
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._n_vocab = int(llama.n_vocab())
        self._n_swa = int(llama_cpp.llama_model_n_swa(llama.model))
        self._pieces: dict[int, bytes] = {}
        self._buffer = ctypes.create_string_buffer(64)
        self.cache = _StateCache(cache_bytes) if cache_bytes > 0 else None
        self.disk = disk if self.cache is not None else None
        self._recent: deque[Tokens] = deque(
            self.disk.recent() if self.disk else (), maxlen=_RECENT_PROMPTS
        )

    def grammar(self, gbnf: str) -> Grammar:
        """Parse a grammar for this model's vocabulary.

        Raises:
            ValueError: if llama.cpp cannot parse it.

        """
        return Grammar(self._lib, self._vocab, gbnf)

    def prefill(self, tokens: Sequence[int], *, remember: bool = True) -> None:
        """Make the context hold `tokens`, with the logits after the last one.

        Evaluates what neither the context nor a checkpoint holds, and the
        last token in any case: its logits are needed. With `remember=False`
        the tokens do not count as a recent prompt: a read-ahead of a prompt
        about to come must not make its own request save a checkpoint at its
        very end (useless to any other prompt, and evicting ones that are not).
        """
        llama = self.llama
        wanted = np.asarray(tokens, dtype=np.intc)
        last = len(wanted) - 1
        start = min(_common_prefix(llama.input_ids[: llama.n_tokens], wanted), last)
        if not self._can_resume(start):
            start = 0
        if self.cache is not None:
            saved = self._find(wanted[:last], start)
            if saved is not None:
                start = len(saved.tokens) if self._restore(saved) else 0
        self._truncate(start)
        if self.cache is not None:
            shared = max((_common_prefix(p, wanted) for p in self._recent), default=0)
            split = self._line_start(wanted, start, min(shared, last))
            if split - start >= _MIN_CHECKPOINT_GAIN:
                llama.eval(list(tokens[start:split]))
                state = self._save()
                self.cache.put(wanted[:split].copy(), state)
                if self.disk is not None and state is not None:
                    self.disk.put(wanted[:split], state)
                start = split
            if remember:
                self._recent.append(wanted)
                if self.disk is not None:
                    self.disk.remember(self._recent)
        llama.eval(list(tokens[start:]))

    def _find(self, tokens: Tokens, beyond: int) -> _State | None:
        """The longest checkpoint that starts `tokens` and holds more than `beyond` tokens.

        Memory first; then the disk, whose find is kept in memory too.
        """
        assert self.cache is not None
        saved = self.cache.find(tokens)
        if saved is not None and len(saved.tokens) > beyond:
            return saved
        if self.disk is None:
            return None
        found = self.disk.find(tokens, longer_than=beyond)
        if found is None:
            return None
        self.cache.put(*found)
        return _State(tokens=found[0], state=found[1])

    def logits(self) -> Logits:
        """The scores after the last evaluated token (valid until the next `feed`)."""
        pointer = self._lib.llama_get_logits_ith(self.llama.ctx, -1)
        logits: Logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        return logits

    def feed(self, token: int) -> None:
        """Evaluate one more token."""
        self.llama.eval([token])

    def is_end(self, token: int) -> bool:
        """Whether the token is one of the model's end-of-generation tokens."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        """The token's bytes (special tokens render as nothing)."""
        piece = self._pieces.get(token)
        if piece is None:
            size = self._lib.llama_token_to_piece(
                self._vocab, token, self._buffer, len(self._buffer), 0, False
            )
            if size < 0:  # the buffer is too small; llama.cpp says how small
                self._buffer = ctypes.create_string_buffer(-size)
                size = self._lib.llama_token_to_piece(
                    self._vocab, token, self._buffer, len(self._buffer), 0, False
                )
            piece = self._buffer.raw[:size]
            self._pieces[token] = piece
        return piece

    def _line_start(self, tokens: Tokens, low: int, high: int) -> int:
        """Where the line holding `tokens[high]` starts, if it starts after `low`.

        Two prompts that part mid-line ("Question: What..." and "Question:
        Where...") most likely share a start that ends with the last line
        they share: a checkpoint there serves a third prompt ("Question: How...").
        """
        for index in range(high - 1, max(low, high - _MAX_LINE_TOKENS) - 1, -1):
            if self.piece(int(tokens[index])).endswith(b"\n"):
                return index + 1
        return high

    def _memory(self) -> Any:
        return self._lib.llama_get_memory(self.llama.ctx)

    def _can_resume(self, keep: int) -> bool:
        """Whether the context, cut to `keep` tokens, still has the window the next one sees."""
        first = self._lib.llama_memory_seq_pos_min(self._memory(), 0)
        # llama.cpp's server applies the same test before reusing a context.
        return keep == 0 or first <= max(0, keep - self._n_swa)

    def _truncate(self, keep: int) -> None:
        """Drop the context after its first `keep` tokens."""
        memory = self._memory()
        if keep == 0 or not self._lib.llama_memory_seq_rm(memory, -1, keep, -1):
            # The model cannot drop part of a sequence (recurrent): start over.
            self._lib.llama_memory_clear(memory, True)
            keep = 0
        self.llama.n_tokens = keep

    def _save(self) -> Any:
        ctx = self.llama.ctx
        size = self._lib.llama_state_seq_get_size(ctx, 0)
        state = (ctypes.c_uint8 * size)()
        written = self._lib.llama_state_seq_get_data(ctx, state, size, 0)
        return state if written == size else None

    def _restore(self, saved: _State) -> bool:
        """Replace the context with a checkpoint; False (and an empty context) on failure."""
        llama, memory = self.llama, self._memory()
        self._lib.llama_memory_clear(memory, True)
        llama.n_tokens = 0
        if self._lib.llama_state_seq_set_data(llama.ctx, saved.state, len(saved.state), 0) == 0:
            self._lib.llama_memory_clear(memory, True)
            return False
        llama.input_ids[: len(saved.tokens)] = saved.tokens
        llama.n_tokens = len(saved.tokens)
        return True


def _common_prefix(a: Tokens, b: Tokens) -> int:
    size = min(len(a), len(b))
    differ = np.flatnonzero(a[:size] != b[:size])
    return int(differ[0]) if differ.size else size


@dataclass(frozen=True, kw_only=True, slots=True)
class _State:
    """A checkpoint: the context when it held exactly some tokens."""

    tokens: Tokens
    """The tokens it holds."""
    state: Any
    """llama.cpp's serialised sequence (a ctypes byte array)."""


class _StateCache:
    """Checkpoints, least recently used out first, within a memory budget."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[bytes, _State] = OrderedDict()
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._states)

    def put(self, tokens: Tokens, state: Any) -> None:
        if state is None or len(state) > self.capacity_bytes:
            return
        key = tokens.tobytes()
        if key in self._states:
            self._drop(key)
        self._states[key] = _State(tokens=tokens, state=state)
        self.size_bytes += len(state)
        while self.size_bytes > self.capacity_bytes:
            self._drop(next(iter(self._states)))

    def find(self, tokens: Tokens) -> _State | None:
        """The longest checkpoint whose tokens start `tokens`, if any."""
        best: bytes | None = None
        for key, saved in self._states.items():
            size = len(saved.tokens)
            if size <= len(tokens) and _common_prefix(saved.tokens, tokens) == size:
                if best is None or size > len(self._states[best].tokens):
                    best = key
        if best is None:
            return None
        self._states.move_to_end(best)
        return self._states[best]

    def _drop(self, key: bytes) -> None:
        self.size_bytes -= len(self._states.pop(key).state)
