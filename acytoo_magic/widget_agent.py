"""The chat widget as an agent front end: steps in the transcript, Run / Skip / Stop by the input.

``ChatWidget`` with its Agent switch on runs ``Assistant.agent`` (the core's episode loop, not a
copy of it) with the view and approval here. Every step shown is HTML from ``untrusted``'s policy,
as the magic draws it (``agent_output``). The approval is bound to the code shown: the page gets
that code rendered with a one-time token, and only a click that sends back the current token
resolves it; the core then runs the very string it asked about. The pending request lives in the
kernel and reaches a view only as a custom message, never as saved widget state: a notebook
reopened without its kernel (or with a new one) has no request to offer, so no button.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import anywidget

from .agent import AgentView, CodeRun, Decision, Episode, Step
from .agent_output import code_html, step_html
from .render import Frame, ThrottledRenderer
from .untrusted import escaped, note_html

_CSS = """
.acytoo-chat .acytoo-approval-ask { border: 1px solid var(--jp-warn-color1, #f57c00); border-radius: 6px;
  padding: 0.3rem 0.7rem; margin: 0.4rem 0; }
.acytoo-chat .acytoo-approval-buttons { display: flex; gap: 0.4rem; margin: 0.3rem 0; }
.acytoo-chat .acytoo-step { margin: 0.2rem 0; }
.acytoo-chat .acytoo-step > summary { cursor: pointer; color: var(--jp-ui-font-color2, #777);
  font-size: 85%; }
.acytoo-chat .acytoo-preview { border: 1px dashed var(--jp-border-color1, #bdbdbd); border-radius: 6px;
  padding: 0 0.7rem; margin: 0.4rem 0; }
.acytoo-chat .acytoo-preview pre { max-height: 20rem; overflow: auto; }
.acytoo-chat .acytoo-agent-switch.mod-active { background: var(--jp-brand-color1, #1976d2); color: white; }
"""


class Approval(anywidget.AnyWidget):
    """The pending ``run_python`` request: its code as the policy renders it, with Run / Skip / Stop.

    Nothing about a request is a synced trait: a view asks for the current one (``ready``) and gets
    it as a custom message, so saved widget state never holds a request or its token.
    """

    _esm = """
    function render({ model, el }) {
      // Buttons exist only while the kernel holds a request: none is drawn for a decided one.
      el.classList.add("acytoo-approval");
      const ask = document.createElement("div");
      ask.className = "acytoo-approval-ask";
      ask.hidden = true;
      el.append(ask);
      const decide = (token, decision) => {
        show({});  // one decision per request: the buttons go at once
        model.send({ event: "decide", token, decision });
      };
      const show = (msg) => {
        const token = msg.token || "";
        el.dataset.state = token ? "asking" : "idle";  // as the kernel last said (absent: not heard yet)
        ask.replaceChildren();
        ask.hidden = !token;
        if (!token) return;
        const code = document.createElement("div");
        code.className = "acytoo-approval-code";
        code.innerHTML = msg.html;  // HTML the kernel rendered through its policy
        const bar = document.createElement("div");
        bar.className = "acytoo-approval-buttons";
        for (const [decision, label, style] of [["run", "Run", "mod-success"], ["skip", "Skip", ""],
                                                ["stop", "Stop", "mod-danger"]]) {
          const button = document.createElement("button");
          button.className = `jupyter-button ${style} acytoo-agent-${decision}`;
          button.textContent = label;
          button.addEventListener("click", () => decide(token, decision));
          bar.append(button);
        }
        ask.append(code, bar);
      };
      const onMessage = (msg) => { if (msg && msg.op === "ask") show(msg); };
      model.on("msg:custom", onMessage);
      model.send({ event: "ready" });
      return () => model.off("msg:custom", onMessage);
    }
    export default { render };
    """
    _css = _CSS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = ""  # the pending request's, "" when none
        self.code = ""
        self._html = ""
        self._future: asyncio.Future[Decision] | None = None
        self._asked: asyncio.Event | None = None
        self.on_msg(self._handle_message)

    def _event(self) -> asyncio.Event:
        if self._asked is None:
            self._asked = asyncio.Event()
        return self._asked

    async def ask(self, code: str) -> Decision:
        """Show ``code`` with Run / Skip / Stop and return the decision clicked for it."""
        caption = "run_python: the model wants to run this code in your notebook"
        self.token, self.code, self._html = secrets.token_urlsafe(16), code, code_html(code, caption)
        self._future = asyncio.get_running_loop().create_future()
        self.send({"op": "ask", "token": self.token, "html": self._html})
        self._event().set()
        try:
            return await self._future
        finally:  # decided, stopped or cancelled: no view keeps a live button for it
            self.token, self.code, self._html, self._future = "", "", "", None
            self._event().clear()
            self.send({"op": "ask", "token": "", "html": ""})

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
            return False  # not one of the three: never a run
        self.token = ""  # decided now: a second click, or ``asking()`` for the next request, waits
        self._event().clear()
        future.set_result(chosen)
        return True

    def _handle_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("event") == "ready":  # a new view: the pending request, if any, once
            self.send({"op": "ask", "token": self.token, "html": self._html})
        elif content.get("event") == "decide":
            self.decide(str(content.get("token", "")), str(content.get("decision", "")))


def steps_html(steps: Sequence[Step]) -> str:
    """A finished episode's steps, compact: one line each (``%acytoo history``'s), the whole step
    (its result, the decided code) one click away."""
    return "".join(
        f'<details class="acytoo-step"><summary><code>{escaped(step.summary())}</code></summary>'
        f"{step_html(step)}</details>"
        for step in steps
    )


def live_step_html(step: Step, run: CodeRun | None = None) -> str:
    """A step as it happens, in full; what the approved code displayed is shown in a cell only."""
    shown = step_html(step)
    if run is not None and run.rich:
        shown += note_html(f"{len(run.rich)} rich output(s) not shown in the chat")
    return f'<div class="acytoo-msg acytoo-assistant acytoo-agent-step">{shown}</div>'


class WidgetAgentView(AgentView):
    """Draws an episode in a chat: streamed model text in its live area, each step as an entry."""

    def __init__(
        self,
        draw: Callable[[Frame], None],
        clear_live: Callable[[], None],
        add: Callable[[str], None],
        interval: float,
        begin: Callable[[], None] = lambda: None,
    ) -> None:
        self._draw, self._clear_live, self._add, self._begin = draw, clear_live, add, begin
        self.interval = interval
        self.renderers: list[ThrottledRenderer] = []
        self.episode: Episode | None = None  # the core's, once it ended

    def renderer(self) -> ThrottledRenderer:
        """A model turn's renderer; ``begin`` tells the chat a new answer starts streaming."""
        self._begin()
        renderer = ThrottledRenderer(self._frame, self.interval)
        self.renderers.append(renderer)
        return renderer

    def _frame(self, frame: Frame) -> None:
        if frame.final and not frame.text:  # a reply of tool calls only: no empty bubble left behind
            self._clear_live()
        else:
            self._draw(frame)

    def show(self, step: Step, run: CodeRun | None = None) -> None:
        self._clear_live()  # model text becomes an entry; a tool's step follows the text that asked
        self._add(live_step_html(step, run))

    def ended(self, episode: Episode) -> None:
        self.episode = episode
