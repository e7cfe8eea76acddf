"""The chat widget and the magic in a real JupyterLab, driven through Debian's chromium by Playwright."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from lab import (
    ARTIFACTS,
    CELLS,
    CELLS_SETTLED,
    DANGEROUS,
    browser_unavailable,
    copy_notebook,
    lab_and_browser,
    open_notebook,
    run_in_a_new_cell,
    save_notebook,
    save_shot,
)
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.browser

reason = browser_unavailable()

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

TRANSCRIPT = "document.querySelector('.acytoo-chat .acytoo-transcript').innerText"
LIVE = "document.querySelector('.acytoo-chat .acytoo-live').innerText"
QUESTION = "What should I check first in a DataFrame with missing values?"

RECORD_STATES = """() => {
  window.__states = [];
  const live = document.querySelector('.acytoo-chat .acytoo-live');
  new MutationObserver(() => window.__states.push(live.innerText))
    .observe(live, {subtree: true, childList: true, characterData: true});
}"""

# (name, what the reply contains, a piece of it the user must see as text)
PAYLOADS = [
    ("script", "<script>window.__pwned = 'script'</script>", "<script>window.__pwned = 'script'</script>"),
    ("img", "<img src=x onerror=\"window.__pwned = 'img'\">", "<img src=x onerror="),
    ("md-link", "[click me](javascript:window.__pwned='md-link')", "[click me](javascript:"),
    ("autolink", "<javascript:window.__pwned='autolink'>", "<javascript:window.__pwned='autolink'>"),
    ("data-link", "[click me](data:text/html,<script>alert('data')</script>)", "[click me](data:text/html,"),
    ("ref-link", "[click me][evil]\n\n[evil]: javascript:window.__pwned='ref'", "[evil]: javascript:"),
    ("iframe", "<iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\"></iframe>", "<iframe srcdoc="),
    ("svg", "<svg onload=\"window.__pwned='svg'\"><circle r=4></circle></svg>", "<svg onload="),
    ("style", "<style>.jp-Notebook { display: none }</style>", "<style>.jp-Notebook"),
    (
        "form",
        "<form action=\"javascript:window.__pwned='form'\"><button formaction=\"javascript:alert('b')\">"
        "click me</button></form>",
        "<button formaction=",
    ),
    ("raw-a", "<a href=\"javascript:window.__pwned='raw-a'\">click me</a>", "<a href=\"javascript:"),
]
CANARY = """<img src=x onerror="window.__canary = (window.__canary || 0) + 1">"""
# Split answers are drawn frame by frame by the magic's own drawer, one character more per frame, so
# every prefix of every payload reaches the page (a half-streamed "[r]: javascript" before its ':'
# included): deterministic, where a stream's frames depend on how the machine coalesces chunks.
DRAW_EVERY_FRAME = """\
from acytoo_magic.magic.output import DisplayRenderer
def draw_every_frame(text):
    renderer = DisplayRenderer(interval=0.0, cost_factor=0.0)
    for character in text:
        renderer.feed(character)
    renderer.close(text, small_print=f"every frame drawn · {len(text)} characters in {len(text)} chunks")
