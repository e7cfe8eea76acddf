"""A long answer streamed by the magic into a real JupyterLab: every block shows once, while it streams
and at the end, and a finished segment of the answer is never redrawn (issue 21).

The answer comes from a server of the test's own that holds its stream after each section until the
test has seen that section on the page (issue 30): the segments the magic sends follow from the
answer's structure, not from how fast a loaded machine reads a stream.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import nbformat
import pytest
from lab import chromium_missing_reason, run_all_until
from standin import StandInModel, StandInServer
from test_browser import lab  # noqa: F401  # the same JupyterLab, stand-in model and browser

from acytoo_magic.providers.local_model import Generation

pytestmark = pytest.mark.browser

reason = chromium_missing_reason()
if reason and os.environ.get("CI"):
    pytest.fail(f"browser tests must run in CI: {reason}", pytrace=False)

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

SECTIONS = 14


def section(n: int) -> str:
    return (
        f"## Block {n}\n\n{n}. step {n} of the list, continued across the answer\n\n"
        f"Prose for block {n}: check `col_{n}` for *missing values* before you aggregate it, "
        f"and keep the rows where it is known.\n\n"
        f"```python\nshare_{n} = df['col_{n}'].isna().mean()\nprint(share_{n} * 100, 'percent')\n```\n\n"
        f"| block | value |\n|---|---:|\n| {n} | {n * n} |\n\n$$\nx_{n} = {n}^2\n$$\n\n"
        f"{end_of(n)}\n\n"
    )


def end_of(n: int) -> str:
    return f"Block {n} ends here."


def pieces() -> list[str]:
    """About 5 KB of Markdown in the pieces the server sends, each held until released: a numbered
    list that continues across sections, code, tables, math, and a reference link whose definition
    comes last (so the block using it froze without it)."""
    first = "See [the guide][guide] first.\n\n" + section(1)
    return [first, *(section(n) for n in range(2, SECTIONS + 1)), "[guide]: https://example.org/guide\n"]


def answer() -> str:
    return "".join(pieces())


class HeldSections(StandInModel):
    """Streams ``pieces()`` (each in 40-character chunks) and holds after each piece but the last
    until ``release()``: the test lets the next section go once the page shows this one."""

    name = "held-sections"

    async def stream(
        self, messages: Sequence[Mapping[str, str]], temperature: float = 0.7, max_tokens: int | None = None
    ) -> AsyncIterator[str | Generation]:
        record = Generation(started=time.monotonic())
        self.generations.append(record)
        parts = pieces()
        for index, piece in enumerate(parts):
            for start in range(0, len(piece), 40):
                yield piece[start : start + 40]
            if index < len(parts) - 1:
                await asyncio.to_thread(self._hold)
        record.finished, record.finish_reason = time.monotonic(), "stop"
        yield record


# Installed before the cell runs. A finished segment (an output that is not the last and has no
# cursor) gets its top-level nodes marked; at the end each must still be there (never re-rendered).
# Headings seen twice at any moment are recorded.
WATCH = """(index) => {
  window.__dupes = []; window.__frozen = []; window.__states = 0;
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
  const area = cell.querySelector('.jp-OutputArea');
  new MutationObserver(() => {
    window.__states += 1;
    const outputs = [...area.querySelectorAll('.jp-OutputArea-output')];
    outputs.forEach((output, i) => {
      if (i === outputs.length - 1 || output.innerText.includes('\u258c') || output.__nodes) return;
      output.__nodes = [...output.children];
      window.__frozen.push(output);
    });
    const heads = [...area.querySelectorAll('h2')].map((h) => h.innerText);
    if (new Set(heads).size !== heads.length) window.__dupes.push(heads.join('|'));
  }).observe(area, {subtree: true, childList: true, characterData: true});
}"""
KEPT = """() => window.__frozen.map((output) => [document.contains(output)
  && output.children.length === output.__nodes.length
  && output.__nodes.every((node) => node.parentNode === output),
  output.querySelector("a[href='https://example.org/guide']") !== null])"""
DONE = (
    "(() => { const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];"
    " return cell.querySelector('.acytoo-status') !== null; })()"
)


def stream_notebook(path, url: str) -> None:
    cells = [
        # Segments of 1,000 characters, so a 5 KB answer goes out in several.
        nbformat.v4.new_code_cell(
            "%load_ext acytoo_magic\nfrom acytoo_magic.magic.output import DisplayRenderer\n"
            "DisplayRenderer.commit_chars = 1_000"
        ),
        nbformat.v4.new_code_cell(f"%%acytoo --no-history --url {url}\nthe long answer, please"),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


# JS: the streaming cell's outputs show this text (a section's last line).
SHOWN = (
    "(text) => document.querySelectorAll('.jp-Notebook .jp-Cell')[1]"
    ".querySelector('.jp-OutputArea').innerText.includes(text)"
)


def test_a_streamed_answer_holds_each_block_once_and_never_redraws_a_finished_one(lab):  # noqa: F811
    with StandInServer(HeldSections()) as server:
        stream_notebook(lab["root"] / "stream.ipynb", server.url)
        page = lab["browser"].new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{lab['base']}/lab/workspaces/stream/tree/stream.ipynb?token={lab['token']}")
        page.locator(".jp-Notebook .jp-Cell").nth(1).wait_for(timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        page.evaluate(WATCH, 1)
        run_all_until(page, f"({SHOWN})({end_of(1)!r})")
        output = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea-output")
        for n in range(2, SECTIONS + 1):  # the next section once the page shows this one
            server.release()
            page.wait_for_function(SHOWN, arg=end_of(n), timeout=60_000)
            if n == 4:
                # The blocks of four sections have finished (about 1,370 characters: a section's
                # last line stays in the tail until the next begins) and a segment is 1,000: they
                # went out in a segment, and the tail is an output of its own below it.
                assert output.count() >= 2
        server.release()  # the reference definition, then the end of the answer
        page.wait_for_function(DONE, timeout=60_000)

    assert page.evaluate("window.__dupes") == []  # no block twice, in any frame
    assert output.locator("h2").all_inner_texts() == [f"Block {n}" for n in range(1, SECTIONS + 1)]
    assert output.count() >= 2  # finished blocks went out in segments, the tail in its own output
    # Segments are drawn once and never redrawn; but the one whose "[the guide][guide]" froze before
    # its definition arrived is redrawn once at the end, with the link.
    kept = page.evaluate(KEPT)
    assert len(kept) == output.count() - 1, kept
    assert [kept_ for kept_, revised in kept if not revised] == [True] * (len(kept) - 1), kept
    # Each section's list numbered on from the one before, as one render of the whole answer shows it.
    starts = [ol.get_attribute("start") for ol in output.locator("ol").all()]
    assert starts == [None] + [str(n) for n in range(2, SECTIONS + 1)]
    assert output.locator("a[href='https://example.org/guide']").count() == 1  # the late reference
    assert output.locator("pre.acytoo-code span").count() > 0  # highlighted code
    assert "▌" not in "".join(output.all_inner_texts())

    # The saved notebook holds the whole answer: HTML in every output, the text once across them.
    page.locator(".jp-Notebook .jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "document.querySelector('.lm-DockPanel-tabBar .jp-mod-dirty') === null", timeout=30_000
    )
    saved = nbformat.read(lab["root"] / "stream.ipynb", as_version=4).cells[1].outputs
    assert len(saved) == output.count() and all("text/html" in o["data"] for o in saved)
    plain = "".join(o["data"]["text/plain"] for o in saved)
    assert plain.startswith(answer()) and "characters in" in plain.splitlines()[-1]
    page.close()
