"""A chat message as the transcript shows it: HTML from the one rendering policy, nothing else.

The user's words are shown as typed (escaped), an answer as rendered Markdown (``untrusted``), an
exchange from a notebook cell marked so, with the context a ``{name}`` attached collapsed.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.agent import episode_steps
from ..core.frames import Frame
from ..core.history.store import Message, stored_episode
from ..core.outcome import label
from ..present.untrusted import escaped, render_markdown, with_cursor
from .agent_view import steps_html


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
    return bubble(role, body, note, head)


def bubble(role: str, body: str, note: str, head: str = "") -> str:
    return f'<div class="acytoo-msg acytoo-{role}">{head}{body}{bubble_note(note)}</div>'


def footer_html(text: str) -> str:
    """The chat's footer: the small print (what was masked, the status line) under the last answer,
    a ``div`` a line."""
    return "".join(f"<div>{escaped(line)}</div>" for line in text.splitlines())


def bubble_note(note: str) -> str:
    return f'<div class="acytoo-note">{escaped(note)}</div>' if note else ""


def entry_html(message: Message) -> str:
    """A stored message as a transcript entry: ``message_html``, plus what the store knows.

    The user's bubble shows what they typed; context a ``{name}`` attached shows collapsed, its
    expansion one click away. An exchange that came from a notebook cell is marked so.
    """
    if message.role == "user" and isinstance(message.meta.get("typed"), str):
        html = f'<div class="acytoo-msg acytoo-user">{typed_html(message.content, message.meta)}</div>'
    else:
        note = label(message.outcome) if message.role == "assistant" else ""
        steps = episode_steps(message.meta) if message.role == "assistant" else []
        html = message_html(message.role, message.content, note, head=steps_html(steps))
    if message.cell is None:
        return html
    count = message.meta.get("execution_count")
    where = f"cell [{count}]" if isinstance(count, int) else "a cell"
    mark = f'<div class="acytoo-mark">from {where}</div>' if message.role == "user" else ""
    opening = f'<div class="acytoo-msg acytoo-{message.role}">'
    return f'<div class="acytoo-msg acytoo-{message.role} acytoo-cell">{mark}' + html[len(opening) :]


def typed_html(prompt: str, meta: dict[str, Any]) -> str:
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


def entry_key(message: Message) -> str:
    """What an entry's HTML depends on (not the row id: a message shows the same before it is stored)."""
    return json.dumps(
        [message.role, message.content, str(message.outcome), message.cell, message.meta.get("typed"),
         message.meta.get("context"), message.meta.get("execution_count"),
         stored_episode(message.meta).get("steps")],
        ensure_ascii=False,
    )
