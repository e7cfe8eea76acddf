"""Record = screen, and nothing lost: what the history holds after every way an answer can end.

Each test drives the real core (a real local server, a real SQLite file) and injects a failure
where a front end or the file could fail: the renderer, an ``on_chunk`` callback, closing the
output, a history read, a lock at closing time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from acytoo_magic import errors
from acytoo_magic.conversation import Conversation, HistoryStore
from acytoo_magic.migrations import SCHEMA_VERSION

# The statements the history code ran before the schema had a version (commit 73dffba and earlier):
# a file they made has the ``cell`` column and ``user_version`` 0.
UNVERSIONED_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    notebook TEXT NOT NULL,
    thread   TEXT NOT NULL,
    role     TEXT NOT NULL,
    content  TEXT NOT NULL,
    status   TEXT NOT NULL DEFAULT 'complete',
    created  REAL NOT NULL,
    meta     TEXT NOT NULL DEFAULT '{}',
    cell     TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages (notebook, thread, id);
CREATE INDEX IF NOT EXISTS messages_by_cell ON messages (notebook, thread, cell);
INSERT INTO messages (notebook, thread, role, content, status, created, meta, cell) VALUES
    ('nb', 'default', 'user', 'old q', 'complete', 1, '{}', 'id:c1#0'),
    ('nb', 'default', 'assistant', 'old a', 'partial', 1, '{}', 'id:c1#0');
"""


def _version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_file_records_its_schema_version(history_db):
    HistoryStore(history_db).threads("nb")
    assert _version(history_db) == SCHEMA_VERSION


def test_a_file_made_by_the_unversioned_code_is_adopted_and_keeps_working(history_db):
    old = sqlite3.connect(history_db, isolation_level=None)
    old.execute("PRAGMA journal_mode = WAL")
    old.executescript(UNVERSIONED_SCHEMA)
    old.close()
    assert _version(history_db) == 0
    conversation = Conversation(HistoryStore(history_db), "nb")
    conversation.record("new q", "new a", cell="id:c1#0")  # the same cell: replaced in place
    conversation.record("other q", "other a", cell="id:c2#0")
    assert [(m.content, m.status) for m in conversation.messages()] == [
        ("new q", "complete"),
        ("new a", "complete"),
        ("other q", "complete"),
        ("other a", "complete"),
    ]
    assert _version(history_db) == SCHEMA_VERSION
    conversation.store.close()
    assert [m.content for m in Conversation(HistoryStore(history_db), "nb").messages()][0] == "new q"


def test_a_file_from_a_newer_version_is_refused_with_one_line(history_db):
    HistoryStore(history_db).threads("nb")
    with sqlite3.connect(history_db) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(errors.HistoryError, match="newer than this acytoo-magic knows"):
        HistoryStore(history_db).threads("nb")


def test_every_error_lives_in_errors_under_one_base():
    from acytoo_magic import local_model, providers
    from acytoo_magic.providers import base

    kinds = [
        errors.ProviderError,
        errors.ProviderHTTPError,
        errors.ProviderConnectionError,
        errors.ProviderTimeout,
        errors.ProviderProtocolError,
        errors.ResponseTooLarge,
        errors.ModelNotFound,
        errors.AnswerError,
    ]
    assert all(issubclass(kind, errors.AcytooError) and kind.__module__ == errors.__name__ for kind in kinds)
    assert providers.ProviderError is errors.ProviderError and base.ProviderHTTPError is errors.ProviderHTTPError
    assert local_model.ModelNotFound is errors.ModelNotFound
    assert issubclass(errors.ModelNotFound, ValueError)  # what callers caught before
