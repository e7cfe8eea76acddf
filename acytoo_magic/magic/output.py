"""Drawing the magic's answer: one notebook output area updated in place, or a terminal.

The timing is the core's ``ThrottledRenderer``; what is shown goes through ``untrusted``'s policy.
"""

from __future__ import annotations

import sys
from typing import Any

from ..core.errors import AcytooError
from ..core.frames import Frame
from ..core.outbound import printable, unlinkable
from ..core.request import Finished
from ..present.throttle import SIZE_STEP, ThrottledRenderer
from ..present.untrusted import (
    Block,
    MarkdownStream,
    note_html,
    render_markdown,
    small_print_html,
    with_cursor,
)

# While an answer streams, text/plain carries at most its last this many characters: the frontends
# that show the answer draw text/html, and the whole text in text/plain, which is what the saved
# notebook keeps for other frontends, goes once, with the final update.
STREAMING_PLAIN_CHARS = 2_000
SEGMENT_GROWTH = 0.2  # a segment is at least this share of the answer already committed
# The least (and usual) gap between the magic's draws, in seconds: inside the 200 ms after which
# JupyterLab's table of contents re-reads a changed cell, not so close that each draw's fixed cost
# in the page adds up (measured: docs/internals.md, "Why draws are 0.15 s apart").
PAGE_INTERVAL = 0.15


def report(result: Finished) -> None:
    """The magic's word after an answer or episode: the history's warning on stderr, then the error
    that ended it as the cell's one-line error (the answer itself is already on screen)."""
    if result.history_warning:
        print(f"acytoo: {result.history_warning}", file=sys.stderr)
    if result.error is not None:
        raise AcytooError(str(result.error))


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
    if fmt == "text":  # shown as text, which JupyterLab autolinks: no unsafe scheme left to link
        # -f text has nothing else to show: the whole text, each time
        return {"text/plain": unlinkable(_with_note(printable(frame.text), frame.note, frame.small_print))}
    body = render_markdown(frame.text, unfinished=not frame.final)  # printable() inside
    if frame.final:
        return final_bundle(body, printable(frame.text), frame.note, frame.small_print)
    plain = _with_note(streaming_plain(frame.text), frame.note, frame.small_print)
    html = with_cursor(body) + note_html(f"— {frame.note}" if frame.note else "")
    return {"text/plain": plain, "text/html": html + small_print_html(frame.small_print)}


def final_bundle(html: str, plain: str, note: str = "", small_print: str = "") -> dict[str, Any]:
    """The answer's final output, which the saved notebook keeps: its safe HTML and its clean text
    (``html`` and ``plain``), each with the note (partial, interrupted...) and the status line.

    Every final output of the magic is built here (``DisplayRenderer``'s last output,
    ``markdown_bundle``), so a form added to it is added once.
    """
    html += note_html(f"— {note}" if note else "") + small_print_html(small_print)
    return {"text/plain": _with_note(plain, note, small_print), "text/html": html}


def _with_note(plain: str, note: str, small_print: str) -> str:
    plain += f"\n[{printable(note)}]" if note else ""
    return plain + (f"\n— {printable(small_print)}" if small_print else "")


