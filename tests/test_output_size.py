"""What one display update of the magic carries: a long answer's whole text goes in text/plain once."""

from __future__ import annotations

import itertools
import json
from typing import Any

from acytoo_magic.core.frames import Frame
from acytoo_magic.magic.output import PAGE_INTERVAL, STREAMING_PLAIN_CHARS, DisplayRenderer, markdown_bundle
from acytoo_magic.present.throttle import ThrottledRenderer
from acytoo_magic.present.untrusted import render_markdown, small_print_html

ANSWER = "".join(
    f"## Part {i}\n\nSome text with `code` and a [link](https://example.org/{i}).\n\n" for i in range(2000)
)


def test_a_long_answer_streams_as_html_with_a_bounded_plain_text():
    bundle = markdown_bundle(Frame(ANSWER))
    assert "Part 1999" in bundle["text/html"] and "<h2>Part 0</h2>" in bundle["text/html"]  # all of it
    plain = bundle["text/plain"]
    assert len(plain) < STREAMING_PLAIN_CHARS + 100
    assert plain.startswith("[… ") and "all of it with the final update" in plain
    assert plain.endswith(ANSWER[-200:])  # the newest text, for frontends that show only text


def test_the_final_update_has_the_complete_text_in_both_types():
    bundle = markdown_bundle(Frame(ANSWER, final=True, small_print="acytoo · m"))
    assert bundle["text/plain"] == ANSWER + "\n— acytoo · m"  # what the saved notebook keeps
    assert "Part 1999" in bundle["text/html"] and "▌" not in bundle["text/html"]


def test_a_short_answer_streams_whole_in_both_types():
    bundle = markdown_bundle(Frame("All work and no play"))
    assert bundle["text/plain"] == "All work and no play"
    assert "All work and no play ▌" in bundle["text/html"]


def test_plain_text_format_always_sends_the_whole_text():
    assert markdown_bundle(Frame(ANSWER), fmt="text") == {"text/plain": ANSWER}


def test_the_plain_text_while_streaming_is_cleaned_like_the_rest():
    bundle = markdown_bundle(Frame("x" * STREAMING_PLAIN_CHARS + "\x1b[31mred\x07"))
    assert "\x1b" not in bundle["text/plain"] and "\x07" not in bundle["text/plain"]
    assert bundle["text/plain"].endswith("red")


def test_a_streamed_answer_sends_its_plain_text_whole_once():
    sizes = []

    def draw(frame: Frame) -> None:
        sizes.append(len(json.dumps(markdown_bundle(frame)["text/plain"])))

    now = [0.0]
    renderer = ThrottledRenderer(draw, interval=0.08, clock=lambda: now[0])  # one chunk every 100 ms
    for start in range(0, len(ANSWER), 4096):
        now[0] += 0.1
        renderer.feed(ANSWER[start : start + 4096])
    renderer.close(ANSWER)
    streaming, final = sizes[:-1], sizes[-1]
    assert len(streaming) > 10 and max(streaming) < STREAMING_PLAIN_CHARS + 200
    assert final >= len(ANSWER)


class Outputs:
    """A stand-in for IPython's ``display``: the notebook's output list, updated in place by id."""

    def __init__(self) -> None:
        self.shown: list[dict[str, Any]] = []  # what each output shows now
        self.sent: list[dict[str, Any]] = []  # every bundle sent, in order

    def display(self, bundle: dict[str, Any], raw: bool = True, display_id: bool = True) -> Any:
        self.shown.append(bundle)
        self.sent.append(bundle)
        index, outputs = len(self.shown) - 1, self

        class Handle:
            def update(self, bundle: dict[str, Any], raw: bool = True) -> None:
                outputs.shown[index] = bundle
                outputs.sent.append(bundle)

        return Handle()


def test_the_magic_sends_each_finished_block_once_and_ends_as_one_render():
    answer = "".join(
        f"## Block {n}\n\n{n}. step {n}\n\nSee [docs][d] for block {n}.\n\n```python\nx = {n}\n```\n\n"
        for n in range(1, 41)
    ) + "[d]: https://example.org/docs\n"
    outputs = Outputs()
    renderer = DisplayRenderer(interval=0.0, cost_factor=0.0)  # a draw for every chunk
    renderer._display = outputs.display
    renderer.commit_chars = 500
    for start in range(0, len(answer), 16):
        renderer.feed(answer[start : start + 16])
    renderer.close(answer, small_print="done")
    final_html = "".join(o["text/html"] for o in outputs.shown)
    assert final_html == render_markdown(answer) + small_print_html("done")  # late [d] revised at the end
    assert "".join(o["text/plain"] for o in outputs.shown) == answer + "\n— done"
    assert len(outputs.shown) > 5  # segments, then the tail
    # A block is drawn while it is the growing tail, then once more when its segment is committed
    # (and once again for the late reference); never again for every later chunk.
    for n in range(1, 41):
        drawn = sum(f"<h2>Block {n}</h2>" in bundle.get("text/html", "") for bundle in outputs.sent)
        assert drawn <= 60, (n, drawn)
    sent = sum(len(json.dumps(bundle)) for bundle in outputs.sent)
    assert sent < 40 * len(json.dumps(outputs.shown)), sent  # was quadratic: every frame re-sent all


def test_a_long_answer_stays_within_the_outputs_jupyterlab_shows():
    # JupyterLab shows 50 outputs of a cell and hides the rest (the live tail too) behind
    # "Show more outputs": segments grow with the answer, so a long one stays well under that.
    answer = "".join(f"Paragraph {n} of a long answer, with some words in it.\n\n" for n in range(20_000))
    outputs = Outputs()
    renderer = DisplayRenderer(interval=0.0, cost_factor=0.0)
    renderer._display = outputs.display
    renderer.commit_chars = 500
    for start in range(0, len(answer), 2048):
        renderer.feed(answer[start : start + 2048])
    renderer.close(answer)
    assert 10 < len(outputs.shown) <= 41, len(outputs.shown)
    assert "".join(o["text/html"] for o in outputs.shown) == render_markdown(answer)


def test_the_magic_draws_stay_closer_than_the_pages_table_of_contents_window():
    # JupyterLab's table of contents re-reads a changed cell's whole HTML after 200 ms without a
    # change; draws spaced by answer size (0.5 s at 100 KB) let it run after each one. A 1 MB
    # answer arriving over simulated time is drawn every page_interval, from its start to its end.
    now = [0.0]
    outputs = Outputs()
    renderer = DisplayRenderer(interval=0.08, clock=lambda: now[0])
    renderer._display = outputs.display
    assert renderer.interval == PAGE_INTERVAL < 0.2
    drawn_at = []
    draw = renderer._draw

    def timed(frame):
        drawn_at.append(now[0])
        draw(frame)

    renderer._draw = timed
    chunk = "word " * 20 + "\n\n"
    for _ in range(10_000):  # ~1 MB, a chunk every 10 ms
        now[0] += 0.01
        renderer.feed(chunk)
    renderer.close(chunk * 10_000)
    gaps = [b - a for a, b in itertools.pairwise(drawn_at[1:-1])]
    assert max(gaps) < 0.2, max(gaps)
    assert len(drawn_at) > 10_000 * 0.01 / 0.2  # not thinned out as the answer grew
