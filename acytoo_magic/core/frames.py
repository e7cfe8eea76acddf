"""What a front end draws and what draws it: the frames of a streaming answer, and the drawer's shape.

``Frame`` is one moment of an answer (its text so far, a note, the status line under it);
``Renderer`` is what the core streams into (``start``, ``notify``, ``feed``, ``close``), whatever
draws it: the throttled drawers of the front ends (``present.throttle``) or ``NullRenderer``, for a
caller that shows nothing (a script, an agent turn nobody watches). No drawing happens here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .errors import AnswerError


class Frame:
    """What to show now: the answer so far, and a short note (waiting, interrupted, partial...).

    ``added`` is the text that arrived since the last frame drawn, so a drawer can do work per new
    text; ``text`` (the whole answer) is joined only when a drawer reads it.
    """

    __slots__ = ("_text", "added", "final", "note", "small_print", "waiting")

    def __init__(
        self,
        text: str | tuple[TextBuffer, int] = "",
        note: str = "",
        final: bool = False,
        waiting: bool = False,
        small_print: str = "",
        added: str | None = None,
    ) -> None:
        self._text = text
        self.note, self.final, self.waiting, self.small_print = note, final, waiting, small_print
        # The text since the last frame that was drawn: a draw that failed leaves its text new.
        self.added = added if added is not None else self.text

    @property
    def text(self) -> str:
        if not isinstance(self._text, str):  # (buffer, length): the text as it was at this frame
            buffer, length = self._text
            self._text = buffer.text[:length]
        return self._text

    @property
    def length(self) -> int:
        """How long the text is, without joining it."""
        return len(self._text) if isinstance(self._text, str) else self._text[1]

    def _key(self) -> tuple[str, str, bool, bool, str]:
        return (self.text, self.note, self.final, self.waiting, self.small_print)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        text, note, final, waiting, small_print = self._key()
        state = f"note={note!r}, final={final}, waiting={waiting}, small_print={small_print!r}"
        return f"Frame({text!r}, {state})"


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
    """What the core streams into. A renderer whose final output is saved with a notebook may also
    have ``keep_record(metadata)``: called before ``close`` with the answer's record, which that
    final output carries (``stream.keep_record``; docs/notebook-record.md)."""

    def start(self, label: str) -> None: ...
    def notify(self, note: str) -> None: ...
    def feed(self, chunk: str) -> None: ...
    def close(self, text: str, note: str = "", small_print: str = "") -> None: ...


class NullRenderer:
    """A renderer that draws nothing, but keeps what its last frame would have shown (the record
    reads ``last_frame`` when the final draw is all there is)."""

    def __init__(self) -> None:
        self.last_frame: Frame | None = None

    def start(self, label: str) -> None:
        pass

    def notify(self, note: str) -> None:
        pass

    def feed(self, chunk: str) -> None:
        pass

    def close(self, text: str, note: str = "", small_print: str = "") -> None:
        self.last_frame = Frame(text, note=note, final=True, small_print=small_print)


class Tee:
    """A renderer that also hands each chunk to a callback (``ask(on_chunk=...)``)."""

    def __init__(self, renderer: Renderer, on_chunk: Callable[[str], Any]) -> None:
        self._renderer = renderer
        self._on_chunk = on_chunk

    def start(self, label: str) -> None:
        self._renderer.start(label)

    def notify(self, note: str) -> None:
        self._renderer.notify(note)

    @property
    def last_frame(self) -> Frame | None:
        """What the wrapped renderer last drew (the record falls back to it if closing fails)."""
        return getattr(self._renderer, "last_frame", None)

    def feed(self, chunk: str) -> None:
        self._renderer.feed(chunk)
        try:
            self._on_chunk(chunk)
        except Exception as exc:  # the caller's code: one line, and the answer ends marked
            raise AnswerError.from_exception("the on_chunk callback", exc) from exc

    def keep_record(self, metadata: Mapping[str, Any]) -> None:
        """The final output's metadata, for a wrapped renderer that draws one."""
        keep = getattr(self._renderer, "keep_record", None)
        if keep is not None:
            keep(metadata)

    def close(self, text: str, note: str = "", small_print: str = "") -> None:
        self._renderer.close(text, note, small_print)
