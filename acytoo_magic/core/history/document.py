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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..outbound import printable, unlinkable
from ..outcome import COMPLETE, Outcome

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
    """One exchange as the document records it, in document order.

    A notebook you receive is input to the model: what a thread rebuilt from it sends for an
    exchange is what the document visibly shows (``prompt``: the cell's text after its ``%%acytoo``
    line; ``answer``: as its outputs show it), never text only the metadata holds. A record whose
    prompt or answer does not match what is shown says why in ``problem`` and is not sent.
    """

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
    problem: str = ""  # why it is not sent ("" : it matches what the document shows)
    legacy: bool = False  # a cell with outputs but no record (saved before records, or "off")
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False)


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
    """A cell's source or an output's text as nbformat keeps it (a string, or a list of them)."""
    if isinstance(source, list):
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


def _normal(text: str) -> str:
    """Text compared as the magic wrote it: printable (``outbound.printable``), ends stripped."""
    return printable(text.replace("\r\n", "\n")).strip()


def asked(source: str) -> str | None:
    """The prompt a cell visibly asks: its text after the ``%%acytoo ...`` line (None: no such cell)."""
    first, _, rest = source.lstrip().partition("\n")
    return rest if first.startswith("%%acytoo") else None


def shown(output: Mapping[str, Any]) -> str:
    """What an output visibly shows as text: its ``text/plain`` (a stream: its text)."""
    if output.get("output_type") == "stream":
        return _text(output.get("text"))
    data = output.get("data")
    return _text(data.get("text/plain")) if isinstance(data, Mapping) else ""


OUTCOMES = frozenset(o.value for o in Outcome if o != Outcome.FAILED)  # what a record may say


def records_of(notebook: Mapping[str, Any]) -> list[Recorded]:
    """Every recorded exchange in a notebook (its JSON), in document order; a chat widget's saved
    copy records its thread's exchanges as a list (``{"chat": [...]}``), in the order made.

    Each record is checked against what its cell shows (``_checked``); one that cannot be read is
    left out, the others kept. A cell that asked (``%%acytoo``) and shows outputs but holds no
    record is listed as ``legacy`` (saved before records, or with ``notebook_record = "off"``).
    """
    found: list[Recorded] = []
    cells = notebook.get("cells")
    for index, cell in enumerate(cells if isinstance(cells, list) else []):
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        source, cell_id = _text(cell.get("source")), cell.get("id")
        cell_id = cell_id if isinstance(cell_id, str) else ""
        listed = cell.get("outputs")
        outputs = [o for o in listed if isinstance(o, Mapping)] if isinstance(listed, list) else []
        start, before = 0, len(found)
        for at, output in enumerate(outputs):
            meta = output.get("metadata")
            entry = meta.get(KEY) if isinstance(meta, Mapping) else None
            if not isinstance(entry, Mapping):
                continue
            chat = entry.get("chat")
            items = [(e, True) for e in chat] if isinstance(chat, list) else [(entry, False)]
            text = "".join(shown(o) for o in outputs[start : at + 1])  # the outputs since the last record
            start = at + 1
            for item, in_chat in items:
                if isinstance(item, Mapping) and isinstance(item.get("exchange"), str) and "answer" in item:
                    try:
                        found.append(_recorded(item, cell_id, index, source, text, in_chat))
                    except Exception:  # one unreadable record is left out, the others used
                        continue
        if len(found) == before and outputs and cell_id and asked(source) is not None:
            shown_text = "".join(shown(o) for o in outputs)  # what its history row must show
            found.append(Recorded("", "", "", shown_text, COMPLETE, "", key=f"id:{cell_id}#", cell=cell_id,
                                  index=index, legacy=True))
    return found


def _recorded(
    entry: Mapping[str, Any], cell: str, index: int, source: str, text: str, chat: bool = False
) -> Recorded:
    def field_(name: str) -> str:
        value = entry.get(name)
        return value if isinstance(value, str) else ""

    parent = entry.get("parent") if isinstance(entry.get("parent"), Mapping) else {}
    parent_hash = str(parent.get("hash") or "")
    thread, prompt = field_("thread") or "default", field_("prompt")
    answer, outcome = field_("answer"), field_("outcome") or COMPLETE
    recorded_source = field_("source")
    stale = not chat and bool(recorded_source) and recorded_source != source_hash(source)
    verified = field_("hash") == exchange_hash(parent_hash, thread, prompt, answer, outcome)
    problem = ""
    if outcome not in OUTCOMES:
        problem, outcome = f"its outcome {outcome[:20]!r} is not one this extension writes", COMPLETE
    elif chat:  # the copy shows rendered HTML, the newest messages: nothing to compare a record with
        problem = "recorded by the chat's saved copy, which cannot be checked against what it shows"
    else:
        problem, shown_answer = _checked(prompt, answer, source, text)
        answer = shown_answer if not problem else answer
        problem = "its cell was edited since" if problem and stale else problem
    return Recorded(
        exchange=field_("exchange"),
        thread=thread,
        prompt=prompt,
        answer=answer,
        outcome=outcome,
        hash=field_("hash"),
        parent=str(parent.get("exchange") or ""),
        parent_hash=parent_hash,
        key=field_("cell"),
        cell=cell,
        index=index,
        stale=stale,
        verified=verified,
        chat=chat,
        problem=problem,
        meta=entry,
    )