"""
SPLIT_CELL = "draw_every_frame(text={!r})"


def untrusted_notebook(path: Path) -> None:
    """Each payload in one chunk through the magic and drawn frame by frame, a realistic answer, and a
    canary: raw HTML in ``text/markdown`` (what the magic used to send), which runs wherever outputs
    are trusted."""
    cells = [
        nbformat.v4.new_code_cell("%load_ext acytoo_magic"),
        nbformat.v4.new_code_cell(f"from IPython.display import Markdown\nMarkdown({CANARY!r})"),
        nbformat.v4.new_code_cell(DRAW_EVERY_FRAME),
    ]
    for name, payload, _shown in PAYLOADS:
        whole = f"%%acytoo --no-history\n[[echo]]case {name} whole: {payload}"
        cells.append(nbformat.v4.new_code_cell(whole))
        cells.append(nbformat.v4.new_code_cell(SPLIT_CELL.format(f"case {name} split: {payload}")))
    cells.append(nbformat.v4.new_code_cell(f"%%acytoo --no-history\n{QUESTION}"))
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("lab")
    copy_notebook(ROOT / "notebooks" / "chat_widget.ipynb", root)
    untrusted_notebook(root / "untrusted.ipynb")
    with lab_and_browser(root) as lab:
        yield lab


@pytest.fixture(scope="module")
def page(lab):
    page = open_notebook(
        lab,
        "chat_widget.ipynb",
        "document.querySelector('.acytoo-chat textarea') !== null",
        answers=".acytoo-chat .acytoo-transcript, .acytoo-chat .acytoo-live",
    )
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab_after_tests.png"))
    page.close()


def transcript(page) -> str:
    return page.locator(".acytoo-chat .acytoo-transcript").inner_text()


def test_send_streams_progressively(page):
    page.evaluate(RECORD_STATES)
    page.locator(".acytoo-chat textarea").fill("How do I find duplicated rows in a DataFrame?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        f"{TRANSCRIPT}.includes('Finding duplicated rows') && {TRANSCRIPT}.includes('characters in')"
        f" && {LIVE} === ''",
        timeout=30_000,
    )
    states = page.evaluate("window.__states")
    intermediate = {s for s in states if s.strip() and "▌" in s}  # the waiting line has no cursor
    assert len(intermediate) >= 2, states
    # The input's busy state is another widget's message, after the transcript's: waited for, not raced.
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=30_000)
    answer = page.locator(".acytoo-chat .acytoo-transcript .acytoo-assistant").last
    for selector in ("h2", "li", "pre code", "table"):  # the answer's Markdown, rendered
        assert answer.locator(selector).count() >= 1, selector
    assert "df.duplicated(keep=False)" in answer.locator("pre code").inner_text()
    save_shot(page.locator(".acytoo-chat"), "chat_widget.png")


def test_enter_sends_and_shift_enter_adds_a_line(page):
    page.wait_for_function(CELLS_SETTLED, timeout=60_000)
    before = page.evaluate(CELLS)
    box = page.locator(".acytoo-chat textarea")
    box.fill("[[echo]]first line")
    box.press("Shift+Enter")
    box.type("second line a b dd m")  # command-mode shortcut letters too: they stay in the box
    assert box.input_value() == "[[echo]]first line\nsecond line a b dd m"
    assert page.evaluate(CELLS) == before  # no cell ran, none was added or changed
    box.press("Enter")
    page.wait_for_function(
        f"{TRANSCRIPT}.split('second line').length >= 3",
        timeout=30_000,
    )
    assert box.input_value() == ""
    assert page.evaluate(CELLS) == before


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
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=30_000)
    expect(page.get_by_role("button", name="Stop")).to_be_disabled(timeout=30_000)


def test_script_and_links_in_a_reply_do_not_execute(page):
    page.evaluate("window.__pwned = 0")
    payload = (
        "[[echo]]<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"
        " [js link](javascript:window.__pwned=3) [data link](data:text/html,<script>alert(4)</script>)"
        " <javascript:window.__pwned=5> done-xss"
    )
    page.locator(".acytoo-chat textarea").fill(payload)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        f"{TRANSCRIPT}.split('done-xss').length >= 3",
        timeout=30_000,
    )
    answer = page.locator(".acytoo-chat .acytoo-transcript .acytoo-assistant").last
    text = answer.inner_text()
    assert "<script>window.__pwned = 1</script>" in text  # shown as text
    assert "[js link](javascript:window.__pwned=3)" in text and "<javascript:window.__pwned=5>" in text
    assert answer.locator(DANGEROUS).count() == 0
    for link_text in ("js link", "data link"):  # what looks like a link is text, and clicking it runs nothing
        answer.get_by_text(link_text).first.click()
    assert page.evaluate("window.__pwned") == 0
    assert page.evaluate("window.__seen") == []
    assert page.dialogs == []


def test_magic_answer_streams_in_place_in_lab(page):
    cell, output = run_in_a_new_cell(page, f"%%acytoo -c demo\n{QUESTION}", QUESTION)
    # Mid-stream, with a heading, list and table drawn and the code block arriving: the picture.
    output.locator("pre code").filter(has_text="share").wait_for(timeout=30_000)
    partial = output.inner_text()
    save_shot(cell, "streaming_answer.png")
    assert "▌" in partial and "characters in" not in partial
    cell.locator("text=characters in").wait_for(timeout=30_000)  # finished: the status line
    final = output.inner_text()
    assert "▌" not in final and "Missing values: what to check first" in final
    assert len(final) > len(partial.replace("▌", "").strip())
    assert cell.locator(".jp-OutputArea-output").count() == 1  # one output area, updated in place


def test_math_in_an_answer_is_typeset_by_the_frontend(page):
    cell, output = run_in_a_new_cell(
        page,
        "%%acytoo --no-history\n[[echo]]math-check: $\\sigma^2 = \\sum_i (x_i - \\bar x)^2 / n$,"
        " $a*b*c$ and\n\n$$\\left\\{ x \\right\\}$$",
        "math-check",
    )
    cell.locator("text=characters in").wait_for(timeout=30_000)  # the final frame
    output.locator("mjx-container").first.wait_for(timeout=30_000)  # one typesetting pass, all at once
    assert output.locator("mjx-container").count() == 3  # MathJax found all three
    assert output.locator("em").count() == 0  # $a*b*c$ was not read as emphasis
    assert output.locator("mjx-merror").count() == 0  # \\{ kept its backslash: MathJax parsed it


def test_links_inside_math_run_nothing(page):
    """MathJax makes links of ``\\href``: the math is passed through, so the typesetter must not."""
    page.evaluate("window.__pwned = 0")
    cell, output = run_in_a_new_cell(
        page,
        # {{...}} is a literal brace in a prompt ({name} would be a variable)
        "%%acytoo --no-history\n[[echo]]math-link: $\\href{javascript:window.__pwned=5}{{mathclick}}$"
        " and $\\href{data:text/html,x}{{mathdata}}$ and $\\href{https://example.org/}{{mathok}}$",
        "math-link",
    )
    cell.locator("text=characters in").wait_for(timeout=30_000)
    output.locator("mjx-container").first.wait_for(timeout=30_000)
    assert output.locator("mjx-container").count() == 3 and output.locator("mjx-merror").count() == 0
    links = output.locator("a[href^='javascript' i], a[href^='data' i], [href^='javascript' i]")
    assert links.count() == 0, [links.nth(i).evaluate("e => e.outerHTML") for i in range(links.count())]
    assert output.locator("[href^='https://example.org']").count() >= 1  # MathJax does make links
    output.locator("mjx-container").first.click()
    assert page.evaluate("window.__pwned") == 0


def test_magic_answer_over_the_openai_endpoint_ends_as_a_server_ends_it(lab, page):
    """The stand-in model ends an SSE stream as a real server does (finish_reason, a usage chunk,
    ``[DONE]``): the answer is complete and the status line has the server's token counts."""
    source = f"%%acytoo --no-history -p openai --url {lab['url']}/v1\n[[echo]]sse-end: the whole answer"
    cell, output = run_in_a_new_cell(page, source, "sse-end")
    cell.locator("text=characters in").wait_for(timeout=30_000)
    shown = output.inner_text()
    status = shown.rsplit("\n", 1)[-1]
    assert "sse-end: the whole answer" in shown and "▌" not in shown and " tokens" in status, shown
    assert "≈" not in status and "partial" not in status, status  # usage counted by the server


