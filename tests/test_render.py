"""Throttling (the first chunk at once, then at most one draw per interval, the final text always)
and the rendering policy (a reply is untrusted: nothing in it may run in the page)."""

from __future__ import annotations

import asyncio
import io
import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acytoo_magic.core import outbound
from acytoo_magic.core.frames import Frame
from acytoo_magic.core.outbound import printable
from acytoo_magic.magic.output import TerminalRenderer, markdown_bundle
from acytoo_magic.present.throttle import FIRST_CHARS, ThrottledRenderer
from acytoo_magic.present.untrusted import (
    CODE_INNER_STYLE,
    CODE_STYLE,
    link_is_safe,
    render_markdown,
    with_cursor,
)
from acytoo_magic.widget.entries import message_html

PRE = f'<pre class="acytoo-code" style="{CODE_STYLE}">'
CODE = f'<code style="{CODE_INNER_STYLE}">'


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_draws_are_bounded_by_time_not_chunks():
    clock, frames = FakeClock(), []
    renderer = ThrottledRenderer(frames.append, interval=0.1, clock=clock)
    text = ""
    for i in range(20_000):  # 20,000 chunks over 2 simulated seconds
        clock.now = i * 0.0001
        text += "x"
        renderer.feed("x")
    renderer.close(text)
    assert frames[0].text == "x"  # the first chunk is drawn at once
    assert frames[-1] == Frame(text, final=True)
    assert len(frames) <= 2.0 / 0.1 + 2


def test_the_second_draw_follows_the_first_soon_whatever_the_interval():
    """The first chunk of a burst can be two letters: the next draw comes 0.02 s later, not a
    share of the interval (the magic's 0.15 s made it 0.0375 s and lost the burst row to chatlab)."""
    clock, frames = FakeClock(), []
    renderer = ThrottledRenderer(frames.append, interval=0.15, clock=clock)
    renderer.feed("He")
    clock.now = 0.021
    renderer.feed("llo")
    assert [frame.text for frame in frames] == ["He", "Hello"]


def test_a_long_first_chunk_shows_a_screenful_at_once_and_the_rest_with_the_next_draw():
    """A burst read at once (or an answer sent whole) is not rendered twice over: the first draw
    shows FIRST_CHARS of it, the next draw the rest; nothing is lost or shown twice."""
    clock, frames = FakeClock(), []
    renderer = ThrottledRenderer(frames.append, interval=0.15, clock=clock)
    text = "word " * 20_000
    renderer.feed(text)
    assert frames[0].text == text[:FIRST_CHARS] and frames[0].added == text[:FIRST_CHARS]
    clock.now = 0.021
    renderer.feed("end")
    assert frames[1].text == text + "end" and frames[1].added == text[FIRST_CHARS:] + "end"
    renderer.close(text + "end")
    assert "".join(frame.added for frame in frames) == text + "end"
    # An answer sent whole: the rest comes with the final draw.
    frames.clear()
    renderer = ThrottledRenderer(frames.append, interval=0.15, clock=clock)
    renderer.feed(text)
    renderer.close(text)
    assert [frame.added for frame in frames] == [text[:FIRST_CHARS], text[FIRST_CHARS:]]
    assert frames[-1] == Frame(text, final=True)


async def test_the_rest_of_a_long_first_chunk_is_drawn_though_nothing_more_arrives():
    frames: list[Frame] = []
    second = asyncio.get_running_loop().create_future()

    def draw(frame: Frame) -> None:
        frames.append(frame)
        if len(frames) == 2:
            second.set_result(None)

    renderer = ThrottledRenderer(draw, interval=0.15)
    renderer.feed("x" * (FIRST_CHARS + 10))
    assert [len(frame.text) for frame in frames] == [FIRST_CHARS]
    await asyncio.wait_for(second, 5)  # the timer the first draw set
    assert frames[1].text == "x" * (FIRST_CHARS + 10) and not frames[1].final


