"""A first use in a real JupyterLab, with the real bundled model and nothing configured: a `{df}`
question is answered in the kernel; `%acytoo use local` keeps the choice; after Kernel > Restart
Kernel the choice still holds. The answer's picture is the README's (`make screenshots`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from lab import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_unavailable,
    jupyter_lab,
    open_notebook,
    run_in_a_new_cell,
    save_shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.local_model]

NOTEBOOK = "first_use.ipynb"
QUESTION = "Which region has the highest total sales in {df}?"
FRAME = (
    "import pandas as pd\n\n"
    "df = pd.DataFrame({\n"
    "    'region': ['North', 'South', 'South', 'West', 'North', 'West', 'South', 'East'],\n"
    "    'sales': [1200.0, 3400.0, 2900.0, None, 1800.0, 2500.0, 3100.0, 900.0],\n"
    "    'units': [12, 30, 27, 15, 16, 22, 29, 8],\n"
    "})"
)
# The answer is done when its status line (small print, "— local · smollm2 · …") is drawn.
ANSWERED = (
    "[...document.querySelectorAll('.jp-CodeCell')].some(c => c.innerText.includes('highest total sales')"
    " && c.querySelector('.jp-OutputArea-output')?.innerText.includes('local · smollm2 · '))"
)


def first_use_notebook(path: Path) -> None:
    cells = [
        nbformat.v4.new_code_cell("%load_ext acytoo_magic"),
        nbformat.v4.new_code_cell(FRAME),
        nbformat.v4.new_code_cell("%acytoo use local"),
        nbformat.v4.new_code_cell(f"%%acytoo\n{QUESTION}"),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def test_choose_the_bundled_model_restart_the_kernel_and_the_choice_holds(tmp_path):
    if reason := browser_unavailable():
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    first_use_notebook(tmp_path / NOTEBOOK)
    profile = tmp_path / "ipython" / "profile_default"
    # A new user's environment: no URL, no provider, an IPython profile of its own.
    env = {"IPYTHONDIR": str(tmp_path / "ipython"), "ACYTOO_HISTORY_DB": str(tmp_path / "history.sqlite3")}
    assert not any(name.startswith("ACYTOO_") for name in os.environ)
    with jupyter_lab(tmp_path, env) as address, sync_playwright() as playwright:
        base, token = address.split("|")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            lab = {"browser": browser, "base": base, "token": token}
            page = open_notebook(lab, NOTEBOOK, ANSWERED, answers=".jp-OutputArea-output")
            cells = page.locator(".jp-CodeCell")
            chosen = cells.nth(2).locator(".jp-OutputArea-output").inner_text()
            assert "acytoo: local answers from now on" in chosen and "nothing leaves this machine" in chosen
            answer = cells.nth(3)
            shown = answer.locator(".jp-OutputArea-output").first.inner_text()
            assert "\nlocal · smollm2 · " in shown  # the picture says which model wrote it
            assert page.evaluate("window.__seen") == []
            save_shot(answer, "first_use.png")
            assert json.loads((profile / "ipython_config.json").read_text()) == {
                "Assistant": {"provider": "local", "url": "", "model": ""}
            }

            # Kernel > Restart Kernel…, as a user does; then ask what answers now.
            page.get_by_role("menuitem", name="Kernel", exact=True).click()
            page.get_by_role("menuitem", name="Restart Kernel…").click()
            page.locator(".jp-Dialog .jp-mod-accept").click()  # "Restart"
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            cell, output = run_in_a_new_cell(page, "%load_ext acytoo_magic\n%acytoo config", "%acytoo config")
            output.wait_for(timeout=60_000)
            page.wait_for_function(
                "[...document.querySelectorAll('.jp-CodeCell')]"
                ".some(c => c.innerText.includes('%acytoo config')"
                " && c.querySelector('.jp-OutputArea-output')?.innerText.includes('history'))",
                timeout=60_000,
            )
            # a new kernel; the prompt's number follows the output, so wait for it rather than race it
            expect(cell.locator(".jp-InputPrompt")).to_have_text("[1]:", timeout=60_000)
            config = output.inner_text()
            kept = profile / "ipython_config.json"
            assert f"provider           'local' (chosen with %acytoo use, kept in {kept})" in config
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            with_page = locals().get("page")
            if with_page is not None:
                with_page.screenshot(path=str(ARTIFACTS / "first_use_failure.png"))
            raise
        finally:
            browser.close()
