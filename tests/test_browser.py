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
    with LocalServer(ServerConfig(chunk_size=8, delay=0.0)) as server:
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
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            page.locator(".acytoo-chat textarea").wait_for(timeout=60_000)
            yield page
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "lab_after_tests.png"))
            browser.close()


def transcript(page) -> str:
    return page.locator(".acytoo-chat .acytoo-transcript").inner_text()


def test_send_streams_progressively(page):
    page.evaluate(RECORD_STATES)
    page.locator(".acytoo-chat textarea").fill("[[echo chunk=6 delay=0.03]]" + "streaming words arrive " * 12)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        f"{TRANSCRIPT}.includes('arrive streaming words arrive') && {LIVE} === ''",
        timeout=30_000,
    )
    states = page.evaluate("window.__states")
    intermediate = {s for s in states if s.strip() and "▌" in s and "⏳" not in s}
    assert len(intermediate) >= 2, states
    assert page.get_by_role("button", name="Send").is_enabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".acytoo-chat").screenshot(path=str(ARTIFACTS / "chat_widget.png"))


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