def test_a_long_first_chunk_with_an_escape_sequence_is_drawn_whole():
    """A terminal cleans each frame's new text on its own: a cut inside an escape sequence would
    leave its rest on screen as text, so such a chunk is not cut."""
    frames: list[Frame] = []
    renderer = ThrottledRenderer(frames.append, interval=0.15, clock=FakeClock())
    text = "y" * (FIRST_CHARS - 2) + "\x1b[31mred\x1b[0m" + "z" * 100
    renderer.feed(text)
    assert frames[0].text == text


def test_text_of_a_failed_draw_is_new_again_in_the_next_frame():
    """A drawer that works per new text (``added``) gets every piece: what a failed draw carried
    comes again with the next one, so the screen never has a hole where a draw failed."""
    drawn: list[str] = []
    calls = 0

    def draw(frame: Frame) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the update was refused")
        drawn.append(frame.added)

    renderer = ThrottledRenderer(draw, interval=0.0, clock=FakeClock())  # time stands still: every feed draws
    pieces = ["one ", "two ", "three ", "four"]
    renderer.feed(pieces[0])
    with pytest.raises(RuntimeError):  # the runner ends the answer here; drawing goes on for the test
        renderer.feed(pieces[1])
    for piece in pieces[2:]:
        renderer.feed(piece)
    renderer.close("".join(pieces))
    assert calls == 5 and "".join(drawn) == "one two three four"
    assert drawn == ["one ", "two three ", "four", ""]


def test_waiting_frame_then_first_chunk_and_note():
    clock, frames = FakeClock(), []
    renderer = ThrottledRenderer(frames.append, interval=0.1, clock=clock)
    renderer.start("contacting Acytoo")  # no loop here: the waiting ticker has no timer to run on
    clock.now = 1.5
    renderer.notify("rate limited, retrying in 2 s")
    renderer.feed("a")
    renderer.close("ab", "interrupted")
    assert frames[0].waiting
    assert frames[0].note == "contacting Acytoo 1.5 s · rate limited, retrying in 2 s"
    assert frames[1] == Frame("a")
    assert frames[-1] == Frame("ab", note="interrupted", final=True)


async def test_timer_flushes_text_that_arrived_after_the_last_draw():
    frames = []
    renderer = ThrottledRenderer(frames.append, interval=0.05)
    renderer.feed("a")
    renderer.feed("b")  # too soon: coalesced, drawn by the timer
    assert [f.text for f in frames] == ["a"]
    flushed = asyncio.get_running_loop().create_future()
    renderer._draw = lambda frame: (frames.append(frame), flushed.done() or flushed.set_result(None))
    await asyncio.wait_for(flushed, 5)
    assert frames[-1].text == "ab"


def test_markdown_bundle_is_html_and_plain_text_never_markdown():
    bundle = markdown_bundle(Frame("# T", note="interrupted", final=True, small_print="acytoo · m"))
    assert set(bundle) == {"text/plain", "text/html"}  # JupyterLab renders trusted Markdown's raw HTML
    assert bundle["text/html"].startswith("<h1>T</h1>")
    assert '<em>— interrupted</em>' in bundle["text/html"] and "<sub>acytoo · m</sub>" in bundle["text/html"]
    assert bundle["text/plain"] == "# T\n[interrupted]\n— acytoo · m"
    assert markdown_bundle(Frame("x", final=True), "text") == {"text/plain": "x"}
    assert markdown_bundle(Frame("<b>x", final=True), "text") == {"text/plain": "<b>x"}
    assert "▌" in markdown_bundle(Frame("so far"))["text/html"]
    assert "▌" not in markdown_bundle(Frame("done", final=True))["text/html"]
    assert markdown_bundle(Frame("- a\n- b"))["text/html"].endswith("<li>b ▌</li>\n</ul>\n")
    assert markdown_bundle(Frame("```\nx < 1"))["text/html"] == f"{PRE}{CODE}x &lt; 1 ▌</code></pre>\n"
    assert "[r]: ▌" in markdown_bundle(Frame("[x][r]\n\n[r]: "))["text/html"]  # never a link to the cursor


