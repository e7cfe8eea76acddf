"""Jupyter Notebook 7 (its own app, not JupyterLab) through Debian's chromium: an answer streaming in
place, the chat's keys (Enter sends, Shift+Enter is a new line, no key reaches the notebook's
shortcuts), Enter while an answer streams, Stop, an agent approval, and the notebook reopened with a
new kernel. What the notebook does is asserted on its cells: none runs, none is added.

Notebook 7 reads keys on the document in the capture phase (JupyterLab in the bubble phase), so
this is the front end where a key typed in the chat could reach the notebook before the chat.
"""

from __future__ import annotations

import json
import urllib.request

import nbformat
import pytest
from lab import (
    ARTIFACTS,
    CELLS,
    CELLS_SETTLED,
    CHROMIUM,
    CHROMIUM_ARGS,
    DANGEROUS,
    browser_unavailable,
    jupyter_lab,
    open_notebook,
    run_in_a_new_cell,
    save_notebook,
    save_shot,
)
from playwright.sync_api import expect
from test_browser_agent import listed_code

from acytoo_magic.server import LocalServer, ServerConfig

pytestmark = pytest.mark.browser
reason = browser_unavailable()  # fails in CI without chromium
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

NOTEBOOK = "nb7.ipynb"
CHAT = ".acytoo-chat"
BOX = f"{CHAT} textarea"
READY = f"document.querySelector('{BOX}') !== null"
# Where model text, tool results and proposed code are drawn, live and saved: nothing may run there.
# (The magic's answers are HTML outputs; the one <style> there is the copy's own, beside it.)
ANSWERS_SCOPE = (
    f"{CHAT} .acytoo-transcript, {CHAT} .acytoo-live, {CHAT} .acytoo-approval-code, .acytoo-chat-static,"
    " .jp-RenderedHTMLCommon > :not(style)"
)
LIVE_TEXT = f"document.querySelector('{CHAT} .acytoo-live').innerText"
LAST_ANSWER = f"{CHAT} .acytoo-transcript .acytoo-msg.acytoo-assistant"
MODEL_MISSING = (
    "[...document.querySelectorAll('.jp-OutputArea-output')]"
    ".some((o) => o.textContent.includes('model not found'))"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Notebook 7 on the scripted server through the OpenAI-compatible provider (answers from
    directives; scripted tool calls for the agent)."""
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("notebook7")
    cells = [
        nbformat.v4.new_code_cell("%load_ext acytoo_magic"),
        nbformat.v4.new_code_cell("import pandas as pd\nsales = pd.DataFrame({'amount': [12.5, None, 7.0]})"),
        nbformat.v4.new_code_cell("from acytoo_magic import ChatWidget\nChatWidget('nb7')"),
        nbformat.v4.new_code_cell("6 * 7"),  # cells are added below this one
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), root / NOTEBOOK)
    with LocalServer(ServerConfig(chunk_size=12, delay=0.01)) as server:
        env = {
            "ACYTOO_PROVIDER": "openai",
            "ACYTOO_URL": f"{server.url}/v1",
            "ACYTOO_HISTORY_DB": str(root / "history.sqlite3"),
        }
        with jupyter_lab(root, env, front="notebook") as address, playwright_api.sync_playwright() as pw:
            base, token = address.split("|")
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield {"browser": browser, "base": base, "token": token, "root": root, "server": server,
                   "front": "notebook"}
            browser.close()


@pytest.fixture(scope="module")
def page(lab):
    page = open_notebook(lab, NOTEBOOK, READY, answers=ANSWERS_SCOPE)
    page.console = []
    page.on("console", lambda message: page.console.append(message.text))
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "nb7_after_tests.png"), full_page=True)
    page.close()


def chat_ready(page) -> None:
    page.locator(CHAT).scroll_into_view_if_needed()
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=60_000)


def answered(page, text: str) -> None:
    """Wait until the chat's last answer says ``text`` and nothing streams any more."""
    page.locator(LAST_ANSWER).filter(has_text=text).last.wait_for(timeout=60_000)
    page.wait_for_function(f"{LIVE_TEXT} === ''", timeout=60_000)


WATCH_CELL = """(marker) => {
  // Every state of the output of the cell whose input holds the marker: (outputs, text length).
  window.__frames = [];
  const find = () => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')]
    .find((c) => (c.querySelector('.jp-InputArea') || {}).innerText?.includes(marker));
  new MutationObserver(() => {
    const cell = find();
    if (!cell) return;
    const outputs = cell.querySelectorAll('.jp-OutputArea-output');
    const text = [...outputs].map((o) => o.innerText).join('');
    const state = [outputs.length, text.length, text.includes('contacting')];  // the waiting line
    const last = window.__frames[window.__frames.length - 1];
    if (!last || last[0] !== state[0] || last[1] !== state[1]) window.__frames.push(state);
  }).observe(document.querySelector('.jp-Notebook'), {subtree: true, childList: true, characterData: true});
}"""


def test_an_answer_streams_in_place(page):
    page.evaluate(WATCH_CELL, "nb7-stream")
    source = "%%acytoo\n[[size=3000 chunk=24 delay=0.01]] nb7-stream"
    cell, output = run_in_a_new_cell(page, source, "nb7-stream")
    cell.get_by_text("characters in").wait_for(timeout=60_000)  # its status line: the answer has ended
    frames = [f for f in page.evaluate("window.__frames") if f[0]]
    assert {count for count, _length, _waiting in frames} == {1}, frames  # one output, updated in place
    lengths = [length for _count, length, waiting in frames if not waiting]
    assert len(lengths) >= 3 and lengths == sorted(lengths), frames  # it grew, frame by frame
    assert "All work and no play" in output.inner_text()


def test_shift_enter_is_a_new_line_and_enter_sends_and_no_key_reaches_the_notebook(page):
    chat_ready(page)
    page.wait_for_function(CELLS_SETTLED, timeout=60_000)
    before = page.evaluate(CELLS)
    box = page.locator(BOX)
    box.click()
    page.keyboard.type("[[echo]]first line")
    page.keyboard.press("Shift+Enter")
    # letters that are Notebook 7 command-mode shortcuts (a, b: new cells; dd: delete; m, r, y: cell
    # type; x: cut; z: undo; o: collapse outputs; 0 0: restart), and Ctrl+Z, the notebook's undo
    page.keyboard.type("second: a b dd m r y x z o 00 nb7-keys")
    assert box.input_value() == "[[echo]]first line\nsecond: a b dd m r y x z o 00 nb7-keys"
    page.keyboard.press("Control+z")  # the box's own undo: the typing goes, no cell action is undone
    assert page.evaluate(CELLS) == before  # no cell ran, none was added, changed or removed
    box.fill("[[echo]]first line\nsecond: a b dd m r y x z o 00 nb7-keys")
    page.keyboard.press("Enter")
    answered(page, "nb7-keys")
    answer = page.locator(LAST_ANSWER).last.inner_text()
    assert "first line" in answer and "second: a b dd m r y x z o 00 nb7-keys" in answer
    assert box.input_value() == ""  # sent, so the box is empty again
    assert page.evaluate(CELLS) == before
    assert not [m for m in page.console if "Cannot send" in m]
    save_shot(page.locator(CHAT), "nb7_chat.png")


def test_links_in_the_chat_are_underlined_and_in_the_link_colour(page):
    chat_ready(page)
    box = page.locator(BOX)
    box.fill("[[echo]]See [the pandas docs](https://pandas.pydata.org/docs/) nb7-link")
    page.keyboard.press("Enter")
    answered(page, "nb7-link")
    link = page.locator(LAST_ANSWER).last.locator("a", has_text="the pandas docs")
    look = link.evaluate(
        "(a) => [getComputedStyle(a).textDecorationLine, getComputedStyle(a).color,"
        " getComputedStyle(a.parentElement).color]"
    )
    assert look[0] == "underline" and look[1] != look[2], look  # told apart from the text around it


def test_an_agent_approval_in_the_chat(lab, page):
    chat_ready(page)
    code = "nb7_missing = int(sales.amount.isna().sum())\nnb7_missing"
    lab["server"].config.script[:] = [
        {"calls": [{"name": "list_variables"}]},
        {"text": "Let me check.", "calls": [{"name": "run_python", "arguments": {"code": code}}]},
        {"text": "**1** amount is missing (nb7-agent-done)."},
    ]
    switch = page.locator(f"{CHAT} .acytoo-agent-switch")
    switch.click()
    expect(switch).to_have_attribute("aria-pressed", "true")
    page.wait_for_function(CELLS_SETTLED, timeout=60_000)
    before = page.evaluate(CELLS)
    page.locator(BOX).click()
    page.keyboard.type("How many amounts are missing in sales?")
    page.keyboard.press("Enter")
    ask = page.locator(f"{CHAT} .acytoo-approval-ask")
    ask.get_by_role("button", name="Run", exact=True).wait_for(timeout=60_000)
    assert listed_code(ask.locator(".acytoo-approval-code")) == code  # what Run approves
    save_shot(page.locator(CHAT), "nb7_agent.png")
    ask.get_by_role("button", name="Run", exact=True).click()
    answered(page, "nb7-agent-done")
    assert page.locator(f"{CHAT} .acytoo-approval-ask button").count() == 0  # decided: no button left
    switch.click()
    expect(switch).to_have_attribute("aria-pressed", "false")
    assert page.evaluate(CELLS) == before
    _cell, output = run_in_a_new_cell(page, "print(nb7_missing)  # nb7-check", "nb7-check")
    expect(output).to_have_text("1", timeout=60_000)  # it ran in the kernel, once approved


def test_enter_while_an_answer_streams_keeps_the_text_and_stop_keeps_the_answer(lab, page):
    chat_ready(page)
    page.wait_for_function(CELLS_SETTLED, timeout=60_000)
    before = page.evaluate(CELLS)
    box = page.locator(BOX)
    box.fill("[[size=200000 chunk=20 delay=0.01]]")  # about 100 s unless stopped
    page.keyboard.press("Enter")
    page.wait_for_function(f"{LIVE_TEXT}.length > 200", timeout=60_000)  # streaming now
    box.click()
    page.keyboard.type("[[echo]]asked while it streamed nb7-held")
    page.keyboard.press("Enter")
    error_area = page.locator(f"{CHAT} .acytoo-error-area")
    error_area.get_by_text("an answer is still streaming").wait_for(timeout=30_000)  # said why, at once
    assert box.input_value() == "[[echo]]asked while it streamed nb7-held"  # nothing typed is lost
    page.get_by_role("button", name="Stop").click()
    page.wait_for_function(f"{LIVE_TEXT} === ''", timeout=60_000)
    assert "interrupted" in page.locator(LAST_ANSWER).last.inner_text()  # the partial answer is kept
    error_area.get_by_text("the answer has ended: Enter sends your message").wait_for(timeout=30_000)
    assert box.input_value() == "[[echo]]asked while it streamed nb7-held"
    assert page.evaluate(CELLS) == before

    # A reload (the notebook saved first, as a user's reload finds it) keeps the text in the box:
    # it lives in the kernel's widget state, which the new view reads.
    save_notebook(page, lab["root"] / NOTEBOOK)
    page.reload()
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    page.wait_for_function(f"({READY}) || {MODEL_MISSING}", timeout=60_000)
    if not page.evaluate(READY):
        pytest.fail("Notebook 7 lost the chat's widget model on reload (the known widget-manager race)")
    box = page.locator(BOX)
    expect(box).to_have_value("[[echo]]asked while it streamed nb7-held", timeout=30_000)
    chat_ready(page)
    box.click()
    page.keyboard.press("Enter")
    answered(page, "asked while it streamed nb7-held")


def test_reopened_with_a_new_kernel_the_copy_shows_and_its_hint_reopens_the_chat(lab, page):
    saved = save_notebook(page, lab["root"] / NOTEBOOK)
    static, live = saved.cells[2].outputs
    assert "application/vnd.jupyter.widget-view+json" in live["data"]
    # The copy follows the chat through display updates, which a reloaded page no longer routes (the
    # display id is not saved with the notebook): it holds the chat as it was before the reload.
    assert "nb7-agent-done" in static["data"]["text/html"]

    url = f"{lab['base']}/api/sessions?token={lab['token']}"
    with urllib.request.urlopen(url) as response:
        [session] = [s for s in json.load(response) if s["path"] == NOTEBOOK]
    delete = urllib.request.Request(f"{lab['base']}/api/sessions/{session['id']}?token={lab['token']}",
                                    method="DELETE")
    urllib.request.urlopen(delete).close()
    page.dialogs.clear()
    page.reload()
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    copy = page.locator(".acytoo-chat-static")
    copy.wait_for(timeout=60_000)
    page.wait_for_function(MODEL_MISSING, timeout=60_000)  # the dead widget, hidden under the copy
    assert page.get_by_text("Error displaying widget").is_visible() is False
    assert page.locator(CHAT).count() == 0  # nothing live
    text = copy.inner_text()
    for shown in ("You", "Assistant", "nb7-keys", "nb7-agent-done", "interrupted", "characters in",
                  "%load_ext acytoo_magic", "%acytoo chat -c nb7"):  # with the last answer's status line
        assert shown in text, shown
    assert copy.locator(DANGEROUS).count() == 0
    # Height-limited like the live transcript, opened at the newest message.
    box = copy.locator(".acytoo-static-box")
    geometry = box.evaluate(
        "(b) => { const r = b.getBoundingClientRect(); const last = b.querySelector('.acytoo-footer')"
        ".getBoundingClientRect(); return {height: r.height, top: r.top, bottom: r.bottom,"
        " scroll: b.scrollHeight, client: b.clientHeight, lastTop: last.top, lastBottom: last.bottom,"
        " rem: parseFloat(getComputedStyle(document.documentElement).fontSize)}; }"
    )
    assert geometry["height"] <= 32 * geometry["rem"] + 2, geometry
    assert geometry["scroll"] > geometry["client"], geometry  # the transcript is longer: it scrolls
    assert geometry["top"] <= geometry["lastTop"], geometry  # the newest in sight
    assert geometry["lastBottom"] <= geometry["bottom"] + 1, geometry
    save_shot(copy, "nb7_reopened.png")

    # The hint, run as it says in a new kernel, opens the chat from the history (all of it, what was
    # said after the reload too); the copy stays.
    _cell, _output = run_in_a_new_cell(page, "%load_ext acytoo_magic\n%acytoo chat -c nb7", "chat -c nb7")
    transcript = page.locator(f"{CHAT} .acytoo-transcript")
    transcript.get_by_text("nb7-agent-done").wait_for(timeout=60_000)
    assert "nb7-held" in transcript.inner_text()
    old = page.locator(".jp-CodeCell", has_text="ChatWidget('nb7')").locator(".acytoo-chat-static")
    assert old.is_visible() and "nb7-keys" in old.inner_text()
    assert page.evaluate("window.__seen") == []
    assert page.dialogs == []
