"""The chat widget streams an answer by blocks: what its page is sent, frame by frame, and what the
page then holds, for any split of any Markdown.

``Page`` applies the widget's messages as the page's script does (``Transcript._esm``), on strings:
the live answer's finished blocks, its tail and note holders, and the transcript's entries. The real
page is checked in tests/test_browser_widget.py; this runs the same messages for many answers.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lab import ANSWERS
from test_render import MARKDOWN_TEXT, FakeClock

from acytoo_magic.present.throttle import ThrottledRenderer
from acytoo_magic.present.untrusted import render_markdown
from acytoo_magic.widget.entries import live_html, message_html
from acytoo_magic.widget.transcript import LiveAnswer, Transcript

HEAD = '<div class="acytoo-msg acytoo-assistant">'
TAIL = '<div class="acytoo-live-tail">'
NOTE = '</div><div class="acytoo-live-note">'


class Page:
    """The live area and the transcript's entries as the page's script keeps them."""

    def __init__(self) -> None:
        self.live = ""
        self.entries: list[str] = []
        self.parsed_blocks = ""  # every finished block's HTML the page was given, in order

    def parts(self) -> tuple[str, str, str]:
        """The live answer's finished blocks, tail and note (the holders the script looks up)."""
        assert self.live.startswith(HEAD) and self.live.endswith("</div></div>"), self.live
        blocks, rest = self.live[len(HEAD) : -len("</div></div>")].split(TAIL, 1)
        tail, note = rest.rsplit(NOTE, 1)
        return blocks, tail, note

    def apply(self, msg: dict[str, Any]) -> None:
        if msg["op"] == "live":
            self.live = msg["html"]
            if self.live.startswith(HEAD):
                self.parsed_blocks = self.parts()[0]  # the whole answer, parsed anew
        elif msg["op"] == "grow":
            blocks, _tail, _note = self.parts()
            self.parsed_blocks += msg["blocks"]
            self.live = f'{HEAD}{blocks}{msg["blocks"]}{TAIL}{msg["tail"]}{NOTE}{msg["note"]}</div></div>'
        elif msg["op"] == "splice":
            made = [self.settle(msg["adopt"]) if html is None else html for html in msg["entries"]]
            self.entries[msg["start"] : msg["start"] + msg["remove"]] = made

    def settle(self, note: str) -> str:
        """The live answer becomes an entry: its holders unwrapped, the stored status's note in."""
        blocks, tail, _note = self.parts()
        self.live = ""
        return f"{HEAD}{blocks}{tail}{note}</div>"


def stream(
    text: str, cuts: list[int], note: str = "", drop: int | None = None
) -> tuple[Transcript, list[dict[str, Any]]]:
    """``text`` streamed into a transcript in pieces cut at ``cuts``, a frame per piece, then the
    final frame and the entry: every message the page was sent. ``drop``: that frame's message
    never reaches the page (the send fails)."""
    transcript, sent = Transcript(), []

    def send(content: dict[str, Any], buffers: Any = None) -> None:
        if len(sent) == drop and not dropped:
            dropped.append(content)
            raise OSError("the page is gone for a moment")
        sent.append(json.loads(json.dumps(content)))  # what goes over the wire

    dropped: list[dict[str, Any]] = []
    transcript.send = send  # type: ignore[method-assign]
    answer, clock = LiveAnswer(), FakeClock()
    renderer = ThrottledRenderer(lambda f: transcript.draw_answer(answer, f), interval=1.0, clock=clock)
    start = 0
    for cut in [*sorted(set(cuts)), len(text)]:
        clock.now += 100.0  # every piece is drawn
        with contextlib.suppress(OSError):  # the dropped frame: its text is drawn with the next
            renderer.feed(text[start:cut])
        start = cut
    renderer.close(text, note)
    assert answer.final and answer.stream.fed == len(text)
    transcript.show([answer.settle(note)], "")
    return transcript, sent


def page_after(sent: list[dict[str, Any]]) -> Page:
    page = Page()
    for msg in sent:
        page.apply(msg)
    return page


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=MARKDOWN_TEXT.filter(bool), data=st.data())
def test_any_streamed_answer_ends_in_the_page_as_one_render(text, data):
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12))
    transcript, sent = stream(text, cuts)
    page = page_after(sent)
    expected = message_html("assistant", text)
    assert page.entries == transcript.entries == [expected]
    assert page.live == "" and transcript.live == ""
    # each finished block reached the page once: all the blocks given, in order, are the answer's
    # blocks (or the answer was sent whole once more, where a late reference changed a block)
    assert expected[len(HEAD) : -len("</div>")].startswith(page.parsed_blocks)


@settings(max_examples=100, deadline=None)
@given(text=MARKDOWN_TEXT.filter(bool), data=st.data())
def test_a_frame_that_missed_the_page_is_made_good_by_the_next(text, data):
    cuts = data.draw(st.lists(st.integers(0, len(text)), min_size=2, max_size=12))
    drop = data.draw(st.integers(1, len(set(cuts))))
    transcript, sent = stream(text, cuts, drop=drop)
    assert page_after(sent).entries == transcript.entries == [message_html("assistant", text)]


def test_a_long_answer_sends_each_block_once_and_a_frame_costs_its_tail():
    text = "\n\n".join(ANSWERS.values()) + "\n\n"
    text = (text * (100_000 // len(text) + 1))[:100_000]  # headings, lists, code, tables, prose
    _transcript, sent = stream(text, list(range(100, len(text), 100)))  # 1,000 frames
    final = message_html("assistant", text)
    frames = [m for m in sent if m["op"] in ("live", "grow")]
    assert len(frames) == 1_001 and {m["op"] for m in frames[1:]} == {"grow"}  # and the final frame
    sizes = [len(json.dumps(m)) for m in frames]
    blocks = sum(len(m.get("blocks", "")) for m in frames)
    assert blocks <= len(final)  # no block sent twice
    # a frame is its new blocks plus the tail: the largest is a section's table or code, never the answer
    assert max(sizes) < 2_000 < len(final) / 50, max(sizes)
    # the page got the answer once plus a tail per frame; redrawn whole, that was 500 answers
    whole = sum(len(json.dumps({"op": "live", "html": message_html("assistant", text[:end])}))
                for end in range(100, len(text), 1000))  # every tenth frame of the old design
    assert sum(sizes) < 3 * len(final) < whole / 10, (sum(sizes), len(final), whole)


def test_stop_keeps_the_answer_the_page_showed_with_its_note():
    text = "# Plan\n\n1. first\n2. second\n\nsome words being writ"
    transcript, sent = stream(text, [3, 9, 20, 30], note="interrupted")
    page = page_after(sent)
    assert page.entries == transcript.entries == [message_html("assistant", text, "interrupted")]
    assert sent[-1]["entries"] == [None]  # moved from the live area, not sent again


def test_the_waiting_line_then_the_answer():
    transcript, sent = Transcript(), []
    transcript.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    answer = LiveAnswer()
    renderer = ThrottledRenderer(
        lambda f: transcript.draw_live(live_html(f)) if f.waiting else transcript.draw_answer(answer, f),
        interval=0.0,
    )
    renderer.notify("retrying")
    assert "acytoo-waiting" in transcript.live
    renderer.feed("Hello")
    renderer.close("Hello")
    assert transcript.live == f"{HEAD}{TAIL}{render_markdown('Hello')}{NOTE}</div></div>"
    assert [m["op"] for m in sent] == ["live", "live", "grow"]
