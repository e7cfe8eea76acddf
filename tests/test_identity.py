"""History follows the notebook document: real JupyterLab sessions, rename, a reused ``Untitled.ipynb``.

The server's REST API is driven as JupyterLab's frontend drives it: ``POST /api/contents`` makes a
new ``Untitled.ipynb``, ``POST /api/sessions`` starts its kernel, ``PUT`` saves the cells (with
their ids), a rename is ``PATCH /api/contents`` then ``PATCH /api/sessions``. Cells run in those
very kernels with their cell ids in the request metadata, as the frontend sends them.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client import BlockingKernelClient
from kernels import Kernel, kernel
from lab import jupyter_lab
from nbclient import NotebookClient

from acytoo_magic.server import LocalServer

pytestmark = pytest.mark.notebook


class Lab:
    """A running JupyterLab's REST API, as the frontend uses it."""

    def __init__(self, address: str, root: Path) -> None:
        self.base, self.token = address.split("|")
        self.root = root
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def api(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with self._opener.open(request, timeout=120) as response:
            text = response.read()
        return json.loads(text) if text else None

    def new_notebook(self) -> str:
        """File > New > Notebook: the server picks the name (``Untitled.ipynb`` when it is free)."""
        return self.api("POST", "/api/contents", {"type": "notebook"})["path"]

    @contextmanager
    def session(self, path: str) -> Iterator[tuple[str, Kernel]]:
        """Open ``path`` with a kernel; yields the session id and a client of that kernel."""
        body = {"path": path, "name": Path(path).name, "type": "notebook", "kernel": {"name": "python3"}}
        session = self.api("POST", "/api/sessions", body)
        connection = self.root / ".runtime" / f"kernel-{session['kernel']['id']}.json"
        client = BlockingKernelClient(connection_file=str(connection))
        client.load_connection_file()
        # No heartbeat: under load its first beat can come after the first kernel_info attempt,
        # which jupyter_client then takes for a dead kernel. The kernel_info reply is the signal.
        client.start_channels(hb=False)
        try:
            client.wait_for_ready(timeout=120)
            yield session["id"], Kernel(None, client)  # type: ignore[arg-type]
        finally:
            client.stop_channels()

    def close(self, session_id: str) -> None:
        """Close the notebook and shut its kernel down."""
        self.api("DELETE", f"/api/sessions/{session_id}")

    def save(self, path: str, cells: dict[str, str]) -> None:
        """Save the document: these cells (id -> source), each with the output its answer last
        showed (``ask``), as the frontend's save writes them."""
        notebook = nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell(source, id=cell_id, outputs=SHOWN.get(cell_id, []))
                for cell_id, source in cells.items()
            ]
        )
        self.api("PUT", f"/api/contents/{path}", {"type": "notebook", "format": "json", "content": notebook})

    def rename(self, old: str, new: str, session_id: str | None = None) -> None:
        """Rename the file, then (when open) move its session, as JupyterLab does."""
        self.api("PATCH", f"/api/contents/{old}", {"path": new})
        if session_id is not None:
            self.api("PATCH", f"/api/sessions/{session_id}", {"path": new, "name": Path(new).name})


