"""The history store and what is sent to a provider."""

from __future__ import annotations

import sqlite3

import pytest

from acytoo_magic.conversation import (
    INTERRUPTED,
    Conversation,
    HistoryError,
    HistoryStore,
    Message,
    trim,
)


def test_threads_are_per_notebook_and_survive_reopening(history_db):
    store = HistoryStore(history_db)
    Conversation(store, "a.ipynb").record("q1", "a1")
    Conversation(store, "a.ipynb", "other").record("q2", "a2", INTERRUPTED)
    Conversation(store, "b.ipynb").record("secret of b", "ab")
    store.close()

    reopened = HistoryStore(history_db)
    a = Conversation(reopened, "a.ipynb")
    assert [(m.role, m.content) for m in a.messages()] == [("user", "q1"), ("assistant", "a1")]
    assert [m.status for m in Conversation(reopened, "a.ipynb", "other").messages()] == [
        "complete",
        INTERRUPTED,
    ]
    assert {t for t, _, _ in reopened.threads("a.ipynb")} == {"default", "other"}
    assert all("secret of b" not in m["content"] for m in a.to_send("next"))
    assert reopened.reset("a.ipynb", "other") == 2
    assert reopened.reset("a.ipynb") == 2
    assert Conversation(reopened, "b.ipynb").messages()[0].content == "secret of b"


def test_wal_mode(history_db):
    HistoryStore(history_db).threads("x")
    assert sqlite3.connect(history_db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_to_send_trims_oldest_first_and_keeps_the_system_prompt(history_db):
    conversation = Conversation(HistoryStore(history_db), "nb")
    for i in range(10):
        conversation.record(f"question {i} " + "x" * 80, f"answer {i} " + "y" * 80)
    sent = conversation.to_send("now", system="SYSTEM", budget=500)
    assert sent[0] == {"role": "system", "content": "SYSTEM"}
    assert sent[-1] == {"role": "user", "content": "now"}
    assert sum(len(m["content"]) for m in sent) <= 500
    assert sent[-2]["content"].startswith("answer 9")  # the newest history is what is kept
    assert not any(m["content"].startswith("question 0") for m in sent)


def test_trim_always_keeps_the_prompt_even_over_budget():
    messages = [Message("system", "s"), Message("user", "old"), Message("user", "p" * 100)]
    assert [m.content for m in trim(messages, 10)] == ["s", "p" * 100]


def test_unusable_file_is_a_clear_error_and_left_untouched(tmp_path):
    path = tmp_path / "broken.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(HistoryError, match=r"broken\.sqlite3"):
        HistoryStore(path).threads("nb")
    assert path.read_bytes() == before
