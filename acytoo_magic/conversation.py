"""Per-notebook, named-thread message history, persisted in SQLite so a kernel restart loses nothing.

One file holds every notebook's threads (WAL mode, so several kernels can write at once). What is
sent to a provider is trimmed to a character budget, oldest first, with the system prompt kept.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

COMPLETE, PARTIAL, INTERRUPTED = "complete", "partial", "interrupted"
DEFAULT_THREAD = "default"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    notebook TEXT NOT NULL,
    thread   TEXT NOT NULL,
    role     TEXT NOT NULL,
    content  TEXT NOT NULL,
    status   TEXT NOT NULL DEFAULT 'complete',
    created  REAL NOT NULL,
    meta     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages (notebook, thread, id);
"""


class HistoryError(RuntimeError):
    """The history database cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    status: str = COMPLETE
    created: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)

    def for_provider(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_history_path() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "acytoo_magic" / "history.sqlite3"


class HistoryStore:
    """SQLite-backed store of messages keyed by (notebook, thread); safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"history database {self.path} is unusable ({exc}); history is off") from None
        self._db = db
        return db

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._connect().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise HistoryError(f"history database {self.path}: {exc}") from None

    def append(self, notebook: str, thread: str, messages: Iterable[Message]) -> None:
        """Write the messages in one transaction: an exchange is recorded whole or not at all."""
        rows = [
            (notebook, thread, m.role, m.content, m.status, m.created, json.dumps(m.meta)) for m in messages
        ]
        with self._lock:
            try:
                db = self._connect()
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany(
                        "INSERT INTO messages (notebook, thread, role, content, status, created, meta)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise HistoryError(f"history database {self.path}: {exc}") from None

    def load(self, notebook: str, thread: str, limit: int | None = None) -> list[Message]:
        """The thread's messages, oldest first; ``limit`` keeps only the newest ones."""
        rows = self._run(
            "SELECT role, content, status, created, meta FROM messages"
            " WHERE notebook = ? AND thread = ? ORDER BY id DESC LIMIT ?",
            (notebook, thread, -1 if limit is None else limit),
        )
        return [Message(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in reversed(rows)]

    def threads(self, notebook: str) -> list[tuple[str, int, float]]:
        """(thread, message count, last activity) for one notebook, most recent first."""
        rows = self._run(
            "SELECT thread, COUNT(*), MAX(created) FROM messages WHERE notebook = ?"
            " GROUP BY thread ORDER BY MAX(id) DESC",
            (notebook,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def reset(self, notebook: str, thread: str | None = None) -> int:
        """Delete one thread (or all of the notebook's threads); returns how many messages went."""
        if thread is None:
            sql, params = "DELETE FROM messages WHERE notebook = ?", (notebook,)
        else:
            sql, params = "DELETE FROM messages WHERE notebook = ? AND thread = ?", (notebook, thread)
        with self._lock:
            try:
                return self._connect().execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise HistoryError(f"history database {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class MemoryStore(HistoryStore):
    """History kept in memory only: used with ``--no-history`` semantics or when the file is unusable."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.path = Path(":memory:")

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
        return self._db


def trim(messages: Sequence[Message], budget: int) -> list[Message]:
    """Keep the system prompt and the newest messages that fit in ``budget`` characters.

    The newest message (the prompt being sent) is always kept, even alone over budget.
    """
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    used = sum(len(m.content) for m in system)
    kept: list[Message] = []
    for message in reversed(rest):
        if kept and used + len(message.content) > budget:
            break
        kept.append(message)
        used += len(message.content)
    return system + kept[::-1]


class Conversation:
    """One notebook's named thread: what to send for a new prompt, and recording the exchange."""

    def __init__(self, store: HistoryStore, notebook: str, thread: str = DEFAULT_THREAD) -> None:
        self.store = store
        self.notebook = notebook
        self.thread = thread

    def messages(self, limit: int | None = None) -> list[Message]:
        return self.store.load(self.notebook, self.thread, limit)

    def to_send(self, prompt: str, system: str = "", budget: int = 12_000) -> list[dict[str, str]]:
        """The provider's ``messages``: system prompt, as much recent history as fits, the prompt."""
        # Only the recent tail can fit; loading a bounded window keeps a long thread cheap.
        past = self.messages(limit=max(64, budget // 16))
        head = [Message("system", system)] if system else []
        chosen = trim([*head, *past, Message("user", prompt)], budget)
        return [m.for_provider() for m in chosen]

    def record(
        self, prompt: str, answer: str, status: str = COMPLETE, meta: dict[str, Any] | None = None
    ) -> None:
        now = time.time()
        self.store.append(
            self.notebook,
            self.thread,
            [Message("user", prompt, COMPLETE, now), Message("assistant", answer, status, now, meta or {})],
        )
