"""Run / Skip / Stop for one proposed run: the one approval both front ends draw.

The decision is bound to the code shown: each request gets a one-time token that reaches a view
only as a custom message (never as saved widget state, so a reopened notebook has no live button),
and only a click sending back the current token resolves it; the core then runs the very string it
asked about. In the page, a new proposal's buttons wait ``ARM_SECONDS`` before they take a click
and the proposal is marked new meanwhile: a double click, or a habitual second click, meant for
the last proposal cannot approve the next one (the second click of a double click comes 120-250 ms
after the first here, and desktop double-click intervals default to 400-500 ms).

Every view tells the kernel when it goes (its cell re-run, its output cleared): when the last view
of a pending request is gone, nobody can click any more, and the request ends ``Decision.GONE``.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..core.agent import Decision
from ..core.loops import on_this_loop

ARM_SECONDS = 0.5
WAITING = "waiting for your click: Run, Skip or Stop"


STATIC = Path(__file__).parent / "static"


class Approval(anywidget.AnyWidget):
    """A pending ``run_python`` request with Run / Skip / Stop (and, in the chat, its code).

    Nothing about a request is a synced trait: a view asks for the current one (``ready``) and gets
    it as a custom message, so saved widget state never holds a request or its token.
    """

    _esm = STATIC / "approval.js"
    _css = STATIC / "approval.css"
    arm_ms = traitlets.Int(help="how long a new proposal's buttons wait for a click").tag(sync=True)

    @traitlets.default("arm_ms")
    def _default_arm_ms(self) -> int:
        return int(ARM_SECONDS * 1000)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = ""  # the pending request's, "" when none
        self.code = ""
        self._html = ""
        self._future: asyncio.Future[Decision] | None = None
        self._asked: asyncio.Event | None = None
        self.views = 0  # views showing this widget now, as they said
        self.on_msg(on_this_loop(self._handle_message))  # a click may come on a subshell's thread

    def _event(self) -> asyncio.Event:
        if self._asked is None:
            self._asked = asyncio.Event()
        return self._asked

    def _message(self) -> dict[str, str]:
        waiting = WAITING if self.token else ""
        return {"op": "ask", "token": self.token, "html": self._html, "waiting": waiting}

    async def ask(self, code: str, html: str = "") -> Decision:
        """Offer Run / Skip / Stop for ``code`` (shown as ``html``, if given) and return the decision."""
        self.token, self.code, self._html = secrets.token_urlsafe(16), code, html
        self._future = asyncio.get_running_loop().create_future()
        self.send(self._message())
        self._event().set()
        try:
            return await self._future
        finally:  # decided, stopped or cancelled: no view keeps a live button for it
            self.token, self.code, self._html, self._future = "", "", "", None
            self._event().clear()
            self.send(self._message())

    async def asking(self) -> str:
        """Wait until a request is pending; its code (what a test or a script waits on)."""
        await self._event().wait()
        return self.code

    def decide(self, token: str, decision: str) -> bool:
        """A click: resolves the pending request if ``token`` is its own; anything else is ignored."""
        future = self._future
        if not token or token != self.token or future is None or future.done():
            return False  # a stale view, a second click, a request already decided
        try:
            chosen = Decision(decision)
        except ValueError:
            return False  # not one of the decisions: never a run
        if chosen is Decision.GONE:
            return False  # only the views' own coming and going says that
        self._settle(chosen)
        return True

    def _settle(self, decision: Decision) -> None:
        self.token = ""  # decided now: a second click, or ``asking()`` for the next request, waits
        self._event().clear()
        if self._future is not None and not self._future.done():
            self._future.set_result(decision)

    def _handle_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        event = content.get("event")
        if event == "ready":  # a new view: the pending request, if any, once
            self.views += 1
            self.send(self._message())
        elif event == "gone":
            self.views = max(0, self.views - 1)
            if self.views == 0 and self.token:  # no view left that could be clicked
                self._settle(Decision.GONE)
        elif event == "decide":
            self.decide(str(content.get("token", "")), str(content.get("decision", "")))


def someone_can_click(shell: Any) -> bool:
    """Whether a person is at the frontend that ran this cell: it accepts input (``allow_stdin``).

    JupyterLab, Notebook 7 and VS Code send ``allow_stdin: true``; nbclient and papermill send
    false, and there a proposed run is refused (unless the user opted in to running unasked).
    """
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return sys.stdin is not None and sys.stdin.isatty()
    try:
        parent = kernel.get_parent() or {}
    except Exception:  # an older kernel without per-request parents
        return False
    return bool(parent.get("content", {}).get("allow_stdin", False))
