"""A thread of a notebook: what it holds, and what of it is sent with a prompt.

A thread is a sequence of exchanges (a prompt and its answer); an exchange that came from a
notebook cell remembers the cell, and re-running the cell replaces it in place, so the thread reads
like the notebook and Run All twice sends what the first run sent. What is sent to a provider is
the system prompt plus the newest whole exchanges that fit a character allowance (``trim``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from ..errors import StoreClosed
from ..outcome import COMPLETE
from .store import HistoryStore, Message

T = TypeVar("T")

DEFAULT_THREAD = "default"
# A past message longer than this share of the history allowance is cut (marked), so one huge
# answer never pushes every older exchange out of what is sent.
MESSAGE_SHARE = 4


def exchanges(messages: Sequence[Message]) -> list[tuple[Message, Message]]:
    """The (prompt, answer) pairs of a thread; a message without its partner is left out."""
    return [(a, b) for a, b in itertools.pairwise(messages) if a.role == "user" and b.role == "assistant"]


def cut(message: Message, limit: int) -> Message:
    """The message cut to ``limit`` characters, its start and end kept, the cut marked in the text."""
    text = message.content
    if len(text) <= limit:
        return message
    marker = f"\n[… {len(text):,} characters, cut to {limit:,} for this request …]\n"
    keep = max(0, limit - len(marker))
    head = keep * 2 // 3
    tail = keep - head
    return replace(message, content=text[:head] + marker + (text[-tail:] if tail else ""))


def without_steps(message: Message) -> Message:
    """The answer alone: an episode's steps are sent whole or not at all."""
    if not message.tool_messages():
        return message
    return replace(message, meta={k: v for k, v in message.meta.items() if k != "episode"})


