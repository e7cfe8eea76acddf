"""The notebook is the record, in a real JupyterLab driven through chromium: ask twice, save,
File > Duplicate, and the copy's next question carries both exchanges; a reload keeps each
answer's record; Clear All Outputs and save, and the next question sends none of them."""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from lab import (
    ARTIFACTS,
    browser_unavailable,
    lab_and_browser,
    open_notebook,
    run_in_a_new_cell,
    save_notebook,
)

from acytoo_magic.core.history.document import KEY

pytestmark = pytest.mark.browser
reason = browser_unavailable()

CELLS = ["%load_ext acytoo_magic", "%%acytoo\nFirst question", "%%acytoo\nSecond question"]
# The second answer is whole (its small print is drawn after the text).
READY = (
    "(() => { const last = [...document.querySelectorAll('.jp-CodeCell')].at(-1);"
    " const text = last ? last.innerText : '';"
    " return text.includes('(2 from you)') && text.includes('tokens in'); })()"
)


def records(notebook) -> list[dict]:
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    return [o["metadata"][KEY] for o in outputs if KEY in o.get("metadata", {})]


def answered(page, prompt: str) -> str:
    """Ask ``prompt`` in a new cell at the end, as a user types it; the answer's text once whole."""
    cell, _ = run_in_a_new_cell(page, f"%%acytoo\n{prompt}", prompt)
    whole = cell.locator(".jp-OutputArea-output", has_text="tokens in")
    whole.first.wait_for(timeout=120_000)
    return whole.first.inner_text()


def wait_for_file(path: Path, timeout: float = 30) -> None:
    """Until ``path`` exists (a copy the server makes): a condition, polled, with a deadline."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} was never made")
        time.sleep(0.05)


@pytest.mark.skipif(bool(reason), reason=reason or "")
def test_a_duplicate_carries_the_conversation_and_cleared_outputs_send_none(tmp_path: Path) -> None:
    path = tmp_path / "asked.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS]), path)
    with lab_and_browser(tmp_path) as lab:
        page = open_notebook(lab, "asked.ipynb", READY, answers=".jp-OutputArea-output")
        pages = [page]
        try:
            first, second = records(save_notebook(page, path))
            assert (first["provider"], first["model"]) == ("acytoo", "scripted")
            assert first["prompt"] == "First question"
            assert second["parent"]["exchange"] == first["exchange"]

            # A reload: the outputs come back from the file, and a save writes their records again.
            page.reload()
            idle = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
            page.wait_for_selector(idle, timeout=60_000)
            run_in_a_new_cell(page, "print('after the reload')", "after the reload")
            page.locator(".jp-OutputArea-output", has_text="after the reload").last.wait_for(timeout=60_000)
            assert records(save_notebook(page, path)) == [first, second]

            # File > Duplicate, then the copy opened with a kernel of its own.
            page.get_by_role("menuitem", name="File", exact=True).click()
            page.get_by_role("menuitem", name=re.compile(r"^Duplicate")).click()
            wait_for_file(tmp_path / "asked-Copy1.ipynb")
            copy = lab["browser"].new_page(viewport={"width": 1280, "height": 1000})
            copy.goto(f"{lab['base']}/lab/workspaces/copy/tree/asked-Copy1.ipynb?token={lab['token']}")
            copy.locator(".jp-Notebook").first.wait_for(timeout=60_000)
            copy.wait_for_selector(idle, timeout=60_000)
            pages.append(copy)
            run_in_a_new_cell(copy, "%load_ext acytoo_magic\nprint('loaded here')", "loaded here")
            copy.locator(".jp-OutputArea-output", has_text="loaded here").last.wait_for(timeout=60_000)
            shown = answered(copy, "Third question")
            assert "(3 from you)" in shown and 'Before that you said: "Second question"' in shown

            # Clear All Outputs, save: the original's next question sends none of its exchanges.
            page.get_by_role("menuitem", name="Edit", exact=True).click()
            page.get_by_role("menuitem", name="Clear Outputs of All Cells").click()
            assert records(save_notebook(page, path)) == []
            shown = answered(page, "Fourth question")
            assert "(1 from you)" in shown and "not in the saved notebook: not sent" in shown
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            for number, opened in enumerate(pages):
                opened.screenshot(path=str(ARTIFACTS / f"lab_record_failure_{number}.png"), full_page=True)
            raise
