"""The history file: every notebook's threads in one SQLite file, so a kernel restart loses nothing.

WAL mode, so several kernels write at once; every call from async code runs off the event loop and
waits at most ``busy_timeout`` for another process's lock; an exchange whose write found the file
locked is kept and written with the next one. ``Message`` is a stored row. The file's schema is
``migrations``'s; which exchanges a request sends is ``thread``'s.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from ..errors import HistoryError, HistoryLocked, StoreClosed
from ..outcome import COMPLETE
from .migrations import migrate

T = TypeVar("T")

# Seconds a write waits for another process's lock. Short: every store call from async code runs
# off the event loop, but the cell that records still waits this long before it gives up.
BUSY_TIMEOUT = 2.0
SETUP_TIMEOUT = 30.0  # opening a file (creating or upgrading its table) waits for others this long
CLOSE_TIMEOUT = 10.0  # closing waits this long to save exchanges a lock held back: the last chance

_COLUMNS = "id, role, content, status, created, meta, cell"


def stored_episode(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """An answer's stored agent episode; {} for an ordinary answer or a row whose episode is not a
    mapping (another version wrote it, or a hand edit): such a row still reads."""
    found = meta.get("episode")
    return found if isinstance(found, Mapping) else {}


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    outcome: str = COMPLETE  # the file's column keeps its first name, ``status``
    created: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)
    cell: str | None = None  # the notebook cell the exchange came from; None for a chat message
    id: int | None = None  # the row id once stored: the message's place in its thread

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Message:
        return cls(row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[0])

    def for_provider(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    def tool_messages(self) -> list[dict[str, Any]]:
        """An agent episode's assistant tool calls and tool results (before this answer), if any."""
        messages = stored_episode(self.meta).get("messages")
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []

    def provider_messages(self, tools: bool) -> list[dict[str, Any]]:
        """This message as sent; an episode's answer with its calls and results first (``tools``)."""
        return [*(self.tool_messages() if tools else []), self.for_provider()]

    def size(self) -> int:
        """Characters it costs in a request: its text and an episode's steps."""
        steps = self.tool_messages()
        return len(self.content) + (len(json.dumps(steps)) if steps else 0)

    def to_json(self) -> dict[str, Any]:
        """As ``%acytoo export -f json`` writes it: the outcome under its stored name, ``status``."""
        return {("status" if key == "outcome" else key): value for key, value in asdict(self).items()}


def default_history_path() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "acytoo_magic" / "history.sqlite3"


