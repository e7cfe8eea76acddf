"""One answer's request and reply: what is asked of a provider, and what came of it.

``Request`` is everything one answer needs (built by ``Assistant.request``): the provider and its
options, the thread, the prompt, the outbound boundary its messages leave through. ``Reply`` is how
it ended: the text, the outcome, the figures the status line shows. ``Preview`` is a request shown,
not sent (``--dry-run``, the chat's Preview). The cost formula and the status line are built here,
once, for answers and agent episodes alike.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from ..providers import Adapter, adapt
from ..providers.base import ToolCall, Usage, remote_host, url_host
from .errors import AcytooError, AcytooInterrupted
from .frames import TextBuffer
from .history.document import KEY, record
from .history.thread import Conversation
from .outbound import Outbound
from .outcome import COMPLETE, INTERRUPTED, label
from .tools import TOOL_SPECS

CHARS_PER_TOKEN = 4  # a common rule of thumb for English text, used only when no counts are reported


def cost(prompt_tokens: int, completion_tokens: int, price: tuple[float, float] | None) -> float:
    """What tokens cost at ``price`` (per million prompt and completion tokens; no price, nothing):
    the one formula of status lines, episodes and daily budgets."""
    if price is None:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


class Finished(Protocol):
    """An answer (``Reply``) or an agent episode (``agent.Episode``) once it is over."""

    error: AcytooError | None
    history_warning: str


def problem(result: Finished) -> str:
    """What a front end tells the user once an answer or episode is over: the error that ended it,
    else why the history could not keep it ("" when neither)."""
    return str(result.error) if result.error is not None else result.history_warning


@dataclass
class Reply:
    """One request's result: the answer, its outcome (how it ended), figures for the status line."""

    chunks: int = 0
    outcome: str = COMPLETE  # how it ended (``outcome.Outcome``)
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
    # its final output's metadata (``Request.notebook_record``)
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def answer(self) -> str:
        """What the model said (so far, while it streams)."""
        return self.buffer.text

    def tokens(self) -> tuple[int, int, bool]:
        """(prompt, completion, estimated): reported counts, else an estimate of 4 characters a token."""
        usage = self.usage
        if usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
            return usage.prompt_tokens, usage.completion_tokens, False
        return -(-self.prompt_chars // CHARS_PER_TOKEN), -(-len(self.answer) // CHARS_PER_TOKEN), True

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def raise_for_status(self) -> None:
        """Raise the provider's error if the request failed or dropped, or ``AcytooInterrupted``."""
        if self.error is not None:
            raise self.error
        if self.outcome == INTERRUPTED:
            raise AcytooInterrupted("interrupted; the partial answer is kept, marked")

    @property
    def note(self) -> str:
        """What the output area says under the text when the answer is not complete."""
        reason = getattr(self.error, "message", str(self.error)) if self.error is not None else ""
        return label(self.outcome, reason)


@dataclass
class Request:
    """Everything one answer needs; built by a front end from its options."""

    prompt: str
    provider: Any
    model: str
    conversation: Conversation | None = None
    system: str = ""
    history_chars: int = 12_000  # how much of the thread goes with the prompt
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
    # How much the answer's final output records of itself (``Assistant.notebook_record``), and the
    # source of the asking cell (an edit since marks the answer stale).
    record_level: str = "off"
    cell_source: str = ""
    exchange: str = field(default_factory=lambda: uuid.uuid4().hex)
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

    def typed_prompt(self) -> str:
        """The prompt as typed (before ``{name}`` expansion), masked at the boundary without its
        allow-list: a secret sent with ``--send-secret`` is never kept in the notebook's record."""
        typed = self.meta.get("typed")
        return self.outbound.strict().mask(typed if isinstance(typed, str) else self.prompt)

    def notebook_record(
        self, answer: str, outcome: str, tokens: tuple[int, int, bool], seconds: float,
        episode: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What the answer's final output carries under ``document.KEY`` (no key, no secret: the
        host without credentials, prompts masked), at ``record_level``; {} when "off" or for an
        answer no thread keeps (``--no-history``)."""
        if self.conversation is None:
            return {}
        prompt, completion, estimated = tokens
        details: dict[str, Any] = {
            "provider": self.provider_label or self.adapter.name,
            # no URL: the bundled model answers here; a foreign provider posts where it knows
            "host": url_host(self.adapter.target(self.options.get("url")))
            or ("this machine" if self.adapter.builtin else "not known"),
            "model": self.model,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "seconds": round(seconds, 3),
            "tokens": {"in": prompt, "out": completion, "estimated": estimated},
            "cost": round(cost(prompt, completion, self.price), 6) if self.price is not None else None,
            # masked again without the allow-list: ``--send-secret`` sends, the record keeps nothing
            "sent": self.outbound.strict().mask(self.sent_prompt) if self.record_level == "full" else None,
            "episode": _each_text(dict(episode), self.outbound.strict().mask) if episode else None,
        }
        return record(
            exchange=self.exchange,
            thread=self.conversation.thread,
            prompt=self.typed_prompt(),
            answer=answer,
            outcome=str(outcome),
            parent=self.conversation.parent,
            source=self.cell_source,
            key=self.cell or "",
            level=self.record_level,
            **details,
        )

    def chain(self, answer: str, outcome: str) -> dict[str, Any]:
        """What the history file keeps of the record's chain (with the answer's row), at any level,
        so an exchange newer than the save takes its place in a thread rebuilt from the document."""
        made = record(
            exchange=self.exchange, thread=self.conversation.thread if self.conversation else "",
            prompt=self.typed_prompt(), answer=answer, outcome=str(outcome),
            parent=self.conversation.parent if self.conversation else None, level="provenance",
        )[KEY]
        parent = made["parent"] or {}
        return {"exchange": self.exchange, "hash": made["hash"], "thread": made["thread"],
                "parent": [parent.get("exchange", ""), parent.get("hash", "")]}

    def small_print(self, status_line: str) -> str:
        """What is written under an answer: what the boundary masked, then the status line."""
        unsent = self.conversation.unsent_note if self.conversation is not None else ""
        return "\n".join(line for line in (self.outbound.line(), unsent, status_line) if line)

    def source(self) -> str:
        """The provider's label, with its host when that is not this machine: ``openai
        (api.openai.com)``, ``local``; what every status line starts with."""
        name = self.provider_label or self.adapter.name
        host = remote_host(self.adapter.target(self.options.get("url")))  # "" on this machine
        return f"{name} ({host})" if host else name

    def build_status_line(self, done: str, tokens: tuple[int, int, bool], *more: str) -> str:
        """The status line under an answer or an episode, built here only: provider (and its host),
        model, ``done`` (its size, time, calls), tokens and what they cost, then ``more``. How an
        unfinished one ended is not repeated here: the note above the line says it."""
        prompt, completion, estimated = tokens
        about = "≈" if estimated else ""
        parts = [self.source(), self.model, done, f"{about}{prompt:,} tokens in, {about}{completion:,} out"]
        if self.price is not None:
            parts.append(f"{about}{cost(prompt, completion, self.price):.4f} cost")
        return " · ".join(p for p in [*parts, *more] if p)

    def status_line(self, reply: Reply) -> str:
        """The status line under a finished answer (``build_status_line``)."""
        at_limit = "stopped at the token limit" if reply.finish_reason == "length" else ""
        stopped = reply.finish_note or at_limit
        done = f"{len(reply.answer):,} characters in {reply.elapsed:.1f} s"
        return self.build_status_line(done, reply.tokens(), stopped)

    def messages(self, history: bool = True, tools: bool = False) -> list[dict[str, Any]]:
        """What is to be sent (``open`` masks it on the way out): with ``history``, the thread's
        recent exchanges before the prompt; with ``tools`` (a request carrying tools), past
        episodes with their steps."""
        if history and self.conversation is not None:
            return self.conversation.to_send(self.prompt, self.system, self.history_chars, self.cell, tools)
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, {"role": "user", "content": self.prompt}]

    def leaving(self, history: bool = True, tools: bool = False) -> list[dict[str, Any]]:
        """``messages`` as they leave the boundary (what ``open`` sends; Preview shows this)."""
        return self.masked(self.messages(history, tools))

    def masked(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``messages`` through the boundary, its secrets read again first (as ``open`` does)."""
        self.outbound.refresh()
        return self.outbound.mask_messages(messages)


