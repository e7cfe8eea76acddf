"""The history file's schema, one numbered step per change, its version kept in ``PRAGMA user_version``.

As ``llm``'s ``migrations.py`` does: a file records how far it was migrated, and opening it runs
only the steps after that, in one write transaction (several kernels may open a file at once; the
first migrates, the others wait and find it done). A new column or index is a new step at the end;
a step is never edited once released.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..errors import HistoryError

Step = Callable[[sqlite3.Connection], None]


def _m001_messages(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE messages (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            notebook TEXT NOT NULL,
            thread   TEXT NOT NULL,
            role     TEXT NOT NULL,
            content  TEXT NOT NULL,
            status   TEXT NOT NULL DEFAULT 'complete',
            created  REAL NOT NULL,
            meta     TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    db.execute("CREATE INDEX IF NOT EXISTS messages_by_thread ON messages (notebook, thread, id)")


def _m002_cell(db: sqlite3.Connection) -> None:
    """Exchanges remember the notebook cell they came from (a re-run replaces its own)."""
    db.execute("ALTER TABLE messages ADD COLUMN cell TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS messages_by_cell ON messages (notebook, thread, cell)")


def _m003_spend(db: sqlite3.Connection) -> None:
    """A ledger of what each request spent (tokens, cost), which daily budgets count (``budget``).

    ``IF NOT EXISTS``: unversioned files written by the agent22 branch before this step already
    have the table (their shape reads as step 2).
    """
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS spend (
            notebook TEXT NOT NULL,
            created  REAL NOT NULL,
            tokens   INTEGER NOT NULL,
            cost     REAL NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX IF NOT EXISTS spend_by_day ON spend (notebook, created)")


def _m004_spend_by_time(db: sqlite3.Connection) -> None:
    """The daily budget is the user's: today's spend of every notebook, found by time alone."""
    db.execute("CREATE INDEX IF NOT EXISTS spend_by_time ON spend (created)")


MIGRATIONS: tuple[Step, ...] = (_m001_messages, _m002_cell, _m003_spend, _m004_spend_by_time)
SCHEMA_VERSION = len(MIGRATIONS)


def _unversioned(db: sqlite3.Connection) -> int:
    """The step a file written before versions were recorded stands at, read once from its shape.

    Such files have ``user_version`` 0: none (a new file), the first table (before cells), or the
    table with ``cell`` (the code that probed columns). Versioned files are never probed.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    if not columns:
        return 0
    if "cell" not in columns:
        return 1
    db.execute("CREATE INDEX IF NOT EXISTS messages_by_cell ON messages (notebook, thread, cell)")
    return 2


def migrate(db: sqlite3.Connection, path: object = "") -> int:
    """Bring the file to ``SCHEMA_VERSION`` in one write transaction; returns the version it had.

    ``HistoryError`` if a newer acytoo-magic wrote it: this one would not know what it may change.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise HistoryError(
                f"history database {path} has schema version {found}, newer than this acytoo-magic "
                f"knows ({SCHEMA_VERSION}): upgrade acytoo-magic"
            )
        start = found or _unversioned(db)
        for step in MIGRATIONS[start:]:
            step(db)
        if found != SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return found
