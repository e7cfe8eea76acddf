"""What the outputs we write look like outside a live front end: `jupyter nbconvert --to markdown`
and `--to html` (and printed, as `--to webpdf` prints it), and the notebook opened untrusted.

One notebook is run for real (nbclient, a real kernel, the local servers): a rich answer, answers
carrying payloads, a chat with a prompt that has its own code fences, and an agent episode. Then:

- Markdown: each output stays one HTML block (a blank line would end it and the rest be read as
  Markdown: ``&quot;`` shown literally), every code fence in the file is a cell's own, rendered by a
  CommonMark viewer nothing is live and no entity shows literally;
- HTML: nothing runs, the chat's reopen hint shows once, the saved copy is height-limited on
  screen and printed whole;
- untrusted (opened in JupyterLab without a trusted signature, as a shared notebook is): the saved
  chat copy, stripped of its <style>, still shows who said what, each message apart.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lab import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DANGEROUS, CannedModel, browser_unavailable
from markdown_it import MarkdownIt

from acytoo_magic.present.untrusted import escaped, render_markdown
from acytoo_magic.server import LocalServer, ServerConfig
from acytoo_magic.widget.saved_copy import _STATIC_STYLE

NOTEBOOK = "exports.ipynb"
QUESTION = "How do I sum sales per region?"
# A realistic answer: code with blank lines and quotes (the case that broke the Markdown export),
# a table, a comparison with < and &, a link, and two things that must stay text.
ANSWER = """\
## Sales per region

Group, then sum: `df.groupby("region")["amount"].sum()`.

```python
import pandas as pd


def per_region(df):
    \"\"\"Total amount per region, largest first.\"\"\"
    totals = df.groupby("region")["amount"].sum()

    return totals.sort_values(ascending=False)
```

| step | call |
|---|---|
| group | `df.groupby("region")` |
| keep big ones | `totals[totals > 100 & mask]` |

