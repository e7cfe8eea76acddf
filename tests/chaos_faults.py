"""Fault injection for tests/test_chaos.py, imported inside a real kernel by its setup cell.

Test code only: it wraps the real parts (the magic's output area, the UTF-8 decoder, the history
store's open/read/write) so that the stage ``arm`` names fails, once or from then on. What each
run drew successfully is kept in ``SHOWN`` (run id -> the answer text of the last frame drawn), to
be compared with the iopub messages the test saw and with the history file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import acytoo_magic
from acytoo_magic.core.errors import HistoryError, HistoryLocked
from acytoo_magic.core.frames import Frame
from acytoo_magic.core.history import store as conversation
from acytoo_magic.core.outcome import label
from acytoo_magic.magic import output
from acytoo_magic.providers import base

ARMED: dict[str, int] = {}  # stage -> which call of it fails (0: every call)
CALLS: dict[str, int] = {}
RUN = {"id": ""}
SHOWN: dict[str, str] = {}  # run id -> answer text of the last frame the output area drew


def arm(run: str, stage: str = "", nth: int = 1) -> None:
    """The next run is ``run``; ``stage`` fails at its ``nth`` call (0: at every call)."""
    ARMED.clear()
    CALLS.clear()
    RUN["id"] = run
    if stage:
        ARMED[stage] = nth


def _trips(stage: str) -> bool:
    if stage not in ARMED:
        return False
    CALLS[stage] = CALLS.get(stage, 0) + 1
    return ARMED[stage] in (0, CALLS[stage])


def _shown_text(frame: Frame) -> str:
    return "" if frame.waiting else frame.text


def install() -> None:
    """Wrap the stages; idempotent per kernel (the setup cell runs once)."""
    update = output.DisplayRenderer._update

    def _update(self: output.DisplayRenderer, frame: Frame) -> None:
        if self.handle is None and _trips("display"):
            raise RuntimeError("display() could not create the output area")
        if frame.final and _trips("close"):
            raise RuntimeError("the final update was refused")
        if not frame.final and not frame.waiting and _trips("draw"):
            raise RuntimeError("an update was refused")
        update(self, frame)
        SHOWN[RUN["id"]] = _shown_text(frame)

    output.DisplayRenderer._update = _update  # type: ignore[method-assign]

    decode = base.Utf8Stream.decode

    def _decode(self: base.Utf8Stream, chunk: bytes) -> str:
        if _trips("decoder"):
            raise UnicodeDecodeError("utf-8", chunk, 0, 1, "injected")
        return decode(self, chunk)

    base.Utf8Stream.decode = _decode  # type: ignore[method-assign]

    connect = conversation.HistoryStore._connect

    def _connect(self: conversation.HistoryStore) -> sqlite3.Connection:
        if self._db is None and _trips("open"):
            raise HistoryLocked(f"history database {self.path} is locked by another process (injected)")
        return connect(self)

    conversation.HistoryStore._connect = _connect  # type: ignore[method-assign]

    load = conversation.HistoryStore.load

    def _load(self: conversation.HistoryStore, *args: Any, **kwargs: Any) -> list[Any]:
        if _trips("read"):
            raise HistoryError(f"history database {self.path}: the read failed (injected)")
        return load(self, *args, **kwargs)

    conversation.HistoryStore.load = _load  # type: ignore[method-assign]

    write = conversation._write_exchange

    def _write(*args: Any) -> None:
        if _trips("write_lock") or _trips("flush_lock"):
            raise sqlite3.OperationalError("database is locked")
        if _trips("write_io"):
            raise sqlite3.OperationalError("disk I/O error")
        write(*args)

    conversation._write_exchange = _write


async def ask_with_callback(prompt: str, nth: int) -> None:
    """An answer drawn in this cell's output whose ``on_chunk`` callback fails at chunk ``nth``."""
    assistant = acytoo_magic._magics.assistant
    calls = 0

    def on_chunk(chunk: str) -> None:
        nonlocal calls
        calls += 1
        if calls == nth:
            raise ValueError("the caller's callback broke")

    renderer = output.DisplayRenderer("markdown", assistant.render_interval)
    reply = await assistant.ask(prompt, renderer=renderer, on_chunk=on_chunk)
    if reply.history_warning:
        import sys

        print(f"acytoo: {reply.history_warning}", file=sys.stderr)
    reply.raise_for_status()


async def widget_run(chat: Any, run: str, prompt: str, stop: bool) -> str:
    """Send ``prompt`` in ``chat``; with ``stop``, press Stop once text shows. What the widget shows."""
    from acytoo_magic.widget.entries import message_html

    arm(run)
    before = chat.transcript.value
    chat.send(prompt)
    if stop:
        while chat.renderer.last_frame is None or not _shown_text(chat.renderer.last_frame):
            await asyncio.sleep(0.005)  # waits for a condition (text drawn), not for a time
        chat.stop()
    reply = await chat.wait()
    added = chat.transcript.value[len(before) :]
    shown = message_html("assistant", reply.answer, label(reply.outcome))
    return json.dumps(
        {
            "text": reply.answer,
            "status": str(reply.outcome),
            "transcript_has_it": bool(reply.answer) and shown in added,
            "error_line": chat.error_area.value,
        }
    )
