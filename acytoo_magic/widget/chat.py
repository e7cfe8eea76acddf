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
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets

from ..core.agent import Episode
from ..core.assistant import Assistant, shared_assistant
from ..core.errors import AcytooError, ContextError, ProviderNotFound
from ..core.frames import Frame
from ..core.history.store import Message
from ..core.loops import on_this_loop
from ..core.outbound import redact
from ..core.outcome import FAILED, label
from ..core.request import Finished, Preview, Reply, Request, problem
from ..present.approval import Approval
from ..present.steps import preview_html
from ..present.throttle import ThrottledRenderer
from ..present.untrusted import escaped
from .agent_view import WidgetAgentView
from .chatinput import ChatInput
from .entries import bubble_note, entry_html, entry_key, footer_html, live_html
from .saved_copy import SavedCopy
from .transcript import LiveAnswer, Transcript

WINDOW = 40  # messages shown when the widget opens (20 exchanges); "show earlier" adds as many

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
        self._steps: list[str] = []  # the running episode's steps, as entries after its question
        self.last_episode: Episode | None = None
        self.last_preview: Preview | None = None

        self.transcript = Transcript()
        self.saved = SavedCopy(lambda: self.thread, self._copy_source)
        self.approval = Approval()  # a run_python request waiting for Run / Skip / Stop
        self.preview_area = widgets.HTML()
        self.error_area = widgets.HTML()  # errors and notices, under the transcript
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
        parts = [header, self.transcript, self.approval, self.preview_area, self.error_area, entry]
        super().__init__(parts, **kwargs)
        self.add_class("acytoo-chat")
        self.error_area.add_class("acytoo-error-area")
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
            self._show_in_error_area("finish or stop the current answer before switching threads")
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
                self._show_in_error_area(f"acytoo: history: {redact(str(exc))}", error=True)
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
            key = entry_key(message)
            if key not in self._html:
                self._html[key] = entry_html(message)

    def _entries(self, messages: Sequence[Message]) -> list[str]:
        self._render(messages)
        return [self._html[entry_key(m)] for m in messages]

    def _show(self, earlier: bool = False) -> None:
        entries = self._entries([*self._stored, *self._local]) + self._steps
        own = bool(entries) and bool(self._own_answer) and entries[-1] == self._own_answer
        if self.transcript.show(entries, self._footer if own else "", earlier=earlier):
            self.saved.changed()  # now, or once the exchange under way ends
        if len(self._html) > 2 * len(entries) + 100:  # forget what is no longer shown
            shown = {entry_key(m) for m in (*self._stored, *self._local)}
            self._html = {key: html for key, html in self._html.items() if key in shown}

    def _copy_source(self) -> tuple[list[str], str, bool]:
        return self.transcript.entries, self.transcript.footer, self.transcript.more

    def _show_in_error_area(self, text: str, error: bool = False) -> None:
        self.error_area.value = _error_area_html(text, error)

    def _set_busy(self, busy: bool) -> None:
        self.input.busy = busy
        self.stop_button.disabled = not busy
        if not busy and self.error_area.value == _error_area_html(_HELD):  # what it waited for has ended
            self._show_in_error_area(_SENDABLE)

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
            self._show_in_error_area(_HELD)
            return None
        request = self._request_for(text)
        if request is None:
            return None
        self._show_in_error_area("")
        self.preview_area.value = ""
        self._update_indicator(request)  # settings may have changed since the widget was shown
        self.input.value = ""
        question = Message("user", request.sent_prompt, meta=request.stored_meta())  # as it leaves
        self._local, self._own_answer, self._steps = [question], "", []
        self.saved.hold()
        self._show()
        self._set_busy(True)
        if agent:
            work = self._episode(request, text, question, person)
        else:
            self._answer = LiveAnswer()
            self.renderer = ThrottledRenderer(self._draw, self.assistant.render_interval)
            work = self._stream(request, self.renderer, text, question)
        self._task = asyncio.get_running_loop().create_task(work)
        self._task.add_done_callback(self._release_saved)
        return self._task

    def _release_saved(self, task: Any = None) -> None:
        if task is not None and task is not self._task:
            return  # a newer exchange started before this callback ran: it holds the copy now
        self.saved.release()

    def _ipython_display_(self, **kwargs: Any) -> None:
        """Show the chat, preceded by its copy saved with the notebook (``saved_copy``)."""
        from IPython.display import display

        self.saved.display()
        display(self._repr_mimebundle_(**kwargs), raw=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # No text of its own: the saved copy before it says what this was and how to reopen it, and
        # where the widget cannot show (nbconvert, a terminal), a second hint would be a repeat.
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = ""
        return bundle

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
            self._show_in_error_area(str(exc), error=True)
        except Exception as exc:  # a summary or a provider module that fails: said, and nothing lost
            self.input.value = text
            self._show_in_error_area(f"acytoo: {type(exc).__name__}: {redact(str(exc))}", error=True)
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
                self._show_in_error_area(f"acytoo: preview: {redact(str(exc))}", error=True)
                return
            self._show_in_error_area("")
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
        if episode is not None:
            self.saved.keep(episode.record)
        if error or episode is None or episode.outcome == FAILED:  # nothing done, nothing recorded
            self._restore(typed)
            self._show_in_error_area(redact(error or str(episode.error if episode else "")), error=True)
            return episode
        meta = {**question.meta, **episode.meta()}
        answer = Message("assistant", episode.content, episode.outcome, meta=meta)
        self._local = [question, answer]
        self._own_answer = self._entries([answer])[0]
        note = bubble_note(episode.note)
        small_print = request.small_print(episode.status_line(request) if request.show_status else "")
        self._footer = note + footer_html(small_print)
        self._show()
        self._report(episode)
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
            self.saved.keep(reply.record)  # the saved copy records it (docs/notebook-record.md)
            self._show_reply(reply, renderer, typed, question)
        except Exception as exc:  # anything else: say it, and leave the widget usable
            reply.outcome = FAILED
            self._restore(typed)
            self._show_in_error_area(f"acytoo: {type(exc).__name__}: {redact(str(exc))}", error=True)
        finally:
            self.last_reply = reply
            self.transcript.draw_live("")
            self._set_busy(False)
        if reply.outcome != FAILED and request.conversation is not None and not reply.history_warning:
            await self._read(drop_local=True)  # the store has the exchange now: it shows from there
        return reply

    def _show_reply(self, reply: Reply, renderer: ThrottledRenderer, typed: str, question: Message) -> None:
        if reply.outcome == FAILED or not reply.answer:
            self._restore(typed)
        else:
            answer = Message("assistant", reply.answer, reply.outcome, meta=dict(question.meta))
            live = self._answer
            if live.final and live.stream.fed == len(reply.answer):  # the page shows all of it, rendered once
                self._html[entry_key(answer)] = live.settle(label(answer.outcome))
            self._local = [question, answer]
            self._own_answer = self._entries([answer])[0]
            frame = renderer.last_frame
            self._footer = footer_html(frame.small_print if frame is not None else "")
            self._show()
        self._report(reply)

    def _report(self, result: Finished) -> None:
        """After an answer or episode: the error that ended it, or the history's warning, in the
        error area (the answer itself is in the transcript)."""
        if said := problem(result):
            self._show_in_error_area(redact(said), error=True)

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


def _error_area_html(text: str, error: bool = False) -> str:
    css = "acytoo-error" if error else "acytoo-note"
    return f'<div class="{css}">{escaped(text)}</div>' if text else ""


def _kernel_assistant() -> Assistant:
    """This kernel's Assistant, the one the magic uses: settings and history are shared."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("ChatWidget needs IPython (a notebook kernel), or pass assistant=Assistant()")
    return shared_assistant(shell)

