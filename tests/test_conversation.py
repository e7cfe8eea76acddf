"""The history store and what is sent to a provider."""

from __future__ import annotations

import sqlite3

import pytest

from acytoo_magic.core.errors import HistoryError
from acytoo_magic.core.history.store import HistoryStore, Message
from acytoo_magic.core.history.thread import Conversation, trim
from acytoo_magic.core.outcome import INTERRUPTED


def test_threads_are_per_notebook_and_survive_reopening(history_db):
    store = HistoryStore(history_db)
    Conversation(store, "a.ipynb").record("q1", "a1")
    Conversation(store, "a.ipynb", "other").record("q2", "a2", INTERRUPTED)
    Conversation(store, "b.ipynb").record("secret of b", "ab")
    store.close()

    reopened = HistoryStore(history_db)
    a = Conversation(reopened, "a.ipynb")
    assert [(m.role, m.content) for m in a.messages()] == [("user", "q1"), ("assistant", "a1")]
    assert [m.outcome for m in Conversation(reopened, "a.ipynb", "other").messages()] == [
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
    sent = conversation.to_send("now", system="SYSTEM", history_chars=500)
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


def test_a_cell_s_exchange_is_replaced_where_it_stands(history_db):
    conversation = Conversation(HistoryStore(history_db), "nb")
    conversation.record("q1", "a1", cell="c1")
    conversation.record("q2", "a2", cell="c2")
    conversation.record("q2 edited", "a2 again", cell="c2")
    conversation.record("q1 edited", "a1 again", INTERRUPTED, cell="c1")
    conversation.record("chat", "reply")  # no cell: appended
    conversation.record("chat", "reply")
    assert [(m.content, m.outcome) for m in conversation.messages()] == [
        ("q1 edited", "complete"),
        ("a1 again", INTERRUPTED),
        ("q2 edited", "complete"),
        ("a2 again", "complete"),
        ("chat", "complete"),
        ("reply", "complete"),
        ("chat", "complete"),
        ("reply", "complete"),
    ]
    # what a re-run of c2 sends: only what stands above it
    assert [m["content"] for m in conversation.to_send("q2 once more", cell="c2")] == [
        "q1 edited",
        "a1 again",
        "q2 once more",
    ]
    newest = [m["content"] for m in conversation.to_send("new", cell="c3")][-3:]
    assert newest == ["chat", "reply", "new"]


def test_trim_sends_whole_exchanges_alternating_and_cuts_a_huge_message():
    past = [Message("user", "q1"), Message("assistant", "a1"), Message("assistant", "orphan")]
    past += [Message("user", "q2"), Message("assistant", "z" * 1_000_000), Message("user", "dangling")]
    sent = trim([Message("system", "s"), *past, Message("user", "now")], 12_000)
    assert [m.role for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m.content for m in sent[:4]] == ["s", "q1", "a1", "q2"]
    assert len(sent[4].content) <= 3_000 and "1,000,000 characters, cut to 3,000" in sent[4].content
    assert sent[4].content.startswith("zzz") and sent[4].content.endswith("zzz")
    assert sum(len(m.content) for m in sent) <= 12_000


def test_trim_keeps_the_newest_run_of_exchanges_and_never_starts_with_an_answer():
    past = []
    for i in range(30):
        past += [Message("user", f"q{i} " + "x" * 50), Message("assistant", f"a{i} " + "y" * 500)]
    sent = trim([*past, Message("user", "now")], 2_000)
    assert sent[0].role == "user" and sent[-1].content == "now"
    assert [m.role for m in sent[:-1]] == ["user", "assistant"] * ((len(sent) - 1) // 2)
    assert sent[-2].content.startswith("a29") and sum(len(m.content) for m in sent) <= 2_000


def test_a_locked_file_keeps_the_exchange_and_writes_it_with_the_next(history_db):
    store = HistoryStore(history_db, busy_timeout=0.1)
    conversation = Conversation(store, "nb")
    conversation.record("before", "ok")
    locker = sqlite3.connect(history_db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(HistoryError, match=r"locked by another process.*kept in memory"):
        conversation.record("during", "the lock")
    assert [m.content for m in conversation.messages()] == ["before", "ok"]  # WAL: reads go on
    locker.execute("ROLLBACK")
    conversation.record("after", "it")
    after = ["before", "ok", "during", "the lock", "after", "it"]
    assert [m.content for m in conversation.messages()] == after


def test_a_file_from_before_cells_is_upgraded_in_place(history_db):
    old = sqlite3.connect(history_db)
    old.executescript(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, notebook TEXT NOT NULL,"
        " thread TEXT NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,"
        " status TEXT NOT NULL DEFAULT 'complete', created REAL NOT NULL, meta TEXT NOT NULL DEFAULT '{}');"
        "INSERT INTO messages (notebook, thread, role, content, created) VALUES"
        " ('nb', 'default', 'user', 'old q', 0), ('nb', 'default', 'assistant', 'old a', 0);"
    )
    old.close()
    conversation = Conversation(HistoryStore(history_db), "nb")
    conversation.record("new q", "new a", cell="c1")
    assert [(m.content, m.cell) for m in conversation.messages()] == [
        ("old q", None),
        ("old a", None),
        ("new q", "c1"),
        ("new a", "c1"),
    ]


def test_a_file_locked_while_opening_is_tried_again_not_given_up(history_db, monkeypatch):
    """Several kernels open one new file at once: a lock then is a wait, never in-memory history."""
    from acytoo_magic import Assistant

    HistoryStore(history_db).threads("")  # the file exists, in WAL mode
    locker = sqlite3.connect(history_db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr("acytoo_magic.core.history.store.SETUP_TIMEOUT", 0.1)
    assistant = Assistant(history_path=str(history_db))
    with pytest.raises(HistoryError, match="locked by another process"):
        assistant.store  # noqa: B018
    request = assistant.request("asked while locked")  # building a request touches no file
    with pytest.raises(HistoryError, match="locked"):
        request.messages()  # the answer catches this and goes without history, saying so
    locker.execute("ROLLBACK")
    assistant.conversation().record("after", "the lock")
    assert str(assistant.store.path) == str(history_db)  # the file, not memory
    assert [m.content for m in HistoryStore(history_db).load(assistant.notebook, "default")] == [
        "after",
        "the lock",
    ]