def shows(text: str, answer: str) -> str | None:
    """The answer as ``text`` shows it (printable; or, as ``-f text`` draws it, without live
    links), None when it does not show it."""
    for make in (printable, unlinkable):  # in turn: unlinkable's scan costs a millisecond per 5 KB
        form = make(answer)
        if form.strip() in text:
            return form
    return None


def _checked(prompt: str, answer: str, source: str, text: str) -> tuple[str, str]:
    """Whether a record's prompt is the cell's visible prompt and its answer is shown by the
    outputs since the cell's previous record (their text joined, as the magic writes it: printable,
    and with ``-f text`` no live link): ("", the answer as shown), else (why not, "")."""
    typed = asked(source)
    if typed is None or _normal(prompt) != _normal(typed):
        return "record does not match its cell's prompt", ""
    form = shows(text, answer)
    return ("", form) if form is not None else ("record does not match its output", "")


class DocumentRecord:
    """The records of the notebook saved at ``path``, read again only when the file changed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None  # (size, mtime in ns) of the file last read
        self._records: list[Recorded] | None = None
        self.problem = ""  # why the file at ``path`` is no notebook that can be read ("": it is)
        self.reads = 0  # how many times the file was parsed (for tests and the bench)

    def records(self) -> list[Recorded] | None:
        """The document's exchanges, or None when there is no readable notebook at ``path``."""
        found = self.snapshot()
        return None if found is None else found[0]

    def snapshot(self) -> tuple[list[Recorded], float] | None:
        """The document's exchanges and when that version was saved (one read, so the two agree),
        or None when there is no readable notebook at ``path`` (``problem`` says why, if it exists)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        seen = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if seen != self._seen:
                self._records, self._seen = None, None
                try:
                    with open(self.path, "rb") as file:
                        notebook = _loads(file.read())
                except OSError:
                    return None
                except (ValueError, RecursionError):
                    notebook = None
                self.reads += 1
                try:
                    found = records_of(notebook) if isinstance(notebook, Mapping) else None
                except Exception:  # whatever a received file holds: said, never a traceback
                    found = None
                if found is None:
                    self.problem = (f"the saved {os.path.basename(self.path)} could not be read as a "
                                    "notebook: the history file is the thread")
                    return None
                # kept only once parsed: a file caught half-written is read again next time
                self._records, self._seen, self.problem = found, seen, ""
            return None if self._records is None else (self._records, seen[1] / 1e9)

    def thread(self, name: str) -> tuple[list[Recorded], float] | None:
        """The exchanges of thread ``name`` (with every cell that holds no record: the history file
        says its thread) and when the document was saved, or None (unreadable)."""
        found = self.snapshot()
        return None if found is None else ([e for e in found[0] if e.legacy or e.thread == name], found[1])


class Documents:
    """One ``DocumentRecord`` per notebook path, so each file is parsed once per change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, DocumentRecord] = {}
        self._told: dict[tuple[str, str], int] = {}  # (key, thread) -> exchanges left out, as last said
        self._said: set[tuple[str, str]] = set()  # (key, line): a reading problem already said

    def news(self, key: str, thread: str, left_out: int) -> bool:
        """Whether ``left_out`` (a thread's history-file exchanges the document leaves out) is worth
        saying: said once when it changes, not under every answer."""
        with self._lock:
            before = self._told.get((key, thread), 0)
            self._told[(key, thread)] = left_out
            return left_out > 0 and left_out != before

    def once(self, key: str, line: str) -> bool:
        """Whether ``line`` (why the notebook at ``key`` could not be read) is still to be said:
        true the first time only, so it is said under one answer, not under every one."""
        with self._lock:
            first = (key, line) not in self._said
            self._said.add((key, line))
            return first

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