def test_gap_grows_with_the_cost_of_drawing_so_total_cost_stays_linear():
    clock = FakeClock()

    def draw(frame):  # drawing costs 1 µs per character, as re-sending the whole text does
        clock.now += len(frame.text) * 1e-6

    costs = {}
    for size in (100_000, 1_000_000):
        clock.now = 0.0
        renderer = ThrottledRenderer(draw, interval=0.08, clock=clock)
        text = ""
        spent = 0.0
        for _ in range(size // 64):
            clock.now += 0.001  # a 64-byte chunk every millisecond
            text += "x" * 64
            before = clock.now
            renderer.feed("x" * 64)
            spent += clock.now - before
        before = clock.now
        renderer.close(text)
        costs[size] = (spent + clock.now - before, renderer.draws)
    ratio = costs[1_000_000][0] / costs[100_000][0]
    assert ratio <= 12, costs  # with a fixed 0.08 s interval this simulation gives ~91x
    assert costs[100_000][1] < 40
    assert costs[1_000_000][1] < 200


async def test_waiting_line_ticks_on_the_loop_until_the_first_chunk():
    frames = []
    ticked = asyncio.get_running_loop().create_future()

    def draw(frame):
        frames.append(frame)
        if len(frames) == 2 and not ticked.done():
            ticked.set_result(None)

    renderer = ThrottledRenderer(draw, interval=0.01)
    renderer.start("contacting X")
    assert frames == []  # nothing before one interval: a fast answer never flashes the line
    await asyncio.wait_for(ticked, 5)
    assert all(f.waiting and f.note.startswith("contacting X ") for f in frames)
    renderer.feed("text")
    count = len(frames)
    renderer.close("text")
    assert frames[count - 1] == Frame("text") and frames[-1].final
    assert not any(f.waiting for f in frames[count - 1 :])


# -- the rendering policy ----------------------------------------------------------------------

PAYLOADS = {
    "script": "<script>window.__pwned = 1</script>",
    "img onerror": '<img src=x onerror="window.__pwned = 2">',
    "markdown javascript link": "[click](javascript:window.__pwned=3)",
    "entity-obfuscated link": "[click](jav&#x61;script&#58;window.__pwned=3)",
    "percent-obfuscated link": "[click](javascript%3Awindow.__pwned=3)",
    "uppercase link": "[click](JAVASCRIPT:window.__pwned=3)",
    "vbscript link": "[click](vbscript:msgbox(1))",
    "autolink": "<javascript:window.__pwned=4>",
    "data link": "[click](data:text/html,<script>window.__pwned=5</script>)",
    "data image": "![x](data:image/svg+xml,<svg onload=alert(1)>)",
    "reference link": "[click][evil]\n\n[evil]: javascript:window.__pwned=6",
    "iframe": '<iframe srcdoc="<script>parent.__pwned=7</script>"></iframe>',
    "svg": '<svg onload="window.__pwned=8"><circle r=5 /></svg>',
    "style": "<style>body { display: none }</style>",
    "form": '<form action="javascript:window.__pwned=9"><button formaction="javascript:1">go</button></form>',
    "raw anchor": '<a href="javascript:window.__pwned=10">click</a>',
    "html block": '<div onclick="window.__pwned=11">\n\n*inside*\n\n</div>',
    "code info string": '```"><script>alert(1)</script>\nx\n```',
    "link title": '[t](https://example.org "a\\" onmouseover=\\"alert(1)")',
}
ALLOWED_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "pre", "code", "em", "strong", "a",
    "table", "thead", "tbody", "tr", "th", "td", "blockquote", "hr", "br", "span", "div", "sub",
}
ALLOWED_ATTRS = {"href", "rel", "target", "class", "style", "title", "start"}


