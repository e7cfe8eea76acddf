"""The chat's scrolling transcript: messages, the streaming answer, the last answer's status line.

The state lives here, in the kernel; the page gets only changes, as custom messages
(``static/transcript.js``), and every string it gets is HTML made by the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..core.frames import Frame
from ..core.loops import on_this_loop
from ..present.untrusted import MarkdownStream, with_cursor
from .entries import bubble, bubble_note

STATIC = Path(__file__).parent / "static"


class LiveAnswer:
    """The answer streaming in the live area, kept as the page holds it.

    Each finished top-level block is rendered once (``untrusted.MarkdownStream``) and sent once, to
    be appended; only the unfinished tail and the note are rendered and replaced per frame, so a
    frame costs the kernel and the page what is new. Once the final frame is drawn, the blocks plus
    the tail are one render of the whole answer, and the page moves that node into the transcript
    as the answer's entry instead of parsing the answer again (``settle``).
    """

    def __init__(self) -> None:
        self.stream = MarkdownStream()
        self.blocks: list[str] = []  # finished blocks' HTML, by block index
        self.tail = ""  # the unfinished rest's HTML (with the cursor while streaming)
        self.note = ""  # the frame's note as HTML
        self.final = False  # the final frame is drawn
        self.entry = ""  # set by ``settle``: the transcript entry the page makes of this node
        self.entry_note = ""

    def advance(self, frame: Frame) -> tuple[str, bool]:
        """Take a frame's new text (never its whole text, which would make a frame cost the answer).

        Returns the HTML of the blocks finished since the last frame, and whether earlier blocks
        changed (a reference defined after its use; the final frame only).
        """
        self.stream.feed_through(frame.added, frame.length)
        update = self.stream.update(final=frame.final)
        self.blocks.extend(block.html for block in update.frozen)
        for block in update.revised:
            self.blocks[block.index] = block.html
        self.tail = update.tail_html if frame.final else with_cursor(update.tail_html)
        self.note = bubble_note(frame.note)
        self.final = frame.final
        return "".join(block.html for block in update.frozen), bool(update.revised)

    def html(self) -> str:
        """All of it, for a view that appears mid-stream: the tail and the note in holders that
        frames replace (``display: contents``, so they add no box)."""
        return (
            f'<div class="acytoo-msg acytoo-assistant">{"".join(self.blocks)}'
            f'<div class="acytoo-live-tail">{self.tail}</div>'
            f'<div class="acytoo-live-note">{self.note}</div></div>'
        )

    def settle(self, note: str) -> str:
        """The transcript entry of the finished answer, with the stored status's ``note``: exactly
        ``message_html`` of its text (the blocks plus the final tail are one render of it)."""
        self.entry_note = bubble_note(note)
        self.entry = bubble("assistant", "".join(self.blocks) + self.tail, note)
        return self.entry


class Transcript(anywidget.AnyWidget):
    """The scrolling transcript: messages, the streaming answer, and the last answer's status line.

    The state lives here, in the kernel; the page receives only changes as custom messages (a
    splice of rendered entries, the live frame, the footer), and a view that appears (a reload, a
    second view) asks for everything once. Every string sent is HTML produced by ``untrusted``.
    """

    _esm = STATIC / "transcript.js"
    _css = STATIC / "chat.css"
    more = traitlets.Bool(False, help="whether older messages exist than those shown").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entries: list[str] = []
        self.footer = ""
        self._live = ""  # the live area's HTML when it holds no streaming answer
        self._answer: LiveAnswer | None = None  # the streaming answer the live area holds
        self._synced: LiveAnswer | None = None  # ...and whose every frame reached the page
        self._listeners: list[Callable[[str], None]] = []
        self.on_msg(on_this_loop(self._handle_message))  # messages may come on a subshell's thread

    @property
    def html(self) -> str:
        """Everything the transcript shows now (not the streaming answer), as one HTML string."""
        return "".join(self.entries) + self.footer

    value = html  # read as ``ipywidgets.HTML``'s was, by code written for the earlier widget

    @property
    def live(self) -> str:
        """What the live area shows (the streaming answer, or the waiting line), as one HTML string."""
        return self._answer.html() if self._answer is not None else self._live

    def on_event(self, callback: Callable[[str], None]) -> None:
        self._listeners.append(callback)

    def _handle_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("event") == "ready":  # a new view: it gets the whole state once
            self.send({"op": "reset", "entries": self.entries, "live": self.live, "footer": self.footer})
        for callback in self._listeners:
            callback(str(content.get("event", "")))

    def show(self, entries: Sequence[str], footer: str, earlier: bool = False) -> bool:
        """Show ``entries`` and ``footer``, sending only the run that differs from what is shown;
        True if anything changed (the saved copy follows)."""
        old, new = self.entries, list(entries)
        start = 0
        while start < min(len(old), len(new)) and old[start] == new[start]:
            start += 1
        end = 0
        while end < min(len(old), len(new)) - start and old[-1 - end] == new[-1 - end]:
            end += 1
        remove, added = len(old) - start - end, new[start : len(new) - end]
        if not remove and not added and footer == self.footer:
            return False
        self.entries, self.footer = new, footer
        msg: dict[str, Any] = {"op": "splice", "start": start, "remove": remove, "entries": added}
        msg.update({"footer": footer, "earlier": earlier})
        answer = self._synced
        if answer is not None and answer.final and answer.entry and answer.entry in added:
            # The page holds this entry already, drawn block by block: it moves it, parses nothing.
            msg["entries"] = [None if html == answer.entry else html for html in added]
            msg["adopt"] = answer.entry_note
            self._answer = self._synced = None
            self._live = ""
        self.send(msg)
        return True

    def draw_live(self, html: str) -> None:
        """Replace what the live area shows (the waiting line; empty once an answer is settled)."""
        self._answer = self._synced = None
        self._live = html
        self.send({"op": "live", "html": html})

    def draw_answer(self, answer: LiveAnswer, frame: Frame) -> None:
        """The streaming answer's newest frame: the blocks finished since the last one are sent to
        be appended, the tail and the note replace theirs. The first frame, a frame after one that
        did not reach the page, or earlier blocks that changed send the whole answer instead."""
        blocks, revised = answer.advance(frame)
        whole = self._synced is not answer or revised
        self._answer, self._synced = answer, None
        if whole:
            self.send({"op": "live", "html": answer.html()})
        else:
            self.send({"op": "grow", "blocks": blocks, "tail": answer.tail, "note": answer.note})
        self._synced = answer
