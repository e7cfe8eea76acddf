"""Drawing an agent episode in a notebook: each step as it happens, and Run / Skip / Stop buttons.

Everything shown that came from the model or the notebook's data (its text, proposed code, tool
results) goes through ``untrusted``'s policy, as a reply does. Steps are drawn in a frame model text
cannot produce (a bordered box with inline styles; Markdown without raw HTML has none), and model
text in one of its own, marked as the model's, where MathJax does not run (its ``\\bbox`` and
``\\style`` could draw look-alike buttons). Proposed code is drawn so every character is on screen
(``untrusted.listing_html``). The buttons are ``approval.Approval``, resolving a future the episode
awaits on the kernel's loop: ipykernel 7 dispatches comm messages (a click) while an async cell
waits. Once decided, the buttons' output is emptied and the code's caption says what was decided,
so a saved notebook holds no live button at all.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from ..core.agent import AgentView, CodeRun, Decision, Step
from ..core.errors import ToolsUnsupported
from ..core.outbound import printable
from ..core.request import Preview
from ..present.approval import WAITING, Approval, someone_can_click
from ..present.steps import (
    ASKING,
    code_html,
    decided_caption,
    model_frame,
    preview_html,
    preview_plain,
    result_caption,
    step_html,
    step_plain,
)
from ..present.untrusted import note_html, small_print_html
from .output import DisplayRenderer, TerminalRenderer, report


class ModelTextOutput(DisplayRenderer):
    """A model turn's text in an episode, drawn as an answer is, inside ``model_frame``."""

    def _framed(self, bundle: dict[str, Any]) -> dict[str, Any]:
        html = bundle.get("text/html")
        return {**bundle, "text/html": model_frame(html)} if html else bundle


class NotebookAgentView(AgentView):
    """An episode in a cell's output: streamed model text, tool steps, and approval buttons."""

    def __init__(self, interval: float = 0.08) -> None:
        from IPython.display import display

        self._display = display
        self.interval = interval

    def renderer(self) -> DisplayRenderer:
        return ModelTextOutput("markdown", self.interval)

    def show(self, step: Step, run: CodeRun | None = None) -> None:
        if step.kind == "text" or (step.kind == "run" and step.decision in ("skip", "stop", "gone")):
            return  # drawn as it streamed; or the code's caption says so, where the buttons were
        if step.kind == "run" and step.decision == "run":  # the code shows above, with its decision
            caption = result_caption(step)
            html_text = code_html(step.text, caption, "")
            self._display({"text/plain": f"[{caption}]\n{step.text}", "text/html": html_text}, raw=True)
        else:
            self._display({"text/plain": step_plain(step), "text/html": step_html(step)}, raw=True)
        for bundle in run.rich if run is not None else []:
            self._display(bundle, raw=True)  # what the approved code displayed, as a cell would show it

    async def approve(self, code: str) -> Decision:
        """Show ``code`` with Run / Skip / Stop; return the button clicked (the only source of approval)."""
        shown = self._display(
            {"text/plain": f"[{ASKING}; {WAITING}]\n{code}", "text/html": code_html(code, ASKING)},
            raw=True,
            display_id=True,
        )
        approval = Approval()
        approval.add_class("acytoo-agent-approval")
        area = self._display(approval, display_id=True)
        decided = "interrupted"
        try:
            decision = await approval.ask(code)
            decided = decision.value
            return decision
        finally:  # also on interrupt: no live button stays behind
            area.update({"text/plain": "", "text/html": ""}, raw=True)  # the code's caption says it
            approval.close()
            caption = decided_caption(decided)
            decided_bundle = {"text/plain": f"[{caption}]\n{code}", "text/html": code_html(code, caption)}
            shown.update(decided_bundle, raw=True)

    def finish(self, note: str, small_print: str, record: dict[str, Any] | None = None) -> None:
        """The episode's last lines: why it ended early (if it did), and the small print; this last
        output carries the episode's record (``document.record``) as its metadata."""
        plain = "\n".join(
            part for part in (f"[{note}]" if note else "", f"— {small_print}" if small_print else "") if part
        )
        if plain or record:
            html = note_html(note) + small_print_html(small_print)
            extra = {"metadata": record} if record else {}
            self._display({"text/plain": plain, "text/html": html}, raw=True, **extra)


class TerminalAgentView(AgentView):
    """An episode in a terminal: text as it streams, steps printed, approval typed."""

    def renderer(self) -> TerminalRenderer:
        return TerminalRenderer()

    def show(self, step: Step, run: CodeRun | None = None) -> None:
        if step.kind != "text":  # model text was printed as it streamed
            print(printable(step_plain(step)))

    def approve(self, code: str) -> Decision:
        print(f"\nThe model wants to run this code:\n{printable(code)}\n")
        keys = {
            "r": Decision.RUN,
            "run": Decision.RUN,
            "s": Decision.SKIP,
            "skip": Decision.SKIP,
            "t": Decision.STOP,
            "stop": Decision.STOP,
        }
        while (answer := input("run it? [r]un / [s]kip / s[t]op: ").strip().lower()) not in keys:
            pass
        return keys[answer]

    def finish(self, note: str, small_print: str, record: dict[str, Any] | None = None) -> None:
        for line in (f"[{note}]" if note else "", f"— {small_print}" if small_print else ""):
            if line:
                print(printable(line))


def show_preview(shown: Preview, in_kernel: bool) -> None:
    """``--dry-run``: what would be sent, as a code block through the rendering policy."""
    if not in_kernel:
        print(preview_plain(shown))
        return
    from IPython.display import display

    display({"text/plain": preview_plain(shown), "text/html": preview_html(shown)}, raw=True)


async def run_agent_cell(assistant: Any, request: Any, shell: Any, on_loop: bool, auto_run: bool) -> Any:
    """``%%acytoo --agent``'s body: an episode drawn in the cell (or a terminal), approval by buttons.

    ``on_loop``: the cell is awaited on the kernel's loop, where a click can arrive while it waits.
    Nested in user code (``%%time``) the loop is blocked, so no button could work: runs are refused.
    """
    in_kernel = getattr(shell, "kernel", None) is not None
    view: NotebookAgentView | TerminalAgentView = (
        NotebookAgentView(assistant.render_interval) if in_kernel else TerminalAgentView()
    )
    approve = view.approve if someone_can_click(shell) and (on_loop or not in_kernel) else None
    try:  # auto_run: --auto-run, this cell's explicit opt-in
        episode = await assistant.agent(
            request.prompt, approve=approve, view=view, request=request, auto_run=auto_run
        )
    except ToolsUnsupported as exc:
        raise UsageError(f"%%acytoo --agent: {exc}") from None
    status_line = episode.status_line(request) if request.show_status else ""
    view.finish(episode.note, request.small_print(status_line), episode.record)
    report(episode)
    return episode