See [the pandas docs](https://pandas.pydata.org/docs/).
Not a link: [click me](javascript:window.__pwned='md').
Not an image: <img src=x onerror="window.__pwned='img'">
"""
PAYLOAD_CELL = (
    "%%acytoo\n[[echo]]Payloads stay text: <script>window.__pwned='script'</script>"
    " [click me](javascript:window.__pwned='link') & \"quotes\" <b>bold?</b>"
)
# The chat's prompt carries fences of its own, longer ones too; built in the cell, so that the cell's
# own text (which nbconvert puts between ``` fences, see docs/usage.md) has none.
CHAT_PROMPT = (
    "fence = '`' * 3\n"
    "prompt = f'[[echo]]Why does this fail?\\n{fence}python\\nprint(\"a\")\\n\\n\\nprint(\"b\")\\n{fence}\\n"
    "and this: {fence}`` four {fence}` & <i>x</i> \"q\"'\n"
    "chat.send(prompt)\nawait chat.wait()"
)
AGENT_CODE = "missing = int(sales.amount.isna().sum())\nmissing"


class ExportModel(CannedModel):
    """The canned model, with ANSWER for QUESTION (the rest as the scripted backend: [[echo]])."""

    def answer(self, messages: Sequence[Mapping[str, str]]) -> tuple[str, int, float]:
        question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if question.strip() == QUESTION:
            return ANSWER, 24, 0.0
        return super().answer(messages)


@pytest.fixture(scope="module")
def notebook(tmp_path_factory) -> Path:
    """The notebook, run once by nbclient against a canned model and a scripted tool-calling server."""
    from nbclient import NotebookClient

    root = tmp_path_factory.mktemp("exports")
    with LocalServer(ServerConfig(model=ExportModel(chunk=24, delay=0.0))) as model, LocalServer(
        ServerConfig(chunk_size=16, delay=0.0)
    ) as tools:
        tools.config.script[:] = [
            {"text": "Let me count.", "calls": [{"name": "run_python", "arguments": {"code": AGENT_CODE}}]},
            {"text": "**1** amount is missing (agent-done)."},
        ]
        cells = [
            "%load_ext acytoo_magic",
            "import pandas as pd\nsales = pd.DataFrame({'amount': [12.5, None, 7.0]})",
            f"%%acytoo\n{QUESTION}",
            PAYLOAD_CELL,
            "from acytoo_magic import ChatWidget\nchat = ChatWidget('export')\nchat",
            CHAT_PROMPT,
            f"chat.send({QUESTION!r})\nawait chat.wait()",
            f"%%acytoo --agent -p openai --url {tools.url}/v1 --auto-run\nHow many amounts are missing?",
        ]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        env = {"ACYTOO_URL": model.url, "ACYTOO_HISTORY_DB": str(root / "history.sqlite3")}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    # As JupyterLab and Notebook 7 save it: no widget state (their "save widget state" is off by
    # default; nbclient stores it, and nbconvert's HTML then loads the widget manager from a CDN).
    nb.metadata.pop("widgets", None)
    path = root / NOTEBOOK
    nbformat.write(nb, path)  # unsigned: opened in JupyterLab, it is untrusted
    return path


def convert(notebook: Path, to: str) -> Path:
    """`jupyter nbconvert --to TO`, as a user runs it."""
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", to, str(notebook)],
        check=True, capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return notebook.with_suffix({"markdown": ".md", "html": ".html"}[to])


# -- the policy's HTML is one Markdown HTML block ---------------------------------------------

BLANK_LINE = re.compile(r"\n[ \t]*\n")
MARKDOWNISH = st.text(alphabet=st.sampled_from(list("ab `~#>-*|$\\<&\"\n\t ")), max_size=200)


@given(text=MARKDOWNISH)
@settings(max_examples=300, deadline=None)
def test_the_policys_html_has_no_blank_line(text):
    for html in (render_markdown(text), render_markdown(f"```python\n{text}\n```"), escaped(text)):
        assert not BLANK_LINE.search(html), html


def test_a_blank_line_in_code_reads_the_same_in_a_browser_and_as_one_markdown_block():
    html = render_markdown('```python\na = "x"\n\n\n   \nb = 1\n```')
    assert "&#10;" in html and not BLANK_LINE.search(html)
    tokens = MarkdownIt("commonmark", {"html": True}).parse(f"text\n\n{html}\n")
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close", "html_block"]


# -- nbconvert --to markdown --------------------------------------------------------------------

@pytest.mark.notebook
def test_markdown_export_keeps_every_output_one_block_and_every_fence_a_cells(notebook):
    markdown = convert(notebook, "markdown").read_text()
    nb = nbformat.read(notebook, as_version=4)
    tokens = MarkdownIt("commonmark", {"html": True}).enable("table").parse(markdown)
    fences = [t.content for t in tokens if t.type == "fence"]
    # every fence in the file is a cell's input, whole: no output opened or closed one
    assert fences == [c.source + "\n" for c in nb.cells], fences
    blocks = [t.content for t in tokens if t.type == "html_block"]
    htmls = [o["data"]["text/html"] for c in nb.cells for o in c.outputs if "text/html" in o.get("data", {})]
    assert len(htmls) >= 7  # two answers, the chat copy, the agent episode (text, run, answer, status)
    for html in htmls:  # each output's HTML is read as one HTML block, never partly as Markdown
        assert any(html.strip() in block for block in blocks), html[:300]
    assert "chat on thread" not in markdown  # the hint once, in the copy; no second line for the widget
    assert markdown.count("continue it, run") == 1


# -- in a browser: the Markdown rendered, the HTML export, printed, and the notebook untrusted -----

ENTITY = re.compile(r"&(#\d+|#x[0-9a-f]+|[a-z]+);", re.IGNORECASE)
STATIC_CSS = re.sub(r"^<style>|</style>$", "", _STATIC_STYLE)


@pytest.fixture(scope="module")
def browser():
    if reason := browser_unavailable():
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        running = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield running
        running.close()


def open_file(browser, path: Path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(path.as_uri(), wait_until="domcontentloaded")  # the export's CDN scripts never load here
    return page


def assert_nothing_runs(page, scope: str) -> None:
    """No element that runs or loads anything in ``scope`` but the copy's own fixed <style>; clicking
    what looks like a link runs nothing."""
    found = page.evaluate(
        "([scope, dangerous]) => [...document.querySelectorAll(scope)].flatMap((s) =>"
        " [...s.querySelectorAll(dangerous)]).map((e) => [e.tagName, e.textContent])",
        [scope, DANGEROUS],
    )
    assert all(tag == "STYLE" and text == STATIC_CSS for tag, text in found), found
    for link in page.locator(scope).get_by_text("click me").all():
        link.click()
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs == []


@pytest.mark.browser
@pytest.mark.notebook
def test_markdown_export_renders_without_literal_entities_and_runs_nothing(notebook, browser):
    markdown = convert(notebook, "markdown").read_text()
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    view = notebook.with_name("markdown_view.html")  # a CommonMark viewer that passes HTML through
    view.write_text(f"<!doctype html><meta charset=utf-8><body style='max-width:60rem'>{html}</body>")
    page = open_file(browser, view)
    text = page.locator("body").inner_text()
    assert not ENTITY.search(text), ENTITY.search(text)
    for shown in ('df.groupby("region")', "def per_region(df):", "return totals.sort_values",
                  "totals[totals > 100 & mask]", "<script>window.__pwned='script'</script>",
                  "four ```", "agent-done", "You", "Assistant"):
        assert shown in text, shown
    assert page.locator("h2", has_text="Sales per region").count() >= 2  # the cell's answer and the chat's
    assert_nothing_runs(page, "body")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "export_markdown.png"), full_page=True)
    page.close()


@pytest.mark.browser
@pytest.mark.notebook
def test_html_export_runs_nothing_hints_once_and_prints_the_copy_whole(notebook, browser):
    page = open_file(browser, convert(notebook, "html"))
    assert_nothing_runs(page, ".jp-OutputArea-output")
    text = page.locator("body").inner_text()
    assert text.count("%acytoo chat -c export") == 1  # the copy's hint, not again under it
    assert not ENTITY.search(text), ENTITY.search(text)
    box = page.locator(".acytoo-chat-static .acytoo-static-box")
    size = "(b) => [b.getBoundingClientRect().height, b.scrollHeight, b.clientHeight]"
    height, scroll, client = box.evaluate(size)
    assert height <= 32 * 16 + 2 and scroll > client, (height, scroll, client)  # on screen: it scrolls
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "export_html.png"), full_page=True)
    page.emulate_media(media="print")  # as `--to webpdf` prints it
    height, scroll, client = box.evaluate(size)
    assert scroll <= client + 1, (height, scroll, client)  # printed: all of it
    assert page.pdf().startswith(b"%PDF")
    page.screenshot(path=str(ARTIFACTS / "export_print.png"), full_page=True)
    page.close()


@pytest.mark.browser
@pytest.mark.notebook
def test_an_untrusted_copy_shows_who_said_what_each_message_apart(notebook, browser):
    """Opened in JupyterLab as a shared notebook is (nobody signed it here): its outputs are sanitized,
    the copy's <style> is gone; what carries the copy is its elements and the inline styles kept."""
    from lab import jupyter_lab

    env = {"ACYTOO_HISTORY_DB": str(notebook.with_name("other.sqlite3"))}
    with jupyter_lab(notebook.parent, env) as address:
        base, token = address.split("|")
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.dialogs = []
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"{base}/lab/workspaces/untrusted/tree/{notebook.name}?token={token}")
        copy = page.locator(".acytoo-chat-static")
        copy.wait_for(timeout=60_000)
        output = page.locator(".jp-OutputArea-output", has=copy)
        assert output.locator("style").count() == 0  # sanitized: the notebook is untrusted
        assert_nothing_runs(page, ".jp-OutputArea-output")
        messages = copy.locator(".acytoo-msg")
        shown = messages.evaluate_all(
            "(ms) => ms.map((m) => { const r = m.getBoundingClientRect();"
            " return {top: r.top, bottom: r.bottom, text: m.innerText,"
            " user: m.classList.contains('acytoo-user'), background: getComputedStyle(m).backgroundColor}; })"
        )
        assert [m["user"] for m in shown] == [True, False, True, False]
        for upper, lower in itertools.pairwise(shown):
            assert upper["bottom"] <= lower["top"], (upper, lower)  # apart, in order
        for message in shown:  # who said it, on its own first line
            assert message["text"].split("\n")[0] == ("You" if message["user"] else "Assistant"), message
        assert shown[0]["background"] == "rgba(127, 127, 127, 0.12)"  # the inline style was kept
        assert shown[1]["background"] != shown[0]["background"]
        assert "Why does this fail?\n```python\nprint(\"a\")" in shown[0]["text"]  # its lines kept
        box = copy.locator(".acytoo-static-box")
        assert box.evaluate("(b) => [getComputedStyle(b).maxHeight, getComputedStyle(b).overflowY]") == [
            "512px", "auto",
        ]
        assert "%load_ext acytoo_magic" in copy.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".jp-Cell", has=copy).screenshot(path=str(ARTIFACTS / "untrusted_copy.png"))
        page.close()