class HistoryStore:
    """SQLite-backed store of messages keyed by (notebook, thread); safe across threads and processes.

    Calls block for at most ``busy_timeout`` seconds on another process's lock; async callers run
    them in a thread (``asyncio.to_thread``) so the event loop never waits. An exchange whose write
    found the file locked is kept in memory and written before the next one, so nothing is lost.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        busy_timeout: float = BUSY_TIMEOUT,
        setup_timeout: float | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.busy_timeout = busy_timeout
        self.setup_timeout = SETUP_TIMEOUT if setup_timeout is None else setup_timeout
        self._lock = threading.RLock()  # record_exchange holds it across its pending list and write
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[str, str, Message, Message]] = []
        self.closed = False

    @property
    def pending(self) -> int:
        """Exchanges a lock held back, to be written with the next one (or on ``close``)."""
        return len(self._pending)

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if self.closed:  # a caller still holding a store that was replaced: it must not reopen the file
            raise StoreClosed(f"history database {self.path}: this store was closed")
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Setting the file up waits as long as it must: several kernels may open a new file at
            # once, while another writes. Afterwards each call waits only ``busy_timeout``.
            db = sqlite3.connect(
                self.path, timeout=self.setup_timeout, check_same_thread=False, isolation_level=None
            )
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            migrate(db, self.path)
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        except HistoryError:  # a newer schema: said by migrate, and the connection closed, not leaked
            if db is not None:
                db.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            if _is_lock(exc):  # busy for setup_timeout: worth another try later, not unusable
                raise self._error(exc, self.setup_timeout) from None
            raise HistoryError(f"history database {self.path} is unusable ({exc}); history is off") from None
        self._db = db
        return db

    def _error(self, exc: sqlite3.Error, waited: float | None = None) -> HistoryError:
        if _is_lock(exc):
            waited = self.busy_timeout if waited is None else waited
            return HistoryLocked(
                f"history database {self.path} is locked by another process (waited {waited:g} s)"
            )
        return HistoryError(f"history database {self.path}: {exc}")

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._connect().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one write transaction: all of it is stored, or none of it."""
        with self._lock:
            try:
                db = self._connect()
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def append(self, notebook: str, thread: str, messages: Iterable[Message]) -> None:
        """Write the messages in one transaction, after the thread's newest ones."""
        rows = [_row(notebook, thread, m) for m in messages]
        self._transaction(lambda db: db.executemany(_INSERT, rows))

    def record_exchange(
        self, notebook: str, thread: str, prompt: Message, answer: Message, cell: str | None = None
    ) -> None:
        """Store one exchange; a cell's earlier exchange in the thread is replaced where it stands.

        If the file is locked past ``busy_timeout``, the exchange is kept and written first next
        time; the ``HistoryError`` says so.
        """
        exchange = (notebook, thread, replace(prompt, cell=cell), replace(answer, cell=cell))

        with self._lock:  # the pending list and the write it goes into change together
            try:
                self._transaction(lambda db: _write_exchanges(db, [*self._pending, exchange]))
            except HistoryLocked as exc:
                self._pending.append(exchange)
                kept = f"{exc}; the exchange is kept in memory and saved with the next one"
                raise HistoryLocked(kept) from None
            self._pending.clear()

    def load(
        self, notebook: str, thread: str, limit: int | None = None, before: int | None = None
    ) -> list[Message]:
        """The thread's messages, oldest first; ``limit`` keeps the newest, ``before`` a row id."""
        rows = self._run(
            f"SELECT {_COLUMNS} FROM messages WHERE notebook = ? AND thread = ? AND id < ?"
            " ORDER BY id DESC LIMIT ?",
            (notebook, thread, _END if before is None else before, -1 if limit is None else limit),
        )
        return [Message.from_row(r) for r in reversed(rows)]

    def position(self, notebook: str, thread: str, cell: str) -> int | None:
        """Row id where ``cell``'s exchange stands in the thread (None: the cell has none yet)."""
        rows = self._run(
            "SELECT MIN(id) FROM messages WHERE notebook = ? AND thread = ? AND cell = ?",
            (notebook, thread, cell),
        )
        return rows[0][0] if rows else None

    def threads(self, notebook: str) -> list[tuple[str, int, float]]:
        """(thread, message count, last activity) for one notebook, most recent first."""
        rows = self._run(
            "SELECT thread, COUNT(*), MAX(created) FROM messages WHERE notebook = ?"
            " GROUP BY thread ORDER BY MAX(id) DESC",
            (notebook,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def tokens(self, notebook: str) -> dict[str, tuple[int, int, bool]]:
        """Per thread: (prompt, completion, any estimated) token totals of the recorded answers."""
        totals: dict[str, tuple[int, int, bool]] = {}
        rows = self._run(
            "SELECT thread, meta FROM messages WHERE notebook = ? AND role = 'assistant'", (notebook,)
        )
        for thread, meta in rows:
            counts = json.loads(meta)
            prompt, completion, estimated = totals.get(thread, (0, 0, False))
            totals[thread] = (
                prompt + int(counts.get("prompt_tokens") or 0),
                completion + int(counts.get("completion_tokens") or 0),
                estimated or bool(counts.get("tokens_estimated", "prompt_tokens" not in counts)),
            )
        return totals

    def add_spend(self, notebook: str, tokens: int, cost: float = 0.0) -> None:
        """Add one request's tokens and cost to the ledger daily budgets count (``budget``)."""
        self._transaction(
            lambda db: db.execute(
                "INSERT INTO spend (notebook, created, tokens, cost) VALUES (?, ?, ?, ?)",
                (notebook, time.time(), tokens, cost),
            )
        )

    def spent(self, notebook: str | None, since: float) -> tuple[int, float]:
        """(tokens, cost) the notebook's requests (every notebook's: ``None``) spent since ``since``."""
        total = "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(cost), 0) FROM spend WHERE created >= ?"
        if notebook is None:
            rows = self._run(total, (since,))
        else:
            rows = self._run(total + " AND notebook = ?", (since, notebook))
        return int(rows[0][0]), float(rows[0][1])

    def move_spend(self, source: str, target: str) -> int:
        """Give ``source``'s ledger entries to ``target`` (a renamed notebook keeps its spend)."""
        return self._transaction(
            lambda db: db.execute(
                "UPDATE spend SET notebook = ? WHERE notebook = ?", (target, source)
            ).rowcount
        )

    def notebooks(self) -> list[tuple[str, int]]:
        """(notebook, message count) for every notebook in the file, most recent first."""
        rows = self._run("SELECT notebook, COUNT(*) FROM messages GROUP BY notebook ORDER BY MAX(id) DESC")
        return [(r[0], r[1]) for r in rows]

    def move(self, source: str, target: str) -> int:
        """Give ``source``'s threads (and ledger) to ``target`` (a renamed notebook); returns how many
        messages moved."""
        self.move_spend(source, target)
        return self._transaction(
            lambda db: db.execute(
                "UPDATE messages SET notebook = ? WHERE notebook = ?", (target, source)
            ).rowcount
        )

    # -- which notebook document wrote what (notebook.py tells documents apart with these) --------
    def authors(self, notebook: str | None = None) -> list[tuple[int, str, str | None, Any, Any]]:
        """``(row id, notebook, cell, meta.kernel, meta.anchor)`` of the rows of ``notebook`` (or of
        every row that points at a cell): who wrote what, to tell a notebook from one that reused
        its name."""
        columns = "id, notebook, cell, json_extract(meta, '$.kernel'), json_extract(meta, '$.anchor')"
        if notebook is not None:
            return self._run(f"SELECT {columns} FROM messages WHERE notebook = ?", (notebook,))
        return self._run(
            f"SELECT {columns} FROM messages"
            " WHERE cell LIKE 'id:%' OR json_extract(meta, '$.anchor') IS NOT NULL"
        )

    def move_rows(self, ids: Sequence[int], target: str) -> int:
        """Give these rows to notebook ``target`` (in one transaction); returns how many moved."""
        rows = [(target, row_id) for row_id in ids]
        return self._transaction(
            lambda db: db.executemany("UPDATE messages SET notebook = ? WHERE id = ?", rows).rowcount
        )

    def reset(self, notebook: str, thread: str | None = None) -> int:
        """Delete one thread (or all of the notebook's threads); returns how many messages went."""
        if thread is None:
            sql, params = "DELETE FROM messages WHERE notebook = ?", (notebook,)
        else:
            sql, params = "DELETE FROM messages WHERE notebook = ? AND thread = ?", (notebook, thread)
        return self._transaction(lambda db: db.execute(sql, params).rowcount)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write the exchanges a lock held back, then close the file for good.

        Waits up to ``timeout`` for another process's lock; if they still cannot be written,
        ``HistoryError`` says how many were lost and why (the store is closed either way).
        """
        with self._lock:
            if self.closed:
                return
            failure: HistoryError | None = None
            if self._pending:
                failure = self._flush(timeout)
            if self._db is not None:
                self._db.close()
                self._db = None
            self.closed = True
            if failure is not None:
                raise failure

    def _flush(self, timeout: float) -> HistoryError | None:
        count = len(self._pending)
        try:
            self._connect().execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._transaction(lambda db: _write_exchanges(db, self._pending))
        except (HistoryError, sqlite3.Error) as exc:
            reason = str(exc).removeprefix(f"history database {self.path}").removeprefix(": ").strip()
            return HistoryError(
                f"history database {self.path}: {count} exchange(s) held back by a lock could not be "
                f"saved on closing ({reason})"
            )
        self._pending.clear()
        return None


class MemoryStore(HistoryStore):
    """History kept in memory only: used when the file is unusable."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.path = Path(":memory:")

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self.closed:
                raise StoreClosed("in-memory history: this store was closed")
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            migrate(self._db)
        return self._db


def _is_lock(exc: BaseException) -> bool:
    """Another process's lock (it passes), as opposed to a broken or unreadable file."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    locked = ("database is locked", "database table is locked")
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(locked)


_END = 2**63 - 1
_INSERT = (
    "INSERT INTO messages (notebook, thread, role, content, status, created, meta, cell)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _row(notebook: str, thread: str, m: Message) -> tuple[Any, ...]:
    return (notebook, thread, m.role, m.content, m.outcome, m.created, json.dumps(m.meta), m.cell)


def _write_exchanges(db: sqlite3.Connection, exchanges: Iterable[tuple[str, str, Message, Message]]) -> None:
    for exchange in exchanges:
        _write_exchange(db, *exchange)


def _write_exchange(
    db: sqlite3.Connection, notebook: str, thread: str, prompt: Message, answer: Message
) -> None:
    """Insert the exchange, or overwrite the rows of the same cell's earlier one (same place)."""
    old = []
    if prompt.cell is not None:
        old = db.execute(
            "SELECT id, role FROM messages WHERE notebook = ? AND thread = ? AND cell = ? ORDER BY id",
            (notebook, thread, prompt.cell),
        ).fetchall()
    ids = {role: row_id for row_id, role in reversed(old)}  # the first row of each role
    if "user" not in ids or "assistant" not in ids:
        db.executemany(_INSERT, [_row(notebook, thread, prompt), _row(notebook, thread, answer)])
        keep: set[int] = set()
    else:
        for message in (prompt, answer):
            db.execute(
                "UPDATE messages SET content = ?, status = ?, created = ?, meta = ? WHERE id = ?",
                (message.content, message.outcome, message.created, json.dumps(message.meta),
                 ids[message.role]),
            )
        keep = set(ids.values())
    stale = [(row_id,) for row_id, _role in old if row_id not in keep]
    db.executemany("DELETE FROM messages WHERE id = ?", stale)
