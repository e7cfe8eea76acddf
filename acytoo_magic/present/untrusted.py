"""Showing a reply, which is untrusted text: the one policy every front end goes through.

A prompt can carry a web page, a DataFrame or a traceback written by someone else, and a model
repeats what it reads. So a reply is shown through ``render_markdown`` (HTML) and ``printable``
(plain text) only: Markdown is rendered here, with raw HTML off, so what reaches the page is HTML we
wrote, with links restricted to http(s), mailto and relative targets and images shown as links.
"""

from __future__ import annotations

import functools
import html
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pygments
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml, unescapeAll
from markdown_it.rules_core.normalize import normalize
from mdit_py_plugins.dollarmath import dollarmath_plugin
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from ..core.outbound import printable

_SAFE_SCHEMES = ("http:", "https:", "mailto:")
LINK_REL = "noopener noreferrer nofollow"


# A blank line (empty, or spaces and tabs only) ends a Markdown HTML block: nbconvert's Markdown
# exporter writes an output's text/html as it is, so after the first blank line in a code block the
# rest was read as Markdown (indented code showed ``&quot;``). The newline that ends a blank line is
# written as a character reference instead: the same text to a browser, inside <pre> too.
_BLANK_LINE_END = re.compile(r"(?<=\n)([ \t]*)\n")


def unblank(markup: str) -> str:
    """HTML with no blank line, so that Markdown reads all of it as one HTML block; a browser
    reads the same text (``&#10;`` is the newline it stands for)."""
    if "\n" not in markup:
        return markup
    return _BLANK_LINE_END.sub(r"\1&#10;", markup)


def escaped(text: str) -> str:
    """Plain text for an HTML context: printable, then escaped (notes, status lines, typed prompts);
    no blank line (``unblank``)."""
    return unblank(html.escape(printable(text)))


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
        return f'<div class="math block">{unblank(escapeHtml("$$" + token.content.strip() + "$$"))}</div>\n'
    fence = "$$" if token.type == "math_inline_double" else "$"
    return f'<span class="math inline">{unblank(escapeHtml(fence + token.content + fence))}</span>'


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


# Code is highlighted with Pygments' inline styles: no class needs a style sheet, so it looks the
# same in the magic's output, the widget, a reloaded (sanitized) notebook and other front ends. The
# box is styled on the element too: JupyterLab's own <pre> has no background or padding and wraps
# long lines anywhere (mid-number); here a long line scrolls instead.
CODE_STYLE = (
    "background:#f6f8fa;color:#1f2328;padding:8px 12px;border-radius:4px;overflow-x:auto;"
    "white-space:pre;word-break:normal;overflow-wrap:normal;line-height:1.4"
)
CODE_INNER_STYLE = "background:transparent"
_CODE_FORMATTER = HtmlFormatter(nowrap=True, noclasses=True, style="default")


@functools.lru_cache(maxsize=64)
def _lexer(language: str) -> Any:
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False) if language else None
    except ClassNotFound:
        return None


def highlight_code(code: str, language: str) -> str:
    """Code as escaped HTML with Pygments' inline-styled spans (plain escaped text for an unknown language).

    Only Pygments writes tags and attributes here; the code itself is always escaped text.
    """
    lexer = _lexer(language.lower())
    return pygments.highlight(code, lexer, _CODE_FORMATTER) if lexer is not None else escapeHtml(code)


# Code a person approves: every character on screen at the click, so nothing scrolls out of view.
# Each source line is a numbered row that wraps where it must (spaces included: ``break-spaces``
# wraps a run of spaces rather than letting it hang past the edge); a wrapped row's continuation
# has no number and is indented, so where a line goes on is visible. Inside ``pre``: MathJax and
# the front ends' link makers leave it alone.
LISTING_STYLE = (
    "background:#f6f8fa;color:#1f2328;padding:6px 8px 6px 0;border-radius:4px;margin:4px 0;"
    "white-space:normal;overflow:visible;line-height:1.4;font-family:var(--jp-code-font-family,monospace);"
    "font-size:var(--jp-code-font-size,13px)"
)
_ROW_STYLE = "display:flex;align-items:flex-start"
_NUMBER_STYLE = (
    "flex:none;min-width:2.5em;padding:0 0.8em 0 0.4em;text-align:right;color:#6e7781;user-select:none"
)
_LINE_STYLE = (
    "flex:1;min-width:0;white-space:break-spaces;overflow-wrap:anywhere;padding-left:2em;text-indent:-2em;"
    "background:none;font:inherit;color:inherit"
)


def listing_html(code: str, language: str = "python") -> str:
    """``code`` as numbered rows that wrap visibly (see ``LISTING_STYLE``), highlighted as a reply's
    code is; every row's text is escaped code, each row's ``code`` holds exactly one source line."""
    code = printable(code).removesuffix("\n")
    lines = highlight_code(code, language).split("\n")[: code.count("\n") + 1]  # Pygments may add one
    rows = "".join(
        f'<div class="acytoo-code-row" style="{_ROW_STYLE}"><span class="acytoo-lineno" '
        f'style="{_NUMBER_STYLE}">{number}</span><code class="acytoo-code-line" style="{_LINE_STYLE}">'
        f"{line}</code></div>"
        for number, line in enumerate(lines, 1)
    )
    return f'<pre class="acytoo-listing" style="{LISTING_STYLE}">{rows}</pre>'