# -- the magic: untrusted replies, live and after the notebook is saved and reopened -----------

ALL_ANSWERED = (
    "[...document.querySelectorAll('.jp-CodeCell')]"
    ".filter(c => c.innerText.includes('%%acytoo') || c.innerText.includes('draw_every_frame(text='))"
    f".filter(c => c.innerText.includes('characters in')).length === {2 * len(PAYLOADS) + 1}"
)
CHECK_OUTPUTS = """(dangerous) => {
  const cells = [...document.querySelectorAll('.jp-CodeCell')]
    .filter((c) => /%%acytoo|draw_every_frame\\(text=/.test(c.querySelector('.jp-InputArea').innerText));
  return cells.map((cell) => {
    const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')];
    const found = outputs.flatMap((o) => [...o.querySelectorAll('*')])
      .filter((el) => el.matches(dangerous) || [...el.attributes].some((a) => /^on/i.test(a.name)))
      .map((el) => el.outerHTML.slice(0, 200));
    return {
      source: cell.querySelector('.jp-InputArea').innerText,
      text: outputs.map((o) => o.innerText).join('\\n'),
      found,
      mimes: outputs.map((o) => o.getAttribute('data-mime-type')),
    };
  });
}"""


@pytest.fixture(scope="module")
def magic_page(lab):
    page = open_notebook(lab, "untrusted.ipynb", ALL_ANSWERED, answers=".jp-OutputArea-output")
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab_untrusted_after_tests.png"), full_page=True)
    page.close()


