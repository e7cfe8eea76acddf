"""The chat's input: a box with Send, the Agent switch and Preview (``static/chatinput.js``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..core.loops import on_this_loop

STATIC = Path(__file__).parent / "static"


class ChatInput(anywidget.AnyWidget):
    """A multi-line input with its Send button: Enter sends, Shift+Enter starts a new line.

    The text travels in the submit message itself, so what is sent is exactly what is in the box
    (widget state updates may be coalesced and arrive late; a custom message is not).
    """

    _esm = STATIC / "chatinput.js"
    value = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    agent = traitlets.Bool(False, help="agent mode for what is sent (the Agent switch)").tag(sync=True)
    auto_run = traitlets.Bool(False, help="Assistant.agent_auto_run, shown on the switch").tag(sync=True)
    placeholder = traitlets.Unicode("Ask… (Enter sends, Shift+Enter for a new line)").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._submit_handlers: list[Any] = []
        self._focus_handlers: list[Any] = []
        self._preview_handlers: list[Any] = []
        self.on_msg(on_this_loop(self._handle_message))  # messages may come on a subshell's thread

    def on_submit(self, callback: Any) -> None:
        self._submit_handlers.append(callback)

    def on_focus(self, callback: Any) -> None:
        self._focus_handlers.append(callback)

    def on_preview(self, callback: Any) -> None:
        self._preview_handlers.append(callback)

    def _handle_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if isinstance(content.get("agent"), bool):  # the switch as it was when the user clicked
            self.agent = content["agent"]
        if content.get("event") == "preview":
            for callback in self._preview_handlers:
                callback(str(content.get("value", "")))
        if content.get("event") == "submit":
            for callback in self._submit_handlers:
                callback(str(content.get("value", "")))
        elif content.get("event") == "focus":
            for callback in self._focus_handlers:
                callback()
