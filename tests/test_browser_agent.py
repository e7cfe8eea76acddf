"""``%%acytoo --agent`` in a real JupyterLab through chromium: Run runs the code shown, Skip does not,
and after save and reload the episode is static output with no live button."""

from __future__ import annotations

import json

import nbformat
import pytest
from lab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_unavailable,
    jupyter_lab,
    open_notebook,
    run_in_a_new_cell,
    save_notebook,
    save_shot,
)

from acytoo_magic.server import LocalServer, ServerConfig

pytestmark = pytest.mark.browser
reason = browser_unavailable()  # fails in CI without chromium
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

NOTEBOOK = "agent.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("lab_agent")
    # A widget drawn first: the page's widget manager is up (and its kernel connection settled)
    # before a cell shows the buttons. Without it, 2 of 3 runs here showed "Error displaying
    # widget: model not found": Lab reconnected the kernel's websocket just after opening (console:
    # "WebSocket is closed before the connection is established") and the widget manager's restore
    # dropped the buttons' models while the cell ran. See docs/agent.md, "Known issue".
    ready = "%load_ext acytoo_magic\nimport ipywidgets\nipywidgets.Label('agent-ready')"
    cells = [nbformat.v4.new_code_cell(ready)]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), root / NOTEBOOK)
    with LocalServer(ServerConfig(chunk_size=12, delay=0.01)) as server:
        env = {
            "ACYTOO_PROVIDER": "openai",
            "ACYTOO_URL": f"{server.url}/v1",
            "ACYTOO_HISTORY_DB": str(root / "history.sqlite3"),
        }
        with jupyter_lab(root, env) as address, playwright_api.sync_playwright() as playwright:
            base, token = address.split("|")
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield {"browser": browser, "base": base, "token": token, "root": root, "server": server}
            browser.close()


LABEL = "document.querySelector('.jp-OutputArea-output .widget-label')?.innerText === 'agent-ready'"


@pytest.fixture(scope="module")
def page(lab):
    # the reconnect race (see the lab fixture) is recovered by run_all_until: reload, run again
    page = open_notebook(lab, NOTEBOOK, LABEL, answers=".jp-OutputArea-output")
    yield page
    page.close()


def run_episode(lab, page, prompt: str, code: str, answer: str, click: str):
    """Script a model that proposes ``code`` then answers; run the cell; click ``click`` when asked."""
    lab["server"].config.script[:] = [
        {"text": "Let me check.", "calls": [{"name": "run_python", "arguments": {"code": code}}]},
        {"text": answer},
    ]
    cell, _output = run_in_a_new_cell(page, f"%%acytoo --agent\n{prompt}", prompt)
    button = cell.get_by_role("button", name=click, exact=True)
    try:
        button.wait_for(timeout=60_000)
    except playwright_api.TimeoutError:
        save_shot(page, "agent_failure.png")
        raise
    assert listed_code(cell.locator(".acytoo-run").first) == code  # what the button approves is what is shown
    if click == "Run":
        save_shot(cell, "agent_episode_asking.png")
    button.click()
    cell.get_by_text(answer).wait_for(timeout=60_000)
    assert cell.locator(".jp-OutputArea-output button").count() == 0  # decided: the buttons are gone
    return cell


def listed_code(where) -> str:
    """The code a listing shows, line by line (the line numbers are not the code's)."""
    return "\n".join(where.locator(".acytoo-code-line").all_inner_texts())


def kernel_says(page, code: str, marker: str) -> str:
    _cell, output = run_in_a_new_cell(page, f"{code}  # {marker}", marker)
    output.wait_for(timeout=60_000)
    return output.inner_text().strip()


def test_run_runs_the_shown_code_and_skip_does_not(lab, page):
    cell = run_episode(lab, page, "Compute it please", "browser_ran = 41 + 1\nbrowser_ran", "done-run", "Run")
    assert "run_python: run (approved by you)" in cell.inner_text() and "value:\n42" in cell.inner_text()
    save_shot(cell, "agent_episode.png")
    assert kernel_says(page, "print(browser_ran)", "check-run") == "42"

    cell = run_episode(lab, page, "Skip this one", "skipped_in_browser = 1", "done-skip", "Skip")
    assert "skipped by you: not run" in cell.inner_text()
    assert kernel_says(page, "print('skipped_in_browser' in dir())", "check-skip") == "False"


def test_after_save_and_reload_the_episode_is_static(lab, page):
    saved = save_notebook(page, lab["root"] / NOTEBOOK)
    episodes = [c for c in saved.cells if c.source.startswith("%%acytoo --agent")]
    assert len(episodes) == 2
    assert WIDGET_VIEW not in json.dumps([c.outputs for c in episodes])  # no widget saved at all

    page.reload()
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    page.get_by_text("done-skip").wait_for(timeout=60_000)
    episodes = page.locator(".jp-CodeCell", has_text="%%acytoo --agent").locator(".jp-OutputArea-output")
    assert episodes.locator("button, input, .jupyter-widgets").count() == 0
    text = " ".join(episodes.all_inner_texts())
    assert "browser_ran = 41 + 1" in text and "skipped by you: not run" in text
    assert page.evaluate("window.__seen") == []  # nothing that runs was ever drawn in an output
