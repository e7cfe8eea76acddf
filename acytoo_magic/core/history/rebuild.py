"""The thread rebuilt from the saved notebook: what the document shows, plus what this kernel said since.

When a thread's notebook is a known file (``document.Documents``), what a request sends is no
longer the history file's rows but:

* the exchanges the saved document records, in document order (a moved cell moves in the thread,
  a deleted and saved cell leaves it, cleared outputs leave nothing; a copy carries them along);
* then this kernel's own exchanges written after that save (the document cannot show them yet).
  One from a cell the document already records takes that record's place: a re-run replaces;
* and, in time order among them, the exchanges no cell's answer shows that the history file keeps
  under this notebook (asked from code or the chat; a copy of the notebook, under another name,
  does not carry them).

A record is sent only as the document visibly shows it (``document._checked``): its prompt is the
cell's text and its answer is in the cell's outputs. One that does not match (an edited cell, an
output changed by hand, a crafted file) and the chat's saved copy's records are listed, never
sent. Rows of the history file that are none of the above (another kernel's, or older than the
save and not in the document) are the *cache*: listed by ``%acytoo history`` as such, never sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .document import Recorded, exchange_hash, shows
from .store import Message
from .thread import exchanges

DOCUMENT, KERNEL, CACHE = "document", "this kernel", "cache"
UNDRAWN = "history file (asked from code or the chat)"
CHAT = "document (the chat's saved copy)"
STORED = "history file"  # no saved document behind the thread: the file is the record
LEGACY = "history file (its output was saved without a record)"


@dataclass(frozen=True)
class Exchange:
    """One exchange of a rebuilt thread, and where it came from."""

    prompt: Message
    answer: Message
    origin: str  # DOCUMENT, KERNEL (newer than the save) or CACHE (the history file only: not sent)
    exchange: str = ""  # its id ("" for a row written before exchanges had ids)
    hash: str = ""
    key: str = ""  # the asking cell as the kernel knew it
    stale: bool = False
    verified: bool = True
    parent: tuple[str, str] = ("", "")  # (id, hash) of the exchange it followed when asked


def from_record(entry: Recorded, origin: str = DOCUMENT) -> Exchange:
    """A document's record as the two messages it is sent as: the prompt and the answer as the
    document shows them (``document._checked``), nothing else: no prompt "as sent", no episode's
    tool calls or results, no other role (a notebook you receive is input to the model)."""
    created = _seconds(entry.meta.get("time")) or 0.0
    cell = entry.key or (f"id:{entry.cell}" if entry.cell and not entry.chat else None)  # None: a chat
    return Exchange(
        Message("user", entry.prompt, created=created, cell=cell),
        Message("assistant", entry.answer, entry.outcome, created=created, cell=cell),
        origin,
        entry.exchange,
        entry.hash,
        entry.key,
        entry.stale,
        entry.verified,
        (entry.parent, entry.parent_hash),
    )


def from_rows(prompt: Message, answer: Message, origin: str) -> Exchange:
    """A pair of history rows; its chain fields as ``meta`` recorded them (new rows have them)."""
    meta: Mapping[str, Any] = answer.meta
    chain = meta.get("chain") if isinstance(meta.get("chain"), Mapping) else {}
    parent = chain.get("parent") or ["", ""]
    exchange, stored_hash = str(chain.get("exchange") or ""), str(chain.get("hash") or "")
    verified = True
    if stored_hash:
        typed = prompt.meta.get("typed")  # the record hashes the prompt as typed
        asked = typed if isinstance(typed, str) else prompt.content
        verified = stored_hash == exchange_hash(str(parent[1]), str(chain.get("thread") or ""),
                                                asked, answer.content, answer.outcome)
    return Exchange(prompt, answer, origin, exchange, stored_hash, prompt.cell or "", False, verified,
                    (str(parent[0]), str(parent[1])))


def unsent(records: Sequence[Recorded]) -> list[Exchange]:
    """The document's records that are not sent (``Recorded.problem``), for the listing."""
    return [from_record(entry, f"document ({entry.problem})") for entry in records if entry.problem]


def _documented(entry: Recorded, mine: Mapping[str, Exchange]) -> Exchange:
    """A record the document shows; this kernel's own rows for the same exchange when it has them
    (the prompt as it was sent, data summaries included): a save changes nothing it sends."""
    pair = mine.get(entry.exchange) if entry.exchange else None
    if pair is None:
        return from_record(entry)
    return Exchange(pair.prompt, pair.answer, DOCUMENT, entry.exchange, entry.hash, entry.key,
                    entry.stale, entry.verified, (entry.parent, entry.parent_hash))


def _legacy(entry: Recorded, pairs: Sequence[tuple[Message, Message]]) -> Exchange | None:
    """A cell whose outputs hold no record (saved before records, or at "off"): its newest
    exchange in the history file, sent as it was before the notebook was the record, when its
    outputs show that answer (not, say, the error of a failed run since)."""
    for prompt, answer in reversed(pairs):
        if prompt.cell is not None and prompt.cell.startswith(entry.key):
            shown = shows(entry.answer, answer.content) is not None
            return from_rows(prompt, answer, LEGACY) if shown else None
    return None


