"""Running a provider's stream and turning it into a recorded answer; which loop runs it.

In a kernel, ``%%acytoo`` cells are awaited on the kernel's own running loop (an input
transformer makes the call top-level ``await``), and the widget schedules a task there. ``Runner``
covers synchronous callers and owns one shared ``aiohttp.ClientSession`` per loop, so consecutive
cells reuse connections. A kernel interrupt cancels the stream's task; it closes its connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from .conversation import Conversation
from .errors import AcytooError, AcytooInterrupted, AnswerError, ProviderError, one_line, redact
from .loops import LoopThread, run_until_done
from .outbound import Outbound
from .providers import Adapter, adapt, provider_name
from .providers.base import Progress, ToolCall, ToolCalls, Usage, remote_host
from .render import Renderer, TextBuffer
from .status import COMPLETE, FAILED, INTERRUPTED, PARTIAL, label

T = TypeVar("T")
log = logging.getLogger(__name__)
MASK_ON_LOOP_CHARS = 16_000  # a request this short is masked on the loop (under a ms); longer: in a thread
CHARS_PER_TOKEN = 4  # a common rule of thumb for English text, used only when no counts are reported


@dataclass
class Reply:
    """The outcome of one request: the text, how it ended, and figures for the status line."""

    chunks: int = 0
    status: str = COMPLETE
    error: AcytooError | None = None  # a ProviderError, or an AnswerError (drawing, a callback)
    started: float = field(default_factory=time.monotonic)
    first_chunk: float | None = None
    finished: float | None = None
    history_warning: str = ""
    buffer: TextBuffer = field(default_factory=TextBuffer, repr=False)
    usage: Usage | None = None  # token counts, when the backend reported them
    finish_reason: str = ""  # "length" when the backend stopped at its token limit
    finish_note: str = ""  # what the backend says about it ("stopped at the 512-token limit (raise ...)")
    prompt_chars: int = 0  # what was sent, for an estimate when no usage is reported
    tool_calls: tuple[ToolCall, ...] = ()  # the calls the reply ended with (agent mode)

    @property
    def text(self) -> str:
        return self.buffer.text

    def tokens(self) -> tuple[int, int, bool]:
        """(prompt, completion, estimated): reported counts, else an estimate of 4 characters a token."""
        usage = self.usage
        if usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
            return usage.prompt_tokens, usage.completion_tokens, False
        return -(-self.prompt_chars // CHARS_PER_TOKEN), -(-len(self.text) // CHARS_PER_TOKEN), True

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def raise_for_status(self) -> None:
        """Raise the provider's error if the request failed or dropped, or ``AcytooInterrupted``."""
        if self.error is not None:
            raise self.error
        if self.status == INTERRUPTED:
            raise AcytooInterrupted("interrupted; the partial answer is kept, marked")

    @property
    def note(self) -> str:
        """What the output area says under the text when the answer is not complete."""
        reason = getattr(self.error, "message", str(self.error)) if self.error is not None else ""
        return label(self.status, reason)