# What Pygments' inline styles may say (colours, weight, slant, an error's border); never a URL.
PYGMENTS_STYLE = r"(color|background-color): #[0-9a-fA-F]{3,6}|font-weight: bold|font-style: italic" \
    r"|text-decoration: underline|border: 1px solid #[0-9a-fA-F]{3,6}"


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def dangerous(html: str) -> list[str]:
    """What in this HTML could run or load something: a tag, an attribute or a URL not allowed."""
    parser = TagCollector()
    parser.feed(html)
    parser.close()
    found = []
    for tag, attrs in parser.tags:
        if tag not in ALLOWED_TAGS:
            found.append(f"<{tag}>")
        for name, value in attrs.items():
            if name not in ALLOWED_ATTRS:
                found.append(f"{tag}[{name}]")
            # a relative "javascript" is flagged too, as the browser test's a[href^='javascript' i] is
            scheme = re.match(r"[\x00-\x20]*(javascript|data|vbscript)", value, re.IGNORECASE)
            # a relative URL is one with no scheme: nothing like "name:" before its first / ? #
            relative_or_web = re.match(r"(https?://|mailto:)", value) or not re.match(r"[^/?#]*:", value)
            if name == "href" and (scheme or not relative_or_web):
                found.append(f"href={value!r}")
            if name == "style" and not (
                re.fullmatch(r"text-align:(left|right|center)", value)
                or value in (CODE_STYLE, CODE_INNER_STYLE)
                or all(re.fullmatch(PYGMENTS_STYLE, part) for part in value.split("; "))
            ):
                found.append(f"style={value!r}")
    return found


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_a_payload_renders_to_nothing_that_runs(payload):
    reply = f"Here you go:\n\n{payload}\n\nmore text"
    assert dangerous(render_markdown(reply)) == []
    for frame in (Frame(reply), Frame(reply, note="interrupted", final=True, small_print="s")):
        assert dangerous(markdown_bundle(frame)["text/html"]) == []
    assert dangerous(message_html("assistant", reply)) == []
    assert dangerous(message_html("user", reply)) == []


def test_the_checker_itself_catches_live_html():
    assert dangerous('<img src=x onerror="1">') == ["<img>", "img[src]", "img[onerror]"]
    assert dangerous('<a href="javascript:1">x</a>') == ["href='javascript:1'"]
    assert dangerous('<a href=" data:text/html,x">x</a>') == ["href=' data:text/html,x'"]


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        (PAYLOADS["script"], "&lt;script&gt;window.__pwned = 1&lt;/script&gt;"),
        (PAYLOADS["img onerror"], "&lt;img src=x onerror=&quot;window.__pwned = 2&quot;&gt;"),
        (PAYLOADS["markdown javascript link"], "[click](javascript:window.__pwned=3)"),
        (PAYLOADS["autolink"], "&lt;javascript:window.__pwned=4&gt;"),
        (PAYLOADS["reference link"], "[click][evil]"),
        (PAYLOADS["style"], "&lt;style&gt;body { display: none }&lt;/style&gt;"),
    ],
)
def test_a_payload_is_shown_as_text(payload, shown):
    assert shown in render_markdown(payload)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://example.org/a?b=1#c", True),
        ("http://example.org", True),
        ("mailto:someone@example.org", True),
        ("docs/usage.md", True),
        ("#section", True),
        ("?page=2", True),
        ("//example.org/x", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("javascript%3Aalert(1)", False),
        ("vbscript:msgbox(1)", False),
        ("data:text/html,<script>", False),
        ("data:image/png;base64,AAAA", False),
        ("file:///etc/passwd", False),
        ("blob:https://example.org/uuid", False),
    ],
)
def test_only_http_mailto_and_relative_links_are_live(url, safe):
    assert link_is_safe(url) is safe


def test_links_open_apart_and_give_nothing_away():
    html = render_markdown("[docs](https://example.org/docs), <https://example.org>, [here](#part)")
    assert html.count('rel="noopener noreferrer nofollow"') == 3
    assert html.count('target="_blank"') == 2  # external links only; an anchor stays in the page
    assert '<a href="#part" rel="noopener noreferrer nofollow">here</a>' in html


def test_images_are_links_with_their_url_in_sight():
    html = render_markdown("![the plot](https://collector.example/p.png?q=secret%20data)")
    assert "<img" not in html
    assert '<a href="https://collector.example/p.png?q=secret%20data"' in html
    assert ">image: the plot</a> <code>https://collector.example/p.png?q=secret%20data</code>" in html