def rebuild(
    records: Sequence[Recorded], saved_at: float, rows: Sequence[Message], kernel: str | None
) -> list[Exchange]:
    """The thread to send: the document's records, then this kernel's exchanges newer than the save."""
    pairs = exchanges(rows)
    read = [from_rows(q, a, "") for q, a in pairs]  # each row's chain checked once, its origin set below
    mine = {pair.exchange: pair for pair in read if pair.exchange}
    recorded = {entry.exchange for entry in records if entry.exchange and not entry.chat}
    undrawn = [
        replace(pair, origin=UNDRAWN)
        for pair in read
        if pair.prompt.cell is None and (not pair.exchange or pair.exchange not in recorded)
    ]
    cells, documented = [], []
    for entry in records:
        if entry.chat or entry.problem:
            continue  # listed (``unsent``), never sent
        made = _legacy(entry, pairs) if entry.legacy else _documented(entry, mine)
        if made is not None:
            cells.append(entry)
            documented.append(made)
    thread = _by_time(documented, cells, undrawn)
    used = {entry.answer.id for entry in thread if entry.answer.id is not None}
    for pair in read:
        if pair.prompt.cell is None or not newer(pair.answer, saved_at, kernel) or pair.answer.id in used:
            continue
        if pair.exchange and pair.exchange in recorded:
            continue
        pair = replace(pair, origin=KERNEL)
        at = next((i for i, entry in enumerate(thread) if pair.key and entry.key == pair.key), None)
        if at is None:
            thread.append(pair)
        else:  # the same cell asked again since the save: its new exchange stands in its place
            thread[at] = pair
    return thread


def _by_time(
    documented: list[Exchange], records: Sequence[Recorded], undrawn: list[Exchange]
) -> list[Exchange]:
    """The document's exchanges in document order, each undrawn one before the first recorded later."""
    merged: list[Exchange] = []
    waiting = sorted(undrawn, key=lambda entry: entry.answer.created)
    for entry, recorded in zip(documented, records, strict=True):
        when = _seconds(recorded.meta.get("time"))
        while waiting and when is not None and waiting[0].answer.created < when:
            merged.append(waiting.pop(0))
        merged.append(entry)
    return merged + waiting


def _seconds(stamp: Any) -> float | None:
    """A record's ISO time as seconds since the epoch (None when it has none readable)."""
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):  # a received notebook's time may be anything
        return None


def newer(answer: Message, saved_at: float, kernel: str | None) -> bool:
    """Whether a row is this kernel's and was written after the document was saved."""
    return kernel is not None and answer.meta.get("kernel") == kernel and answer.created > saved_at


def before(thread: Sequence[Exchange], cell: str | None) -> list[Exchange]:
    """What stands before the asking cell's own exchange (all of it for a cell not in the thread)."""
    if cell is None:
        return list(thread)
    at = next((i for i, entry in enumerate(thread) if entry.key == cell), None)
    return list(thread if at is None else thread[:at])


def messages(thread: Sequence[Exchange]) -> list[Message]:
    """The thread as the alternating messages ``trim`` takes."""
    return [message for entry in thread for message in (entry.prompt, entry.answer)]


def cached(
    thread: Sequence[Exchange], rows: Sequence[Message], listed: Sequence[Exchange] = ()
) -> list[Exchange]:
    """The history file's exchanges that the rebuilt thread leaves out: the cache, not sent
    (``listed``: the document's records not sent, listed already, so their rows are not again)."""
    used = {entry.exchange for entry in [*thread, *listed] if entry.exchange}
    used_rows = {entry.answer.id for entry in thread if entry.answer.id is not None}
    found = []
    for prompt, answer in exchanges(rows):
        pair = from_rows(prompt, answer, CACHE)
        if answer.id in used_rows or (pair.exchange and pair.exchange in used):
            continue
        found.append(pair)
    return found


def chain_problems(thread: Sequence[Exchange]) -> list[str]:
    """Where the thread's chain does not verify, one line each (an empty list: it verifies).

    Each exchange must hash to its own content and name as its parent the exchange before it; an
    exchange without an id (written before exchanges had one) is not judged. A break says the
    thread changed since an exchange was asked: one before it was re-run, moved or removed, or
    its record was changed. The hash catches accidents, not tampering (anyone can recompute a
    sha256): what is sent is what the document shows, checked there (``document._checked``).
    """
    problems: list[str] = []
    last: Exchange | None = None
    for entry in thread:
        if entry.exchange:
            if not entry.verified:
                problems.append(f"{entry.exchange[:8]}: its record changed after it was written")
            expected = (last.exchange, last.hash) if last is not None else ("", "")
            if last is not None and not last.exchange:
                expected = entry.parent  # the exchange before it has no id: nothing to compare
            if entry.parent != expected:
                problems.append(f"{entry.exchange[:8]}: asked after another exchange (one before it "
                                "was re-run, moved or removed since)")
        last = entry
    return problems