def _code(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    info = unescapeAll(token.info).strip() if token.info else ""
    language = info.split(maxsplit=1)[0] if info else ""
    body = unblank(highlight_code(token.content, language))
    cls = f' class="language-{escapeHtml(language)}"' if language else ""
    # JupyterLab's and nbconvert's CSS give every <code> their page colour: on our box's grey it
    # showed as white blocks over indentation and spaces between words.
    inner = f'<code{cls} style="{CODE_INNER_STYLE}">'
    return f'<pre class="acytoo-code" style="{CODE_STYLE}">{inner}{body}</code></pre>\n'


# While an answer streams, its last line is not finished: ``[r]: javascript`` may still become
# ``[r]: javascript:...``. A reference definition that reaches that line is not used until the line
# is complete (links to it stay text); every other link needs its closing ``)`` or ``>``, so its
# target is already whole.
_OPEN_LINE = "acytoo_open_line"
_SETTLED = "acytoo_settled_references"


def _unfinished_references(state: Any) -> None:
    open_line = state.env.get(_OPEN_LINE)
    references = state.env.get("references")
    if open_line is None or not references:
        return
    settled = state.env.get(_SETTLED, ())
    for label in [k for k, ref in references.items() if k not in settled and ref["map"][1] > open_line]:
        del references[label]


def _normalize(state: Any) -> None:
    # markdown-it's own rule is two regex passes over the whole text (\r\n and \0), a quarter of
    # parsing a long paragraph; text cleaned by printable() has neither, so the membership tests
    # (a fast scan) skip both.
    if "\r" in state.src or "\0" in state.src:
        normalize(state)


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML shows as text
    md.core.ruler.at("normalize", _normalize)
    md.validateLink = link_is_safe  # type: ignore[method-assign]  # Markdown links, references, autolinks
    # No space just inside the dollars, so "$5 and $10" stays prose (a digit rule would be nicer, but
    # the plugin reads src[-1] for a "$" at the very start). Math is drawn as its own source text,
    # so a currency amount taken for math still shows exactly as written.
    dollarmath_plugin(md, allow_labels=False, allow_space=False, double_inline=True)
    for rule in ("math_inline", "math_inline_double", "math_block"):
        md.add_render_rule(rule, _math)
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("image", _image_as_link)
    md.add_render_rule("fence", _code)
    md.add_render_rule("code_block", _code)
    md.core.ruler.after("block", "acytoo_unfinished_references", _unfinished_references)
    return md


_MARKDOWN = _markdown()


def render_markdown(text: str, unfinished: bool = False) -> str:
    """A reply as HTML that is safe to insert live: Markdown rendered, raw HTML shown as text.

    No tag or attribute in the output comes from the reply: ``<script>`` or ``<img onerror>``
    show as text, ``javascript:``/``data:`` links stay unlinked text, images become links, and
    ``$...$`` math is kept literally for the frontend's typesetter. ``unfinished``: the text is
    still streaming, so a reference definition on its last line is not used yet.
    """
    text = printable(text)
    return _MARKDOWN.render(text, {_OPEN_LINE: text.count("\n") if unfinished else None})


_CLOSING_TAG = re.compile(r"</[a-z0-9]+>\Z")


def with_cursor(body: str, cursor: str = " ▌") -> str:
    """Rendered HTML with a cursor after its last text, inside the last paragraph, item or code block.

    Added after rendering, so the cursor never becomes part of the Markdown (a half-streamed
    ``[ref]: `` would otherwise turn into a link to it). Scans back from the end over whitespace
    and closing tags only, so its cost is the length of that tail, not of the body.
    """
    end = len(body)
    while True:
        end = len(body[:end].rstrip())
        tag = _CLOSING_TAG.search(body, max(0, end - 16), end) if body.endswith(">", 0, end) else None
        if tag is None:
            return body[:end] + cursor + body[end:]
        end = tag.start()


@dataclass(frozen=True)
class Block:
    """A finished top-level block of a streamed answer (with the blank lines and reference
    definitions after it): its cleaned source and its HTML. Its index never changes."""

    index: int
    source: str
    html: str


@dataclass(frozen=True)
class StreamUpdate:
    """What changed since the previous update: blocks finished since then (each reported once), the
    unfinished rest as HTML (it replaces the previous tail) and its source, and, on the final
    update only, earlier blocks whose HTML changed because a reference definition came after them."""

    frozen: list[Block]
    tail_html: str
    tail_source: str
    revised: list[Block] = field(default_factory=list)


class MarkdownStream:
    """An answer rendered as it streams: each finished top-level block once, the unfinished rest anew.

    ``feed`` chunks, then call ``update()`` per frame: the work is proportional to the unfinished
    tail, not to the answer. A block is finished once a later block starts on a complete line that
    is itself followed by a complete line (a table's delimiter row or a setext underline can only
    change the block just before it), and no unclosed ``$$`` precedes it (a closing ``$$`` could
    still join the lines since into one math block). ``update(final=True)`` renders the rest and
    re-renders, once, finished blocks whose ``[text][ref]`` links might use a reference defined
    later, so the frozen blocks plus the final tail are exactly ``render_markdown`` of the whole text.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []  # the raw text from the first unfinished line on
        self._references: dict[str, Any] = {}  # defined in finished blocks, first definition wins
        self.blocks: list[Block] = []
        self._known: list[int] = []  # per block: how many references were defined when it froze
        self.closed = False
        self.fed = 0  # characters of the answer fed so far

    def feed(self, chunk: str) -> None:
        self._parts.append(chunk)
        self.fed += len(chunk)

    def feed_through(self, added: str, length: int) -> None:
        """Feed the end of ``added`` (the text since the last frame, the answer ``length`` long
        after it) that the stream has not had: a draw that failed after feeding already gave it
        the rest."""
        unfed = max(0, length - self.fed)
        self.feed(added[max(0, len(added) - unfed) :] if unfed else "")

    def update(self, final: bool = False) -> StreamUpdate:
        raw = "".join(self._parts)
        self._parts = [raw]
        text = printable(raw)  # line-local, so cleaning the tail alone cleans the same as the whole
        # The final update freezes nothing: it needs no line positions (two scans of the text).
        open_line = None if final else text.count("\n")
        env: dict[str, Any] = {
            "references": dict(self._references),
            _SETTLED: frozenset(self._references),
            _OPEN_LINE: open_line,
        }
        tokens = _MARKDOWN.parse(text, env)
        starts = [i for i, token in enumerate(tokens) if token.level == 0 and token.nesting >= 0]
        keep = 0  # how many leading blocks are finished
        lines = []  # where each line starts
        if open_line is not None and len(starts) > 1:
            lines = [0, *(match.end() for match in _NEWLINE.finditer(text))]
        while lines and keep + 1 < len(starts) and tokens[starts[keep + 1]].map[0] + 1 < open_line:
            token = tokens[starts[keep]]
            if token.type != "math_block" and _opens_math(text, lines[token.map[0]]):
                break  # an unclosed $$: a later $$ may still make everything since one math block
            keep += 1
        frozen: list[Block] = []
        for number in range(keep):
            begin, end = lines[tokens[starts[number]].map[0]] if number else 0, starts[number + 1]
            upto = lines[tokens[end].map[0]]
            html = _MARKDOWN.renderer.render(tokens[starts[number] : end], _MARKDOWN.options, env)
            frozen.append(Block(len(self.blocks) + number, text[begin:upto], html))
        if keep:
            cut_line = tokens[starts[keep]].map[0]
            for label, ref in env["references"].items():
                if label not in self._references and ref["map"][1] <= cut_line:
                    self._references[label] = ref
            self.blocks.extend(frozen)
            self._known.extend([len(self._references)] * keep)
            raw_cut = 0
            for _ in range(cut_line):  # raw and cleaned text have the same lines
                raw_cut = raw.index("\n", raw_cut) + 1
            self._parts = [raw[raw_cut:]]
            text = text[lines[cut_line] :]
        tail = tokens[starts[keep] :] if starts else []
        tail_html = _MARKDOWN.renderer.render(tail, _MARKDOWN.options, env)
        revised: list[Block] = []
        if final:
            self.closed = True
            revised = self._revise(env["references"])
        return StreamUpdate(frozen, tail_html, text, revised)

    def _revise(self, references: dict[str, Any]) -> list[Block]:
        """Blocks that froze before a reference they may use was defined, rendered again with all."""
        revised = []
        for number, block in enumerate(self.blocks):
            if self._known[number] >= len(references) or "]" not in block.source:
                continue
            env = {"references": dict(references)}
            html = _MARKDOWN.render(block.source, env)
            if html != block.html:
                self.blocks[number] = Block(number, block.source, html)
                revised.append(self.blocks[number])
        return revised


_NEWLINE = re.compile("\n")


def _opens_math(text: str, start: int) -> bool:
    """Whether the line at ``start`` opens a ``$$`` block (up to three spaces before it)."""
    indent = 0
    while indent < 3 and text.startswith(" ", start + indent):
        indent += 1
    return text.startswith("$$", start + indent)


def note_html(note: str) -> str:
    """A short note (waiting, interrupted, partial...) as escaped HTML."""
    return f'<p class="acytoo-note"><em>{escaped(note)}</em></p>' if note else ""


def small_print_html(small_print: str) -> str:
    """The small print under an answer (what was masked, the status line) as escaped HTML, a line each."""
    lines = small_print.splitlines()
    return "".join(f'<p class="acytoo-status"><sub>{escaped(line)}</sub></p>' for line in lines)
