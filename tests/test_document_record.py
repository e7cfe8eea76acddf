"""An answer's record, read back: what the core writes into the final output, what a saved document
gives back, and how the thread is rebuilt from it (the kernels' side: test_notebook_record.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat

from acytoo_magic.core.assistant import Assistant
from acytoo_magic.core.frames import NullRenderer
from acytoo_magic.core.history.document import KEY, DocumentRecord, Documents, record
from acytoo_magic.core.history.rebuild import DOCUMENT, KERNEL, UNDRAWN, cached, rebuild
from acytoo_magic.core.history.store import HistoryStore, Message
from acytoo_magic.core.history.thread import Conversation

SECRET = "ghp_" + "R3cordN0tK3pt" * 3  # a GitHub token's format, 4 + 36 characters


class Output(NullRenderer):
    """A front end's output that keeps the record handed to it, as the magic's final output does."""

    def __init__(self) -> None:
        super().__init__()
        self.metadata: dict[str, Any] = {}

    def keep_record(self, metadata: dict[str, Any]) -> None:
        self.metadata = dict(metadata)


async def asked(server: Any, history_db: Path, level: str, prompt: str, **options: Any) -> dict[str, Any]:
    assistant = Assistant(url=server.url, history_path=str(history_db), notebook_record=level, api_key=SECRET)
    try:
        output = Output()
        await assistant.ask(prompt, renderer=output, **options)
        return output.metadata.get(KEY, {})
    finally:
        await assistant.aclose()


async def test_full_keeps_the_prompt_as_sent_masked_and_provenance_does_not(server, history_db):
    full = await asked(server, history_db, "full", f"Is {SECRET} a token?")
    assert SECRET not in json.dumps(full) and "[secret" in full["sent"] and "[secret" in full["prompt"]
    plain = await asked(server, history_db, "provenance", "And now?")
    assert "sent" not in plain and plain["prompt"] == "And now?"
    assert plain["parent"] == {"exchange": full["exchange"], "hash": full["hash"]}  # the thread's chain
    assert await asked(server, history_db, "off", "Quiet?") == {}
    assert await asked(server, history_db, "provenance", "Alone?", history=False) == {}  # no thread keeps it


async def test_a_secret_sent_with_send_secret_is_still_masked_in_the_record(server, history_db, monkeypatch):
    """``--send-secret`` lets a secret leave for the provider; the record travels with the
    notebook, so it masks without that allow-list: at "full" the prompt as sent too."""
    token = "Vq8mZ2rT5wK9pLx3"
    monkeypatch.setenv("SERVICE_TOKEN", token)  # found by its name, as a notebook's would be
    kept = await asked(server, history_db, "full", f"Is {token} right?", send_secrets=["SERVICE_TOKEN"])
    [request] = [r for r in server.requests if "messages" in (r.get("json") or {})]
    assert any(token in m["content"] for m in request["json"]["messages"])  # sent, as asked
    # the answer is kept as the output shows it (the server echoes the prompt): the rest masks it
    assert token not in json.dumps({k: v for k, v in kept.items() if k != "answer"})
    assert "[secret: SERVICE_TOKEN]" in kept["sent"] and "[secret: SERVICE_TOKEN]" in kept["prompt"]


def saved(path: Path, cells: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    """A notebook of asked cells: (id, source, answer, record)."""
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(source, id=cell_id, outputs=[nbformat.v4.new_output(
            "display_data", data={"text/plain": answer, "text/html": f"<p>{answer}</p>"}, metadata=meta
        )])
        for cell_id, source, answer, meta in cells
    ])
    nbformat.write(notebook, path)


def chained(*asked: tuple[str, str, str]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Cells (id, prompt, answer) recorded one after the other in thread "default"."""
    cells, parent = [], None
    for cell_id, prompt, answer in asked:
        source = f"%%acytoo\n{prompt}"
        meta = record(exchange=f"x-{cell_id}", thread="default", prompt=prompt, answer=answer,
                      outcome="complete", parent=parent, source=source, key=f"id:{cell_id}#0",
                      time="2026-12-07T04:00:00.000Z")
        parent = (meta[KEY]["exchange"], meta[KEY]["hash"])
        cells.append((cell_id, source, answer, meta))
    return cells


def test_the_document_is_read_once_per_save(tmp_path):
    path = tmp_path / "a.ipynb"
    saved(path, chained(("c1", "One?", "1")))
    reader = Documents().for_key(str(path))
    assert reader is not None and Documents().for_key("kernel:abc") is None
    for _ in range(3):
        assert [r.prompt for r in reader.records() or []] == ["One?"]
    assert reader.reads == 1
    saved(path, chained(("c1", "One?", "1"), ("c2", "Two?", "2")))
    later = os.stat(path).st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(later, later))  # a later save, whatever the clock's grain
    assert [r.prompt for r in reader.records() or []] == ["One?", "Two?"] and reader.reads == 2


