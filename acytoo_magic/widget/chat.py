"""ChatWidget: the same streaming answers as ``%%acytoo``, in a chat with a Stop button.

A thin front end: sending schedules ``Assistant.ask`` as a task on the kernel's running loop and
returns at once, so other cells run while the answer streams; the throttling is the core's
``ThrottledRenderer``, the history the magic's own store and thread.

The transcript is a box that scrolls inside itself under a fixed input, and follows the newest
message unless the user scrolled up. The kernel renders every message through the one policy
(``untrusted``) and sends the page only what changed: a splice of rendered messages, or the
streaming answer's newest frame; the page inserts that HTML and builds none from text. History is
read off the event loop, newest messages first ("show earlier" loads more). Displaying the widget
also saves a static copy of the transcript, shown when the notebook is reopened without its kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets

from ..core.agent import Episode, episode_steps
from ..core.assistant import Assistant, shared_assistant
from ..core.errors import AcytooError, ContextError, ProviderNotFound
from ..core.frames import Frame
from ..core.history.store import Message, stored_episode
from ..core.loops import on_this_loop
from ..core.outbound import printable, redact
from ..core.outcome import FAILED, label
from ..core.request import Preview, Reply, Request
from ..present.approval import Approval
from ..present.steps import preview_html
from ..present.throttle import ThrottledRenderer
from ..present.untrusted import MarkdownStream, escaped, render_markdown, with_cursor
from .agent_view import AGENT_CSS, WidgetAgentView, steps_html

WINDOW = 40  # messages shown when the widget opens (20 exchanges); "show earlier" adds as many
STATIC_MESSAGES = 40  # messages in the copy saved with the notebook

_CSS = """
.acytoo-chat { max-width: 52rem; font-size: var(--jp-content-font-size1, 14px); }
.acytoo-chat .acytoo-transcript-view { position: relative; width: 100%; }
.acytoo-chat .acytoo-scroll { max-height: min(32rem, 70vh); overflow-y: auto; overscroll-behavior: contain;
  border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 6px; padding: 0 0.5rem; }
