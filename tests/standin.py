"""A stand-in model for the real local server, with streams a test can hold open and release.

``LocalServer(ServerConfig(model=...))`` serves whatever model it is given through the same code
as the real local model (Acytoo text stream, OpenAI SSE). The stand-in answers as the scripted
backend would (``[[echo]]``, ``[[size=N chunk=N delay=S]]``; faults are not simulated) and ends every
stream as a real server does: a finished generation, so the server sends ``finish_reason``, the
usage, ``[DONE]`` and the end of the body.

``[[hold]]`` (or ``[[hold=N]]``) in the question stops the stream after its first (N-th) chunk
until the test calls ``release()``; ``[[hold=0]]`` before its first byte. "The answer is still
streaming" is then a state the test controls, not a race between a short stream and a kernel
round trip.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence

from acytoo_magic.providers.local_model import Generation
from acytoo_magic.server import LocalServer, ServerConfig
from acytoo_magic.server.scripted import (
    count_tokens,
    first_tokens,
    parse_directives,
    plan_reply,
    prompt_tokens,
)


class StandInModel:
    """Scripted answers from a model's code path; ``[[hold]]`` holds a stream until ``release()``."""

    name = "stand-in"

    def __init__(self, chunk: int = 16, delay: float = 0.0) -> None:
        self.config = ServerConfig(chunk_size=chunk, delay=delay)
        self.generations: list[Generation] = []
        self._gate = threading.Condition()
        self._holds = 0  # streams that reached their hold, in order
        self._released = 0  # releases granted; hold number i goes on once i < _released

    def answer(self, messages: Sequence[Mapping[str, str]]) -> tuple[str, int, float]:
        """The reply's text, chunk size and delay between chunks (subclasses pick other answers)."""
        plan = plan_reply(messages, self.config)
        return plan.body.decode(), plan.chunk, plan.delay

    def release(self, count: int = 1) -> None:
        """Let the next ``count`` holds go on: ones already waiting, or the next ones to arrive."""
        with self._gate:
            self._released += count
            self._gate.notify_all()

    def release_all(self) -> None:
        """Let every hold, now and later, go on (at teardown: no handler is left waiting)."""
        self.release(1 << 30)

    @property
    def waiting(self) -> int:
        """How many streams are held now."""
        return max(0, self._holds - self._released)

    def wait_held(self, count: int = 1, timeout: float = 60) -> None:
        """Block until ``count`` streams are held (waiting for ``release``)."""
        with self._gate:
            if not self._gate.wait_for(lambda: self.waiting >= count, timeout):
                raise TimeoutError(f"{self.waiting} of {count} streams held after {timeout} s")

    def _hold(self) -> None:
        with self._gate:
            ticket = self._holds
            self._holds += 1
            self._gate.notify_all()
            self._gate.wait_for(lambda: ticket < self._released)

    async def stream(
        self,
        messages: Sequence[Mapping[str, str]],
        temperature: float = 0.7,
        max_tokens: int | None = None,
    ) -> AsyncIterator[str | Generation]:
        """The answer in chunks, then its ``Generation`` (stop, or length at ``max_tokens``)."""
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        directives, _ = parse_directives(users[-1] if users else "")
        hold_after = int(directives.get("hold") or 1) if "hold" in directives else None
        text, chunk, delay = self.answer(messages)
        reason = "stop"
        if max_tokens is not None:
            text, cut = first_tokens(text, max_tokens)
            reason = "length" if cut else "stop"
        record = Generation(started=time.monotonic(), prompt_tokens=prompt_tokens(messages))
        self.generations.append(record)
        if hold_after == 0:  # silent until released: the client is still waiting for a first byte
            await asyncio.to_thread(self._hold)
        for index, start in enumerate(range(0, len(text), chunk), 1):
            piece = text[start : start + chunk]
            record.first_token = record.first_token or time.monotonic()
            yield piece
            if index == hold_after:
                await asyncio.to_thread(self._hold)
            if delay:
                await asyncio.sleep(delay)
        record.completion_tokens = count_tokens(text)
        record.finished, record.finish_reason = time.monotonic(), reason
        yield record


class StandInServer(LocalServer):
    """The local server on 127.0.0.1 with a ``StandInModel``; its held streams released on stop."""

    def __init__(self, model: StandInModel | None = None) -> None:
        self.model = model or StandInModel()
        super().__init__(ServerConfig(model=self.model))

    def release(self, count: int = 1) -> None:
        self.model.release(count)

    def wait_held(self, count: int = 1, timeout: float = 60) -> None:
        self.model.wait_held(count, timeout)

    def stop(self) -> None:
        self.model.release_all()
        super().stop()