@dataclass
class Preview:
    """What a request would send (``--dry-run``): the body as it leaves the boundary (secrets masked,
    no credentials), its size, its tokens, and what was masked."""

    body: dict[str, Any]
    masked: str = ""  # the boundary's line ("masked 2 secrets before sending: ...")

    @property
    def text(self) -> str:
        return json.dumps(self.body, indent=1, ensure_ascii=False)

    @property
    def chars(self) -> int:
        return sum(len(json.dumps(m, ensure_ascii=False)) for m in self.body["messages"]) + len(
            json.dumps(self.body.get("tools", []))
        )

    def summary(self) -> str:
        count = len(self.body["messages"])
        tokens = -(-self.chars // CHARS_PER_TOKEN)
        return (
            f"dry run: nothing sent · {count} messages · {self.chars:,} characters · ≈{tokens:,} tokens "
            f"(≈{CHARS_PER_TOKEN} characters a token) to {self.body['model']}"
        )


def preview(request: Request, agent: bool = False) -> Preview:
    """The exact messages (and tools) ``request`` would send; reads the history, sends nothing."""
    body: dict[str, Any] = {"model": request.model, "messages": request.leaving(tools=agent)}
    if agent:
        body["tools"] = TOOL_SPECS
    return Preview(body, request.outbound.line())


def _each_text(value: Any, change: Any) -> Any:
    """``value`` (JSON-like: an episode's record) with ``change`` applied to every string in it."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, Mapping):
        return {k: _each_text(v, change) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_each_text(v, change) for v in value]
    return value