def test_markdown_still_renders():
    answer = (
        "# Missing values\n\n## Steps\n\n- count them\n- drop or fill\n\n"
        "```python\nif df.isna().sum() < 3:\n    print('<ok>')\n```\n\n"
        "Use `df.isna()` and **check**.\n\n| column | nulls |\n|---|--:|\n| a | 3 |\n"
    )
    html = render_markdown(answer)
    assert "<h1>Missing values</h1>" in html and "<h2>Steps</h2>" in html
    assert "<li>count them</li>" in html
    code = re.search(r'<pre class="acytoo-code" [^>]*><code class="language-python"[^>]*>(.*?)</code>',
                     html, re.S)
    assert code
    assert re.sub("<[^>]+>", "", code.group(1)) == "if df.isna().sum() &lt; 3:\n    print('&lt;ok&gt;')\n"
    assert '<span style="color: #008000; font-weight: bold">if</span>' in code.group(1)  # highlighted
    assert "<code>df.isna()</code>" in html and "<strong>check</strong>" in html
    assert "<th>column</th>" in html and '<td style="text-align:right">3</td>' in html
    assert dangerous(html) == []


def test_math_is_left_literal_for_the_typesetter():
    html = render_markdown(
        r"Inline $a*b*c$ and $x_1 + y_1$, escaped $\{x\}$, display:" "\n\n$$\n\\sum_i x_i^* < 3\n$$"
    )
    assert "$a*b*c$" in html and "<em>" not in html  # no emphasis inside math
    assert "$x_1 + y_1$" in html
    assert r"$\{x\}$" in html  # Markdown would have eaten the backslashes
    assert r"$$\sum_i x_i^* &lt; 3$$" in html
    assert "costs $5 and $10 <em>each</em>" in render_markdown("costs $5 and $10 *each*")  # prose


def test_control_characters_and_ansi_escapes_are_stripped():
    reply = "\x1b[31mred\x1b[0m\x07 bell\r\nnext\x00\x9b line\ttab \x1b]0;title\x07done"
    assert printable(reply) == "red bell\nnext line\ttab done"
    bundle = markdown_bundle(Frame(reply, final=True))
    assert bundle["text/plain"] == "red bell\nnext line\ttab done"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", bundle["text/html"])
    waiting = markdown_bundle(Frame("", note="contacting \x1b[1mX\x1b[0m 0.1 s", waiting=True))
    assert waiting == {"text/plain": "… contacting X 0.1 s", "text/html": waiting["text/html"]}
    assert "<em>… contacting X 0.1 s</em>" in waiting["text/html"]


# Each control character printable removes, its neighbours, and characters whose UTF-8 shares bytes
# with them (0xC2 leads U+0080-U+00BF; 0x80-0x9F continue many others), a surrogate, an emoji.
CONTROL_NEIGHBOURS = [
    chr(c) for c in (*range(0x00, 0x21), 0x7E, 0x7F, 0x80, 0x85, 0x9B, 0x9F, 0xA0, 0xB7, 0xBF, 0xC0, 0xC2)
] + ["\u2014", "\u2019", "\u0100", "\ud800", "\U0001f642", "a", " "]


@settings(max_examples=1000, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(CONTROL_NEIGHBOURS) | st.characters()))
def test_the_fast_control_scan_finds_what_the_pattern_finds(text):
    """printable's first look (the UTF-8 bytes) decides as the pattern it cleans with would, so a
    text is cleaned exactly when it was before (issue 30 made the look faster, not different)."""
    assert outbound._has_control(text) == (outbound._CONTROL.search(text) is not None)
    expected = outbound._CONTROL.sub("", outbound._ANSI.sub("", text.replace("\r\n", "\n")))
    assert printable(text) == (expected if outbound._CONTROL.search(text) else text)


def test_the_terminal_gets_no_escape_sequence_even_split_across_chunks():
    out = io.StringIO()
    renderer = TerminalRenderer(out)
    reply = "copy \x1b]52;c;ZXZpbA==\x07this\x1b[2J\x1b[31m red"
    for start in range(0, len(reply), 2):  # every sequence cut in two somewhere
        renderer.feed(reply[start : start + 2])
    renderer.close(reply, note="partial\x1b[0m", small_print="s")
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert out.getvalue().startswith("copy ") and "this" in out.getvalue() and "[partial]" in out.getvalue()