def assert_nothing_ran(page) -> None:
    """Every payload shows as text, no dangerous element exists or ever existed, and clicking
    what looks like a link runs nothing; the canary proves the outputs are rendered as trusted."""
    results = page.evaluate(CHECK_OUTPUTS, DANGEROUS)
    assert len(results) == 2 * len(PAYLOADS) + 1
    for name, _payload, shown in PAYLOADS:
        for mode in ("whole", "split"):
            [cell] = [r for r in results if f"case {name} {mode}:" in r["source"]]
            assert cell["found"] == [], (name, mode, cell["found"])
            assert f"case {name} {mode}: " in cell["text"] and shown in cell["text"], (name, mode, cell)
            assert cell["mimes"] == ["text/html"], (name, mode)  # never text/markdown
    outputs = page.locator(".jp-OutputArea-output")
    for link_text in outputs.get_by_text("click me").all():
        link_text.click()
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("window.__seen") == []
    assert page.dialogs == []
    # The positive control: raw HTML in text/markdown ran here, so the checks above could fail.
    page.wait_for_function("window.__canary >= 1", timeout=10_000)


def assert_markdown_renders(page) -> None:
    cell = page.locator(".jp-CodeCell", has_text=QUESTION)
    output = cell.locator(".jp-OutputArea-output")
    for selector in ("h1", "h2", "ol li", "table td", "pre code"):
        assert output.locator(selector).count() >= 1, selector
    assert "if share.max() < 0.05:" in output.locator("pre code").inner_text()  # '<' in code, as written


def test_magic_untrusted_replies_show_as_text_and_run_nothing(magic_page):
    assert_nothing_ran(magic_page)
    assert_markdown_renders(magic_page)


def test_magic_outputs_reopened_from_the_saved_file_run_nothing(lab, magic_page):
    saved = save_notebook(magic_page, lab["root"] / "untrusted.ipynb")
    answers = [c for c in saved.cells if c.source.startswith("%%acytoo")]
    assert answers and all(c.outputs and "text/html" in c.outputs[-1]["data"] for c in answers)
    assert not any("text/markdown" in o.get("data", {}) for c in answers for o in c.outputs)

    magic_page.dialogs.clear()
    magic_page.reload()
    magic_page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    magic_page.wait_for_function(ALL_ANSWERED, timeout=60_000)
    assert_nothing_ran(magic_page)
    assert_markdown_renders(magic_page)
