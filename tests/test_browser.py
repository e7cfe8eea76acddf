"""The chat widget in a real JupyterLab, driven through Debian's chromium by Playwright."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lab import CHROMIUM, CHROMIUM_ARGS, chromium_missing_reason, copy_notebook, jupyter_lab

from acytoo_magic.server import LocalServer, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
pytestmark = pytest.mark.browser

reason = chromium_missing_reason()
if reason and os.environ.get("CI"):
    pytest.fail(f"browser tests must run in CI: {reason}", pytrace=False)

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

TRANSCRIPT = "document.querySelector('.acytoo-chat .acytoo-transcript').innerText"
LIVE = "document.querySelector('.acytoo-chat .acytoo-live').innerText"

RECORD_STATES = """() => {
  window.__states = [];
  const live = document.querySelector('.acytoo-chat .acytoo-live');
  new MutationObserver(() => window.__states.push(live.innerText))
    .observe(live, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("lab")
    copy_notebook(ROOT / "notebooks" / "chat_widget.ipynb", root)
    # Replies without directives stream at a readable pace, as a real model's would.
    with LocalServer(ServerConfig(chunk_size=6, delay=0.04)) as server:
        env = {
            "ACYTOO_URL": server.url,
            "ACYTOO_HISTORY_DB": str(root / "history.sqlite3"),
        }
        with jupyter_lab(root, env) as address, playwright_api.sync_playwright() as playwright:
            base, token = address.split("|")
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on(
                "dialog",
                lambda dialog: (
                    page.evaluate("window.__dialogs = (window.__dialogs||0)+1"),
                    dialog.dismiss(),
                ),
            )
            page.goto(f"{base}/lab/tree/chat_widget.ipynb?token={token}")
            page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            try:
                run_all_until_the_widget_shows(page)
            except Exception:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "lab_setup_failure.png"))
                raise
            yield page
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "lab_after_tests.png"))
            browser.close()


def run_all_until_the_widget_shows(page, attempts: int = 4) -> None:
    """Run All, and run it again only if JupyterLab dropped it: seen when clicked just as the
    kernel connects, the cells stay unexecuted ('[ ]') with an idle kernel. A slow but started
    run is waited for, not restarted."""
    started = (
        "[...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
        ".some(p => /\\[[0-9*]+\\]/.test(p.innerText))"
    )
    for attempt in range(attempts):
        select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
        if select.is_visible():  # "Select Kernel", in case the settings did not take
            select.click()
        try:
            page.get_by_role("menuitem", name="Run", exact=True).click(timeout=5_000)
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=5_000)
            page.wait_for_function(started, timeout=15_000)
        except playwright_api.TimeoutError:
            if attempt == attempts - 1:
                raise
            continue
        page.locator(".acytoo-chat textarea").wait_for(timeout=120_000)
        return


def save_shot(target, name: str) -> None:
    """Into tests/artifacts/ always; also into $DOCS_SCREENSHOTS (``make screenshots`` sets docs/)."""
    ARTIFACTS.mkdir(exist_ok=True)
    target.screenshot(path=str(ARTIFACTS / name))
    if os.environ.get("DOCS_SCREENSHOTS"):
        target.screenshot(path=str(Path(os.environ["DOCS_SCREENSHOTS"]) / name))


def transcript(page) -> str:
    return page.locator(".acytoo-chat .acytoo-transcript").inner_text()


def test_send_streams_progressively(page):
    page.evaluate(RECORD_STATES)
    page.locator(".acytoo-chat textarea").fill("How do I find duplicated rows in a DataFrame?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        f"{TRANSCRIPT}.includes('How do I find duplicated rows in a DataFrame?\"') && {LIVE} === ''",
        timeout=30_000,
    )
    states = page.evaluate("window.__states")
    intermediate = {s for s in states if s.strip() and "▌" in s and "⏳" not in s}
    assert len(intermediate) >= 2, states
    assert page.get_by_role("button", name="Send").is_enabled()
    assert "characters in" in transcript(page)  # the status line under the finished answer
    save_shot(page.locator(".acytoo-chat"), "chat_widget.png")


def test_enter_sends_and_shift_enter_adds_a_line(page):
    box = page.locator(".acytoo-chat textarea")
    box.fill("[[echo]]first line")
    box.press("Shift+Enter")
    box.type("second line")
    assert box.input_value() == "[[echo]]first line\nsecond line"
    box.press("Enter")
    page.wait_for_function(
        f"{TRANSCRIPT}.split('second line').length >= 3",
        timeout=30_000,
    )
    assert box.input_value() == ""


def test_stop_interrupts_a_slow_stream(page):
    page.locator(".acytoo-chat textarea").fill("[[size=200000 chunk=16 delay=0.02]]")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(f"{LIVE}.includes('All work')", timeout=30_000)
    assert page.get_by_role("button", name="Send").is_disabled()
    page.get_by_role("button", name="Stop").click()
    page.wait_for_function(
        f"{TRANSCRIPT}.includes('interrupted')",
        timeout=10_000,
    )
    assert page.get_by_role("button", name="Send").is_enabled()
    assert page.get_by_role("button", name="Stop").is_disabled()


def test_script_in_a_reply_does_not_execute(page):
    page.evaluate("window.__pwned = 0")
    payload = '[[echo]]<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> done-xss'
    page.locator(".acytoo-chat textarea").fill(payload)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        f"{TRANSCRIPT}.split('done-xss').length >= 3",
        timeout=30_000,
    )
    assert "<script>window.__pwned = 1</script>" in transcript(page)  # shown as text
    assert page.evaluate("window.__pwned") == 0
    assert page.evaluate("window.__dialogs || 0") == 0
    assert page.locator(".acytoo-chat .acytoo-transcript img").count() == 0


def test_magic_answer_streams_in_place_in_lab(page):
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below
    page.keyboard.press("Enter")
    page.keyboard.type("%%acytoo -c demo\nWhat should I check first in a DataFrame with missing values?")
    page.keyboard.press("Shift+Enter")
    cell = page.locator(".jp-CodeCell", has_text="What should I check first")
    output = cell.locator(".jp-OutputArea-output").first
    output.locator("text=▌").wait_for(timeout=30_000)  # mid-stream: text so far, and the cursor
    partial = output.inner_text()
    save_shot(cell, "streaming_answer.png")
    cell.locator("text=characters in").wait_for(timeout=30_000)  # finished: the status line
    final = output.inner_text()
    assert len(final) > len(partial.replace("▌", "").strip())
    assert "▌" not in final and 'You said: "What should I check first' in final
    assert cell.locator(".jp-OutputArea-output").count() == 1  # one output area, updated in place
