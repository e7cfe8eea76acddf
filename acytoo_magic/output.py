"""Drawing the magic's answer: one notebook output area updated in place, or a terminal.

The timing is the core's ``ThrottledRenderer``; what is shown goes through ``untrusted``'s policy.
"""

from __future__ import annotations

import sys
from typing import Any

from .render import Frame, ThrottledRenderer
from .untrusted import note_html, printable, render_markdown, status_html, unlinkable, with_cursor

# While an answer streams, text/plain carries at most its last this many characters: the frontends
# that show the answer draw text/html, and the whole text in text/plain, which is what the saved
# notebook keeps for other frontends, goes once, with the final update.
STREAMING_PLAIN_CHARS = 2_000


def streaming_plain(text: str) -> str:
    """The answer so far as text/plain while it streams: whole when short, else its newest part."""
    if len(text) <= STREAMING_PLAIN_CHARS:
        return printable(text)
    above = len(text) - STREAMING_PLAIN_CHARS
    return f"[… {above:,} characters above; all of it with the final update]\n" + printable(
        text[-STREAMING_PLAIN_CHARS:]
    )


def markdown_bundle(frame: Frame, fmt: str = "markdown") -> dict[str, Any]:
    """A MIME bundle for a display update: the answer rendered to safe HTML, plain text as fallback.

    No ``text/markdown``: JupyterLab renders an executed cell's Markdown as trusted, raw HTML live.
    A long answer's whole text goes in text/plain only with the final update (see ``streaming_plain``).
    """
    if frame.waiting:  # text, not an hourglass emoji: without an emoji font that is an empty box
        return {"text/plain": printable(f"… {frame.note}"), "text/html": note_html(f"… {frame.note}")}
    full = frame.final or fmt == "text"  # -f text has nothing else to show
    text = printable(frame.text) if full else streaming_plain(frame.text)
    plain = text + (f"\n[{printable(frame.note)}]" if frame.note else "")
    plain += f"\n— {printable(frame.status)}" if frame.status else ""
    if fmt == "text":  # shown as text, which JupyterLab autolinks: no unsafe scheme left to link
        return {"text/plain": unlinkable(plain)}
    body = render_markdown(frame.text)  # printable() inside
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
