"""What a step of an agent episode, and a request shown and not sent, look like: once, for both
front ends.

Every string here is HTML made by ``untrusted``'s policy. Steps are drawn in a frame model text
cannot produce (a bordered box with inline styles; Markdown without raw HTML has none), and model
text inside an episode in one of its own, marked as the model's, where MathJax does not run (its
``\\bbox`` and ``\\style`` could draw look-alike buttons). Proposed code is a listing whose every
character is on screen (``untrusted.listing_html``).
"""

from __future__ import annotations

import re

from ..core.agent import Step
from ..core.outbound import printable
from ..core.request import Preview
from .untrusted import escaped, listing_html, note_html, render_markdown

# Words only: a symbol outside the fonts every front end has shows as an empty box.
_DECIDED = {
    "run": "run (approved by you)",
    "auto": "run without asking (agent_auto_run)",
    "skip": "skipped by you: not run",
    "stop": "stopped by you: not run",
    "refused": "not run: refused",
    "interrupted": "interrupted: not run",
    "gone": "not run: the buttons left the page undecided",
}
ASKING = "run_python: the model wants to run this code in your notebook"
# MathJax 3 (JupyterLab, Notebook 7) skips elements of class mathjax_ignore, MathJax 2 (nbconvert's
# HTML, nbviewer) tex2jax_ignore.
NO_MATH = "mathjax_ignore tex2jax_ignore"
_STEP_FRAME = (
    "border:1px solid #d0d7de;border-left:4px solid #0969da;border-radius:4px;padding:2px 8px;margin:6px 0"
)
_STEP_HEAD = "font-size:12px;font-weight:600;color:#0969da;margin:2px 0"
_MODEL_FRAME = "border-left:3px solid #8c959f;padding:0 0 0 10px;margin:4px 0"
_MODEL_HEAD = "font-size:11px;color:#57606a;margin:2px 0"


def fenced(text: str, info: str = "") -> str:
    """``text`` as a Markdown code block whose fence no backtick run inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def step_frame(caption: str, body: str) -> str:
    """A step of ours: a bordered box with a caption, which no Markdown from a model can draw."""
    return (
        f'<div class="acytoo-run {NO_MATH}" style="{_STEP_FRAME}">'
        f'<div class="acytoo-step-head" style="{_STEP_HEAD}">{escaped(caption)}</div>{body}</div>'
    )


def model_frame(html: str) -> str:
    """Model text inside an episode: marked as the model's, MathJax off."""
    head = f'<div class="acytoo-model-head" style="{_MODEL_HEAD}">the model wrote</div>'
    return f'<div class="acytoo-model {NO_MATH}" style="{_MODEL_FRAME}">{head}{html}</div>'


def code_html(code: str, caption: str, info: str = "python") -> str:
    """Proposed code as a listing whose every character is on screen (``listing_html``); a result
    (``info`` "") as the policy renders a reply's code block. In a step's frame, under ``caption``."""
    body = listing_html(code, info) if info == "python" else render_markdown(fenced(code, info))
    return step_frame(caption, body)


def result_caption(step: Step) -> str:
    return "result (failed)" if step.failed else "result"


def decided_caption(decision: str) -> str:
    return f"run_python: {_DECIDED.get(decision, decision)}"


def step_html(step: Step) -> str:
    """A finished step as safe HTML: the call (or the decided code) and its result as a code block."""
    if step.kind == "run":
        head = code_html(step.code, decided_caption(step.decision))
        if step.decision in ("run", "auto") or step.failed:
            return head + code_html(step.text, result_caption(step), "")
        return head
    if step.kind == "tool":
        call = f"tool · {step.name}({step.arguments if step.arguments not in ('', '{}') else ''})"
        return code_html(step.text, call, "")
    if step.kind == "note":
        return step_frame("acytoo", render_markdown(fenced(step.text, "")))
    return model_frame(render_markdown(step.text))


def step_plain(step: Step) -> str:
    return f"[{step.summary()}]\n{step.text}"


def preview_html(shown: Preview) -> str:
    """A request shown and not sent (``--dry-run``, the chat's Preview): its summary, what was
    masked, and the request body as a JSON code block."""
    notes = note_html(shown.summary()) + note_html(shown.masked)
    body = render_markdown(fenced(shown.text, "json"))
    request = f"<details open><summary>the request</summary>{body}</details>"
    return f'<div class="acytoo-preview">{notes}{request}</div>'


def preview_plain(shown: Preview) -> str:
    """The same as plain text (a terminal, a notebook's text/plain)."""
    summary = "\n".join(line for line in (shown.summary(), shown.masked) if line)
    return printable(f"[{summary}]\n{shown.text}")
