"""Agent mode: one episode in which the model may look at the notebook and, with approval, run code.

``Assistant.agent(prompt, approve=...)`` runs the loop: ask the model with the tools of ``tools``;
run each read-only call at once; for ``run_python`` ask ``approve(code)``, the front end's
callback, with the exact code that would run, and run that same string only if it answers
``Decision.RUN``. Approval never comes from text: nothing a reply or a tool result says is read
as one. Code that would not read as it runs (``readable``) is refused before anyone is asked.
With ``approve=None`` (nobody can click: nbclient, papermill, a script) a run is refused and the
model is told so, unless the user opted in (``auto_run``). Every tool result passes the outbound
boundary before the model sees it. The episode is bounded by a step cap (model calls and tool
calls), a token limit and a number of failed runs. Stop or a kernel interrupt ends it at once,
approved code included (``coderun``), keeping what was done. The episode is the cell's exchange.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

from ..providers.base import ToolCall
from .coderun import CodeRun, run_approved
from .context import clip
from .errors import AcytooError, AnswerError, BudgetExceeded, ToolsUnsupported
from .frames import NullRenderer, Renderer
from .history.store import stored_episode
from .outbound import map_texts, printable
from .outcome import COMPLETE, FAILED, INTERRUPTED, PARTIAL
from .readable import unreadable
from .request import CHARS_PER_TOKEN, Reply, Request
from .stream import charge_spend, close_shown, feed, history_problem, to_thread_to_the_end
from .tools import RUN_PYTHON, TOOL_SPECS, NotebookTools, ToolError

SHOWN_ARGUMENTS = 200  # characters of a tool call's arguments shown and kept with its step
STORED_PART = 10_000  # characters of each step, message or argument the history keeps of an episode
STORED_EPISODE = 500_000  # characters of an episode's steps and messages the history keeps at most
# Code longer than this is refused before anyone is asked: nobody reads 400 lines at a click.
MAX_CODE_LINES = 400
MAX_CODE_CHARS = 20_000
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


class Decision(str, Enum):
    """The user's answer to a proposed run; ``GONE``: the buttons left the page undecided (the cell
    was re-run or its output cleared), so nobody can answer any more."""

    RUN = "run"
    SKIP = "skip"
    STOP = "stop"
    GONE = "gone"


Approve = Callable[[str], "Awaitable[Decision] | Decision"]


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


@dataclass
class Limits:
    """An episode's bounds (``Assistant.agent_*`` settings)."""

    max_steps: int = 20  # model calls and tool calls
    max_tokens: int = 30_000  # prompt + completion tokens over the episode (reported, else estimated)
    max_retries: int = 3  # failed runs after the first before the episode ends
    auto_run: bool = False  # run without asking: the user's explicit opt-in


@dataclass
class Step:
    """One thing that happened, as shown: model text, a tool call and its result, a run and its decision."""

    kind: str  # "text", "tool", "run", "note"
    text: str = ""  # model text; a tool's result; a run's result as the model was sent it
    name: str = ""
    arguments: str = ""
    code: str = ""
    decision: str = ""  # run: "run", "skip", "stop", "refused", "auto"
    failed: bool = False

    def summary(self) -> str:
        """One plain line (``%acytoo history``)."""
        if self.kind == "run":
            first = self.code.strip().splitlines()[0] if self.code.strip() else ""
            return f"run_python [{self.decision}{', failed' if self.failed else ''}]: {first}"
        if self.kind == "tool":
            return f"{self.name}({self.arguments})"
        return self.text.splitlines()[0] if self.text else ""


