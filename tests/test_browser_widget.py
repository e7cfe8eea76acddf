"""The chat widget with a long transcript, in a real JupyterLab driven through Debian's chromium.

What a user sees once a chat grows: the transcript scrolls inside its box under a fixed input and
follows the newest message unless the user scrolled up; a ``{df}`` question shows as typed, its
context collapsed; a cell's answer on the thread appears in the open chat; and the notebook,
reopened with a new kernel, shows a safe static copy where the live chat was.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import nbformat
import pytest
from lab import (
    ANSWERS,
    ARTIFACTS,
    DANGEROUS,
    lab_and_browser,
    open_notebook,
    run_all_until,
    run_in_a_new_cell,
    save_notebook,
    save_shot,
)
from test_browser import QUESTION

pytestmark = pytest.mark.browser

NOTEBOOK = "long_chat.ipynb"
EXCHANGES = 15  # 30 messages already in the thread when the chat opens
SEED = f"""\
from acytoo_magic import ChatWidget
from acytoo_magic.core.assistant import shared_assistant

answers = {list(ANSWERS.values())!r}
thread = shared_assistant(get_ipython()).conversation("long")
if not thread.messages(limit=1):  # Run All once: the thread is this notebook's history
    for i in range({EXCHANGES}):
        answer = answers[i % 2] if i % 3 else f"Short answer {{i + 1}}."
        thread.record(f"Question {{i + 1}}: what next?", answer)
