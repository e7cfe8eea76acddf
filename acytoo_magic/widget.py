"""ChatWidget: the same streaming answers as ``%%acytoo``, in an ipywidgets chat with a Stop button.

A thin front end: sending schedules ``Assistant.ask`` as a task on the kernel's running loop and
returns at once, so other cells run while the answer streams; the throttling is the core's
``ThrottledRenderer``, the history the magic's own store and thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets

from .assistant import Assistant, shared_assistant
from .conversation import Message
from .errors import ContextError, ProviderNotFound
from .providers.base import redact
from .render import Frame, ThrottledRenderer
from .runner import Reply
from .status import FAILED, label
from .untrusted import escaped, render_markdown, with_cursor

_STYLE = """<style>
.acytoo-chat { max-width: 52rem; font-size: var(--jp-content-font-size1, 14px); }
.acytoo-chat .acytoo-msg { padding: 0.35rem 0.7rem; margin: 0.3rem 0; border-radius: 6px; }
.acytoo-chat .acytoo-user { background: var(--jp-layout-color2, #eef1f5); }
.acytoo-chat .acytoo-typed { white-space: pre-wrap; }
.acytoo-chat .acytoo-assistant { border-left: 3px solid var(--jp-brand-color1, #1976d2); }
.acytoo-chat .acytoo-note { color: var(--jp-ui-font-color2, #777); font-size: 85%; font-style: italic; }
.acytoo-chat .acytoo-error { color: var(--jp-error-color1, #d32f2f); }
.acytoo-chat pre { background: var(--jp-layout-color2, #f5f5f5); padding: 0.5rem; overflow-x: auto; }
.acytoo-chat table { border-collapse: collapse; margin: 0.5rem 0; }
.acytoo-chat th, .acytoo-chat td { border: 1px solid var(--jp-border-color2, #ddd); padding: 0.2rem 0.6rem;
  text-align: left; }
.acytoo-chat th { background: var(--jp-layout-color2, #f5f5f5); }
.acytoo-chat .acytoo-entry { display: flex; gap: 0.4rem; align-items: flex-start; width: 100%; }
.acytoo-chat textarea.acytoo-input { flex: 1; min-height: 4.5em; box-sizing: border-box;
  font: inherit; padding: 0.4rem; resize: vertical; }
.acytoo-chat .acytoo-send { width: 6rem; }
</style>"""


def message_html(role: str, text: str, note: str = "", streaming: bool = False) -> str:
    """One transcript entry: the user's words as typed (escaped), an answer as rendered Markdown.

    Both go through the policy in ``untrusted`` that the magic uses: the answer is untrusted text.
    A streaming answer gets its cursor after rendering, never inside the Markdown.
    """
    if role == "user":
        body = f'<div class="acytoo-typed">{escaped(text)}</div>'
    else:
        body = render_markdown(text) if text else ""
        body = with_cursor(body) if streaming else body
    note_html = f'<div class="acytoo-note">{escaped(note)}</div>' if note else ""
    return f'<div class="acytoo-msg acytoo-{role}">{body}{note_html}</div>'


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
        if (!value.trim() || model.get("busy")) return;
        area.value = "";
        model.set("value", "");
        model.save_changes();
        model.send({ event: "submit", value });
      };
      send.addEventListener("click", submit);
      area.addEventListener("input", () => { model.set("value", area.value); model.save_changes(); });
      area.addEventListener("keydown", (event) => {
        event.stopPropagation();  // typing here must not trigger notebook shortcuts
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
      el.append(area, send);
    }
    export default { render };
    """
    value = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    placeholder = traitlets.Unicode("Ask… (Enter sends, Shift+Enter for a new line)").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._submit_handlers: list[Any] = []
        self.on_msg(self._handle_message)

    def on_submit(self, callback: Any) -> None:
        self._submit_handlers.append(callback)

    def _handle_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            for callback in self._submit_handlers:
                callback(str(content.get("value", "")))


class ChatWidget(widgets.VBox):
    """A chat bound to one thread of this notebook's history, streaming like ``%%acytoo``."""

    def __init__(self, thread: str = "default", assistant: Assistant | None = None, **kwargs: Any) -> None:
        self.assistant = assistant or _kernel_assistant()
        self.thread = thread
        self._task: asyncio.Task[Reply] | None = None
        self.last_reply: Reply | None = None
        self.renderer: ThrottledRenderer | None = None

        self.transcript = widgets.HTML(layout=widgets.Layout(max_height="32rem", overflow_y="auto"))
        self.live = widgets.HTML()
        self.status = widgets.HTML()
        self.input = ChatInput(layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.stop_button = widgets.Button(
            description="Stop", icon="stop", disabled=True, layout=widgets.Layout(width="6rem")
        )
        self.thread_picker = widgets.Combobox(
            value=thread,
            options=self._thread_names(),
            description="thread",
            ensure_option=False,
            continuous_update=False,
            layout=widgets.Layout(width="16rem"),
        )
        self.indicator = widgets.HTML()
        self._update_indicator()

        self.stop_button.on_click(lambda _button: self.stop())
        self.input.on_submit(self.send)
        self.thread_picker.observe(self._thread_changed, names="value")

        header = widgets.HBox([self.thread_picker, self.indicator])
        entry = widgets.HBox([self.input, self.stop_button], layout=widgets.Layout(width="100%"))
        super().__init__(
            [widgets.HTML(_STYLE), header, self.transcript, self.live, self.status, entry], **kwargs
        )
        self.add_class("acytoo-chat")
        for part, css in ((self.transcript, "transcript"), (self.live, "live"), (self.status, "status")):
            part.add_class(f"acytoo-{css}")
        self.load_transcript()

    # -- state -----------------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        return self._task is not None and not self._task.done()

    def _thread_names(self) -> list[str]:
        names = [name for name, _count, _last in self.assistant.store.threads(self.assistant.notebook)]
        return names if self.thread in names else [self.thread, *names]

    def _update_indicator(self, request: Any = None) -> None:
        """Provider and model in force: from the request being sent, else from the settings."""
        if request is not None:
            name, model = request.provider_label, request.model
        else:
            name, model = self.assistant.in_force()
        self.indicator.value = f'<span class="acytoo-note">{escaped(name)} · {escaped(model)}</span>'

    def _thread_changed(self, change: dict[str, Any]) -> None:
        new = (change["new"] or "").strip()
        if not new or new == self.thread:
            return
        if self.streaming:
            self.thread_picker.value = self.thread
            self._show_status("finish or stop the current answer before switching threads")
            return
        self.thread = new
        self.load_transcript()

    def load_transcript(self) -> None:
        """Show the thread as stored: what the magic and other widgets said is here too."""
        self.transcript.value = ""
        self._append(self.assistant.conversation(self.thread).messages())
        self.live.value = ""

    def _append(self, messages: list[Message]) -> None:
        self.transcript.value += "".join(
            message_html(m.role, m.content, label(m.status)) for m in messages
        )

    def _show_status(self, text: str, error: bool = False) -> None:
        css = "acytoo-error" if error else "acytoo-note"
        self.status.value = f'<div class="{css}">{escaped(text)}</div>' if text else ""

    def _set_busy(self, busy: bool) -> None:
        self.input.busy = busy
        self.stop_button.disabled = not busy

    # -- actions ---------------------------------------------------------------------------
    def send(self, text: str) -> asyncio.Task[Reply] | None:
        """Start streaming an answer to ``text`` and return at once (the task, for ``await``)."""
        text = (text or "").strip()
        if not text:
            return None
        if self.streaming:
            self.input.value = text  # nothing typed is lost
            self._show_status("an answer is still streaming: wait, or press Stop")
            return None
        try:
            prompt = self.assistant.expand(text)
            request = self.assistant.request(prompt, thread=self.thread)
        except (ContextError, ProviderNotFound) as exc:
            self.input.value = text  # back in the box, to be corrected
            self._show_status(str(exc), error=True)
            return None
        except Exception as exc:  # a summary or a provider module that fails: said, and nothing lost
            self.input.value = text
            self._show_status(f"acytoo: {type(exc).__name__}: {redact(str(exc))}", error=True)
            return None
        self._show_status("")
        self._update_indicator(request)  # settings may have changed since the widget was shown
        self.input.value = ""
        before = self.transcript.value
        self._append([Message("user", prompt)])
        self.renderer = ThrottledRenderer(self._draw, self.assistant.render_interval)
        self._set_busy(True)
        self._task = asyncio.get_running_loop().create_task(
            self._stream(request, self.renderer, text, before)
        )
        return self._task

    async def _stream(self, request: Any, renderer: ThrottledRenderer, typed: str, before: str) -> Reply:
        reply = Reply()
        try:
            with contextlib.suppress(asyncio.CancelledError):  # Stop: marked interrupted, recorded
                await self.assistant.ask(request.prompt, request=request, renderer=renderer, reply=reply)
            self._show_reply(reply, renderer, typed, before)
        except Exception as exc:  # anything else: say it, and leave the widget usable
            reply.status = FAILED
            self._restore(typed, before)
            self._show_status(f"acytoo: {type(exc).__name__}: {redact(str(exc))}", error=True)
        finally:
            self.last_reply = reply
            self.live.value = ""
            self._set_busy(False)
        return reply

    def _show_reply(self, reply: Reply, renderer: ThrottledRenderer, typed: str, before: str) -> None:
        if reply.text:
            self._append([Message("assistant", reply.text, reply.status)])
            if renderer.last_frame is not None and renderer.last_frame.status:
                self.transcript.value += (
                    f'<div class="acytoo-note">{escaped(renderer.last_frame.status)}</div>'
                )
        if reply.status == FAILED:
            self._restore(typed, before)
        if reply.error is not None:
            self._show_status(str(reply.error), error=True)
        elif reply.history_warning:
            self._show_status(reply.history_warning, error=True)

    def _restore(self, typed: str, before: str) -> None:
        """Nothing was answered or recorded: the transcript matches the history again, and the
        message goes back into the box to be sent once the problem is fixed."""
        self.transcript.value = before
        if not self.input.value:
            self.input.value = typed

    def _draw(self, frame: Frame) -> None:
        if frame.waiting:
            self.live.value = f'<div class="acytoo-note">⏳ {escaped(frame.note)}</div>'
            return
        self.live.value = message_html("assistant", frame.text, frame.note, streaming=not frame.final)

    def stop(self) -> None:
        """Cancel the streaming answer; the partial text stays, marked interrupted."""
        if self.streaming:
            assert self._task is not None
            self._task.cancel()

    async def wait(self) -> Reply | None:
        """Wait for the current answer (``await chat.wait()`` in a cell)."""
        if self._task is None:
            return None
        return await asyncio.shield(self._task)


def _kernel_assistant() -> Assistant:
    """This kernel's Assistant, the one the magic uses: settings and history are shared."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("ChatWidget needs IPython (a notebook kernel), or pass assistant=Assistant()")
    return shared_assistant(shell)