class DisplayRenderer(ThrottledRenderer):
    """Renders into the notebook's output area: finished blocks once, the growing tail in place.

    The answer is drawn as a few outputs: *segments* of finished top-level blocks, each sent once
    and never redrawn, and one live *tail* output (``display_id``) updated in place. A block that
    finishes stays in the tail until ``commit_chars`` characters of finished blocks have gathered
    there (and a fifth of what is already committed); then the tail output is updated one last time
    to hold just those blocks (it becomes a segment) and a new tail output is opened below it. The
    page then renders each block about once, plus the small tail per frame (see docs/streaming.md
    for the alternatives measured). Draws are ``page_interval`` apart at least and do not thin out
    as the answer grows: see ``PAGE_INTERVAL``.
    ``-f text`` draws the whole text in one output as before (it is all it shows).
    """

    # The least a segment holds: an answer shorter than this stays one output, as before. 0 (a
    # segment per frame) measured cheaper in the page but splits even a short answer (docs/streaming.md).
    commit_chars = 4_000
    max_segments = 40
    # A draw sends the tail, not the answer, so its cost does not grow with the answer: no size step
    # (spacing draws by answer size let JupyterLab's table of contents re-read the whole answer
    # after every draw, see PAGE_INTERVAL).
    size_step: float | None = None
    page_interval = PAGE_INTERVAL

    def __init__(self, fmt: str = "markdown", interval: float = 0.08, **throttle: Any) -> None:
        from IPython.display import display

        self.fmt = fmt
        if fmt != "text" and interval > 0:  # 0 still means a draw per chunk (tests, benchmarks)
            interval = max(interval, self.page_interval)
        self._display = display
        self.handle: Any = None  # the live tail output
        self.stream = MarkdownStream()
        self._pending: list[Block] = []  # finished blocks still drawn in the tail output
        self._pending_chars = 0
        self._committed_chars = 0
        self.segments: list[tuple[Any, list[Block]]] = []  # (output, its blocks), in order
        self.metadata: dict[str, Any] = {}  # what the final output records of the answer (keep_record)
        throttle.setdefault("size_step", self.size_step if fmt != "text" else SIZE_STEP)
        super().__init__(self._update, interval, **throttle)

    def _framed(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Every bundle this renderer sends, as it is sent (an agent's model text is framed)."""
        return bundle

    def keep_record(self, metadata: dict[str, Any]) -> None:
        """The answer's record (``document.record``): its final output carries it as metadata,
        which the saved notebook keeps (the display id does not survive a save)."""
        self.metadata = dict(metadata)

    def _show(self, bundle: dict[str, Any], final: bool = False) -> None:
        bundle = self._framed(bundle)
        extra = {"metadata": self.metadata} if final and self.metadata else {}
        if self.handle is None:  # the first frame creates the output area; later ones replace it
            self.handle = self._display(bundle, raw=True, display_id=True, **extra)
        else:
            self.handle.update(bundle, raw=True, **extra)

    def _update(self, frame: Frame) -> None:
        if frame.waiting or self.fmt == "text":
            self._show(markdown_bundle(frame, self.fmt), final=frame.final)
            return
        self.stream.feed_through(frame.added, frame.length)  # ``added`` starts at the last frame drawn
        update = self.stream.update(final=frame.final)
        self._pending.extend(update.frozen)
        self._pending_chars += sum(len(block.source) for block in update.frozen)
        if not frame.final and self._pending_chars >= self._commit_at():
            self._commit()
        if frame.final:
            self._revise(update.revised)
        pending = "".join(block.html for block in self._pending)
        sources = "".join(block.source for block in self._pending) + update.tail_source
        if frame.final:  # sources are clean
            self._show(final_bundle(pending + update.tail_html, sources, frame.note, frame.small_print), True)
            self.segments.append((self.handle, self._pending))
            return
        html = with_cursor(pending + update.tail_html)
        self._show({"text/plain": streaming_plain(sources), "text/html": html})

    def _commit_at(self) -> float:
        """How many characters of finished blocks make a segment. JupyterLab shows at most 50
        outputs of a cell (``maxNumberOutputs``) and hides the rest, the live tail included, behind
        "Show more outputs"; so segments grow with what is already committed (a fifth of it), which
        keeps a 1 MB answer to ~30 outputs, and after ``max_segments`` everything stays in the tail."""
        if len(self.segments) >= self.max_segments:
            return float("inf")
        return max(self.commit_chars, self._committed_chars * SEGMENT_GROWTH)

    def _commit(self) -> None:
        """The tail output keeps the finished blocks gathered in it; a new tail output opens below."""
        self._committed_chars += self._pending_chars
        blocks, self._pending, self._pending_chars = self._pending, [], 0
        self._show(segment_bundle(blocks))
        self.segments.append((self.handle, blocks))
        self.handle = None

    def _revise(self, revised: list[Block]) -> None:
        """Redraw the segments holding blocks that a late reference definition changed."""
        changed = {block.index: block for block in revised}
        for handle, blocks in self.segments:
            if any(block.index in changed for block in blocks):
                blocks[:] = [changed.get(block.index, block) for block in blocks]
                handle.update(self._framed(segment_bundle(blocks)), raw=True)
        self._pending = [changed.get(block.index, block) for block in self._pending]


def segment_bundle(blocks: list[Block]) -> dict[str, Any]:
    """Finished blocks as one output: their HTML, and their text for the front ends that read only text."""
    return {
        "text/plain": "".join(block.source for block in blocks),
        "text/html": "".join(block.html for block in blocks),
    }


class TerminalRenderer(ThrottledRenderer):
    """Terminal IPython: print each new piece of text as it arrives (a terminal cannot redraw in place)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        super().__init__(self._write, interval=0.0)

    def _write(self, frame: Frame) -> None:
        if frame.waiting:
            return
        # Control characters go piece by piece: an escape sequence split across two writes loses its
        # ESC, so its rest shows as text and the terminal acts on nothing (colours, title, clipboard).
        self.stream.write(printable(frame.added))
        if frame.final:
            self.stream.write(f"\n[{printable(frame.note)}]\n" if frame.note else "\n")
            if frame.small_print:
                self.stream.write(f"— {printable(frame.small_print)}\n")
        self.stream.flush()