"""
FRAME = "import pandas as pd\ndf = pd.DataFrame({c: range(6) for c in 'abcd'})"
CHAT = ".acytoo-chat"
SHOWN = f"{CHAT} .acytoo-transcript .acytoo-msg"
READY = f"document.querySelectorAll('{SHOWN}').length >= {2 * EXCHANGES}"
MODEL_MISSING = (
    "[...document.querySelectorAll('.jp-OutputArea-output')]"
    ".some((o) => o.textContent.includes('model not found'))"
)
# Where answers are drawn, live and saved: nothing that runs may ever appear there.
ANSWERS_SCOPE = f"{CHAT} .acytoo-transcript, {CHAT} .acytoo-live, .acytoo-chat-static"

# The chat's geometry as the user sees it (page coordinates), for overlap checks.
GEOMETRY = """() => {
  const chat = document.querySelector('.acytoo-chat');
  const box = chat.querySelector('.acytoo-scroll');
  const rect = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  return {
    box: rect(box),
    input: rect(chat.querySelector('.acytoo-entry')),
    stop: rect([...chat.querySelectorAll('button')].find((b) => b.innerText.includes('Stop'))),
    messages: [...chat.querySelectorAll('.acytoo-transcript .acytoo-msg, .acytoo-live .acytoo-msg')]
      .map(rect),
    scroll: [box.scrollTop, box.scrollHeight, box.clientHeight],
    chat: [chat.scrollHeight, chat.clientHeight],
    viewport: [innerWidth, innerHeight],
  };
}"""
AT_BOTTOM = (
    "(() => { const b = document.querySelector('.acytoo-chat .acytoo-scroll');"
    " return b.scrollHeight - b.scrollTop - b.clientHeight <= 2; })()"
)
LIVE_TEXT = "document.querySelector('.acytoo-chat .acytoo-live').innerText"
SCROLL_TOP = "document.querySelector('.acytoo-chat .acytoo-scroll').scrollTop"
SCROLL_END = """() => {
  // scrollend also follows our own scrolling to the bottom: only one after the wheel counts
  const box = document.querySelector('.acytoo-chat .acytoo-scroll');
  window.__scrollEnded = false;
  box.addEventListener('wheel', () => { window.__scrollEnded = false; });
  box.addEventListener('scrollend', () => { window.__scrollEnded = true; });
}"""


def long_chat_notebook(path: Path) -> None:
    cells = [
        nbformat.v4.new_code_cell("%load_ext acytoo_magic"),
        nbformat.v4.new_code_cell(SEED),
        nbformat.v4.new_code_cell(FRAME),
        nbformat.v4.new_code_cell("chat = ChatWidget('long')\nchat"),
        nbformat.v4.new_code_cell("6 * 7"),  # cells are added below this one, not in the chat
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("long_chat")
    long_chat_notebook(root / NOTEBOOK)
    with lab_and_browser(root) as running:
        yield running


@pytest.fixture(scope="module")
def page(lab):
    page = open_notebook(lab, NOTEBOOK, f"({READY}) || {MODEL_MISSING}", answers=ANSWERS_SCOPE)
    if not page.evaluate(READY):
        # Seen under load: the page's widget manager is left on a kernel connection Lab replaced
        # while it started, and every widget shows "model not found", even when run again. What a
        # user does then: reload the page and run the cells again.
        page.reload()
        page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        try:
            run_all_until(page, READY)
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "lab_rerun_failure_long_chat.png"))
            raise
    page.locator(CHAT).scroll_into_view_if_needed()
    yield page
    page.close()


def shot(page, name: str) -> None:
    """A picture for tests/artifacts/ only (``save_shot`` also writes the README's into docs/)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(CHAT).screenshot(path=str(ARTIFACTS / name))


def disjoint(a: list[float], b: list[float]) -> bool:
    """Two rectangles [left, top, right, bottom] share no area (touching edges is fine)."""
    return a[2] <= b[0] + 0.5 or b[2] <= a[0] + 0.5 or a[3] <= b[1] + 0.5 or b[3] <= a[1] + 0.5


def assert_laid_out(page) -> dict:
    """The input and every message box are disjoint, messages do not overlap each other, the
    transcript scrolls inside its box (the chat itself does not), and the newest message shows."""
    g = page.evaluate(GEOMETRY)
    assert len(g["messages"]) >= 2 * EXCHANGES
    for message in g["messages"]:
        assert disjoint(message, g["input"]) and disjoint(message, g["stop"]), (message, g["input"])
    for upper, lower in zip(g["messages"], g["messages"][1:], strict=False):
        assert upper[3] <= lower[1] + 0.5, (upper, lower)  # each below the one before
    assert g["box"][3] <= g["input"][1] + 0.5  # the input sits under the transcript, never over it
    _top, height, client = g["scroll"]
    assert height > client  # the transcript scrolls inside its box...
    assert g["chat"][0] <= g["chat"][1] + 1  # ...and the chat around it does not scroll
    newest = g["messages"][-1]
    assert g["box"][1] - 0.5 <= newest[3] <= g["box"][3] + 0.5, (newest, g["box"])  # in sight
    assert g["box"][1] >= 0 and g["input"][3] <= g["viewport"][1]  # the box and the input on screen
    return g


def test_a_long_transcript_scrolls_in_its_box_under_a_fixed_input(page):
    assert page.locator(".acytoo-chat-static").is_visible() is False  # the saved copy waits unseen
    shot(page, "widget_long_loaded.png")
    assert_laid_out(page)
    page.locator(f"{CHAT} textarea").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    # mid-stream, the table arriving under the earlier messages: the picture
    page.locator(f"{CHAT} .acytoo-live table td").filter(has_text="a category").wait_for(timeout=30_000)
    assert_laid_out(page)
    save_shot(page.locator(CHAT), "chat_widget.png")
    page.locator(f"{CHAT} .acytoo-live pre code").filter(has_text="share").wait_for(timeout=30_000)
    assert_laid_out(page)  # the answer outgrows the box: still under the input, its end in sight
    page.wait_for_function(f"{LIVE_TEXT} === ''", timeout=60_000)  # finished: in the transcript now
    g = assert_laid_out(page)
    answer = page.locator(f"{SHOWN}.acytoo-assistant").last
    assert "Check the dtypes too" in answer.inner_text()
    assert page.evaluate(AT_BOTTOM), g["scroll"]
    shot(page, "widget_long_answered.png")


WATCH_BLOCKS = """() => {
  // Every element the streaming answer's node is given (its blocks, and at the end its tail's and
  // note's, unwrapped) and every one taken out of it again; the tail's own re-renders are not.
  window.__blocks = [];
  window.__removed = 0;
  window.__answer = null;
  const live = document.querySelector('.acytoo-chat .acytoo-live');
  const block = (node) => node.nodeType === 1 && !node.className.startsWith('acytoo-live-');
  new MutationObserver((records) => {
    for (const record of records) {
      const added = [...record.addedNodes];
      if (record.target === live) {  // the whole answer drawn at once: its first frame
        for (const node of added.filter((n) => n.nodeType === 1 && n.matches('.acytoo-assistant'))) {
          window.__answer = node;
          window.__blocks.push(...[...node.children].filter(block));
        }
      } else if (record.target === window.__answer) {  // (by the time this runs, it may have moved)
        window.__blocks.push(...added.filter(block));
        window.__removed += [...record.removedNodes].filter(block).length;
      }
    }
  }).observe(live, {childList: true, subtree: true});
}"""
SETTLED = """(expected) => {
  const entries = document.querySelectorAll('.acytoo-chat .acytoo-transcript .acytoo-msg.acytoo-assistant');
  const entry = entries[entries.length - 1];
  const fresh = document.createElement('div');
  fresh.innerHTML = expected;
  const children = [...entry.children];
  return {
    streamedNode: entry === window.__answer,
    eachOnce: children.every((c) => window.__blocks.filter((b) => b === c).length === 1),
    given: window.__blocks.length,
    children: children.length,
    removed: window.__removed,
    equal: fresh.firstElementChild.isEqualNode(entry),
  };
}"""


def test_a_streamed_answer_holds_each_block_once_and_ends_as_one_render(page):
    from acytoo_magic.widget.entries import message_html

    page.evaluate(WATCH_BLOCKS)
    page.locator(f"{CHAT} textarea").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("window.__answer !== null", timeout=30_000)
    page.wait_for_function(f"{LIVE_TEXT} === ''", timeout=60_000)  # settled into the transcript
    seen = page.evaluate(SETTLED, message_html("assistant", ANSWERS[QUESTION]))
    assert seen["children"] > 5, seen  # a heading, lists, code, a table...
    # the page kept the node it streamed into: each block parsed once, none taken out or parsed again
    assert seen == {**seen, "streamedNode": True, "eachOnce": True, "removed": 0, "equal": True}, seen
    assert seen["given"] == seen["children"], seen


def test_the_view_follows_the_answer_until_the_user_scrolls_up(page):
    page.evaluate("""() => {
      window.__pins = [];
      const box = document.querySelector('.acytoo-chat .acytoo-scroll');
      new MutationObserver(() => window.__pins.push(box.scrollHeight - box.scrollTop - box.clientHeight <= 2))
        .observe(document.querySelector('.acytoo-chat .acytoo-live'), {childList: true, subtree: true});
    }""")
    page.locator(f"{CHAT} textarea").fill("[[size=30000 chunk=16 delay=0.02]]")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(f"{LIVE_TEXT}.length > 1500", timeout=30_000)
    pins = page.evaluate("window.__pins")
    assert len(pins) >= 5 and all(pins), pins  # pinned to the bottom at every frame so far

    box = page.locator(f"{CHAT} .acytoo-scroll")
    box.hover()
    page.evaluate(SCROLL_END)
    page.mouse.wheel(0, -400)  # the user scrolls up to read something
    page.wait_for_function(f"window.__scrollEnded && !{AT_BOTTOM}", timeout=10_000)  # its scroll is over
    held = page.evaluate(SCROLL_TOP)
    grown = page.evaluate(f"{LIVE_TEXT}.length") + 1000
    page.wait_for_function(f"{LIVE_TEXT}.length > {grown}", timeout=30_000)  # more text arrived...
    assert page.evaluate(SCROLL_TOP) == held  # ...and the view stayed where the user put it
    assert not page.evaluate(AT_BOTTOM)
    jump = page.locator(f"{CHAT} .acytoo-jump")
    assert jump.is_visible()
    shot(page, "widget_scrolled_up.png")

    jump.click()  # back to the newest: pinned again, and it follows
    page.wait_for_function(AT_BOTTOM, timeout=10_000)
    page.evaluate("window.__pins = []")
    grown = page.evaluate(f"{LIVE_TEXT}.length") + 500
    page.wait_for_function(f"{LIVE_TEXT}.length > {grown}", timeout=30_000)
    assert all(page.evaluate("window.__pins")) and not jump.is_visible()
    page.get_by_role("button", name="Stop").click()
    page.wait_for_function(f"{LIVE_TEXT} === ''", timeout=30_000)
    assert_laid_out(page)


def test_a_question_about_a_dataframe_shows_as_typed_with_its_context_collapsed(page):
    page.locator(f"{CHAT} textarea").fill("[[echo]]Which columns of {df} have nulls?")
    page.get_by_role("button", name="Send").click()
    bubble = page.locator(f"{SHOWN}.acytoo-user").last
    bubble.locator("summary").wait_for(timeout=30_000)
    page.wait_for_function(f"{LIVE_TEXT} === ''", timeout=30_000)
    assert bubble.locator(".acytoo-typed").inner_text() == "[[echo]]Which columns of {df} have nulls?"
    assert bubble.locator("summary").inner_text() == "context: df, 6 × 4 · show"
    expansion = bubble.locator("details pre")
    assert not expansion.is_visible()  # collapsed: one line, not 30
    assert bubble.bounding_box()["height"] < 120
    shot(page, "widget_context_collapsed.png")
    bubble.locator("summary").click()
    assert expansion.is_visible() and "pandas.DataFrame: 6 rows × 4 columns" in expansion.inner_text()
    assert bubble.locator("summary").inner_text() == "context: df, 6 × 4 · hide"
    bubble.locator("summary").click()
    assert not expansion.is_visible()


def test_a_cell_answer_on_the_thread_appears_in_the_open_chat(page):
    run_in_a_new_cell(page, "%%acytoo -c long\n[[echo]]asked-in-a-cell", "asked-in-a-cell")
    from_cell = page.locator(f"{SHOWN}.acytoo-cell")
    from_cell.filter(has_text="asked-in-a-cell").first.wait_for(timeout=30_000)
    assert from_cell.count() == 2  # its prompt and its answer, marked as a cell's
    assert "from cell [" in from_cell.first.inner_text()
    page.locator(CHAT).scroll_into_view_if_needed()
    assert page.evaluate(AT_BOTTOM)  # the chat moved to show it
    shot(page, "widget_cell_exchange.png")


def test_the_reopened_notebook_shows_a_static_copy_and_nothing_live(lab, page):
    page.evaluate("window.__pwned = 0")
    page.locator(f"{CHAT} textarea").fill(
        "[[echo]]<img src=x onerror=\"window.__pwned = 1\">"
        " [click me](javascript:window.__pwned=2) saved-payload"
    )
    page.get_by_role("button", name="Send").click()
    page.locator(f"{SHOWN}.acytoo-assistant", has_text="saved-payload").wait_for(timeout=30_000)
    saved = save_notebook(page, lab["root"] / NOTEBOOK)
    static, live = saved.cells[3].outputs
    assert "acytoo-chat-static" in static["data"]["text/html"]
    assert "saved-payload" in static["data"]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in live["data"]
    assert live["data"]["text/plain"] == ""  # the copy says how to reopen it, once
    assert "`%load_ext acytoo_magic` then `%acytoo chat -c long`" in static["data"]["text/plain"]

    # A new kernel: the old one (and every widget model in it) is gone, the page is reloaded.
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
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    # the widget renderer has given up on the model: its error line exists, hidden under the copy
    page.wait_for_function(
        "[...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some((o) => o.textContent.includes('model not found'))",
        timeout=60_000,
    )
    assert page.get_by_text("Error displaying widget").is_visible() is False
    assert page.locator(CHAT).count() == 0  # nothing live
    text = copy.inner_text()
    for shown in (QUESTION, "Check the dtypes", "asked-in-a-cell", "saved-payload", "%acytoo chat -c long"):
        assert shown in text, shown
    assert '<img src=x onerror="window.__pwned = 1">' in text  # the payload as text
    assert copy.locator(DANGEROUS).count() == 0
    copy.get_by_text("click me").first.click()
    assert page.evaluate("window.__pwned") in (None, 0)
    assert page.evaluate("window.__seen") == []
    assert page.dialogs == []
    copy.locator(".acytoo-msg").last.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "widget_reopened.png"))
