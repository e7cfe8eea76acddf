"""Running a provider's stream and turning it into a recorded answer.

``answer`` sends one request, feeds its stream to a renderer (a front end's drawer, or nothing),
draws the final frame with its status line, and records what the user last saw: whatever fails
where, the record is the screen, with an outcome that says how it ended. Which loop this runs on
is ``loops``'s; a kernel interrupt arrives as a cancel, and closes the stream's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp

from ..providers import adapt, provider_name
from ..providers.base import Progress, ToolCalls, Usage
from .errors import AcytooError, AnswerError, ProviderError, one_line
from .frames import Renderer, TextBuffer
from .outbound import redact
from .outcome import COMPLETE, FAILED, INTERRUPTED, PARTIAL
from .request import Reply, Request

T = TypeVar("T")
log = logging.getLogger(__name__)
MASK_ON_LOOP_CHARS = 16_000  # a request this short is masked on the loop (under a ms); longer: in a thread
CHARS_PER_TOKEN = 4  # a common rule of thumb for English text, used only when no counts are reported


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
        reply.outcome = INTERRUPTED
        raise
    except Exception as exc:
        _fail(reply, exc, "streaming the answer")
    finally:
        reply.finished = time.monotonic()
    return reply


def _fail(reply: Reply, exc: Exception, where: str) -> None:
    """End ``reply`` with ``exc`` as its one-line error: partial if it has text, else failed."""
    reply.error = exc if isinstance(exc, AcytooError) else AnswerError.from_exception(where, exc)
    reply.outcome = PARTIAL if reply.answer else FAILED
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
        reply.outcome = INTERRUPTED
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
    """The final draw, with the small print: what the boundary masked (always), the status line,
    and, for an answer the thread keeps, its record (the output's metadata: the saved notebook
    drops the display id, so only the final update can carry it)."""
    status_line = request.status_line(reply) if request.show_status and reply.outcome != FAILED else ""
    if _kept(reply):
        reply.record = request.notebook_record(reply.answer, reply.outcome, reply.tokens(), reply.elapsed)
        keep_record(renderer, reply.record)
    close_shown(renderer, reply, request.small_print(status_line))


def keep_record(renderer: Any, metadata: Mapping[str, Any]) -> None:
    """Hand the final output's metadata to a renderer that draws one (``keep_record``); others
    (a terminal, a script) have nowhere to keep it."""
    keep = getattr(renderer, "keep_record", None)
    if metadata and keep is not None:
        keep(metadata)


def _kept(reply: Reply) -> bool:
    """Whether the history keeps this answer: not a failure, not an interruption before any text."""
    return reply.outcome != FAILED and (reply.outcome == COMPLETE or bool(reply.answer))


def close_shown(renderer: Renderer, reply: Reply, small_print: str = "") -> None:
    """The final draw; if it fails, the reply becomes what the last successful draw showed."""
    try:
        renderer.close(reply.answer, reply.note, small_print)
    except Exception as exc:
        frame = getattr(renderer, "last_frame", None)
        shown = "" if frame is None or frame.waiting else frame.text
        reply.buffer = TextBuffer()
        reply.buffer.append(shown)
        if reply.error is None:  # the first failure is the cause the user is told
            reply.error = AnswerError.from_exception("showing the answer", exc)
        if reply.outcome != INTERRUPTED or not shown:
            reply.outcome = PARTIAL if shown else FAILED
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
    if request.conversation is None or not _kept(reply):
        return  # failed, or interrupted or dropped before any text: nothing worth keeping
    try:
        prompt, completion, estimated = reply.tokens()
        tokens = {"prompt_tokens": prompt, "completion_tokens": completion, "tokens_estimated": estimated,
                  "chain": request.chain(reply.answer, reply.outcome)}
        sent, meta = request.sent_prompt, request.stored_meta()
        request.conversation.record(sent, reply.answer, reply.outcome, meta, request.cell, answer_meta=tokens)
    except Exception as exc:  # said, one line; a locked file keeps the exchange for the next write
        reply.history_warning = history_problem(exc)