.acytoo-chat .acytoo-scroll:focus-visible { outline: 1px solid var(--jp-brand-color1, #1976d2); }
.acytoo-chat .acytoo-msg { padding: 0.35rem 0.7rem; margin: 0.4rem 0; border-radius: 6px; overflow-x: auto; }
.acytoo-chat .acytoo-user { background: var(--jp-layout-color2, #eef1f5); }
.acytoo-chat .acytoo-typed { white-space: pre-wrap; }
.acytoo-chat .acytoo-assistant { border-left: 3px solid var(--jp-brand-color1, #1976d2); }
.acytoo-chat .acytoo-cell { border-left: 3px dashed var(--jp-border-color1, #bdbdbd); }
.acytoo-chat .acytoo-user.acytoo-cell { border-left-style: dashed; }
.acytoo-chat .acytoo-mark { color: var(--jp-ui-font-color2, #777); font-size: 80%; }
.acytoo-chat .acytoo-note, .acytoo-chat .acytoo-footer { color: var(--jp-ui-font-color2, #777);
  font-size: 85%; }
.acytoo-chat .acytoo-note { font-style: italic; }
.acytoo-chat .acytoo-footer { margin: 0 0 0.4rem 0.2rem; }
.acytoo-chat .acytoo-error { color: var(--jp-error-color1, #d32f2f); }
.acytoo-chat .acytoo-msg a { color: var(--jp-content-link-color, #1976d2); text-decoration: underline; }
.acytoo-chat .acytoo-context summary { cursor: pointer; color: var(--jp-ui-font-color2, #777); font-size: 85%;
  list-style: none; }
.acytoo-chat .acytoo-context summary::-webkit-details-marker { display: none; }
.acytoo-chat .acytoo-context summary span { text-decoration: underline; }
.acytoo-chat .acytoo-context pre { max-height: 16rem; overflow: auto; font-size: 85%; }
.acytoo-chat .acytoo-waiting::before { content: ""; display: inline-block; width: 0.7em; height: 0.7em;
  margin-right: 0.4em; border: 2px solid currentColor; border-right-color: transparent; border-radius: 50%;
  animation: acytoo-spin 0.9s linear infinite; vertical-align: -0.1em; }
@keyframes acytoo-spin { to { transform: rotate(360deg); } }
.acytoo-chat pre { background: var(--jp-layout-color2, #f5f5f5); padding: 0.5rem; overflow-x: auto; }
.acytoo-chat table { border-collapse: collapse; margin: 0.5rem 0; }
.acytoo-chat th, .acytoo-chat td { border: 1px solid var(--jp-border-color2, #ddd); padding: 0.2rem 0.6rem;
  text-align: left; }
.acytoo-chat th { background: var(--jp-layout-color2, #f5f5f5); }
.acytoo-chat .acytoo-live-tail, .acytoo-chat .acytoo-live-note { display: contents; }
.acytoo-chat [hidden] { display: none !important; }  /* .jupyter-button sets a display */
.acytoo-chat .acytoo-earlier { display: block; margin: 0.4rem auto 0; }
.acytoo-chat .acytoo-jump { position: absolute; right: 1.2rem; bottom: 0.6rem; opacity: 0.9; }
.acytoo-chat .acytoo-entry { display: flex; gap: 0.4rem; align-items: flex-start; width: 100%; }
.acytoo-chat textarea.acytoo-input { flex: 1; min-height: 4.5em; box-sizing: border-box;
  font: inherit; padding: 0.4rem; resize: vertical; }
.acytoo-chat .acytoo-send { width: 6rem; }
.acytoo-chat .acytoo-entry-side { display: flex; flex-direction: column; gap: 0.2rem; }
.acytoo-chat .acytoo-entry-side button { width: 6rem; }
/* The saved copy is for a notebook reopened without its kernel: hidden while the chat is live. */
.jp-OutputArea:has(.acytoo-chat) > .jp-OutputArea-child:has(.acytoo-chat-static) { display: none; }
"""

# A collapsed context says "show", an open one "hide".
_CSS += """
.acytoo-context .acytoo-hide, .acytoo-context[open] .acytoo-show { display: none; }
.acytoo-context[open] .acytoo-hide { display: inline; }
"""
_CSS += AGENT_CSS
# The copy saved with the notebook is read where none of the CSS above applies: a notebook reopened
# without its kernel, an untrusted one (the sanitizer drops <style> but keeps elements and inline
# styles it allows), nbconvert's HTML and Markdown, GitHub (no styles at all). So who said what is
# in the elements (a labelled blockquote for the user, a labelled div for the answer), the look in
# inline styles JupyterLab's sanitizer keeps (no var(), no vh), and the copy is one HTML block.
_STATIC_BOX = (  # as tall as the live transcript; column-reverse opens it scrolled to the newest message
    "max-height:32rem;overflow-y:auto;display:flex;flex-direction:column-reverse;"
    "border:1px solid rgba(127,127,127,0.35);border-radius:6px;padding:0 0.6rem"
)
_STATIC_MESSAGE = {
    "user": ("You", "margin:0.5rem 0;padding:0.3rem 0.7rem;border:none;border-radius:6px;"
             "background-color:rgba(127,127,127,0.12)"),
    "assistant": ("Assistant", "margin:0.5rem 0;padding:0.1rem 0.7rem;"
                  "border-left:3px solid rgba(25,118,210,0.85)"),
}
_STATIC_SMALL = "margin:0.2rem 0;font-size:85%;opacity:0.75"
_STATIC_OPENING = re.compile(r'<div class="acytoo-msg acytoo-(user|assistant)([^"<>]*)">')
_STATIC_TYPED = re.compile(r'<div class="acytoo-typed">([^<]*)</div>')
_STATIC_TOGGLE = ' · <span class="acytoo-show">show</span><span class="acytoo-hide">hide</span>'
# Shown with the saved copy only, in one line: hide ipywidgets' "Error displaying widget: model not
# found" in the next output (the dead widget the copy stands for), and print the copy whole. Fixed
# text, nothing from a reply.
_STATIC_STYLE = (
    "<style>.jp-OutputArea-child:has(.acytoo-chat-static) + .jp-OutputArea-child"
    " > .jp-OutputArea-output.jupyter-widgets:not(:has(*)) { display: none; }"
    " @media print { .acytoo-chat-static .acytoo-static-box { max-height: none !important;"
    " overflow: visible !important; display: block !important; } }</style>"
)


def static_entry(entry: str) -> str:
    """A transcript entry as the saved copy shows it: labelled, styled inline, readable without CSS.

    Works on the entry's own markup (the policy's HTML: a reply's ``<`` is always ``&lt;`` in it),
    so the copy shows exactly what the chat showed.
    """
    match = _STATIC_OPENING.match(entry)
    if match is None or not entry.endswith("</div>"):
        return entry
    role = match.group(1)
    who, style = _STATIC_MESSAGE[role]
    tag = "blockquote" if role == "user" else "div"
    body = entry[match.end() : -len("</div>")]
    # typed text keeps its lines with or without CSS (pre-wrap, and <br> for viewers that drop styles)
    body = _STATIC_TYPED.sub(
        lambda m: '<div class="acytoo-typed" style="white-space:pre-wrap">'
        + m.group(1).replace("\n", "<br>")
        + "</div>",
        body,
    )
    body = body.replace(_STATIC_TOGGLE, "")  # "show"/"hide" need the live CSS; the details marker says it
    for small in ("acytoo-note", "acytoo-mark"):  # "interrupted", "from cell [3]": small print
        body = body.replace(f'<div class="{small}">', f'<div class="{small}" style="{_STATIC_SMALL}">')
    label = f'<p style="{_STATIC_SMALL}"><strong>{who}</strong></p>'
    return f'<{tag} class="acytoo-msg acytoo-{role}{match.group(2)}" style="{style}">{label}{body}</{tag}>'


def message_html(role: str, text: str, note: str = "", streaming: bool = False, head: str = "") -> str:
    """One message as HTML: the user's words as typed (escaped), an answer as rendered Markdown.

    Both go through the policy in ``untrusted`` that the magic uses: the answer is untrusted text.
    A streaming answer gets its cursor after rendering, never inside the Markdown.
    """
    if role == "user":
        body = f'<div class="acytoo-typed">{escaped(text)}</div>'
    else:
        body = render_markdown(text) if text else ""
        body = with_cursor(body) if streaming else body
    return _bubble(role, body, note, head)


def _bubble(role: str, body: str, note: str, head: str = "") -> str:
    return f'<div class="acytoo-msg acytoo-{role}">{head}{body}{_note_html(note)}</div>'


def _lines_html(text: str) -> str:
    """The status line (and what was masked) under the last answer, a ``div`` a line."""
    return "".join(f"<div>{escaped(line)}</div>" for line in text.splitlines())


def _note_html(note: str) -> str:
    return f'<div class="acytoo-note">{escaped(note)}</div>' if note else ""


def entry_html(message: Message) -> str:
    """A stored message as a transcript entry: ``message_html``, plus what the store knows.

    The user's bubble shows what they typed; context a ``{name}`` attached shows collapsed, its
    expansion one click away. An exchange that came from a notebook cell is marked so.
    """
    if message.role == "user" and isinstance(message.meta.get("typed"), str):
        html = f'<div class="acytoo-msg acytoo-user">{_typed_html(message.content, message.meta)}</div>'
    else:
        note = label(message.status) if message.role == "assistant" else ""
        steps = episode_steps(message.meta) if message.role == "assistant" else []
        html = message_html(message.role, message.content, note, head=steps_html(steps))
    if message.cell is None:
        return html
    count = message.meta.get("execution_count")
    where = f"cell [{count}]" if isinstance(count, int) else "a cell"
    mark = f'<div class="acytoo-mark">from {where}</div>' if message.role == "user" else ""
    opening = f'<div class="acytoo-msg acytoo-{message.role}">'
    return f'<div class="acytoo-msg acytoo-{message.role} acytoo-cell">{mark}' + html[len(opening) :]


def _typed_html(prompt: str, meta: dict[str, Any]) -> str:
    typed = str(meta["typed"])
    labels = meta.get("context") or []
    shown = "; ".join(str(item) for item in labels) or "expanded prompt"
    return (
        f'<div class="acytoo-typed">{escaped(typed)}</div>'
        f'<details class="acytoo-context"><summary>context: {escaped(shown)} · '
        '<span class="acytoo-show">show</span><span class="acytoo-hide">hide</span></summary>'
        f"<pre>{escaped(prompt)}</pre></details>"
    )


def live_html(frame: Frame) -> str:
    """A frame as one HTML string: the waiting line, or the whole text so far with its cursor.

    The widget draws the waiting line with it; a streaming answer goes by blocks (``LiveAnswer``).
    Rendering the whole answer per frame is what the widget did before (the benchmark's baseline).
    """
    if frame.waiting:
        return f'<div class="acytoo-note acytoo-waiting">{escaped(frame.note)}</div>'
    return message_html("assistant", frame.text, frame.note, streaming=not frame.final)


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
        self.note = _note_html(frame.note)
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
        self.entry_note = _note_html(note)
        self.entry = _bubble("assistant", "".join(self.blocks) + self.tail, note)
        return self.entry


class Transcript(anywidget.AnyWidget):
    """The scrolling transcript: messages, the streaming answer, and the last answer's status line.

    The state lives here, in the kernel; the page receives only changes as custom messages (a
    splice of rendered entries, the live frame, the footer), and a view that appears (a reload, a
    second view) asks for everything once. Every string sent is HTML produced by ``untrusted``.
    """

    _esm = """
    function render({ model, el }) {
      el.classList.add("acytoo-transcript-view");
      const part = (tag, css) => {
        const node = document.createElement(tag);
        node.className = css;
        return node;
      };
      const box = part("div", "acytoo-scroll");
      box.tabIndex = 0;  // scrolls with the keyboard too
      const earlier = part("button", "jupyter-button acytoo-earlier");
      earlier.textContent = "show earlier messages";
      const transcript = part("div", "acytoo-transcript");
      transcript.setAttribute("role", "log");
      const messages = part("div", "acytoo-messages");
      const footer = part("div", "acytoo-footer");
      const live = part("div", "acytoo-live");
      const jump = part("button", "jupyter-button acytoo-jump");
      jump.textContent = "↓ newest";
      transcript.append(messages, footer);
      box.append(earlier, transcript, live);
      el.append(box, jump);

      // Pinned to the bottom until the user scrolls up (wheel, keys, the scrollbar), pinned again
      // once they scroll back down to it. Only the user's input changes it: content growing,
      // layout and our own scrolling never do.
      let pinned = true;
      let dragging = false;
      let down = false;  // the user is scrolling down: reaching the bottom pins the view again
      const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight <= 2;
      const showJump = () => { jump.hidden = pinned || atBottom(); };
      const follow = () => {
        if (pinned) box.scrollTop = box.scrollHeight;
        showJump();
      };
      const user = (up) => { if (up) { pinned = false; down = false; } else down = true; showJump(); };
      box.addEventListener("scroll", () => {
        if (dragging && !atBottom()) pinned = false;
        else if ((dragging || down) && atBottom()) { pinned = true; down = false; }
        showJump();
      });
      box.addEventListener("wheel", (event) => { if (event.deltaY) user(event.deltaY < 0); });
      const keys = { ArrowUp: true, PageUp: true, Home: true, ArrowDown: false, PageDown: false, End: false };
      box.addEventListener("keydown", (event) => { if (event.key in keys) user(keys[event.key]); });
      box.addEventListener("pointerdown", (event) => { dragging = event.target === box; });  // its scrollbar
      const drop = () => { dragging = false; };
      box.addEventListener("pointerup", drop);
      box.addEventListener("pointercancel", drop);
      jump.addEventListener("click", () => { pinned = true; follow(); });
      const resized = new ResizeObserver(follow);  // late layout: fonts, a details opened, typesetting
      resized.observe(transcript);
      resized.observe(live);
      resized.observe(box);

      // Every string below is HTML the kernel rendered through its escaping policy.
      const entry = (html) => {
        const node = part("div", "acytoo-item");
        node.innerHTML = html;
        return node;
      };
      // The streaming answer: finished blocks are appended once and never parsed again; the tail
      // and the note are replaced per frame. When it ends, its node becomes the transcript entry
      // (the kernel sends null in its place) instead of the whole answer being parsed again.
      const holder = (name) => live.querySelector(`:scope > .acytoo-assistant > .acytoo-live-${name}`);
      const grow = (msg) => {
        const tail = holder("tail");
        const note = holder("note");
        if (!tail || !note) return;  // a view still waiting for its reset, which brings it all
        if (msg.blocks) tail.insertAdjacentHTML("beforebegin", msg.blocks);
        tail.innerHTML = msg.tail;
        note.innerHTML = msg.note;
      };
      const settled = (noteHtml) => {
        const node = part("div", "acytoo-item");
        const answer = live.querySelector(":scope > .acytoo-assistant");
        const tail = holder("tail");
        const note = holder("note");
        if (!answer || !tail || !note) return node;  // as above: the reset follows
        tail.replaceWith(...tail.childNodes);
        note.innerHTML = noteHtml;
        note.replaceWith(...note.childNodes);
        node.append(answer);
        return node;
      };
      const apply = {
        reset: (msg) => { messages.replaceChildren(...msg.entries.map(entry)); },
        splice: (msg) => {
          const anchor = messages.children[msg.start + msg.remove] || null;
          for (let i = 0; i < msg.remove; i++) messages.children[msg.start].remove();
          for (const html of msg.entries) {
            messages.insertBefore(html === null ? settled(msg.adopt) : entry(html), anchor);
          }
        },
        live: (msg) => { live.innerHTML = msg.html; },
        grow,
        footer: (msg) => { footer.innerHTML = msg.html; },
      };
      const onMessage = (msg) => {
        const change = apply[msg && msg.op];
        if (!change) return;
        const height = box.scrollHeight;
        change(msg);
        if (msg.op === "splice" && msg.earlier) {
          box.scrollTop += box.scrollHeight - height;  // older messages above: the view stays put
        }
        if ("live" in msg) live.innerHTML = msg.live;
        if ("footer" in msg) footer.innerHTML = msg.footer;
        follow();
      };
      model.on("msg:custom", onMessage);
      const showMore = () => { earlier.hidden = !model.get("more"); };
      model.on("change:more", showMore);
      showMore();
      earlier.addEventListener("click", () => { pinned = false; model.send({ event: "earlier" }); });
      box.addEventListener("focusin", () => model.send({ event: "focus" }));
      model.send({ event: "ready" });
      return () => {
        resized.disconnect();
        model.off("msg:custom", onMessage);
        model.off("change:more", showMore);
      };
    }
    export default { render };
    """
    _css = _CSS
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


class ChatInput(anywidget.AnyWidget):
    """A multi-line input with its Send button: Enter sends, Shift+Enter starts a new line.

    The text travels in the submit message itself, so what is sent is exactly what is in the box
    (widget state updates may be coalesced and arrive late; a custom message is not).
    """

    _esm = """
    function render({ model, el }) {
      el.classList.add("acytoo-entry");
      const area = document.createElement("textarea");
      area.className = "acytoo-input";
      area.placeholder = model.get("placeholder");
      area.value = model.get("value");
      const send = document.createElement("button");
      send.className = "jupyter-button mod-primary acytoo-send";
      send.textContent = "Send";
      send.title = "Send (Enter)";
      const submit = () => {
        const value = area.value;
        if (!value.trim()) return;
        if (!model.get("busy")) {  // busy: the text stays in the box and the kernel says why
          area.value = "";
          model.set("value", "");
          model.save_changes();
        }
        model.send({ event: "submit", value, agent: model.get("agent") });
      };
      send.addEventListener("click", submit);
      // Agent mode: a switch whose state shows (pressed, highlighted) and travels with the submit.
      const agent = document.createElement("button");
      agent.className = "jupyter-button acytoo-agent-switch";
      const showAgent = () => {
        const on = model.get("agent");
        const unasked = model.get("auto_run");  // Assistant.agent_auto_run: said, never silent
        agent.textContent = on ? (unasked ? "Agent: runs without asking" : "Agent: on") : "Agent: off";
        agent.title = "Agent mode: the model may look at your variables and propose code; " + (unasked
          ? "Assistant.agent_auto_run is on: its code runs WITHOUT asking"
          : "code runs only when you click Run");
        agent.classList.toggle("mod-active", on);
        agent.classList.toggle("acytoo-auto-run", on && unasked);
        agent.setAttribute("aria-pressed", on ? "true" : "false");
      };
      agent.addEventListener("click", () => {
        model.set("agent", !model.get("agent"));
        model.save_changes();
      });
      model.on("change:agent", showAgent);
      model.on("change:auto_run", showAgent);
      showAgent();
      // What would be sent for the text in the box, sent nowhere; the text stays in the box.
      const preview = document.createElement("button");
      preview.className = "jupyter-button acytoo-preview-button";
      preview.textContent = "Preview";
      preview.title = "Show exactly the messages that would be sent, their size and tokens; nothing is sent";
      preview.addEventListener("click", () => {
        model.send({ event: "preview", value: area.value, agent: model.get("agent") });
      });
      area.addEventListener("focus", () => model.send({ event: "focus" }));
      area.addEventListener("input", () => { model.set("value", area.value); model.save_changes(); });
      // No key typed here reaches the notebook's shortcuts. Lumino's command registry skips an
      // event whose target carries data-lm-suppress-shortcuts (as JupyterLab's own shortcut
      // editor does): Notebook 7 reads keys on the document in the capture phase, before this box
      // sees them, so stopping the event here alone let Shift+Enter run the cell. Stopping it
      // still keeps it from the listeners that come after (JupyterLab reads keys in the bubble
      // phase; the notebook's own handlers; a host such as VS Code that forwards keys).
      area.setAttribute("data-lm-suppress-shortcuts", "true");
      area.addEventListener("keydown", (event) => {
        event.stopPropagation();
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          submit();
        }
      });
      const showBusy = () => { send.disabled = model.get("busy"); };
      model.on("change:busy", showBusy);
      showBusy();
      model.on("change:value", () => {
        if (area.value !== model.get("value")) area.value = model.get("value");
      });
      const side = document.createElement("div");
      side.className = "acytoo-entry-side";
      side.append(send, agent, preview);
      el.append(area, side);
    }
    export default { render };
    """
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


# Open chats, refreshed after a cell that used the magic ran (its exchange may be on their thread).
_open: weakref.WeakSet[ChatWidget] = weakref.WeakSet()
_watched_shells: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_cell(result: Any) -> None:
    source = getattr(getattr(result, "info", None), "raw_cell", "") or ""
    if "acytoo" in source:
        for chat in list(_open):
            chat.refresh()


class ChatWidget(widgets.VBox):
    """A chat bound to one thread of this notebook's history, streaming like ``%%acytoo``."""

    def __init__(
        self, thread: str = "default", assistant: Assistant | None = None, window: int = WINDOW, **kwargs: Any
    ) -> None:
        self.assistant = assistant or _kernel_assistant()
        self.thread = thread
        self.window = max(2, window)
        self._task: asyncio.Task[Any] | None = None  # an answer's (a Reply) or an episode's (an Episode)
        self._reads: asyncio.Task[None] | None = None
        self._read_lock: asyncio.Lock | None = None
        self.last_reply: Reply | None = None
        self.renderer: ThrottledRenderer | None = None
        self._answer = LiveAnswer()  # the answer streaming now (or the last one)
        self._stored: list[Message] = []  # the thread's newest messages, as read from the store
        self._local: list[Message] = []  # this widget's exchange until the store has it
        self._own_answer: str = ""  # the entry the footer (status line) belongs to
        self._footer = ""
        self._html: dict[str, str] = {}  # rendered entries by message key: a refresh renders only what is new
        self._static_ids: list[str] = []
        # The saved copy is re-sent whole (and re-rendered by the page, hidden or not) when it
        # changes: during an exchange (the question, each agent step, the answer) only once, at its end.
        self._static_held = False
        self._static_dirty = False
        self._steps: list[str] = []  # the running episode's steps, as entries after its question
        self.last_episode: Episode | None = None
        self.last_preview: Preview | None = None

        self.transcript = Transcript()
        self.approval = Approval()  # a run_python request waiting for Run / Skip / Stop
        self.preview_area = widgets.HTML()
        self.status = widgets.HTML()
        self.input = ChatInput(layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.stop_button = widgets.Button(
            description="Stop", icon="stop", disabled=True, layout=widgets.Layout(width="6rem")
        )
        self.thread_picker = widgets.Combobox(
            value=thread,
            options=[thread],
            description="thread",
            ensure_option=False,
            continuous_update=False,
            layout=widgets.Layout(width="16rem"),
        )
        self.indicator = widgets.HTML()
        self._update_indicator()
        # %config shows at once; held weakly: the shared Assistant must not keep a closed-over chat alive
        self._auto_run_changed = _weak_observer(self, "_show_auto_run")
        self.assistant.observe(self._auto_run_changed, names="agent_auto_run")

        self.stop_button.on_click(on_this_loop(lambda _button: self.stop()))
        self.input.on_submit(self._submitted)
        self.input.on_preview(self.preview)
        self.input.on_focus(self.refresh)
        self.transcript.on_event(self._transcript_event)
        self.thread_picker.observe(on_this_loop(self._thread_changed), names="value")

        header = widgets.HBox([self.thread_picker, self.indicator])
        entry = widgets.HBox([self.input, self.stop_button], layout=widgets.Layout(width="100%"))
        parts = [header, self.transcript, self.approval, self.preview_area, self.status, entry]
        super().__init__(parts, **kwargs)
        self.add_class("acytoo-chat")
        self.status.add_class("acytoo-status")
        _open.add(self)
        self._watch_cells()
        self.refresh(threads=True)

    # -- what is shown -------------------------------------------------------------------------
    @property
    def agent(self) -> bool:
        """Agent mode (the switch by the input): a message sent runs an episode (``Assistant.agent``)."""
        return self.input.agent

    @agent.setter
    def agent(self, on: bool) -> None:
        self.input.agent = bool(on)

    @property
    def streaming(self) -> bool:
        return self._task is not None and not self._task.done()

    def _watch_cells(self) -> None:
        shell = getattr(self.assistant, "shell", None)
        events = getattr(shell, "events", None)
        if events is not None and shell not in _watched_shells:
            events.register("post_run_cell", _after_cell)
            _watched_shells.add(shell)

    def _update_indicator(self, request: Any = None) -> None:
        """Provider and model in force: from the request being sent, else from the settings."""
        if request is not None:
            name, model = request.provider_label, request.model
        else:
            name, model = self.assistant.in_force()
        self.indicator.value = f'<span class="acytoo-note">{escaped(name)} · {escaped(model)}</span>'
        self.input.auto_run = bool(self.assistant.agent_auto_run)

    def _thread_changed(self, change: dict[str, Any]) -> None:
        new = (change["new"] or "").strip()
        if not new or new == self.thread:
            return
        if self.streaming:
            self.thread_picker.value = self.thread
            self._show_status("finish or stop the current answer before switching threads")
            return
        self.thread = new
        self._stored, self._local, self._own_answer = [], [], ""
        self._show()
        self.refresh()

    def _transcript_event(self, event: str) -> None:
        if event == "earlier":
            self._schedule(self._read(earlier=True))
        elif event == "focus":
            self.refresh()

    def refresh(self, threads: bool = False) -> asyncio.Task[None] | None:
        """Show what the thread holds now: a cell's answer on it, another widget's. Read off the loop."""
        return self._schedule(self._read(threads=threads))

    def _schedule(self, read: Any) -> asyncio.Task[None] | None:
        """Run a history read as a task on the kernel's loop (in a script without one: now)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(read)
            return None
        task = loop.create_task(read)
        self._reads = task
        return task

    async def _read(self, earlier: bool = False, threads: bool = False, drop_local: bool = False) -> None:
        if self._read_lock is None:
            self._read_lock = asyncio.Lock()
        async with self._read_lock:  # one read at a time: each starts from what the last one showed
            thread, stored = self.thread, list(self._stored)
            before = stored[0].id if earlier and stored else None
            # A refresh reads what is shown plus room for as many new messages, and keeps what is
            # shown: the page then gets only what changed (a sliding window would re-send it all).
            count = self.window if earlier or not stored else len(stored) + self.window
            try:
                found, names = await asyncio.to_thread(self._load, thread, count + 1, before, threads)
            except Exception as exc:  # a locked or broken file: said, and the chat still works
                self._show_status(f"acytoo: history: {redact(str(exc))}", error=True)
                return
            if thread != self.thread:
                return  # the thread was switched meanwhile: that read shows it
            oldest = stored[0].id if stored and not earlier else None
            if oldest is not None and any(m.id == oldest for m in found):
                found, more = [m for m in found if m.id is not None and m.id >= oldest], self.transcript.more
            else:  # the first read, "show earlier", or the shown messages are gone (a reset)
                limit = self.window
                more, found = len(found) > limit, found[-limit:]
            while found and found[0].role != "user":  # start with a whole exchange
                found = found[1:]
            self._stored = found + stored if earlier else found
            if drop_local:
                self._local = []
            if names is not None:
                self.thread_picker.options = names if thread in names else [thread, *names]
            self.transcript.more = more
            await asyncio.to_thread(self._render, self._stored)
            self._show(earlier=earlier)

    def _load(
        self, thread: str, limit: int, before: int | None, threads: bool
    ) -> tuple[list[Message], list[str] | None]:
        """In a worker thread: the store may wait for another process's lock, or create the file."""
        messages = self.assistant.conversation(thread).messages(limit=limit, before=before)
        names = None
        if threads:
            names = [name for name, _count, _last in self.assistant.store.threads(self.assistant.notebook)]
        return messages, names

    def _render(self, messages: Sequence[Message]) -> None:
        """Render what is not cached yet (in a worker thread: Markdown costs time for long answers)."""
        for message in messages:
            key = _key(message)
            if key not in self._html:
                self._html[key] = entry_html(message)

    def _entries(self, messages: Sequence[Message]) -> list[str]:
        self._render(messages)
        return [self._html[_key(m)] for m in messages]

    def _show(self, earlier: bool = False) -> None:
        entries = self._entries([*self._stored, *self._local]) + self._steps
        own = bool(entries) and bool(self._own_answer) and entries[-1] == self._own_answer
        if self.transcript.show(entries, self._footer if own else "", earlier=earlier):
            if self._static_held:  # an exchange is under way: the saved copy follows once it ends
                self._static_dirty = True
            else:
                self._update_static()
        if len(self._html) > 2 * len(entries) + 100:  # forget what is no longer shown
            shown = {_key(m) for m in (*self._stored, *self._local)}
            self._html = {key: html for key, html in self._html.items() if key in shown}

    def _show_status(self, text: str, error: bool = False) -> None:
        self.status.value = _status_html(text, error)

    def _set_busy(self, busy: bool) -> None:
        self.input.busy = busy
        self.stop_button.disabled = not busy
        if not busy and self.status.value == _status_html(_HELD):  # what it waited for has ended
            self._show_status(_SENDABLE)

    # -- the copy saved with the notebook ------------------------------------------------------
    def _ipython_display_(self, **kwargs: Any) -> None:
        """Show the chat, preceded by a static copy of its transcript that the notebook keeps.

        A widget needs its kernel: reopened with a new one, JupyterLab shows "model not found"
        where the chat was. The copy (the newest messages, as rendered by the policy) is what
        shows then; while the chat is live, its CSS hides the copy.
        """
        from IPython.display import display

        display_id = uuid.uuid4().hex
        self._static_ids.append(display_id)
        display(self._static_bundle(), raw=True, display_id=display_id)
        display(self._repr_mimebundle_(**kwargs), raw=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # No text of its own: the saved copy before it says what this was and how to reopen it, and
        # where the widget cannot show (nbconvert, a terminal), a second hint would be a repeat.
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = ""
        return bundle

    def _reopen_command(self) -> str:
        return "%acytoo chat" + (f" -c {shlex.quote(self.thread)}" if self.thread != "default" else "")

    def _reopen_hint(self) -> str:
        """How to continue the chat, in a new kernel too: the magic exists once the extension is loaded;
        in a new cell, so that the copy stays."""
        return (
            f"chat on thread {printable(self.thread)}, saved with the notebook; to continue it, run"
            f" `%load_ext acytoo_magic` then `{self._reopen_command()}` in a new cell"
        )

    def _static_bundle(self) -> dict[str, str]:
        entries = self.transcript.entries[-STATIC_MESSAGES:]
        older = len(self.transcript.entries) > len(entries) or self.transcript.more
        head = (
            f'<p class="acytoo-note"><em>Chat on thread “{escaped(self.thread)}”, saved with the notebook'
            f'{" (the newest messages)" if older else ""}. To continue it, run'
            f" <code>%load_ext acytoo_magic</code> then <code>{escaped(self._reopen_command())}</code>"
            " in a new cell.</em></p>"
        )
        footer = self.transcript.footer  # the last answer's status line, as the chat showed it
        footer = f'<div class="acytoo-footer" style="{_STATIC_SMALL}">{footer}</div>' if footer else ""
        box = "".join(static_entry(entry) for entry in entries) + footer
        html = (
            f'<div class="acytoo-chat-static">{head}'
            f'<div class="acytoo-static-box" style="{_STATIC_BOX}"><div>{box}</div></div></div>'
            f"{_STATIC_STYLE}"  # after the copy, not in it: nothing in the copy is anything but text
        )
        return {"text/html": html, "text/plain": self._reopen_hint()}

    def _update_static(self) -> None:
        if not self._static_ids:
            return
        from IPython.display import update_display

        bundle = self._static_bundle()
        for display_id in self._static_ids:
            update_display(bundle, raw=True, display_id=display_id)

    # -- actions ---------------------------------------------------------------------------
    def send(self, text: str, agent: bool | None = None) -> asyncio.Task[Any] | None:
        """Start streaming an answer to ``text`` and return at once (the task, for ``await``).

        ``agent`` (default: the Agent switch) runs an episode instead. Called from a cell, Run /
        Skip / Stop are offered only where a person ran that cell (``allow_stdin``, as for
        ``%%acytoo --agent``); under nbclient or papermill a run is refused.
        """
        from ..present.approval import someone_can_click

        person = someone_can_click(getattr(self.assistant, "shell", None))
        return self._send_message(text, self.agent if agent is None else agent, person)

    def _submitted(self, text: str) -> None:
        """The page's Send: a person clicked, with the Agent switch as it was then."""
        self._send_message(text, self.input.agent, person=True)

    def _send_message(self, text: str, agent: bool, person: bool) -> asyncio.Task[Any] | None:
        text = (text or "").strip()
        if not text:
            return None
        if self.streaming:
            self.input.value = text  # nothing typed is lost: it stays in the box, and the page says why
            self._show_status(_HELD)
            return None
        request = self._request_for(text)
        if request is None:
            return None
        self._show_status("")
        self.preview_area.value = ""
        self._update_indicator(request)  # settings may have changed since the widget was shown
        self.input.value = ""
        question = Message("user", request.sent_prompt, meta=request.stored_meta())  # as it leaves
        self._local, self._own_answer, self._steps = [question], "", []
        self._static_held = True
        self._show()
        self._set_busy(True)
        if agent:
            work = self._episode(request, text, question, person)
        else:
            self._answer = LiveAnswer()
            self.renderer = ThrottledRenderer(self._draw, self.assistant.render_interval)
            work = self._stream(request, self.renderer, text, question)
        self._task = asyncio.get_running_loop().create_task(work)
        self._task.add_done_callback(self._release_static)
        return self._task

    def _release_static(self, task: Any = None) -> None:
        if task is not None and task is not self._task:
            return  # a newer exchange started before this callback ran: it holds the copy now
        self._static_held = False
        if self._static_dirty:
            self._static_dirty = False
            self._update_static()

    def _request_for(self, text: str) -> Request | None:
        """The request ``text`` makes (references expanded), or None with the error said and the
        text back in the box."""
        try:
            prompt = self.assistant.expand(text)
            meta = {}
            if prompt != text:  # what was typed, and what it attached, for the bubble to show
                meta = {"typed": text, "context": self.assistant.context().labels(text)}
            return self.assistant.request(prompt, thread=self.thread, meta=meta)
        except (ContextError, ProviderNotFound) as exc:
            self.input.value = text  # back in the box, to be corrected
            self._show_status(str(exc), error=True)
        except Exception as exc:  # a summary or a provider module that fails: said, and nothing lost
            self.input.value = text
            self._show_status(f"acytoo: {type(exc).__name__}: {redact(str(exc))}", error=True)
        return None

    def preview(self, text: str) -> asyncio.Task[None] | None:
        """Show exactly what sending ``text`` would send (with the Agent switch's tools), its size and
        estimated tokens; nothing is sent or recorded. Reads the history off the loop."""
        from ..core.request import preview

        text = (text or "").strip()
        if not text:  # Preview with an empty box puts the last preview away
            self.preview_area.value = ""
            return None
        request = self._request_for(text)
        if request is None:
            return None
        agent = self.agent

        async def show() -> None:
            try:
                shown = await asyncio.to_thread(preview, request, agent)
            except Exception as exc:  # the history file is locked or broken: said, nothing sent
                self._show_status(f"acytoo: preview: {redact(str(exc))}", error=True)
                return
            self._show_status("")
            self.last_preview = shown
            self.preview_area.value = preview_html(shown)

        return self._schedule(show())

    async def _episode(self, request: Request, typed: str, question: Message, person: bool) -> Episode | None:
        """One agent episode drawn in the transcript; Stop (or Stop in the approval) ends it, kept."""

        def add(html: str) -> None:
            self._steps.append(html)
            self._show()

        view = WidgetAgentView(
            self._draw, lambda: self.transcript.draw_live(""), add, self.assistant.render_interval,
            begin=lambda: setattr(self, "_answer", LiveAnswer()),  # each model turn streams anew
        )
        approve = self._approve if person else None
        error = ""
        try:
            with contextlib.suppress(asyncio.CancelledError):  # Stop: the core records it interrupted
                await self.assistant.agent(request.prompt, approve=approve, view=view, request=request)
        except Exception as exc:  # refused before sending (no tools, a budget), or a failure: said
            error = str(exc) if isinstance(exc, AcytooError) else f"acytoo: {type(exc).__name__}: {exc}"
        finally:
            self.renderer = view.renderers[-1] if view.renderers else None
            self.transcript.draw_live("")
            self._set_busy(False)
        episode = self.last_episode = view.episode
        self._steps = []
        if error or episode is None or episode.status == FAILED:  # nothing done, nothing recorded
            self._restore(typed)
            self._show_status(redact(error or str(episode.error if episode else "")), error=True)
            return episode
        meta = {**question.meta, **episode.meta()}
        answer = Message("assistant", episode.content, episode.status, meta=meta)
        self._local = [question, answer]
        self._own_answer = self._entries([answer])[0]
        note = _note_html(episode.note)
        status = request.outcome_lines(episode.status_line(request) if request.show_status else "")
        self._footer = note + _lines_html(status)
        self._show()
        problem = str(episode.error) if episode.error is not None else episode.history_warning
        if problem:
            self._show_status(redact(problem), error=True)
        if request.conversation is not None and not episode.history_warning:
            await self._read(drop_local=True)  # the store has the episode now: it shows from there
        return episode

    async def _approve(self, code: str) -> Any:
        """Run / Skip / Stop above the input, with the code as the magic draws it."""
        from ..present.steps import ASKING, code_html

        return await self.approval.ask(code, code_html(code, ASKING))

    async def _stream(
        self, request: Any, renderer: ThrottledRenderer, typed: str, question: Message
    ) -> Reply:
        reply = Reply()
        try:
            with contextlib.suppress(asyncio.CancelledError):  # Stop: marked interrupted, recorded
                await self.assistant.ask(request.prompt, request=request, renderer=renderer, reply=reply)
            self._show_reply(reply, renderer, typed, question)
        except Exception as exc:  # anything else: say it, and leave the widget usable
            reply.status = FAILED
            self._restore(typed)
            self._show_status(f"acytoo: {type(exc).__name__}: {redact(str(exc))}", error=True)
        finally:
            self.last_reply = reply
            self.transcript.draw_live("")
            self._set_busy(False)
        if reply.status != FAILED and request.conversation is not None and not reply.history_warning:
            await self._read(drop_local=True)  # the store has the exchange now: it shows from there
        return reply

    def _show_reply(self, reply: Reply, renderer: ThrottledRenderer, typed: str, question: Message) -> None:
        if reply.status == FAILED or not reply.text:
            self._restore(typed)
        else:
            answer = Message("assistant", reply.text, reply.status, meta=dict(question.meta))
            live = self._answer
            if live.final and live.stream.fed == len(reply.text):  # the page shows all of it, rendered once
                self._html[_key(answer)] = live.settle(label(answer.status))
            self._local = [question, answer]
            self._own_answer = self._entries([answer])[0]
            frame = renderer.last_frame
            status = frame.status_line if frame is not None else ""
            self._footer = _lines_html(status)
            self._show()
        if reply.error is not None:
            self._show_status(str(reply.error), error=True)
        elif reply.history_warning:
            self._show_status(reply.history_warning, error=True)

    def _restore(self, typed: str) -> None:
        """Nothing was answered or recorded: the transcript matches the history again, and the
        message goes back into the box to be sent once the problem is fixed."""
        self._local = []
        self._show()
        held = self.input.value  # typed while the answer streamed: both stay, the failed one first
        if typed not in held:
            self.input.value = f"{typed}\n\n{held}" if held.strip() else typed

    def _draw(self, frame: Frame) -> None:
        if frame.waiting:
            self.transcript.draw_live(live_html(frame))
        else:
            self.transcript.draw_answer(self._answer, frame)

    def stop(self) -> None:
        """Cancel the streaming answer; the partial text stays, marked interrupted."""
        if self.streaming:
            assert self._task is not None
            self._task.cancel()

    async def wait(self) -> Any:
        """Wait for the current answer (a ``Reply``) or episode (an ``Episode``) and history reads
        (``await chat.wait()`` in a cell)."""
        reply = await asyncio.shield(self._task) if self._task is not None else None
        while self._reads is not None and not self._reads.done():
            await asyncio.shield(self._reads)
        return reply

    def _show_auto_run(self, change: dict[str, Any]) -> None:
        self.input.auto_run = bool(change["new"])

    def close(self) -> None:
        _open.discard(self)
        self.stop()  # an episode waiting for a click nobody can give now ends, kept, as on Stop
        with contextlib.suppress(ValueError):
            self.assistant.unobserve(self._auto_run_changed, names="agent_auto_run")
        super().close()


def _weak_observer(owner: Any, method: str) -> Callable[[dict[str, Any]], None]:
    """A traitlets observer that calls ``owner.method`` while ``owner`` lives, and nothing after."""
    ref = weakref.ref(owner)

    def observe(change: dict[str, Any]) -> None:
        found = ref()
        if found is not None:
            getattr(found, method)(change)

    return observe


# Enter while an answer streams: the message is not queued (a failed answer comes back into the box,
# and two texts cannot share it); it stays in the box, and the chat says so, and again once it can go.
_HELD = "an answer is still streaming: your message stays in the box; Enter sends it once the answer ends"
_SENDABLE = "the answer has ended: Enter sends your message"


def _status_html(text: str, error: bool = False) -> str:
    css = "acytoo-error" if error else "acytoo-note"
    return f'<div class="{css}">{escaped(text)}</div>' if text else ""


def _key(message: Message) -> str:
    """What an entry's HTML depends on (not the row id: a message shows the same before it is stored)."""
    return json.dumps(
        [message.role, message.content, str(message.status), message.cell, message.meta.get("typed"),
         message.meta.get("context"), message.meta.get("execution_count"),
         stored_episode(message.meta).get("steps")],
        ensure_ascii=False,
    )


def _kernel_assistant() -> Assistant:
    """This kernel's Assistant, the one the magic uses: settings and history are shared."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("ChatWidget needs IPython (a notebook kernel), or pass assistant=Assistant()")
    return shared_assistant(shell)

