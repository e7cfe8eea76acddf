"""Listing a thread's stored exchanges (``%acytoo history``): one line an exchange, or in full.

An agent episode's answer is marked with its number of steps in the compact view, and lists its
steps (tool calls, runs and their decisions) above the answer in full.

A stored reply is as untrusted as a live one, so a listing goes through ``untrusted``'s policy like
an answer does: HTML for a notebook (escaped text in the compact view; in full, answers rendered
with links restricted to http(s), mailto and relative), and a plain form for terminals and text
front ends in which no unsafe URL is left for a linkifier to make live (``unlinkable``).
"""

from __future__ import annotations

import shlex
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.agent import episode_steps
from ..core.history.store import Message
from ..core.outbound import unlinkable
from ..core.outcome import label
from ..present.untrusted import escaped, render_markdown

PROMPT_CHARS = 60
ANSWER_CHARS = 90


@dataclass(frozen=True)
class Listing:
    """The same listing twice: ``html`` for a notebook, ``plain`` for a terminal (a MIME bundle)."""

    plain: str
    html: str

    def bundle(self) -> dict[str, str]:
        return {"text/plain": self.plain, "text/html": self.html}


def paired(messages: Sequence[Message]) -> list[tuple[Message | None, Message | None]]:
    """The thread as (question, answer) pairs; a message without its partner pairs with None."""
    pairs: list[tuple[Message | None, Message | None]] = []
    for message in messages:
        if message.role == "assistant" and pairs and pairs[-1][0] is not None and pairs[-1][1] is None:
            pairs[-1] = (pairs[-1][0], message)
        elif message.role == "assistant":
            pairs.append((None, message))
        else:
            pairs.append((message, None))
    return pairs


def first_line(text: str, width: int) -> str:
    """The first non-blank line of ``text``, cut to ``width`` characters (``…`` where cut)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    more = first.strip() != text.strip()
    short = textwrap.shorten(first, width, placeholder=" …") if first.strip() else ""
    return short + (" …" if more and not short.endswith("…") else "")


def typed(question: Message) -> str:
    """What the user typed for ``question`` (before ``{df}`` and the like were expanded), else the
    prompt as sent (a chat message without references, an exchange stored before this was kept)."""
    shown = question.meta.get("typed")
    return shown if isinstance(shown, str) else question.content


def compact(
    thread: str, messages: Sequence[Message], origin: Callable[[Message], str], about: str = ""
) -> Listing:
    """One line an exchange: where it was asked, the question and the answer's first line.
    ``about``: what the head adds (where the thread came from, whether its chain verifies)."""
    rows = []
    for question, answer in paired(messages):
        asked = next(m for m in (question, answer) if m is not None)  # never both None
        mark = label(answer.outcome) if answer is not None else "no answer"
        if answer is not None and (count := len(episode_steps(answer.meta))):
            steps = f"agent: {count} step{'s' if count != 1 else ''}"
            mark = f"{steps}, {mark}" if mark else steps
        rows.append(
            (
                origin(asked),
                first_line(typed(question), PROMPT_CHARS) if question is not None else "",
                first_line(answer.content, ANSWER_CHARS) if answer is not None else "",
                mark,
            )
        )
    head = f"thread {thread!r}: {len(rows)} exchange{'s' if len(rows) != 1 else ''}, oldest first"
    option = "" if thread == "default" else f" -c {shlex.quote(thread)}"
    hint = f"%acytoo history --full{option} shows them whole"
    width = max((len(where) for where, *_ in rows), default=0)
    tail = f" · {about}" if about else ""
    lines = [f"{head} ({hint}){tail}"]
    for where, prompt, reply, mark in rows:
        lines.append(f"  {where:<{width}}  {prompt} → {reply}" + (f"  [{mark}]" if mark else ""))
    # Inline alignment (JupyterLab right-aligns table cells); no style sheet, as for answers.
    left, keep = 'style="text-align: left"', 'style="text-align: left; white-space: nowrap"'
    cells = "".join(
        f"<tr><td {keep}>{escaped(where)}</td><td {left}>{escaped(prompt)}</td>"
        f"<td {left}>{escaped(reply)}</td><td {keep}><em>{escaped(mark)}</em></td></tr>"
        for where, prompt, reply, mark in rows
    )
    table = (
        f'<table class="acytoo-history"><thead><tr><th {keep}>asked in</th><th {left}>question</th>'
        f"<th {left}>answer</th><th></th></tr></thead><tbody>{cells}</tbody></table>"
    )
    page = f"<p>{escaped(head)} (<code>{escaped(hint)}</code>){escaped(tail)}</p>{table}"
    return Listing(unlinkable("\n".join(lines)), page)


def full(
    thread: str, messages: Sequence[Message], origin: Callable[[Message], str], about: str = ""
) -> Listing:
    """Every message whole: questions as preformatted text, answers rendered as the magic renders them."""
    tail = f" · {about}" if about else ""
    plain, parts = [f"thread {thread!r}: {len(messages)} messages, oldest first{tail}"], []
    for message in messages:
        mark = f" [{label(message.outcome)}]" if label(message.outcome) else ""
        heading = f"{message.role}{mark} · {origin(message)}"
        steps = [step.summary() for step in episode_steps(message.meta)]  # an agent episode's
        asked = typed(message) if message.role == "user" else message.content
        size = f"{len(message.content):,}"
        sent = "" if asked == message.content else f"\n  (sent with its context expanded: {size} characters)"
        plain.append(f"--- {heading}\n" + "".join(f"  · {step}\n" for step in steps) + asked + sent)
        if message.role == "assistant":
            body = render_markdown(message.content)
        else:  # what was typed; the prompt as sent, context expanded, one click away
            body = f"<pre>{escaped(asked)}</pre>"
            if sent:
                body += f"<details><summary>as sent</summary><pre>{escaped(message.content)}</pre></details>"
        if steps:
            items = "".join(f"<li><code>{escaped(step)}</code></li>" for step in steps)
            body = f'<ul class="acytoo-steps">{items}</ul>{body}'
        parts.append(f"<div><p><strong>{escaped(heading)}</strong></p>{body}</div>")
    return Listing(unlinkable("\n".join(plain)), f"<p>{escaped(plain[0])}</p>" + "<hr>".join(parts))
