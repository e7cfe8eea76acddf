"""Running a provider's stream on the notebook's own event loop, and turning it into a recorded answer.

In ipykernel the loop is already running, so a cell cannot ``run_until_complete`` on it until
``nest_asyncio`` is applied (once, to that loop). In a terminal IPython no loop runs, and the runner
keeps one of its own, so the shared ``aiohttp.ClientSession`` survives from one cell to the next.
A kernel interrupt cancels the stream's task and waits for it to close its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from .conversation import COMPLETE, INTERRUPTED, PARTIAL, Conversation, HistoryError
from .providers.base import AsyncGeneratorProvider, ProviderError, redact
from .render import Renderer

T = TypeVar("T")
FAILED = "failed"


@dataclass
class Reply:
    """The outcome of one request: the text, how it ended, and figures for the status line."""

    text: str = ""
    chunks: int = 0
    status: str = COMPLETE
    error: ProviderError | None = None
    started: float = field(default_factory=time.monotonic)
    first_chunk: float | None = None
    finished: float | None = None
    history_warning: str = ""

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def note(self) -> str:
        """What the output area says under the text when the answer is not complete."""
        if self.status == INTERRUPTED:
            return "interrupted"
        if self.status == PARTIAL and self.error is not None:
            return f"partial: {self.error.message}"
        return ""


@dataclass
class Request:
    """Everything one answer needs; built by a front end from its options."""

    prompt: str
    provider: Any
    model: str
    conversation: Conversation | None = None
    system: str = ""
    budget: int = 12_000
    proxy: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = "contacting provider"

    def messages(self) -> list[dict[str, str]]:
        if self.conversation is not None:
            return self.conversation.to_send(self.prompt, self.system, self.budget)
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, {"role": "user", "content": self.prompt}]


def provider_kwargs(
    provider: Any, options: Mapping[str, Any], session: aiohttp.ClientSession | None
) -> dict[str, Any]:
    """Our own providers take the shared session, timeout and retry hook; a foreign (g4f) one gets only
    plain settings, since some forward unknown keyword arguments into their JSON payload."""
    own = isinstance(provider, type) and issubclass(provider, AsyncGeneratorProvider)
    if own:
        return {**{k: v for k, v in options.items() if v is not None}, "session": session}
    return {k: options[k] for k in ("temperature",) if options.get(k) is not None}


async def stream_reply(
    provider: Any,
    model: str,
    messages: Sequence[Mapping[str, str]],
    renderer: Renderer,
    *,
    proxy: str | None = None,
    reply: Reply | None = None,
    **kwargs: Any,
) -> Reply:
    """Feed the provider's chunks to ``renderer``; return the reply however the stream ended.

    Provider errors end the reply (``failed`` with no text, ``partial`` with some); cancellation
    marks ``reply`` ``interrupted`` and is re-raised once the renderer has drawn the final state.
    """
    reply = reply if reply is not None else Reply()
    parts: list[str] = []
    try:
        async for chunk in provider.create_async_generator(model, messages, proxy, **kwargs):
            if not isinstance(chunk, str) or not chunk:
                continue  # g4f providers may yield other objects (images, finish reasons)
            if reply.first_chunk is None:
                reply.first_chunk = time.monotonic()
            parts.append(chunk)
            reply.chunks += 1
            reply.text = "".join(parts) if len(parts) < 2 else reply.text + chunk
            renderer.feed(reply.text)
    except asyncio.CancelledError:
        reply.status = INTERRUPTED
        raise
    except ProviderError as exc:
        reply.error = exc
        reply.status = PARTIAL if reply.text else FAILED
    except Exception as exc:  # a foreign provider's own failure: one line, never a traceback
        reply.error = ProviderError(f"{type(exc).__name__}: {redact(str(exc))}", provider=_name(provider))
        reply.status = PARTIAL if reply.text else FAILED
    finally:
        reply.finished = time.monotonic()
        renderer.close(reply.text, reply.note)
    return reply


def _name(provider: Any) -> str:
    return getattr(provider, "__name__", type(provider).__name__)


async def answer(
    request: Request,
    renderer: Renderer,
    session: aiohttp.ClientSession | None = None,
    reply: Reply | None = None,
) -> Reply:
    """Send one prompt, stream it into ``renderer``, and record the exchange in its conversation.

    A failure records nothing; a partial or interrupted answer is recorded and marked so. Pass
    ``reply`` to keep the partial text when the task is cancelled (the cancel is re-raised).
    """
    messages = request.messages()
    reply = reply if reply is not None else Reply()

    def on_retry(status: int, delay: float, attempt: int) -> None:
        reason = "rate limited" if status == 429 else "service unavailable"
        renderer.notify(f"{reason}, retrying in {delay:g} s")

    kwargs = provider_kwargs(request.provider, {**request.options, "on_retry": on_retry}, session)
    renderer.start(request.label)
    try:
        await stream_reply(
            request.provider, request.model, messages, renderer, proxy=request.proxy, reply=reply, **kwargs
        )
        return reply
    finally:
        _record(request, reply)


def _record(request: Request, reply: Reply) -> None:
    if request.conversation is None or reply.status == FAILED:
        return
    if reply.status != COMPLETE and not reply.text:
        return  # interrupted or dropped before any text: nothing worth keeping
    try:
        request.conversation.record(request.prompt, reply.text, reply.status)
    except HistoryError as exc:
        reply.history_warning = str(exc)


class Runner:
    """Owns the extension's event-loop use: which loop, one shared HTTP session per loop, cancellation."""

    def __init__(self) -> None:
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )
        self._patched: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (patched once by nest_asyncio so a cell can wait on it), else our own."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._own_loop is None or self._own_loop.is_closed():
                self._own_loop = asyncio.new_event_loop()
            return self._own_loop
        if loop not in self._patched:
            import nest_asyncio

            nest_asyncio.apply(loop)
            self._patched.add(loop)
        return loop

    async def session(self) -> aiohttp.ClientSession:
        """The shared session of the running loop, so consecutive cells reuse connections."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = aiohttp.ClientSession()
            self._sessions[loop] = session
        return session

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the notebook loop; on interrupt, cancel it and wait for its cleanup."""
        loop = self.loop()
        task = loop.create_task(coro)
        try:
            return loop.run_until_complete(task)
        except KeyboardInterrupt:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                loop.run_until_complete(task)
            raise

    def close(self) -> None:
        """Close every session this runner opened (on unload), and its own loop."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, session in list(self._sessions.items()):
            if not session.closed and not loop.is_closed() and loop in (running, self._own_loop):
                with contextlib.suppress(Exception):
                    self.run(session.close())
        self._sessions.clear()
        if self._own_loop is not None and not self._own_loop.is_running():
            self._own_loop.close()
            self._own_loop = None