def test_notes_and_status_are_escaped():
    bundle = markdown_bundle(Frame("x", note="<b>partial</b>", final=True, small_print="<img src=x>"))
    assert dangerous(bundle["text/html"]) == []
    assert "&lt;b&gt;partial&lt;/b&gt;" in bundle["text/html"] and "&lt;img src=x&gt;" in bundle["text/html"]


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_a_stream_split_mid_tag_never_draws_live_html(chunk):
    reply = "Answer:\n\n" + "\n\n".join(PAYLOADS.values())
    clock, bundles = FakeClock(), []
    renderer = ThrottledRenderer(
        lambda frame: bundles.append(markdown_bundle(frame)), interval=0.0, clock=clock
    )
    for start in range(0, len(reply), chunk):
        clock.now += 1.0
        renderer.feed(reply[start : start + chunk])
    renderer.close(reply)
    assert len(bundles) == len(range(0, len(reply), chunk)) + 1  # every intermediate frame was drawn
    for bundle in bundles:
        assert dangerous(bundle["text/html"]) == [], bundle["text/html"]
    assert bundles[-1]["text/plain"] == reply


# -- streaming block by block ------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from acytoo_magic.present.untrusted import MarkdownStream  # noqa: E402

# Pieces that make and break Markdown blocks: list markers that continue or restart a list, fences,
# $$ blocks, table rows and delimiter rows, setext underlines, reference definitions and their uses,
# indented code, block quotes with lazy lines, blank lines, and text with inline syntax.
PIECES = [
    "\n", "\n\n", "  ", "    ", "text", "more words", "1. ", "2. ", "10) ", "- ", "* ", "+ ", "> ",
    "```", "```python\n", "~~~", "$$", "$x$", "# ", "## ", "===", "---", "***", "| a | b |",
    "|---|---|", "| 1 | 2 |", "[x][r]", "[r]", "[r]: ", "http://e.org", "javascript:", "'t'",
    "*em*", "**", "`c`", "<b>", "\\", "&amp;", "![i](http://e.org/i.png)", "[a](b)", "\t", "\r\n",
    "\x1b[31m", "\x1b]0;t", "\x07", "$$\nx\n", "\n$$\n", "| x |\n",
]
MARKDOWN_TEXT = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


def streamed(text: str, cuts: list[int]) -> tuple[str, list[str]]:
    """The final HTML of ``text`` fed in pieces cut at ``cuts``, with an update after each piece:
    frozen blocks (revised where a late reference changed them) and the final tail; and every frame."""
    stream, frames, start = MarkdownStream(), [], 0
    for cut in [*sorted(set(cuts)), len(text)]:
        stream.feed(text[start:cut])
        start = cut
        update = stream.update()
        frames.append("".join(b.html for b in update.frozen) + update.tail_html)
    final = stream.update(final=True)
    return "".join(block.html for block in stream.blocks) + final.tail_html, frames


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=MARKDOWN_TEXT, data=st.data())
def test_any_split_of_any_markdown_ends_as_one_render(text, data):
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12))
    final, frames = streamed(text, cuts)
    assert final == render_markdown(text)
    for frame in frames:
        assert dangerous(frame) == [], frame


@settings(max_examples=200, deadline=None)
@given(text=MARKDOWN_TEXT)
def test_a_chunk_per_character_ends_as_one_render(text):
    assert streamed(text, list(range(len(text))))[0] == render_markdown(text)


