"""``%acytoo history`` in a real JupyterLab: a stored reply's unsafe URLs are never live links.

JupyterLab's text autolinker makes a live ``<a href>`` of any ``scheme://`` and any ``data:`` in
text output, so a listing printed as plain text would turn a reply's ``data:``/``javascript://``
into a link. Each form of the listing is shown here: the compact and the full view (HTML), and the
plain form a text front end gets, printed so that the autolinker reads it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from lab import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, chromium_missing_reason, jupyter_lab, open_notebook
from test_browser import playwright_api

from acytoo_magic.server import LocalServer, ServerConfig

pytestmark = pytest.mark.browser
reason = chromium_missing_reason()

REPLY = (
    "links-check: data:text/html,<b>x</b> and DATA:image/svg+xml,<svg/onload=alert(1)> and"
    " javascript://%0Aalert(2) and [js](javascript:alert(3)) and <vbscript:msgbox(4)> and"
    " vbscript://%0Amsgbox(5) and [ok](https://example.org/ok)"
)
UNSAFE = "a[href^='data' i], a[href^='javascript' i], a[href^='vbscript' i], [href*='script:' i]"
CELLS = {
    "ask": f"%%acytoo\n[[echo]]{REPLY}",
    "compact": "%acytoo history",
    "full": "%acytoo history --full",
    "plain": (
        "from acytoo_magic import shared_assistant\nfrom acytoo_magic.magic import listing\n"
        "thread = shared_assistant(get_ipython()).conversation().messages()\n"
        "print(listing.full('default', thread, lambda m: 'cell').plain)  # what a text front end shows"
    ),
}
# The last cell printed its listing: the https link at its very end is the autolinker's last word.
READY = (
    "[...document.querySelectorAll('.jp-CodeCell')].at(-1)"
    "?.querySelector(\".jp-OutputArea-output a[href='https://example.org/ok']\") != null"
)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if reason:
        pytest.skip(reason)
    root: Path = tmp_path_factory.mktemp("lab_history")
    cells = [nbformat.v4.new_code_cell("%load_ext acytoo_magic")]
    cells += [nbformat.v4.new_code_cell(source) for source in CELLS.values()]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), root / "history.ipynb")
    with LocalServer(ServerConfig(chunk_size=16, delay=0.0)) as server:
        env = {"ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(root / "history.sqlite3")}
        with jupyter_lab(root, env) as address, playwright_api.sync_playwright() as playwright:
            base, token = address.split("|")
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            lab = {"browser": browser, "base": base, "token": token, "root": root}
            page = open_notebook(lab, "history.ipynb", READY, answers=".jp-OutputArea-output")
            yield page
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "lab_history_after_tests.png"), full_page=True)
            browser.close()


def output_of(page, name: str):
    index = 1 + list(CELLS).index(name)  # the first cell loads the extension
    return page.locator(".jp-Notebook .jp-CodeCell").nth(index).locator(".jp-OutputArea-output")


def test_history_listings_make_no_live_link_of_unsafe_schemes(page):
    for name in ("ask", "compact", "full", "plain"):
        output = output_of(page, name)
        assert "links-check" in output.inner_text(), name
        found = output.locator(UNSAFE)
        shown = [found.nth(i).evaluate("e => e.outerHTML") for i in range(found.count())]
        assert shown == [], name
    assert page.evaluate("window.__seen") == []  # nor was one drawn for a moment, in any output
    # The controls: a safe link in the same listing is a live link, in the HTML and in the plain
    # form (made by JupyterLab's autolinker, which did run over that text).
    for name in ("full", "plain"):
        assert output_of(page, name).locator("a[href='https://example.org/ok']").count() >= 1, name
    assert "data[:]text/html" in output_of(page, "plain").inner_text()  # readable, not a link


def test_clicking_what_looks_like_an_unsafe_link_runs_nothing(page):
    url, pages = page.url, len(page.context.pages)
    for name in ("compact", "full", "plain"):
        output_of(page, name).get_by_text("text/html", exact=False).first.click()
    output_of(page, "full").get_by_text("vbscript://", exact=False).first.click()
    assert page.dialogs == [] and page.url == url and len(page.context.pages) == pages  # nothing opened