@dataclass
class Episode:
    """What an agent episode did and how it ended: the cell's exchange, as the user saw it."""

    prompt: str
    steps: list[Step] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # assistant tool_calls + tool results
    answer: str = ""
    outcome: str = COMPLETE
    note: str = ""  # why it ended before an answer
    error: AcytooError | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    history_warning: str = ""
    record: dict[str, Any] = field(default_factory=dict, repr=False)  # its last output's metadata

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def content(self) -> str:
        """What the history stores as the answer: the model's answer, else why there is none."""
        return self.answer or f"[{self.note or self.outcome}]"

    def status_line(self, request: Request) -> str:
        """Small print under the episode, worded as an answer's; how an unfinished one ended is
        the note above it, not repeated here."""
        done = f"{(self.finished or time.monotonic()) - self.started:.1f} s · {self.calls_line()}"
        shortened = f"history keeps each part to {STORED_PART:,} characters" if self.shortened else ""
        tokens = (self.prompt_tokens, self.completion_tokens, self.estimated)
        return request.build_status_line(done, tokens, shortened)

    def calls_line(self) -> str:
        """The tool calls and what became of the proposed runs ("3 tool calls: 1 run, 1 skipped")."""
        calls = sum(1 for step in self.steps if step.kind in ("tool", "run"))
        decided: dict[str, int] = {}
        for step in self.steps:
            if step.kind == "run":
                word = _RUN_WORDS.get(step.decision, step.decision)
                decided[word] = decided.get(word, 0) + 1
        runs = ", ".join(f"{count:,} {word}" for word, count in decided.items())
        return _count(calls, "tool call") + (f": {runs}" if runs else "")

    @property
    def shortened(self) -> bool:
        """Whether the history keeps a shortened copy: a part over ``STORED_PART`` characters, or
        all of them over ``STORED_EPISODE``."""
        return self._stored()[1]

    def _stored(self) -> tuple[dict[str, Any], bool]:
        """The episode as the history keeps it, and whether anything was left out or cut."""
        steps = [
            {**asdict(s), "text": clip(s.text, STORED_PART), "code": clip(s.code, STORED_PART)}
            for s in self.steps
        ]
        messages = [map_texts(m, lambda text: clip(text, STORED_PART)) for m in self.messages]
        cut = steps != [asdict(s) for s in self.steps] or messages != self.messages
        episode: dict[str, Any] = {"steps": steps, "messages": messages}
        if len(json.dumps(episode, ensure_ascii=False)) > STORED_EPISODE:  # many parts: steps only
            episode = {"steps": steps[:200], "messages": [], "left_out": max(0, len(steps) - 200)}
            cut = True
        if cut:
            episode["shortened"] = STORED_PART
        return episode, cut

    def recorded(self, level: str) -> dict[str, Any]:
        """The episode as its output records it: at "full" what the history keeps (steps and
        results, each part bounded), else each step's kind, tool, decision and code (bounded), no
        results: a later turn from the document then sends it as prompt and answer."""
        if level == "full":
            return self._stored()[0]
        keys = ("kind", "name", "decision", "failed")
        steps = [{**{k: getattr(s, k) for k in keys}, "code": clip(s.code, STORED_PART)} for s in self.steps]
        return {"steps": steps[:200], "left_out": max(0, len(steps) - 200)}

    def meta(self) -> dict[str, Any]:
        """Stored with the answer: the steps (for ``history``) and the messages (for later turns),
        each part at most ``STORED_PART`` characters and all of them ``STORED_EPISODE`` (when more,
        the steps only: later turns send this episode as prompt and answer); cuts are marked."""
        episode, _cut = self._stored()
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_estimated": self.estimated,
            "episode": episode,
        }


_RUN_WORDS = {"run": "run", "auto": "run", "skip": "skipped", "stop": "stopped", "refused": "refused",
              "gone": "not decided"}


class AgentView:
    """What a front end draws; the defaults draw nothing (a script reads the returned ``Episode``)."""

    def renderer(self) -> Renderer | None:
        """A renderer for the next model call's streamed text (None: not drawn)."""
        return None

    def show(self, step: Step, run: CodeRun | None = None) -> None:
        """A finished step (``run``: what the approved code printed and displayed). A ``text`` step
        is model text that came with tool calls: the renderer has already drawn it as it streamed."""

    def ended(self, episode: Episode) -> None:
        """The episode is over, however it ended (an answer, a bound, Stop, an interrupt), and was
        recorded: a front end whose task was cancelled still learns what was done."""


async def _decide(approve: Approve, code: str) -> Decision:
    answer = approve(code)
    if inspect.isawaitable(answer):
        answer = await answer
    return Decision(answer)  # anything but the three values is an error, never a run