@pytest.fixture
def lab(tmp_path: Path, server: LocalServer, history_db: Path) -> Iterator[Lab]:
    root = tmp_path / "lab"
    root.mkdir()
    env = {"ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(history_db)}
    with jupyter_lab(root, env) as address:
        yield Lab(address, root)


# The final output each cell's answer showed (with its metadata), what a save of that cell writes.
SHOWN: dict[str, list[Any]] = {}


@pytest.fixture(autouse=True)
def _nothing_shown_yet() -> None:
    SHOWN.clear()


def ask(k: Kernel, cell_id: str, prompt: str) -> str:
    """Run ``%%acytoo`` in the cell ``cell_id``; the answer as shown (the scripted server's echo of
    what it was sent: how many messages, and the question before this one)."""
    out = k.execute(f"%%acytoo\n{prompt}", cell_id=cell_id)
    assert out.status == "ok", out.error
    final = out.of_type("display_data", "update_display_data")[-1]
    SHOWN[cell_id] = [nbformat.v4.new_output("display_data", data=final["data"], metadata=final["metadata"])]
    return out.final_display["text/plain"]


def keys(history_db: Path) -> dict[str, list[str]]:
    """The prompts stored under each notebook key."""
    rows = sqlite3.connect(history_db).execute(
        "SELECT notebook, content FROM messages WHERE role = 'user' ORDER BY id"
    )
    found: dict[str, list[str]] = {}
    for notebook, content in rows:
        found.setdefault(notebook, []).append(content)
    return found


def test_a_renamed_notebook_keeps_its_thread_and_a_new_untitled_sees_none_of_it(lab, history_db):
    b_path = lab.new_notebook()
    assert b_path == "Untitled.ipynb"
    with lab.session(b_path) as (b_session, b):
        assert b.execute("%load_ext acytoo_magic", cell_id="b-load").status == "ok"
        ask(b, "b-1", "What drives churn?")
        # Asked from code (as the chat widget asks): the row has no cell, only the cell that ran.
        code = "import acytoo_magic\nreply = await acytoo_magic._magics.assistant.ask('Asked from code')"
        assert b.execute(code, cell_id="b-code").status == "ok"
        lab.save(b_path, {"b-load": "%load_ext acytoo_magic", "b-1": "%%acytoo\nWhat drives churn?"})
        lab.rename(b_path, "churn_model.ipynb", b_session)

        # A brand-new notebook gets the name B started with.
        c_path = lab.new_notebook()
        assert c_path == "Untitled.ipynb"
        with lab.session(c_path) as (_c_session, c):
            assert c.execute("%load_ext acytoo_magic", cell_id="c-load").status == "ok"
            shown = ask(c, "c-1", "What is in this notebook?")
            assert "(1 from you)" in shown and "churn" not in shown  # nothing of B was sent
            assert [m["content"] for m in c.history()][::2] == ["What is in this notebook?"]
            assert "churn" not in c.execute("%acytoo threads").stdout

            # B, renamed, still has its thread, without --adopt.
            shown = ask(b, "b-2", "And which customers leave first?")
            assert 'Before that you said: "Asked from code"' in shown and "(3 from you)" in shown
            assert [m["content"] for m in b.history()][::2] == [
                "What drives churn?",
                "Asked from code",
                "And which customers leave first?",
            ]

            # Renamed again while open: the thread follows at once.
            # (saved as asked: a cell whose text differs from its answer's prompt is not sent)
            cells = {"b-1": "%%acytoo\nWhat drives churn?",
                     "b-2": "%%acytoo\nAnd which customers leave first?"}
            lab.save("churn_model.ipynb", cells)
            lab.rename("churn_model.ipynb", "churn_final.ipynb", b_session)
            shown = ask(b, "b-3", "Summarise.")
            assert "(4 from you)" in shown
            assert "churn_final.ipynb" in b.execute("%acytoo config").stdout

    root = str(lab.root)
    assert keys(history_db) == {
        f"{root}/churn_final.ipynb": [
            "What drives churn?",
            "Asked from code",
            "And which customers leave first?",
            "Summarise.",
        ],
        f"{root}/Untitled.ipynb": ["What is in this notebook?"],
    }


def test_a_notebook_renamed_while_closed_finds_its_thread_and_its_copy_does_not_take_it(lab, history_db):
    path = lab.new_notebook()
    with lab.session(path) as (session, k):
        k.execute("%load_ext acytoo_magic", cell_id="x-load")
        ask(k, "x-1", "Plan the analysis.")
        lab.save(path, {"x-load": "%load_ext acytoo_magic", "x-1": "%%acytoo\nPlan the analysis."})
    lab.close(session)
    lab.rename(path, "plan.ipynb")  # from the file browser: no session, no kernel running
    with lab.session("plan.ipynb") as (_session, k):
        k.execute("%load_ext acytoo_magic", cell_id="x-load")
        assert 'Before that you said: "Plan the analysis."' in ask(k, "x-2", "Go on.")
    # A copy keeps the cell ids: it is another document, and the original keeps the thread. The
    # copy continues from what it shows (the exchange saved in it; "Go on." was never saved).
    lab.api("POST", "/api/contents", {"copy_from": "plan.ipynb"})
    with lab.session("plan-Copy1.ipynb") as (_copy_session, copy):
        copy.execute("%load_ext acytoo_magic", cell_id="x-load")
        shown = ask(copy, "y-1", "Another plan?")
        assert 'Before that you said: "Plan the analysis."' in shown and "(2 from you)" in shown
    # A notebook that only asks from code (as its chat widget would): its rows carry no cell id,
    # only the cell that was running. Closed and renamed, its name taken by a new notebook:
    # the new one sees nothing of it.
    code = "import acytoo_magic\nreply = await acytoo_magic._magics.assistant.ask({!r})\nprint(reply.answer)"
    for prompt in ("Hello?", "Anyone there?"):
        assert lab.new_notebook() == "Untitled.ipynb"
        with lab.session("Untitled.ipynb") as (session, fresh):
            fresh.execute("%load_ext acytoo_magic", cell_id=f"load-{len(prompt)}")
            assert "(1 from you)" in fresh.execute(code.format(prompt), cell_id=f"ask-{len(prompt)}").stdout
        lab.close(session)
        lab.rename("Untitled.ipynb", f"chat-{len(prompt)}.ipynb")
    root = str(lab.root)
    stored = keys(history_db)
    assert stored.pop(f"{root}/plan.ipynb") == ["Plan the analysis.", "Go on."]
    assert stored.pop(f"{root}/plan-Copy1.ipynb") == ["Another plan?"]
    assert stored.pop(f"{root}/Untitled.ipynb") == ["Anyone there?"]
    ((aside, prompts),) = stored.items()  # kept, listed as another notebook, adoptable
    assert aside.startswith(f"{root}/Untitled.ipynb (earlier notebook, kernel ") and prompts == ["Hello?"]


def test_vs_code_rename_keeps_the_thread_and_a_new_file_at_the_old_path_sees_none(
    server, history_db, tmp_path
):
    """VS Code starts the kernel itself (no Jupyter server) and keeps ``__vsc_ipynb_file__`` set; as
    ``cellId`` it sends its own cell URIs, not the ids saved in the file."""
    env = {"ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(history_db)}
    old, new = tmp_path / "scratch.ipynb", tmp_path / "model.ipynb"

    def uri(path: Path, handle: str) -> str:
        return f"vscode-notebook-cell:{path}#{handle}"

    def start(k: Kernel, path: Path) -> None:
        setup = f"__vsc_ipynb_file__ = {str(path)!r}\n%load_ext acytoo_magic"
        assert k.execute(setup, cell_id=uri(path, "W0sZmlsZQ==")).status == "ok"

    with kernel(**env) as k:
        start(k, old)
        ask(k, uri(old, "W1sZmlsZQ=="), "Which features matter?")
        shown = SHOWN[uri(old, "W1sZmlsZQ==")]  # VS Code saves the output with the cell
        cell = nbformat.v4.new_code_cell("%%acytoo\nWhich features matter?", id="a1b2c3", outputs=shown)
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), old)
        old.rename(new)
        k.execute(f"__vsc_ipynb_file__ = {str(new)!r}", cell_id=uri(new, "W2sZmlsZQ=="))
        assert 'Before that you said: "Which features matter?"' in ask(k, uri(new, "W3sZmlsZQ=="), "Why?")
        why = nbformat.v4.new_code_cell("%%acytoo\nWhy?", id="d4e5f6", outputs=SHOWN[uri(new, "W3sZmlsZQ==")])
        nbformat.write(nbformat.v4.new_notebook(cells=[cell, why]), new)  # saved before closing
    nbformat.write(nbformat.v4.new_notebook(), old)  # a new, empty notebook at the old path
    with kernel(**env) as fresh:
        start(fresh, old)
        assert "(1 from you)" in ask(fresh, uri(old, "W1sZmlsZQ=="), "Hello?")
    with kernel(**env) as reopened:  # the next day: the renamed notebook, a new kernel
        start(reopened, new)
        assert "(3 from you)" in ask(reopened, uri(new, "W4sZmlsZQ=="), "Anything else?")
    assert keys(history_db)[str(new)] == ["Which features matter?", "Why?", "Anything else?"]