def trim(messages: Sequence[Message], history_chars: int) -> list[Message]:
    """The system prompt, the newest whole exchanges that fit ``history_chars`` characters, the prompt.

    The last message is the prompt being sent and is always kept. A past message longer than
    ``history_chars // MESSAGE_SHARE`` is cut to that, so a very long answer costs at most its share and
    older exchanges still fit. What results alternates user/assistant and never starts with an
    answer, as chat templates (llama.cpp, vLLM) require.
    """
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    if not rest:
        return system
    *past, prompt = rest
    used = sum(len(m.content) for m in system) + len(prompt.content)
    limit = max(1, history_chars // MESSAGE_SHARE)
    kept: list[Message] = []
    for question, answer in reversed(exchanges(past)):
        answer = cut(answer, limit)
        if answer.size() > limit:  # an episode too big for its share goes as prompt and answer
            answer = without_steps(answer)
        pair = [cut(question, limit), answer]
        size = sum(m.size() for m in pair)
        if used + size > history_chars:
            break  # only the newest run of exchanges: a gap would confuse the model more than help
        kept[:0] = pair
        used += size
    return [*system, *kept, prompt]


class Conversation:
    """One notebook's named thread: what to send for a new prompt, and recording the exchange.

    ``cell`` names the notebook cell a prompt came from: its exchange keeps its place in the
    thread, and what is sent with it is only what stands before that place.

    ``documents`` (a ``document.Documents``) finds the saved notebook behind a key: when it is a
    readable file, the thread is rebuilt from it (``rebuild``) and the history file is its
    cache; ``kernel`` is this kernel's id, whose exchanges newer than the save count too.
    """

    def __init__(
        self,
        store: HistoryStore | Callable[[], HistoryStore],
        notebook: str | Callable[[], str],
        thread: str = DEFAULT_THREAD,
        documents: Any = None,
        kernel: str | None = None,
    ) -> None:
        self._store = store  # or how to get it: opened on first use, off the event loop
        self._notebook = notebook  # or how to find it: resolved on first use, then kept
        self.thread = thread
        self._documents = documents
        self.kernel = kernel
        # Said under the answer when the document leaves history-file exchanges out (once a change)
        self.unsent_note = ""
        self.left_out: list[Any] = []  # the history file's exchanges a rebuilt thread leaves out
        self.unsent: list[Any] = []  # the document's records it leaves out (they match nothing shown)
        self.problem = ""  # why the saved notebook could not be read ("" : it could, or there is none)
        # (id, hash) of the exchange the prompt follows, found by ``to_send``: the record's parent
        self.parent: tuple[str, str] | None = None

    @property
    def store(self) -> HistoryStore:
        return self._store if isinstance(self._store, HistoryStore) else self._store()

    @property
    def notebook(self) -> str:
        """The notebook's key; found on first use (off the event loop) and the same for the exchange."""
        if not isinstance(self._notebook, str):
            self._notebook = self._notebook()
        return self._notebook

    def _with_store(self, work: Callable[[HistoryStore], T]) -> T:
        """``work(store)``; if the store was replaced meanwhile (``history_path`` changed), on the new one."""
        try:
            return work(self.store)
        except StoreClosed:
            if isinstance(self._store, HistoryStore):
                raise
            return work(self.store)

    def messages(self, limit: int | None = None, before: int | None = None) -> list[Message]:
        return self._with_store(lambda store: store.load(self.notebook, self.thread, limit, before))

    def to_send(
        self,
        prompt: str,
        system: str = "",
        history_chars: int = 12_000,
        cell: str | None = None,
        tools: bool = False,
    ) -> list[dict[str, Any]]:
        """The provider's ``messages``: system prompt, as much recent history as fits, the prompt.

        ``tools``: the request carries tools (agent mode), so a past agent episode is sent with its
        assistant ``tool_calls`` and ``tool`` results (whole); otherwise as prompt and answer, which
        every provider accepts (some refuse tool messages in a request without ``tools``).
        """

        from .rebuild import before, from_rows, messages

        def read(store: HistoryStore) -> list[Message]:
            # Only the recent tail can fit; loading a bounded window keeps a long thread cheap.
            window = max(64, history_chars // 16)
            rebuilt = self.rebuilt(store, window)
            if rebuilt is None and self.problem and self._documents.once(self.notebook, self.problem):
                self.unsent_note = self.problem  # once: said under the answer, the file is the thread
            if rebuilt is not None:
                left_out = len(self.left_out)
                if self._documents.news(self.notebook, self.thread, left_out):
                    self.unsent_note = (
                        f"{left_out} earlier exchange{'s' if left_out != 1 else ''} of this thread "
                        "in the history file, not in the saved notebook: not sent (%acytoo history)"
                    )
                asked_after = before(rebuilt, cell)
                last = asked_after[-1] if asked_after else None
                self.parent = (last.exchange, last.hash) if last is not None and last.exchange else None
                return messages(asked_after)
            position = store.position(self.notebook, self.thread, cell) if cell is not None else None
            rows = store.load(self.notebook, self.thread, window, position)
            pairs = exchanges(rows)
            last = from_rows(*pairs[-1], "") if pairs else None
            self.parent = (last.exchange, last.hash) if last is not None and last.exchange else None
            return rows

        past = self._with_store(read)
        head = [Message("system", system)] if system else []
        if not tools:
            past = [without_steps(m) for m in past]
        chosen = trim([*head, *past, Message("user", prompt)], history_chars)
        return [sent for m in chosen for sent in m.provider_messages(tools)]

    def document(self) -> Any:
        """The saved notebook this thread is rebuilt from (a ``DocumentRecord``), else None."""
        return self._documents.for_key(self.notebook) if self._documents is not None else None

    def rebuilt(self, store: HistoryStore, window: int | None = None) -> list[Any] | None:
        """The thread as the document and this kernel make it (``rebuild.Exchange``s), None when no
        readable document stands behind it (the history file's rows are the thread then)."""
        from .rebuild import cached, rebuild, unsent

        document = self.document()
        found = document.thread(self.thread) if document is not None else None
        if found is None:
            self.problem = document.problem if document is not None else ""
            return None
        records, saved_at = found
        rows = store.load(self.notebook, self.thread, window)
        thread = rebuild(records, saved_at, rows, self.kernel)
        self.unsent = unsent(records)  # the document's records that do not match what it shows
        self.left_out = cached(thread, rows, self.unsent)  # the cache: in the history file, not sent
        return thread

    def sources(self) -> tuple[list[Any], list[Any], bool]:
        """For ``%acytoo history``: the thread as it is sent (``rebuild.Exchange``s, each saying
        where it came from), what is left out of it (the document's records that match nothing it
        shows, then the history file's exchanges: the cache; none sent), and whether a saved
        document stands behind it (``problem`` says why one that exists could not be read)."""
        from .rebuild import STORED, from_rows

        def work(store: HistoryStore) -> tuple[list[Any], list[Any], bool]:
            rebuilt = self.rebuilt(store)
            if rebuilt is None:
                rows = store.load(self.notebook, self.thread)
                return [from_rows(q, a, STORED) for q, a in exchanges(rows)], [], False
            return rebuilt, [*self.unsent, *self.left_out], True

        return self._with_store(work)

    def record(
        self,
        prompt: str,
        answer: str,
        outcome: str = COMPLETE,
        meta: dict[str, Any] | None = None,
        cell: str | None = None,
        answer_meta: dict[str, Any] | None = None,
    ) -> None:
        """Store the exchange; ``meta`` goes with both messages, ``answer_meta`` (tokens) with the answer."""
        now = time.time()
        question = Message("user", prompt, COMPLETE, now, meta or {})
        said = Message("assistant", answer, outcome, now, {**(meta or {}), **(answer_meta or {})})
        self._with_store(
            lambda store: store.record_exchange(self.notebook, self.thread, question, said, cell)
        )
