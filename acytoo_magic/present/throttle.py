"""Throttled, in-place drawing of a streaming answer: the timing every front end shares.

``ThrottledRenderer`` holds the timing logic once (like ``tqdm``'s ``mininterval``): the first chunk
is drawn at once, later ones are coalesced to one draw per ``interval``, a timer flushes text that
arrived after the last draw, and ``close`` always draws the complete text. Front ends only supply a
``draw(frame)`` callable: a display handle in a notebook, stdout in a terminal, a widget.
How a frame is shown safely is ``untrusted``'s one policy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..core.frames import Frame, TextBuffer

COST_FACTOR = 5.0
SIZE_STEP = 16_000
FIRST_GAP = 0.02  # seconds from the first draw to the second, whatever the interval
# The most the first draw shows: about a screenful. A longer first chunk (a burst read at once:
# asyncio reads up to 256 KiB from a socket in one go; a provider that sends its answer whole)
# shows the rest with the next draw, FIRST_GAP later or at the end. Before, the first draw
# rendered all of it, and the next drew the unfinished part of it again (issue 30: 2.2 ms of the
# 1 MB kernel row went to a 255 KB first frame that no one could read before the next).
FIRST_CHARS = 4_000


class ThrottledRenderer:
    """Coalesce updates in time so a reply's rendering cost grows with its length, not its chunk count."""

    def __init__(
        self,
        draw: Callable[[Frame], None],
        interval: float = 0.08,
        clock: Callable[[], float] = time.monotonic,
        *,
        cost_factor: float = COST_FACTOR,
        size_step: float | None = SIZE_STEP,
    ) -> None:
        self._draw = draw
        self.interval = max(0.0, float(interval))
        self._clock = clock
        self.cost_factor = cost_factor
        self.size_step = size_step  # None: a draw's cost does not grow with the text (it draws what is new)
        self._added: list[str] = []  # text since the last drawn frame
        self._length = 0
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
        self._failed: Exception | None = None  # a timer's draw that failed, raised by the next feed

    def _emit(self, frame: Frame) -> None:
        self.draws += 1
        started = self._clock()
        self._draw(frame)
        self._added.clear()  # new text stays new until a draw has shown it (a failed draw shows none)
        self.last_frame = frame  # what the user last saw: only a frame whose draw succeeded
        self._last = self._clock()
        # A drawer that re-sends the whole text costs more with every draw, so the gap to the next
        # draw grows with it: one interval per ``size_step`` characters (the frontend's re-render,
        # which the kernel cannot time) and at least ``cost_factor`` times what this draw took here.
        # Draws then thin out geometrically and a reply's total cost stays linear in its length,
        # however fast the chunks arrive. A drawer that sends only what is new sets no size_step.
        size_gap = self.interval * self._length / self.size_step if self.size_step else 0.0
        self._gap = max(self.interval, size_gap, self.cost_factor * (self._last - started))

    def _frame(self, **state: object) -> Frame:
        return Frame((self._buffer, self._length), added="".join(self._added), **state)  # type: ignore[arg-type]

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next feed or close draws it

        def fire() -> None:
            self._timer = None
            try:
                callback()
            except Exception as exc:  # not into the loop's log: the next feed reports it to the answer
                self._failed = exc

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
        self._added.append(chunk)
        self._length += len(chunk)
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed
        if not self._has_text:
            self._has_text = True
            self._cancel_timer()  # the waiting ticker ends with the first chunk
            self._first_draw()
            return
        elapsed = self._clock() - (self._last or 0.0)
        if elapsed >= self._gap:
            self._cancel_timer()
            self._emit(self._frame())
        else:
            self._schedule(self._gap - elapsed, self._flush)

    def _first_draw(self) -> None:
        """The first text, at once: at most ``FIRST_CHARS`` of it (see there); the rest stays new
        for the next draw. Not cut where an escape sequence could straddle the cut (a terminal
        cleans each frame's new text on its own)."""
        text = "".join(self._added)
        cut = FIRST_CHARS if len(text) > FIRST_CHARS and "\x1b" not in text else len(text)
        rest = text[cut:]
        self._emit(Frame((self._buffer, self._length - len(rest)), added=text[:cut]))
        # The first chunk may be a word's first letters: the next draw comes sooner, so the
        # first words show at once even when tiny tokens arrive in a burst.
        self._gap = min(self._gap, FIRST_GAP)
        if rest:
            self._added.append(rest)
            self._schedule(self._gap, self._flush)

    def _flush(self) -> None:
        if self._has_text and not self.closed and self._added:
            self._emit(self._frame())

    def close(self, text: str, note: str = "", small_print: str = "") -> None:
        """Draw the complete text, its interrupted/partial note and the status line; always draws."""
        self._cancel_timer()
        self.closed = True
        # What arrived since the last frame: the closing text extends what was fed (the runner
        # closes with the reply's own text); otherwise the whole closing text is new.
        drawn = self._length - sum(map(len, self._added))
        added = text[drawn:] if drawn <= len(text) else text
        self._added.clear()
        self._emit(Frame(text, note=note, final=True, small_print=small_print, added=added))