@pytest.mark.parametrize(
    "text",
    [
        "1. one\n\n2. two\n\nprose\n\n3. three\n\n4. four\n",  # a list continues across blank lines
        "see [x][r] and [y][r]\n\nmore\n\nagain\n\n[r]: https://example.org\n",  # definition after use
        "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n\nafter\n",  # a table split across chunks
        "```python\nx = 1\n\n\ny = 2\n```\n\nafter\n",  # a fence with blank lines inside
        "$$\nx\n\ny\n\nz\n\nw\n$$\n\nafter\n",  # a $$ block whose blank line once looked like a block end
        "para\nstill para\n===\n\nnext\n",  # a setext heading made of an earlier line
        "- a\n\n  continued\n\n- b\n\nz\n",  # a list item continued after a blank line
        "    code\n\n    more code\n\ntext\n",  # indented code with a blank line inside
    ],
)
def test_split_cases_end_as_one_render(text):
    for size in (1, 2, 3, 5, 8):
        assert streamed(text, list(range(0, len(text), size)))[0] == render_markdown(text), size


def test_finished_blocks_are_reported_once_and_the_tail_is_what_is_left():
    stream = MarkdownStream()
    stream.feed("# Title\n\nfirst paragraph\n\nsecond")
    update = stream.update()
    assert [b.html for b in update.frozen] == ["<h1>Title</h1>\n"]  # "first" may still grow
    assert update.tail_source == "first paragraph\n\nsecond"
    stream.feed(" paragraph\n\nthird\n")
    update = stream.update()
    assert [b.html for b in update.frozen] == ["<p>first paragraph</p>\n"]
    assert stream.update().frozen == []  # nothing finished twice
    final = stream.update(final=True)
    assert final.frozen == [] and final.tail_html == "<p>second paragraph</p>\n<p>third</p>\n"


def test_a_late_reference_definition_revises_the_block_that_used_it():
    stream = MarkdownStream()
    for chunk in ("see [x][r]\n\n", "middle\n\n", "end\n\n", "[r]: https://example.org\n"):
        stream.feed(chunk)
        stream.update()
    assert stream.blocks[0].html == "<p>see [x][r]</p>\n"  # frozen before [r] existed
    final = stream.update(final=True)
    assert [b.index for b in final.revised] == [0]
    assert 'href="https://example.org"' in stream.blocks[0].html


@pytest.mark.parametrize("payload", ["[click][r]\n\n[r]: javascript:alert(1)", "[r]: javascript:x\n\n[a][r]"])
def test_a_half_streamed_reference_never_links_in_any_frame(payload):
    # issue 19: "[r]: javascript" (its ':' not arrived yet) was briefly a relative link "javascript"
    for end in range(1, len(payload) + 1):
        stream = MarkdownStream()
        stream.feed(payload[:end])
        update = stream.update()
        html = "".join(b.html for b in update.frozen) + update.tail_html
        assert dangerous(html) == [], (end, html)
        assert dangerous(markdown_bundle(Frame(payload[:end]))["text/html"]) == [], end
    assert dangerous(render_markdown("[click me][r]\n\n[r]: javascript")) == ["href='javascript'"]  # control


def test_with_cursor_goes_after_the_last_text():
    assert with_cursor("<ul>\n<li>b</li>\n</ul>\n") == "<ul>\n<li>b ▌</li>\n</ul>\n"
    assert with_cursor("<p>hi  </p>") == "<p>hi ▌  </p>"
    assert with_cursor("") == " ▌"
    body = f"{PRE}{CODE}" + " " * 16_000 + "x</code></pre>\n"  # a model stuck repeating spaces
    assert with_cursor(body).endswith("x ▌</code></pre>\n")


def test_code_is_highlighted_in_a_box_that_scrolls():
    html = render_markdown("```python\nvalue = 1234567890123456789 * 2  # long line\n```")
    assert html.startswith(PRE) and "white-space:pre" in CODE_STYLE and "overflow-x:auto" in CODE_STYLE
    assert '<span style="color: #666">1234567890123456789</span>' in html  # one number, one span
    assert "<script" not in render_markdown("```html\n<script>alert(1)</script>\n```").replace("&lt;", "<x")
    assert "&lt;script&gt;" in render_markdown("```nosuchlanguage\n<script>\n```")


def test_the_terminal_prints_each_piece_once():
    out = io.StringIO()
    renderer = TerminalRenderer(out)
    for piece in ("one ", "two ", "three"):
        renderer.feed(piece)
    renderer.close("one two three")
    assert out.getvalue() == "one two three\n"