def test_nbconvert_shows_the_answer_and_never_its_record(tmp_path):
    from nbconvert import HTMLExporter

    path = tmp_path / "shared.ipynb"
    saved(path, chained(("c1", "What is <b>this</b>?", "The answer.")))
    html, _ = HTMLExporter().from_filename(str(path))
    assert "The answer." in html and "x-c1" not in html and KEY not in html


def rows(store: HistoryStore, *pairs: tuple[str, str, str | None, str, float]) -> None:
    """Store exchanges (prompt, answer, cell key, kernel, created) as the core does."""
    for prompt, answer, cell, kernel, created in pairs:
        store.record_exchange("nb.ipynb", "default", Message("user", prompt, created=created),
                              Message("assistant", answer, created=created, meta={"kernel": kernel}), cell)


def test_the_thread_is_the_document_then_this_kernels_newer_exchanges(tmp_path):
    path = tmp_path / "nb.ipynb"
    saved(path, chained(("c1", "One?", "1"), ("c2", "Two?", "2")))
    document = DocumentRecord(str(path))
    records, saved_at = document.snapshot() or ([], 0.0)
    store = HistoryStore(tmp_path / "h.sqlite3")
    rows(
        store,
        ("Before the save, deleted since?", "gone", "id:c0#0", "me", saved_at - 10),
        ("From code", "coded", None, "other", saved_at - 5),  # no cell can show it: kept, in time order
        ("Two, asked again?", "2 again", "id:c2#0", "me", saved_at + 1),  # a re-run since the save
        ("Another kernel's, unsaved", "not shown", "id:c9#0", "other", saved_at + 2),
        ("Three?", "3", "id:c3#0", "me", saved_at + 3),
    )
    thread = rebuild(records, saved_at, store.load("nb.ipynb", "default"), "me")
    assert [(e.prompt.content, e.origin) for e in thread] == [
        ("One?", DOCUMENT),
        ("Two, asked again?", KERNEL),  # in the place of the document's "Two?"
        ("From code", UNDRAWN),
        ("Three?", KERNEL),
    ]
    left_out = cached(thread, store.load("nb.ipynb", "default"))  # the cache: listed, never sent
    assert [e.prompt.content for e in left_out] == [
        "Before the save, deleted since?", "Another kernel's, unsaved"
    ]
    store.close()


