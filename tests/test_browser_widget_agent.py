"""The chat widget's Agent switch in a real JupyterLab through chromium: the switch shows its state,
Run runs exactly the code shown, Skip does not, and a decided request leaves no Run button behind,
in the saved notebook or in the page reloaded."""

from __future__ import annotations

import json

import nbformat
import pytest
from lab import open_notebook, run_in_a_new_cell, save_notebook, save_shot
from test_browser_agent import lab, listed_code  # noqa: F401  (the fixture: JupyterLab on the scripted tool-calling server)

pytestmark = pytest.mark.browser

NOTEBOOK = "agent_chat.ipynb"
CHAT = ".acytoo-chat"
ASK = f"{CHAT} .acytoo-approval-ask"
READY = f"document.querySelector('{CHAT} .acytoo-agent-switch') !== null"
# Where model text, tool results and proposed code are drawn: nothing that runs may appear there.
ANSWERS_SCOPE = f"{CHAT} .acytoo-transcript, {CHAT} .acytoo-live, {CHAT} .acytoo-approval-code"
LIVE_TEXT = f"document.querySelector('{CHAT} .acytoo-live').innerText"


@pytest.fixture(scope="module")
def page(lab):  # noqa: F811
    cells = [
        nbformat.v4.new_code_cell("%load_ext acytoo_magic"),
        nbformat.v4.new_code_cell("import pandas as pd\nsales = pd.DataFrame({'amount': [12.5, None, 7.0]})"),
        nbformat.v4.new_code_cell("from acytoo_magic import ChatWidget\nChatWidget('agent-chat')"),
        nbformat.v4.new_code_cell("6 * 7"),  # cells are added below this one
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), lab["root"] / NOTEBOOK)
    page = open_notebook(lab, NOTEBOOK, READY, answers=ANSWERS_SCOPE)
    page.locator(CHAT).scroll_into_view_if_needed()
    yield page
    page.close()


def ask_in_the_chat(lab, page, question: str, code: str, answer: str):  # noqa: F811
    """Script a model that looks at the variables, then proposes ``code``, then answers; send
    ``question``; return the approval area once it asks."""
    lab["server"].config.script[:] = [
        {"calls": [{"name": "list_variables"}]},
        {"text": "Let me check.", "calls": [{"name": "run_python", "arguments": {"code": code}}]},
        {"text": answer},
    ]
    page.locator(f"{CHAT} textarea").fill(question)
    page.get_by_role("button", name="Send").click()
    ask = page.locator(ASK)
    ask.get_by_role("button", name="Run", exact=True).wait_for(timeout=60_000)
    assert listed_code(ask.locator(".acytoo-approval-code")) == code  # what Run approves
    return ask


def kernel_says(page, code: str, marker: str) -> str:
    _cell, output = run_in_a_new_cell(page, f"{code}  # {marker}", marker)
    output.wait_for(timeout=60_000)
    return output.inner_text().strip()


def test_the_switch_shows_its_state(page):
    switch = page.locator(f"{CHAT} .acytoo-agent-switch")
    assert switch.get_attribute("aria-pressed") == "false"  # off by default
    switch.click()
    page.wait_for_function(
        f"document.querySelector('{CHAT} .acytoo-agent-switch').getAttribute('aria-pressed') === 'true'"
    )
    assert "mod-active" in switch.get_attribute("class") and switch.inner_text() == "Agent: on"


def test_run_runs_the_shown_code_and_skip_does_not(lab, page):  # noqa: F811
    code = "missing = int(sales.amount.isna().sum())\nmissing"
    answer = "**1** amount is missing (done-widget-run)."
    ask = ask_in_the_chat(lab, page, "How many amounts are missing in sales?", code, answer)
    transcript = page.locator(f"{CHAT} .acytoo-transcript")
    assert "sales: pandas.DataFrame, 3 × 1" in transcript.inner_text()  # the model looked
    assert "Let me check." in transcript.inner_text()
    save_shot(page.locator(CHAT), "agent_chat.png")  # the steps so far, the code, Run / Skip / Stop
    ask.get_by_role("button", name="Run", exact=True).click()
    transcript.get_by_text("amount is missing (done-widget-run)").wait_for(timeout=60_000)
    page.wait_for_function(f"{LIVE_TEXT} === ''", timeout=60_000)
    assert page.locator(f"{ASK} button").count() == 0  # decided: no button left
    assert "run_python [run]: missing = int(sales.amount.isna().sum())" in transcript.inner_text()
    assert kernel_says(page, "print(missing)", "check-widget-run") == "1"  # it ran in the kernel

    page.locator(CHAT).scroll_into_view_if_needed()
    ask = ask_in_the_chat(lab, page, "Skip this in the chat", "widget_skipped = 1", "done-widget-skip")
    ask.get_by_role("button", name="Skip", exact=True).click()
    transcript.get_by_text("done-widget-skip").wait_for(timeout=60_000)
    assert page.locator(f"{ASK} button").count() == 0
    assert "run_python [skip]: widget_skipped = 1" in transcript.inner_text()
    assert kernel_says(page, "print('widget_skipped' in dir())", "check-widget-skip") == "False"
    assert page.evaluate("window.__seen") == []  # nothing that runs was drawn in the chat


def test_a_decided_request_leaves_no_run_button_saved_or_reloaded(lab, page):  # noqa: F811
    saved = save_notebook(page, lab["root"] / NOTEBOOK)
    everything = json.dumps(saved)
    assert "acytoo-agent-run" not in everything and "sales.amount" not in json.dumps(saved.metadata)
    page.reload()
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    # The chat again (its kernel still runs), its approval area told by the kernel that nothing is
    # pending; or, if Lab lost the widget's model on reload (the known race), only the saved copy.
    idle = f"document.querySelector('{CHAT} .acytoo-approval[data-state=\"idle\"]') !== null"
    lost = (
        "[...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some((o) => o.textContent.includes('model not found'))"
    )
    page.wait_for_function(f"({idle}) || {lost}", timeout=60_000)
    shown = f"[...document.querySelectorAll('{CHAT} .acytoo-transcript, .acytoo-chat-static')]"
    page.wait_for_function(f"{shown}.some((e) => e.textContent.includes('done-widget-skip'))", timeout=60_000)
    assert page.locator(".acytoo-agent-run, .acytoo-agent-skip, .acytoo-agent-stop").count() == 0
    assert page.evaluate("window.__seen") == []
