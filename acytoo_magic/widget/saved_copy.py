"""The copy of a chat saved with the notebook: what shows where the live chat cannot.

A widget needs its kernel: reopened with a new one, JupyterLab shows "model not found" where the
chat was. The copy (the newest messages, as the chat rendered them) is what shows then; while the
chat is live, the chat's CSS hides it. It is updated once per exchange, when the exchange ends.

The copy is read where none of the chat's CSS applies: a notebook reopened
without its kernel, an untrusted one (the sanitizer drops <style> but keeps elements and inline
styles it allows), nbconvert's HTML and Markdown, GitHub (no styles at all). So who said what is
in the elements (a labelled blockquote for the user, a labelled div for the answer), the look in
inline styles JupyterLab's sanitizer keeps (no var(), no vh), and the copy is one HTML block.
"""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.history.document import KEY
from ..core.outbound import printable
from ..present.untrusted import escaped

STATIC = Path(__file__).parent / "static"
STATIC_MESSAGES = 40  # messages in the copy saved with the notebook
# Exchanges of a thread the copy's metadata records at most (the newest): no more than it shows.
RECORDED = STATIC_MESSAGES // 2
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
# The saved copy's style sheet, as one line (after its comment): the copy stays one HTML block.
_STATIC_CSS = (STATIC / "saved_copy.css").read_text().split("*/", 1)[1]
_STATIC_STYLE = "<style>" + " ".join(_STATIC_CSS.split()) + "</style>"


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


class SavedCopy:
    """The chat's saved copy, kept in step with its transcript (``source``: the entries, the
    status line under the last answer, whether older messages exist) on thread ``thread()``."""

    def __init__(self, thread: Callable[[], str], source: Callable[[], tuple[list[str], str, bool]]) -> None:
        self._thread, self._source = thread, source
        self._ids: list[str] = []
        # Re-sent whole (and re-rendered by the page, hidden or not) when it changes: during an
        # exchange (the question, each agent step, the answer) only once, at its end.
        self._held = False
        self._dirty = False
        self._records: list[dict[str, Any]] = []  # the records of the answers this chat made (keep)

    def keep(self, metadata: dict[str, Any]) -> None:
        """An answer's or episode's record (``document.record``; {} when none is kept): the copy's
        metadata carries the thread's, so the saved notebook holds the chat's exchanges too."""
        entry = metadata.get(KEY)
        if isinstance(entry, dict):
            # Provenance only: the copy shows prompts and answers, not the prompt as sent nor an
            # episode's steps, so it records neither (and stays small at "full" too). A thread
            # rebuilt from a document sends none of it (docs/notebook-record.md).
            kept = {k: v for k, v in entry.items() if k not in ("sent", "episode")}
            self._records = [*self._records, kept][-4 * RECORDED :]

    def metadata(self) -> dict[str, Any]:
        """What the copy's output records: this thread's exchanges, in the order they were made."""
        thread = self._thread()
        mine = [entry for entry in self._records if entry.get("thread") == thread][-RECORDED:]
        return {KEY: {"chat": mine, "thread": thread}} if mine else {}

    def display(self) -> None:
        """Show the copy (before the chat it stands for), to be updated in place from now on."""
        from IPython.display import display

        display_id = uuid.uuid4().hex
        self._ids.append(display_id)
        display(self.bundle(), raw=True, display_id=display_id, metadata=self.metadata())

    def command(self) -> str:
        thread = self._thread()
        return "%acytoo chat" + (f" -c {shlex.quote(thread)}" if thread != "default" else "")

    def hint(self) -> str:
        """How to continue the chat, in a new kernel too: the magic exists once the extension is
        loaded; in a new cell, so that the copy stays."""
        return (
            f"chat on thread {printable(self._thread())}, saved with the notebook; to continue it, run"
            f" `%load_ext acytoo_magic` then `{self.command()}` in a new cell"
        )

    def bundle(self) -> dict[str, str]:
        entries, footer, more = self._source()
        shown = entries[-STATIC_MESSAGES:]
        older = len(entries) > len(shown) or more
        head = (
            f'<p class="acytoo-note"><em>Chat on thread “{escaped(self._thread())}”, saved with the notebook'
            f'{" (the newest messages)" if older else ""}. To continue it, run'
            f" <code>%load_ext acytoo_magic</code> then <code>{escaped(self.command())}</code>"
            " in a new cell.</em></p>"
        )
        # the last answer's status line, as the chat showed it
        footer = f'<div class="acytoo-footer" style="{_STATIC_SMALL}">{footer}</div>' if footer else ""
        box = "".join(static_entry(entry) for entry in shown) + footer
        html = (
            f'<div class="acytoo-chat-static">{head}'
            f'<div class="acytoo-static-box" style="{_STATIC_BOX}"><div>{box}</div></div></div>'
            f"{_STATIC_STYLE}"  # after the copy, not in it: nothing in the copy is anything but text
        )
        return {"text/html": html, "text/plain": self.hint()}

    def changed(self) -> None:
        """The transcript changed: update the copy now, or once the exchange under way ends."""
        if self._held:
            self._dirty = True
        else:
            self._update()

    def hold(self) -> None:
        self._held = True

    def release(self) -> None:
        self._held = False
        if self._dirty:
            self._dirty = False
            self._update()

    def _update(self) -> None:
        if not self._ids:
            return
        from IPython.display import update_display

        bundle, metadata = self.bundle(), self.metadata()
        for display_id in self._ids:
            update_display(bundle, raw=True, display_id=display_id, metadata=metadata)