def test_no_document_behind_a_key_means_the_history_file_is_the_thread(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    conversation = Conversation(store, "kernel:abc", "default", Documents(), "abc")
    conversation.record("Kept?", "yes")
    assert [m["content"] for m in conversation.to_send("Next?")] == ["Kept?", "yes", "Next?"]
    store.close()


def test_a_malformed_record_is_left_out_and_the_others_used(tmp_path):
    """A received notebook may hold anything: each record is judged alone, none raises."""
    path = tmp_path / "odd.ipynb"
    cells = chained(("c1", "One?", "1"), ("c2", "Two?", "2"))
    saved(path, cells)
    notebook = json.loads(path.read_text())
    notebook["cells"][0]["outputs"][0]["metadata"][KEY]["outcome"] = "bogus"
    notebook["cells"][1]["source"] = ["%%acytoo\n", 7, "Two?"]  # a non-string in a source list
    notebook["cells"][1]["outputs"][0]["metadata"][KEY]["time"] = 10**30
    notebook["cells"].append({"cell_type": "code", "source": "", "outputs": [
        {"metadata": {KEY: {"exchange": "x", "answer": "a", "parent": [1, 2]}}}, 5, None]})
    path.write_text(json.dumps(notebook))
    records = DocumentRecord(str(path)).records() or []
    assert [(r.prompt, r.problem) for r in records] == [
        ("One?", "its outcome 'bogus' is not one this extension writes"),
        ("Two?", ""),  # its source reads as "%%acytoo\nTwo?"
        ("", "record does not match its cell's prompt"),
    ]
    sent = [(e.prompt.content, e.answer.content) for e in rebuild(records, 0.0, [], None)]
    assert sent == [("Two?", "2")]


def test_a_file_that_is_no_notebook_is_said_and_read_again_once_it_is(tmp_path):
    path = tmp_path / "nb.ipynb"
    saved(path, chained(("c1", "One?", "1")))
    good = path.read_bytes()
    stamp = os.stat(path).st_mtime_ns
    reader = DocumentRecord(str(path))
    for broken in (b"{" + b" " * (len(good) - 1), b"[" + b" " * (len(good) - 2) + b"]"):  # not JSON, a list
        path.write_bytes(broken)
        os.utime(path, ns=(stamp, stamp))  # the size and time the good file will have
        assert reader.records() is None and "could not be read as a notebook" in reader.problem
    path.write_bytes(good)  # the save completed: same size, same time
    os.utime(path, ns=(stamp, stamp))
    assert [r.prompt for r in reader.records() or []] == ["One?"] and reader.problem == ""


def test_an_unreadable_notebook_is_said_once_and_the_history_file_is_the_thread(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text("not json at all")
    store = HistoryStore(tmp_path / "h.sqlite3")
    documents = Documents()
    conversation = Conversation(store, str(path), "default", documents, "me")
    conversation.record("Kept?", "yes")
    assert [m["content"] for m in conversation.to_send("Next?")] == ["Kept?", "yes", "Next?"]
    assert "could not be read as a notebook: the history file is the thread" in conversation.unsent_note
    again = Conversation(store, str(path), "default", documents, "me")
    again.to_send("And?")
    assert again.unsent_note == ""  # said once
    assert "could not be read as a notebook" in again.problem  # the history listing's head says it
    store.close()


def test_outputs_saved_without_a_record_send_their_cells_history_rows(tmp_path):
    """An upgrade: answers saved before records (or at "off") show outputs and hold no record;
    their cells' rows in the history file are sent, as before, in document order."""
    path = tmp_path / "nb.ipynb"
    cells = [nbformat.v4.new_code_cell(f"%%acytoo\n{q}", id=c, outputs=[
        nbformat.v4.new_output("display_data", data={"text/plain": a})]) for c, q, a in
        (("c2", "Two?", "2"), ("c1", "One?", "1"))]  # moved since
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.record_exchange(str(path), "default", Message("user", "One?", created=1.0),
                          Message("assistant", "1", created=1.0, meta={"kernel": "old"}), "id:c1#0")
    store.record_exchange(str(path), "default", Message("user", "Two?", created=2.0),
                          Message("assistant", "2", created=2.0, meta={"kernel": "old"}), "id:c2#0")
    conversation = Conversation(store, str(path), "default", Documents(), "new")
    assert [m["content"] for m in conversation.to_send("Three?")] == ["Two?", "2", "One?", "1", "Three?"]
    assert conversation.unsent_note == ""  # nothing left out
    store.close()


def test_the_kernel_that_asked_sends_its_own_rows_for_the_documents_exchanges(tmp_path):
    """The prompt as it was sent (``{df}`` expanded to a summary) stays what is sent after a save;
    another kernel's history file has no such row and sends the prompt as the cell shows it."""
    path = tmp_path / "nb.ipynb"
    cells = chained(("c1", "Describe {df}", "It has 3 rows."))
    saved(path, cells)
    records = DocumentRecord(str(path)).records() or []
    store = HistoryStore(tmp_path / "h.sqlite3")
    chain = {"exchange": "x-c1", "hash": records[0].hash, "thread": "default", "parent": ["", ""]}
    asked_ = Message("user", "Describe df (3 rows x 2 columns)", meta={"typed": "Describe {df}"})
    answered = Message("assistant", "It has 3 rows.", meta={"kernel": "me", "chain": chain})
    store.record_exchange("nb.ipynb", "default", asked_, answered, "id:c1#0")
    [mine] = rebuild(records, 0.0, store.load("nb.ipynb", "default"), "me")
    assert (mine.prompt.content, mine.origin) == ("Describe df (3 rows x 2 columns)", DOCUMENT)
    [theirs] = rebuild(records, 0.0, [], "other")
    assert theirs.prompt.content == "Describe {df}"
    store.close()


def test_the_chat_copy_records_no_more_than_it_shows(tmp_path):
    """At "full" a chat's records would carry each episode's steps (up to 500,000 characters
    each) and the prompt as sent: the copy shows neither, so it keeps neither, and keeps only
    as many exchanges as it shows."""
    from acytoo_magic.widget.saved_copy import RECORDED, STATIC_MESSAGES, SavedCopy

    copy = SavedCopy(lambda: "default", lambda: ([], "", False))
    for n in range(3 * RECORDED):
        made = record(exchange=f"x{n}", thread="default", prompt=f"Q{n}", answer="A", outcome="complete",
                      level="full", sent="x" * 100_000, episode={"steps": [{"text": "y" * 100_000}]})
        copy.keep(made)
    chat = copy.metadata()[KEY]["chat"]
    assert len(chat) == RECORDED == STATIC_MESSAGES // 2 and chat[-1]["prompt"] == f"Q{3 * RECORDED - 1}"
    assert len(json.dumps(chat)) < 20_000 and not any("sent" in e or "episode" in e for e in chat)


def test_a_cell_without_a_record_whose_output_shows_another_answer_sends_nothing(tmp_path):
    """A cell run again since its row and failed (its output shows the error, no record): its
    old row is not what it shows, so it is not sent."""
    path = tmp_path / "nb.ipynb"
    failed = nbformat.v4.new_output("display_data", data={"text/plain": "acytoo: the provider refused"})
    cell = nbformat.v4.new_code_cell("%%acytoo\nOne?", id="c1", outputs=[failed])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.record_exchange(str(path), "default", Message("user", "One?", created=1.0),
                          Message("assistant", "1", created=1.0, meta={"kernel": "old"}), "id:c1#0")
    conversation = Conversation(store, str(path), "default", Documents(), "new")
    assert [m["content"] for m in conversation.to_send("Two?")] == ["Two?"]
    store.close()