class AgentLoop:
    """One episode over ``request`` (its provider, history and cell) with ``tools`` in ``namespace``."""

    def __init__(
        self,
        request: Request,
        tools: NotebookTools,
        approve: Approve | None,
        view: AgentView | None = None,
        limits: Limits | None = None,
        shell: Any = None,
    ) -> None:
        self.request = request
        self.tools = tools
        self.approve = approve
        self.view = view or AgentView()
        self.limits = limits or Limits()
        self.shell = shell
        self.episode = Episode(request.outbound.mask(request.prompt))
        self._failures = 0
        self._steps = 0  # model calls and tool calls so far
        self._cancelled = False  # an interrupt reached running code, which was recorded first
        self._stop = ""  # set when the episode must end: the note saying why
        self._turn: Reply | None = None  # the model turn streaming now

    async def run(self, session: Any = None) -> Episode:
        """Run the episode to its end; a cancel (kernel interrupt) keeps what was done and re-raises."""
        episode = self.episode
        try:
            try:
                base = await asyncio.to_thread(lambda: self.request.messages(tools=True))
            except Exception as exc:  # the file is locked or went away: on without history, as answer does
                episode.history_warning = history_problem(exc)
                base = self.request.messages(history=False, tools=True)
            while True:
                if self._steps >= self.limits.max_steps:
                    self._end(PARTIAL, self._step_limit())
                    break
                sent = [*base, *episode.messages]
                estimate = -(-sum(len(json.dumps(m)) for m in sent) // CHARS_PER_TOKEN)
                if episode.tokens + estimate > self.limits.max_tokens:
                    self._end(
                        PARTIAL,
                        f"stopped: the next request (≈{estimate:,} tokens) would pass the episode's token "
                        f"budget of {self.limits.max_tokens:,} (raise Assistant.agent_max_tokens)",
                    )
                    break
                if self.request.spend is not None and self.request.spend.active:
                    try:
                        await asyncio.to_thread(self.request.spend.check_messages, sent, self.request.price)
                    except BudgetExceeded as exc:
                        if not episode.steps:
                            self._end(FAILED, str(exc))  # so the finally below records nothing
                            raise  # nothing done yet: refused like any request, nothing recorded
                        self._end(PARTIAL, str(exc))
                        break
                self._steps += 1
                # masked off the loop (a long history costs tens of ms); ``open`` masks again, from its cache
                await asyncio.to_thread(self.request.masked, sent)
                reply = await self._ask(sent, session)
                self._turn = None  # its text is the answer or a step from here on
                if reply.error is not None:
                    episode.error = reply.error
                    episode.answer = reply.answer  # what the turn showed before it failed
                    self._end(PARTIAL if episode.steps or reply.answer else FAILED, str(reply.error))
                    break
                if not reply.tool_calls:
                    episode.answer = reply.answer
                    break
                await self._take_calls(reply)
                if self._stop:
                    break
        except asyncio.CancelledError:
            self._keep_turn()
            self._end(INTERRUPTED, "interrupted; the steps done so far are kept")
            raise
        except BudgetExceeded:
            raise  # refused before the first step: nothing to record (its status is FAILED)
        except Exception as exc:  # a drawing, a view or a tool failing: said, and recorded as it ended
            failure = exc if isinstance(exc, AcytooError) else AnswerError.from_exception("the episode", exc)
            episode.error = failure
            self._keep_turn()
            self._end(PARTIAL if episode.steps or episode.answer else FAILED, str(episode.error))
        finally:
            self._answer_every_call()
            episode.finished = time.monotonic()
            try:  # a second interrupt while recording: recorded all the same, and the view still ends
                if self.request.conversation is not None and episode.outcome != FAILED:
                    await to_thread_to_the_end(self._record)
            finally:
                self.view.ended(episode)
        return episode

    def _step_limit(self) -> str:
        return f"stopped: {self.limits.max_steps} steps taken (raise Assistant.agent_max_steps)"

    def _answer_every_call(self) -> None:
        """Every tool call needs its result message, or a provider refuses the thread's next request:
        calls an interrupt left unanswered are answered as not run."""
        messages = self.episode.messages
        for index in range(len(messages) - 1, -1, -1):
            calls = messages[index].get("tool_calls")
            if messages[index].get("role") == "assistant" and calls:
                answered = {m.get("tool_call_id") for m in messages[index + 1 :]}
                for call in calls:
                    if call.get("id") not in answered:
                        unanswered = {"role": "tool", "tool_call_id": call.get("id")}
                        messages.append({**unanswered, "content": "not run: the episode ended"})
                return

    def _keep_turn(self) -> None:
        """A model turn cut short (a cancel, a failure) keeps the text its final draw showed."""
        if self._turn is not None and self._turn.answer:
            self.episode.answer = self._turn.answer

    def _end(self, outcome: str, note: str) -> None:
        self.episode.outcome = outcome
        self.episode.note = note
        self._stop = note

    async def _ask(self, messages: list[dict[str, Any]], session: Any) -> Reply:
        request = self.request
        renderer = self.view.renderer() or NullRenderer()
        reply = Reply(prompt_chars=sum(len(json.dumps(m)) for m in messages))
        self._turn = reply
        renderer.start(request.label)
        try:
            opened = lambda: request.open(messages, session, tools=TOOL_SPECS)  # noqa: E731
            await feed(opened, request.adapter.name, renderer, reply)
        finally:
            # Drawn first, so a second interrupt while charging cannot leave the screen short of the record.
            close_shown(renderer, reply)  # a failed final draw: the text the last draw showed
            prompt, completion, estimated = reply.tokens()
            self.episode.prompt_tokens += prompt
            self.episode.completion_tokens += completion
            self.episode.estimated |= estimated
            if request.spend is not None:
                charge_spend(request, reply)  # queued for the ledger's own thread
                self.episode.history_warning = self.episode.history_warning or reply.history_warning
        return reply

    async def _take_calls(self, reply: Reply) -> None:
        episode = self.episode
        if reply.answer:
            self._show(Step("text", reply.answer))
        episode.messages.append(
            {
                "role": "assistant",
                "content": reply.answer,
                "tool_calls": [c.for_provider() for c in reply.tool_calls],
            }
        )
        left = 0  # calls not run because the episode ended or reached its step limit
        for call in reply.tool_calls:
            if not self._stop and self._steps >= self.limits.max_steps:
                self._end(PARTIAL, self._step_limit())
            if self._stop:  # every call needs its result message, or the next request is refused
                result = f"not run: {self._stop}"
                left += 1
            else:
                self._steps += 1
                result = await self._call(call)
            episode.messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            if self._cancelled:  # approved code was interrupted: its result is kept, the cancel goes on
                raise asyncio.CancelledError
        if left:
            more = _count(left, "more tool call")
            self._show(Step("note", f"{more} in this message not run: {self._stop}"))

    async def _call(self, call: ToolCall) -> str:
        """One tool call; what it returns is what the model is sent (through the boundary)."""
        limit = self.tools.context.summary_chars
        self.request.outbound.refresh()  # what the last run defined is masked too
        mask = self.request.outbound.mask
        # Our frame's caption shows the name: a model's free text there could pose as a step of ours.
        name = call.name if _TOOL_NAME.match(call.name) else "(a tool name that is not one)"
        shown = mask(clip(call.arguments, SHOWN_ARGUMENTS)) if call.arguments else ""
        try:
            arguments = json.loads(call.arguments or "{}")
            if not isinstance(arguments, dict):
                raise ValueError
        except ValueError:
            result = f"error: the arguments of {name} are not a JSON object"
            self._show(Step("tool", result, name, shown, failed=True))
            return result
        if call.name == RUN_PYTHON:
            return await self._run(arguments.get("code"), limit)
        try:
            result = mask(self.tools.call(call.name, arguments))
            failed = False
        except ToolError as exc:
            result, failed = mask(f"error: {exc}"), True
        self._show(Step("tool", result, name, shown, failed=failed))
        return result

    async def _run(self, code: Any, limit: int) -> str:
        if not isinstance(code, str) or not code.strip():
            result = "error: run_python takes the code as a non-empty string"
            self._show(Step("run", result, RUN_PYTHON, code=str(code or ""), decision="refused", failed=True))
            return result
        code = code.replace("\r\n", "\n")
        lines = code.count("\n") + 1
        why = unreadable(code)
        if len(code) > MAX_CODE_CHARS or lines > MAX_CODE_LINES:
            why = (
                f"is {lines:,} lines and {len(code):,} characters, more than anyone reads at a click "
                f"({MAX_CODE_LINES} lines, {MAX_CODE_CHARS:,} characters at most)"
            )
        if why:  # what runs must be exactly what the user read and approved: not asked at all
            result = f"refused: the code {why}; nobody was asked: write it again, shorter, in plain text"
            shown = clip(printable(code), MAX_CODE_CHARS).encode("ascii", "backslashreplace").decode("ascii")
            self._show(Step("run", result, RUN_PYTHON, code=shown, decision="refused", failed=True))
            return result
        if self.limits.auto_run:
            decision = Decision.RUN
            shown_as = "auto"
        elif self.approve is None:
            result = (
                "refused: nobody can approve code here (no one to click), so it was not run; answer "
                "without running code"
            )
            self._show(Step("run", result, RUN_PYTHON, code=code, decision="refused"))
            return result
        else:
            decision = await _decide(self.approve, code)  # the user's, from the front end
            shown_as = decision.value
        if decision is Decision.GONE:
            why = "the approval left the page undecided (its cell re-run or its output cleared)"
            self._end(INTERRUPTED, f"ended: {why}; the steps done so far are kept")
            self._show(Step("run", f"not run: {why}", RUN_PYTHON, code=code, decision="gone"))
            return f"not run: {why}"
        if decision is Decision.STOP:
            self._end(INTERRUPTED, "stopped by the user; the steps done so far are kept")
            self._show(
                Step("run", "not run: the user stopped the episode", RUN_PYTHON, code=code, decision="stop")
            )
            return "not run: the user stopped the episode"
        if decision is Decision.SKIP:
            result = "not run: the user skipped this code"
            self._show(Step("run", result, RUN_PYTHON, code=code, decision="skip"))
            return result
        namespace = self.tools.context.namespace
        run = await run_approved(code, namespace, self.shell, limit)  # type: ignore[arg-type]  # the user's dict
        self.request.outbound.refresh()  # what the code just defined is masked in its own output
        result = self.request.outbound.mask(run.for_model(limit))
        self._show(Step("run", result, RUN_PYTHON, code=code, decision=shown_as, failed=run.failed), run)
        if run.cancelled:  # the interrupt goes on once the result is the call's (``_take_calls``)
            self._cancelled = True
        elif run.interrupted:
            self._end(INTERRUPTED, "interrupted while the code ran; the steps done so far are kept")
        elif run.failed:
            self._failures += 1
            if self._failures > self.limits.max_retries:
                self._end(
                    PARTIAL,
                    f"stopped: the code failed {self._failures} times "
                    f"(Assistant.agent_max_retries = {self.limits.max_retries})",
                )
        else:
            self._failures = 0
        return result

    def _show(self, step: Step, run: CodeRun | None = None) -> None:
        self.episode.steps.append(step)
        self.view.show(step, run)

    def _record(self) -> None:
        episode, request = self.episode, self.request
        if request.conversation is None:
            return
        seconds = (episode.finished or time.monotonic()) - episode.started
        tokens = (episode.prompt_tokens, episode.completion_tokens, episode.estimated)
        steps = episode.recorded(request.record_level)
        episode.record = request.notebook_record(episode.content, episode.outcome, tokens, seconds, steps)
        try:
            request.conversation.record(
                request.sent_prompt,
                episode.content,
                episode.outcome,
                request.stored_meta(),
                request.cell,
                answer_meta={**episode.meta(), "chain": request.chain(episode.content, episode.outcome)},
            )
        except Exception as exc:  # said, one line; a locked file keeps the exchange for the next write
            episode.history_warning = history_problem(exc)


def episode_steps(meta: Mapping[str, Any]) -> Sequence[Step]:
    """The steps stored with an answer (empty for an ordinary answer). A step another version wrote
    keeps the fields this one knows, with the types it knows; one without a kind is left out."""
    stored = stored_episode(meta).get("steps")
    steps = (_stored_step(step) for step in stored) if isinstance(stored, list) else ()
    return [step for step in steps if step is not None]


def _stored_step(stored: Any) -> Step | None:
    if not isinstance(stored, Mapping) or not isinstance(stored.get("kind"), str):
        return None
    blank = Step(stored["kind"])
    known = {f.name: stored[f.name] for f in fields(Step) if f.name in stored}
    return Step(**{k: v for k, v in known.items() if isinstance(v, type(getattr(blank, k)))})


async def run_agent(
    assistant: Any, request: Request, approve: Approve | None, view: AgentView | None, auto_run: bool = False
) -> Episode:
    """``Assistant.agent``'s body: refuse a provider without tools, then run one episode."""
    if not request.adapter.tools:
        why = getattr(request.provider, "no_tools_reason", "")
        raise ToolsUnsupported(
            f"agent mode needs a provider with tool calls; {request.provider_label or 'this one'} has "
            f"none{f' ({why})' if why else ''}: use -p openai with a tool-calling model (OpenAI; Ollama, "
            "vLLM or llama.cpp's server running e.g. qwen2.5 or llama3.2) or a g4f provider with "
            "supports_native_tools"
        )
    shell = assistant.shell
    hidden = getattr(shell, "user_ns_hidden", None) or {}
    limits = Limits(
        assistant.agent_max_steps,
        assistant.agent_max_tokens,
        assistant.agent_max_retries,
        assistant.agent_auto_run or auto_run,
    )
    tools = NotebookTools(assistant.context(mask=request.outbound.mask), hidden)
    loop = AgentLoop(request, tools, approve, view, limits, shell)
    async with assistant.session_lease() as session:
        return await loop.run(session)