def test_nbclient_runs_are_separate_notebooks_and_each_keeps_its_own_thread(
    server, history_db, monkeypatch, tmp_path
):
    """nbclient and papermill start kernels without a server or a notebook name: each run is its own."""
    monkeypatch.setenv("ACYTOO_URL", server.url)
    monkeypatch.setenv("ACYTOO_HISTORY_DB", str(history_db))
    cells = ["%load_ext acytoo_magic", "%%acytoo\nFirst question", "%%acytoo\nSecond question"]
    path = tmp_path / "report.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    for _run in range(2):
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
        first, second = (cell.outputs[-1]["data"]["text/plain"] for cell in notebook.cells[1:])
        assert "(1 from you)" in first  # the earlier run's thread is not sent
        assert 'Before that you said: "First question"' in second and "(2 from you)" in second
    stored = keys(history_db)
    assert len(stored) == 2 and all(key.startswith("kernel:") for key in stored)


def test_what_a_saved_document_says_about_its_cells(tmp_path):
    """Only a readable notebook with nbformat cell ids (or no cells yet) is evidence; else unknown."""
    from acytoo_magic.core.history.identity import cell_id_of, document_cells

    new, saved, old_format = tmp_path / "new.ipynb", tmp_path / "saved.ipynb", tmp_path / "old.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), new)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", id="c-1")]), saved)
    old_format.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "1"}], "nbformat": 4}))
    assert document_cells(str(new)) == set()
    assert document_cells(str(saved)) == {"c-1"}
    assert document_cells(str(old_format)) is None
    assert document_cells("saved.ipynb") is None and document_cells(str(tmp_path / "gone.ipynb")) is None
    assert cell_id_of("id:c-1#0") == "c-1" and cell_id_of("text:abc#0") is None
    assert cell_id_of("id:vscode-notebook-cell:/x.ipynb#W0sZmlsZQ==#0") is None
