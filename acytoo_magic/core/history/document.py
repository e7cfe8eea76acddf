"""The notebook is the record: each answer's final output says what it answered, and a thread is
read back from the saved document.

An answer's last output (the magic's, an agent episode's) carries namespaced metadata (``KEY``):
which exchange it is, its thread, the exchange before it (id and content hash, so the chain can be
verified, as llm's log does), where it came from (provider, host, model: never a key), what it
cost, how it ended, the prompt as typed and the answer as shown. nbformat keeps any JSON there,
JupyterLab keeps it through save and reload, and nbconvert, GitHub and nbviewer show the output,
never its metadata. Shared or copied, the notebook carries its conversation.

``DocumentRecord`` reads a saved ``.ipynb`` for those records, in document order, and reads it
again only when the file changed (its size and modification time): a request costs one ``stat``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KEY = "acytoo_magic"
VERSION = 1
LEVELS = ("full", "provenance", "off")

try:  # jupyter_client's own packer when installed: a 5 MB notebook parses in a fraction of the time
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - orjson is a dependency; json is the fallback

    def _loads(data: bytes) -> Any:
        return json.loads(data)


def exchange_hash(parent: str, thread: str, prompt: str, answer: str, outcome: str) -> str:
    """The content hash that chains an exchange to the one before it."""
    fields = [parent, thread, prompt, answer, outcome]
    canonical = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def source_hash(source: str) -> str:
    """A cell's source, hashed: an answer whose cell was edited since is stale."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True)
class Recorded:
    """One exchange as the document records it, in document order."""

    exchange: str
    thread: str
    prompt: str
    answer: str
    outcome: str
    hash: str
    parent: str = ""  # the exchange before it in its thread, when it was asked ("" for the first)
    parent_hash: str = ""
    key: str = ""  # the asking cell as the kernel knew it ("id:<cell id>#0"; a re-run replaces it)
    cell: str = ""  # the nbformat id of the cell whose output holds it
    index: int = 0  # the cell's place in the document
    stale: bool = False  # the cell's source was edited since the answer
    verified: bool = True  # its hash matches its content
    chat: bool = False  # recorded by the chat widget's saved copy, not by a cell's answer
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def sent(self) -> str:
        """The prompt to send again: as it was sent (level "full"), else as it was typed."""
        value = self.meta.get("sent")
        return value if isinstance(value, str) and value else self.prompt

    @property
    def episode(self) -> Mapping[str, Any]:
        """An agent episode's stored steps and messages ({} for an answer)."""
        value = self.meta.get("episode")
        return value if isinstance(value, Mapping) else {}


def record(
    *,
    exchange: str,
    thread: str,
    prompt: str,
    answer: str,
    outcome: str,
    parent: tuple[str, str] | None = None,
    source: str = "",
    key: str = "",
    level: str = "provenance",
    **details: Any,
) -> dict[str, Any]:
    """The metadata an answer's final output carries (``{KEY: {...}}``); {} with ``level`` "off".

    ``details``: provider, host, model, time, seconds, tokens, cost, and, at level "full", ``sent``
    (the prompt as it left the boundary) and an episode's ``episode`` (its steps, bounded).
    ``parent``: (exchange id, hash) of the exchange before it in its thread, None for the first.
    """
    if level == "off":
        return {}
    parent_hash = parent[1] if parent is not None else ""
    entry: dict[str, Any] = {
        "v": VERSION,
        "exchange": exchange,
        "thread": thread,
        "parent": {"exchange": parent[0], "hash": parent_hash} if parent is not None else None,
        "hash": exchange_hash(parent_hash, thread, prompt, answer, outcome),
        "source": source_hash(source) if source else "",
        "cell": key,
        "outcome": outcome,
        "prompt": prompt,
        "answer": answer,
    }
    full_only = ("sent",)  # an episode's ``episode`` is bounded by the caller per level
    kept = {k: v for k, v in details.items() if v not in (None, "")
            and (level == "full" or k not in full_only)}
    entry.update(kept)
    return {KEY: entry}


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def records_of(notebook: Mapping[str, Any]) -> list[Recorded]:
    """Every recorded exchange in a notebook (its JSON), in document order; a chat widget's saved
    copy records its thread's exchanges as a list (``{"chat": [...]}``), in the order made."""
    found: list[Recorded] = []
    cells = notebook.get("cells")
    for index, cell in enumerate(cells if isinstance(cells, list) else []):
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        source = _text(cell.get("source"))
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else []:
            meta = output.get("metadata") if isinstance(output, Mapping) else None
            entry = meta.get(KEY) if isinstance(meta, Mapping) else None
            chat = entry.get("chat") if isinstance(entry, Mapping) else None
            for item, in_chat in [(e, True) for e in chat] if isinstance(chat, list) else [(entry, False)]:
                if isinstance(item, Mapping) and isinstance(item.get("exchange"), str) and "answer" in item:
                    found.append(_recorded(item, str(cell.get("id") or ""), index, source, in_chat))
    return found


