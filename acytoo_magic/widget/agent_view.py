"""The chat widget as an agent front end: steps in the transcript, Run / Skip / Stop by the input.

``ChatWidget`` with its Agent switch on runs ``Assistant.agent`` (the core's episode loop, not a
copy of it) with the view here and the approval of ``approval`` (the magic's too). Every step shown
is HTML from ``untrusted``'s policy, as the magic draws it (``agent_output``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..core.agent import AgentView, CodeRun, Episode, Step
from ..core.frames import Frame
from ..present.steps import step_html
from ..present.throttle import ThrottledRenderer
from ..present.untrusted import escaped, note_html


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