@dataclass
class Request:
    """Everything one answer needs; built by a front end from its options."""

    prompt: str
    provider: Any
    model: str
    conversation: Conversation | None = None
    system: str = ""
    budget: int = 12_000
    proxy: str | None = field(default=None, repr=False)  # may carry credentials
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # holds the API key
    label: str = "contacting provider"
    provider_label: str = ""
    show_status: bool = True
    cell: str | None = None  # the notebook cell asking: its earlier exchange is replaced, not stacked
    meta: Mapping[str, Any] = field(default_factory=dict)  # stored with the exchange (execution count)
    price: tuple[float, float] | None = None  # per million prompt and completion tokens, for the cost
    spend: Any = None  # a budget.DailyBudget: checked before sending (Assistant), charged after
    # The boundary every message passes on its way out (secrets masked, ``outbound.py``).
    outbound: Outbound = field(default_factory=Outbound, repr=False)
    adapter: Adapter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.adapter = adapt(self.provider)

    def open(self, messages: Sequence[Mapping[str, Any]], session: Any = None, **settings: Any) -> Any:
        """The provider's stream of ``messages`` (masked at the boundary) with this request's options."""
        tools = settings.pop("tools", None)
        options = {**self.options, **settings}
        sent = self.masked(messages)  # what approved code or a cell defined since counts too
        return self.adapter.open(self.model, sent, self.proxy, options, session, tools)

    @property
    def sent_prompt(self) -> str:
        """The prompt as it leaves (and as the history keeps it): secrets masked."""
        return self.outbound.mask(self.prompt)

    def stored_meta(self) -> dict[str, Any]:
        """``meta`` as the history keeps it: what was typed is masked as the prompt is."""
        meta = dict(self.meta)
        if isinstance(meta.get("typed"), str):
            meta["typed"] = self.outbound.mask(meta["typed"])
        return meta

    def outcome_lines(self, status: str) -> str:
        """What the small print under an answer says: what was masked, then ``status``."""
        return "\n".join(line for line in (self.outbound.line(), status) if line)

    def source(self) -> str:
        """The provider's label, with its host when that is not this machine: ``openai
        (api.openai.com)``, ``local``; what every status line starts with."""
        name = self.provider_label or self.adapter.name
        host = remote_host(self.adapter.target(self.options.get("url")))  # "" on this machine
        return f"{name} ({host})" if host else name

    def status_line(self, reply: Reply) -> str:
        """Provider, model, size and time, tokens (and cost): small print under a finished answer.

        How an unfinished answer ended is not repeated here: the note above the line says it.
        """
        parts = [self.source(), self.model]
        parts.append(f"{len(reply.text):,} characters in {reply.elapsed:.1f} s")
        prompt, completion, estimated = reply.tokens()
        about = "≈" if estimated else ""
        parts.append(f"{about}{prompt:,} tokens in, {about}{completion:,} out")
        if self.price is not None:
            cost = (prompt * self.price[0] + completion * self.price[1]) / 1_000_000
            parts.append(f"{about}{cost:.4f} cost")
        if reply.finish_reason == "length" or reply.finish_note:
            parts.append(reply.finish_note or "stopped at the token limit")
        return " · ".join(p for p in parts if p)

    def messages(self, history: bool = True, tools: bool = False) -> list[dict[str, Any]]:
        """What is to be sent (``open`` masks it on the way out): with ``history``, the thread's
        recent exchanges before the prompt; with ``tools`` (a request carrying tools), past
        episodes with their steps."""
        if history and self.conversation is not None:
            return self.conversation.to_send(self.prompt, self.system, self.budget, self.cell, tools)
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, {"role": "user", "content": self.prompt}]

    def leaving(self, history: bool = True, tools: bool = False) -> list[dict[str, Any]]:
        """``messages`` as they leave the boundary (what ``open`` sends; Preview shows this)."""
        return self.masked(self.messages(history, tools))

    def masked(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``messages`` through the boundary, its secrets read again first (as ``open`` does)."""
        self.outbound.refresh()
        return self.outbound.mask_messages(messages)


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

    Any failure ends the reply with a one-line ``error`` (``failed`` with no text, ``partial`` with
    some): the provider's own (a ``ProviderError``), or drawing a chunk or a caller's ``on_chunk``
    failing (an ``AnswerError``). Cancellation marks ``reply`` ``interrupted`` and is re-raised.
    The text is everything that arrived; the caller's ``renderer.close`` draws it.
    """
    opened = lambda: adapt(provider).open(model, messages, proxy, kwargs)  # noqa: E731
    return await feed(opened, provider_name(provider), renderer, reply)


async def feed(
    open_stream: Callable[[], AsyncIterator[Any]], label: str, renderer: Renderer, reply: Reply | None = None
) -> Reply:
    """``stream_reply``'s body over any opened stream (``Request.open``); ``label`` names the
    provider in its one-line errors."""
    reply = reply if reply is not None else Reply()
    try:
        items = _provider_items(label, open_stream)
        async with contextlib.aclosing(items):
            async for chunk in items:
                if isinstance(chunk, Progress):  # shown on the waiting line until the first text
                    renderer.notify(chunk.note)
                    continue
                if not isinstance(chunk, str):
                    _take_extra(reply, chunk)  # usage, a finish reason; others (images, reasoning) skipped
                    continue
                if not chunk:
                    continue
                if reply.first_chunk is None:
                    reply.first_chunk = time.monotonic()
                reply.buffer.append(chunk)
                reply.chunks += 1
                try:
                    renderer.feed(chunk)
                except AcytooError:
                    raise
                except Exception as exc:
                    raise AnswerError.from_exception("drawing the answer", exc) from exc
    except asyncio.CancelledError:
        reply.status = INTERRUPTED
        raise
    except Exception as exc:
        _fail(reply, exc, "streaming the answer")
    finally:
        reply.finished = time.monotonic()
    return reply


def _fail(reply: Reply, exc: Exception, where: str) -> None:
    """End ``reply`` with ``exc`` as its one-line error: partial if it has text, else failed."""
    reply.error = exc if isinstance(exc, AcytooError) else AnswerError.from_exception(where, exc)
    reply.status = PARTIAL if reply.text else FAILED
    if not isinstance(exc, AcytooError):  # ours, not the network's: the traceback is for a debug log
        log.debug("%s failed", where, exc_info=exc)


async def _provider_items(label: str, open_stream: Callable[[], Any]) -> AsyncIterator[Any]:
    """The provider's stream, closed however it ends; its own failures become one-line errors.

    Only what the provider raises (opening, iterating, decoding, closing its stream) is turned into
    a ``ProviderError``: a failure in drawing or a callback is ours and stays what it is.
    """
    stream = None
    try:
        stream = open_stream()
        async for item in stream:
            yield item
    except (ProviderError, asyncio.CancelledError):
        raise
    except Exception as exc:  # a foreign provider's own failure: one line, never a traceback
        message = f"{type(exc).__name__}: {redact(str(exc))}"
        raise ProviderError(message, provider=label) from None
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


def _take_extra(reply: Reply, item: Any) -> None:
    """Keep what a provider yields besides text that the status line can use (g4f's objects too)."""
    if isinstance(item, ToolCalls):
        reply.tool_calls = item.calls
        return
    prompt, completion = getattr(item, "prompt_tokens", None), getattr(item, "completion_tokens", None)
    if isinstance(prompt, int) or isinstance(completion, int):
        reply.usage = Usage(prompt, completion)
    reason = getattr(item, "reason", None)
    if type(item).__name__ == "FinishReason" and isinstance(reason, str):
        reply.finish_reason = reason
        reply.finish_note = str(getattr(item, "note", "") or "")


async def answer(
    request: Request,
    renderer: Renderer,
    session: aiohttp.ClientSession | None = None,
    reply: Reply | None = None,
) -> Reply:
    """Send one prompt, stream it into ``renderer``, and record the exchange in its conversation.

    Never raises for a failure (only the cancel is re-raised): the reply says how it ended, with a
    one-line ``error``. What is recorded is what the user last saw: the text the final draw showed,
    or, if that draw failed, the last frame drawn (``renderer.last_frame``), marked. A failure
    with nothing shown records nothing. Pass ``reply`` to keep the partial text when the task is
    cancelled. History is read and written in a thread: a database locked by another process
    delays this answer only, never the loop and whatever else streams on it; a failed read means
    an answer without history, still recorded.
    """
    reply = reply if reply is not None else Reply()

    def on_retry(status: int, delay: float, attempt: int) -> None:
        reason = "rate limited" if status == 429 else "service unavailable"
        renderer.notify(f"{reason}, retrying in {delay:g} s")

    try:
        renderer.start(request.label)
        try:
            if request.conversation is None:  # nothing to read: built here, no thread hop
                messages = request.messages()
            else:
                messages = await asyncio.to_thread(request.messages)  # the history file, off the loop
        except Exception as exc:  # the file is locked or went away: answer without history
            reply.history_warning = history_problem(exc)
            messages = request.messages(history=False)
        reply.prompt_chars = sum(len(m["content"] or "") for m in messages)
        # Masked now (``open`` masks again, from the boundary's cache): a long text off the loop.
        if reply.prompt_chars > MASK_ON_LOOP_CHARS:
            await asyncio.to_thread(request.masked, messages)
        else:
            request.masked(messages)
        if request.outbound.found:  # said while waiting, and again under the answer
            renderer.notify(request.outbound.line())
        opened = lambda: request.open(messages, session, on_retry=on_retry)  # noqa: E731
        await feed(opened, request.adapter.name, renderer, reply)
    except asyncio.CancelledError:  # also before the stream started (while reading the history)
        reply.status = INTERRUPTED
        raise
    except Exception as exc:  # before the stream: starting the renderer, choosing keywords
        _fail(reply, exc, "preparing the request")
    finally:
        reply.finished = reply.finished or time.monotonic()
        _close(request, renderer, reply)
        if request.spend is not None:
            charge_spend(request, reply)  # queued for the ledger's own thread: nothing waits for it
        if request.conversation is not None:
            await to_thread_to_the_end(_record, request, reply)
    return reply


async def to_thread_to_the_end(func: Callable[..., Any], *args: Any) -> None:
    """Run ``func`` in a thread and wait for its end even through a cancel (re-raised after it):
    a second interrupt while an answer is being recorded neither skips the record nor ends the cell
    before the record is in the store."""
    done = asyncio.ensure_future(asyncio.to_thread(func, *args))
    cancelled = False
    while not done.done():
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            cancelled = True  # a third interrupt waits too: the thread's own waits are bounded
    if cancelled:
        raise asyncio.CancelledError
    done.result()


def _close(request: Request, renderer: Renderer, reply: Reply) -> None:
    """The final draw, with the status line (and what the boundary masked, always)."""
    status = request.status_line(reply) if request.show_status and reply.status != FAILED else ""
    close_shown(renderer, reply, request.outcome_lines(status))


def close_shown(renderer: Renderer, reply: Reply, status: str = "") -> None:
    """The final draw; if it fails, the reply becomes what the last successful draw showed."""
    try:
        renderer.close(reply.text, reply.note, status)
    except Exception as exc:
        frame = getattr(renderer, "last_frame", None)
        shown = "" if frame is None or frame.waiting else frame.text
        reply.buffer = TextBuffer()
        reply.buffer.append(shown)
        if reply.error is None:  # the first failure is the cause the user is told
            reply.error = AnswerError.from_exception("showing the answer", exc)
        if reply.status != INTERRUPTED or not shown:
            reply.status = PARTIAL if shown else FAILED
        log.debug("closing the renderer failed", exc_info=exc)


def charge_spend(request: Request, reply: Reply) -> None:
    """Add the request's spend to the budget's ledger; a failure is said, never raised."""
    try:
        request.spend.charge(reply, request.price)
    except Exception as exc:
        reply.history_warning = reply.history_warning or history_problem(exc)


def history_problem(exc: Exception) -> str:
    """A history failure as the one line a front end says (``history_warning``)."""
    if isinstance(exc, AcytooError):
        return str(exc)
    return f"history failed: {type(exc).__name__}: {one_line(redact(str(exc)))}"


def _record(request: Request, reply: Reply) -> None:
    if request.conversation is None or reply.status == FAILED:
        return
    if reply.status != COMPLETE and not reply.text:
        return  # interrupted or dropped before any text: nothing worth keeping
    try:
        prompt, completion, estimated = reply.tokens()
        tokens = {"prompt_tokens": prompt, "completion_tokens": completion, "tokens_estimated": estimated}
        sent, meta = request.sent_prompt, request.stored_meta()
        request.conversation.record(sent, reply.text, reply.status, meta, request.cell, answer_meta=tokens)
    except Exception as exc:  # said, one line; a locked file keeps the exchange for the next write
        reply.history_warning = history_problem(exc)


class Runner:
    """Owns the extension's event-loop use: which loop, one shared HTTP session per loop, cancellation.

    In a kernel the magic awaits on the kernel's own loop (see ``magics.await_acytoo_calls``) and
    never comes here. ``run`` is for synchronous callers: a terminal shell (no loop runs: the
    runner's own loop, kept between cells), or a magic called from code inside a running loop (a
    worker thread with its own loop; the caller blocks as any cell does). Nesting the running loop
    with nest_asyncio is not used: under ipykernel 7 it loses shell messages (see docs/internals.md).
    """

    def __init__(self) -> None:
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._worker: LoopThread | None = None
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )
        self._closing: set[asyncio.Task[None]] = set()

    async def session(self) -> aiohttp.ClientSession:
        """The shared session of the running loop, so consecutive cells reuse connections."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = aiohttp.ClientSession()
            self._sessions[loop] = session
        return session

    def _owns(self, loop: asyncio.AbstractEventLoop) -> bool:
        return loop is self._own_loop or (self._worker is not None and loop is self._worker.loop)

    @contextlib.asynccontextmanager
    async def lease(self, keep: bool = True) -> AsyncIterator[aiohttp.ClientSession]:
        """The HTTP session for one request.

        The running loop's shared one where someone will close it: a loop the runner owns (closed
        with it), or ``keep`` (a kernel's loop, closed on unload; an ``async with Assistant()``
        block). Otherwise (``asyncio.run(assistant.ask(...))`` in a script, whose loop ends without
        a word to us) a session of its own, closed when the request ends: no "Unclosed client
        session" is left behind.
        """
        if keep or self._owns(asyncio.get_running_loop()):
            yield await self.session()
            return
        async with aiohttp.ClientSession() as session:
            yield session

    async def aclose(self) -> None:
        """Close the running loop's shared session now (``async with Assistant()`` ends here)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to the end from synchronous code; on interrupt, cancel it, wait for its cleanup."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a terminal: our own loop, kept between cells
            if self._own_loop is None or self._own_loop.is_closed():
                self._own_loop = asyncio.new_event_loop()
            return run_until_done(self._own_loop, coro)
        # Inside running code (%%time, a function in a cell): the loop here is busy running us.
        if self._worker is None or not self._worker.alive:
            self._worker = LoopThread("acytoo-runner")
        return self._worker.run(coro)

    def _close_soon(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
        task = loop.create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def close(self) -> None:
        """Close every session this runner opened (on unload), and the loops it owns."""
        for loop, session in list(self._sessions.items()):
            if session.closed or loop.is_closed():
                continue
            if self._worker is not None and loop is self._worker.loop:
                with contextlib.suppress(Exception):
                    self._worker.run(session.close(), timeout=10)
            elif loop is self._own_loop and not loop.is_running():
                _run_to_end(loop, session.close())
            elif loop.is_running():  # the kernel's loop: close as soon as this cell yields
                loop.call_soon_threadsafe(self._close_soon, loop, session)
        self._sessions.clear()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._own_loop is not None and not self._own_loop.is_running():
            self._own_loop.close()
            self._own_loop = None


def _run_to_end(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """``loop.run_until_complete(coro)``; in a thread of its own if another loop runs in this one
    (``aclose`` inside ``asyncio.run`` closing what ``ask_sync`` opened on the runner's loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return loop.run_until_complete(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="acytoo-close") as pool:
        return pool.submit(loop.run_until_complete, coro).result()