def _recorded(entry: Mapping[str, Any], cell: str, index: int, source: str, chat: bool = False) -> Recorded:
    def text(name: str) -> str:
        value = entry.get(name)
        return value if isinstance(value, str) else ""

    parent = entry.get("parent") if isinstance(entry.get("parent"), Mapping) else {}
    parent_hash = str(parent.get("hash") or "")
    thread, prompt = text("thread") or "default", text("prompt")
    answer, outcome = text("answer"), text("outcome")
    recorded_source = text("source")
    return Recorded(
        exchange=text("exchange"),
        thread=thread,
        prompt=prompt,
        answer=answer,
        outcome=outcome or "complete",
        hash=text("hash"),
        parent=str(parent.get("exchange") or ""),
        parent_hash=parent_hash,
        key=text("cell"),
        cell=cell,
        index=index,
        stale=not chat and bool(recorded_source) and recorded_source != source_hash(source),
        verified=text("hash") == exchange_hash(parent_hash, thread, prompt, answer, outcome),
        chat=chat,
        meta=entry,
    )


def chain_breaks(records: Sequence[Recorded]) -> list[str]:
    """Where a thread's chain does not verify, one line each ("" problems: an empty list).

    Each exchange must hash to its own content, and name as parent the exchange before it in its
    thread (by id and hash). A deleted cell, an edited output or a moved cell shows here.
    """
    problems: list[str] = []
    last: dict[str, Recorded] = {}
    for entry in records:
        if not entry.verified:
            problems.append(f"{entry.exchange[:8]}: its content does not match its hash (edited?)")
        before = last.get(entry.thread)
        expected = (before.exchange, before.hash) if before is not None else ("", "")
        if (entry.parent, entry.parent_hash) != expected:
            problems.append(f"{entry.exchange[:8]}: the exchange it followed is not the one before it here")
        last[entry.thread] = entry
    return problems


class DocumentRecord:
    """The records of the notebook saved at ``path``, read again only when the file changed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None  # (size, mtime in ns) of the file last read
        self._records: list[Recorded] | None = None
        self.reads = 0  # how many times the file was parsed (for tests and the bench)

    def records(self) -> list[Recorded] | None:
        """The document's exchanges, or None when there is no readable notebook at ``path``."""
        found = self.snapshot()
        return None if found is None else found[0]

    def snapshot(self) -> tuple[list[Recorded], float] | None:
        """The document's exchanges and when that version was saved (one read, so the two agree),
        or None when there is no readable notebook at ``path``."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        seen = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if seen != self._seen:
                try:
                    with open(self.path, "rb") as file:
                        notebook = _loads(file.read())
                except (OSError, ValueError):
                    notebook = None
                else:
                    self.reads += 1
                self._seen = seen
                self._records = records_of(notebook) if isinstance(notebook, Mapping) else None
            return None if self._records is None else (self._records, seen[1] / 1e9)

    def thread(self, name: str) -> tuple[list[Recorded], float] | None:
        """The exchanges of thread ``name`` and when the document was saved, or None (unreadable)."""
        found = self.snapshot()
        return None if found is None else ([e for e in found[0] if e.thread == name], found[1])

    @property
    def saved_at(self) -> float:
        """When the file last read was saved (its modification time, in seconds; 0 before a read)."""
        return self._seen[1] / 1e9 if self._seen is not None else 0.0


class Documents:
    """One ``DocumentRecord`` per notebook path, so each file is parsed once per change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, DocumentRecord] = {}
        self._told: dict[tuple[str, str], int] = {}  # (key, thread) -> exchanges left out, as last said

    def news(self, key: str, thread: str, left_out: int) -> bool:
        """Whether ``left_out`` (a thread's history-file exchanges the document leaves out) is worth
        saying: said once when it changes, not under every answer."""
        with self._lock:
            before = self._told.get((key, thread), 0)
            self._told[(key, thread)] = left_out
            return left_out > 0 and left_out != before

    def for_key(self, key: str) -> DocumentRecord | None:
        """The document behind a history key when the key is a notebook's path, else None (a
        kernel's id, a terminal, a thread set aside as another notebook's)."""
        if not key.endswith(".ipynb"):
            return None
        with self._lock:
            found = self._known.get(key)
            if found is None:
                found = self._known[key] = DocumentRecord(key)
            return found


def threads(records: Iterable[Recorded]) -> list[str]:
    """The threads the records hold, in order of first appearance."""
    return list(dict.fromkeys(entry.thread for entry in records))
