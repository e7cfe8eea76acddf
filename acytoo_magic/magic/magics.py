"""``%%acytoo`` and ``%acytoo``: a thin front end that parses options and draws; the core does the rest."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.assistant import Assistant, shared_assistant
from ..core.errors import AcytooInterrupted, ContextError, ProviderNotFound
from ..core.loops import signals_wake_loop
from ..core.outcome import COMPLETE, FAILED, INTERRUPTED, PARTIAL
from ..core.request import Reply, Request
from ..present.throttle import ThrottledRenderer
from .codeblocks import first_block
from .output import DisplayRenderer, TerminalRenderer, report
from .subcommands import Subcommands, split_args

FORMATS = ("markdown", "text", "code")
INTERRUPTED_LINE = "Interrupted: the answer above stops here; what came so far is kept."
AGENT_INTERRUPTED_LINE = "Interrupted: the episode above stops here; the steps done so far are kept."


_CALL = re.compile(r"^get_ipython\(\)\.run_(?P<kind>cell|line)_magic\('acytoo', ")
_ASYNC_CALL = "await get_ipython().magics_manager.registry['AcytooMagics'].run_{kind}_async("


def await_acytoo_calls(lines: list[str]) -> list[str]:
    """Make top-level ``%%acytoo``/``%acytoo`` calls awaited, so they run on the kernel's own loop.

    IPython then runs the cell as a coroutine on the running loop: the stream never nests the
    loop, other shell messages keep their order, and an interrupt arrives as a cancel.
    """
    out = []
    for line in lines:
        match = _CALL.match(line)
        if match:
            line = _ASYNC_CALL.format(kind=match["kind"]) + line[match.end() :]
        out.append(line)
    return out


def top_level_await_applies(shell: Any) -> bool:
    """True when the cell being transformed will be run as a coroutine on the kernel's loop.

    Not so with ``%autoawait False`` or a non-asyncio runner, and not for code transformed while
    user code runs: ``%%time``, ``%%capture``, ``%%timeit``, ``%run x.ipynb``/``x.ipy`` and a function
    calling ``run_cell`` compile or run the cell synchronously, where ``await`` is a SyntaxError or
    would nest the running loop. User code runs with the notebook's namespace as its globals, so a
    frame with those globals on the stack means the transform is nested.
    """
    from IPython.core.async_helpers import _asyncio_runner

    if getattr(shell, "kernel", None) is None or not getattr(shell, "autoawait", False):
        return False
    if getattr(shell, "loop_runner", None) is not _asyncio_runner:
        return False
    user_globals = shell.user_global_ns
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is user_globals:
            return False
        frame = frame.f_back
    return True


def cut_short(reply: Reply) -> str:
    """How an answer was cut before its end ("" if it was not): broken off, interrupted, or
    stopped by the backend (the token limit, repeating itself)."""
    if reply.outcome in (PARTIAL, INTERRUPTED):
        return reply.note or str(reply.outcome)
    if reply.finish_reason in ("length", "repetition"):
        return (reply.finish_note or "stopped at the token limit").split(" (raise it")[0]
    return ""


def _message_only(exc: BaseException) -> BaseException:
    """The exception shown by IPython as its message alone: no class name, no traceback."""
    exc._render_traceback_ = lambda: [str(exc)]  # type: ignore[attr-defined]  # IPython's hook
    return exc


class _InterruptSaidOnce:
    """A drawer that leaves the "interrupted" note out: the cell's one-line error says it."""

    def close(self, text: str, note: str = "", small_print: str = "") -> None:
        super().close(text, "" if note == INTERRUPTED else note, small_print)  # type: ignore[misc]


class CellOutput(_InterruptSaidOnce, DisplayRenderer):
    """The notebook output area of one ``%%acytoo`` cell."""


class TerminalOutput(_InterruptSaidOnce, TerminalRenderer):
    """A terminal IPython's output of one ``%%acytoo`` cell."""


@magics_class
class AcytooMagics(Subcommands, Magics):
    """Ask an LLM from a cell; the answer streams in place as Markdown. Settings: ``%config Assistant``."""

    def __init__(
        self,
        shell: Any = None,
        assistant: Assistant | None = None,
        chat: Callable[[str, Assistant], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(shell=shell, **kwargs)
        self.assistant = assistant if assistant is not None else shared_assistant(shell)
        # what `%acytoo chat` displays: the extension loader passes the chat widget in (the magic
        # does not import the other front end, docs/internals.md)
        self.chat = chat
        self.last_reply: Reply | None = None
        self.last_renderer: ThrottledRenderer | None = None
        self._calls: tuple[str, int] = ("", 0)  # (execute request, answers it asked for so far)
        self._placed: dict[str, str] = {}  # cell -> the code -f code last put below it (this session)

    def transform_lines(self, lines: list[str]) -> list[str]:
        """The input transformer: top-level calls become awaited where top-level await applies."""
        if not any(_CALL.match(line) for line in lines):  # most cells: no stack walk
            return lines
        return await_acytoo_calls(lines) if top_level_await_applies(self.shell) else lines

    def cell_key(self, typed: str) -> str | None:
        """Which notebook cell is asking, so a re-run replaces its exchange (None: a terminal chat).

        JupyterLab and Notebook 7 send the cell's id with the execute request; nbclient and
        papermill send none, so there the text typed stands for the cell. The n-th answer a cell
        asks for in one run (a loop, ``%run other.ipynb``) is told apart by ``#n``.
        """
        if getattr(self.shell, "kernel", None) is None:
            return None
        request = self._parent().get("header", {}).get("msg_id", "")
        calls = self._calls[1] + 1 if request and self._calls[0] == request else 0
        self._calls = (request, calls)
        return f"{self._cell_base(typed)}#{calls}"

    def _parent(self) -> dict[str, Any]:
        """The execute request being answered ({} in a terminal, or an older kernel without one)."""
        try:
            return self.shell.kernel.get_parent() or {}
        except Exception:
            return {}

    def _cell_base(self, typed: str) -> str:
        """The asking cell: its id where the frontend sends one, else the text typed in it."""
        cell_id = self._parent().get("metadata", {}).get("cellId")
        return f"id:{cell_id}" if cell_id else "text:" + hashlib.sha256(typed.encode()).hexdigest()[:16]

    # -- the magic -------------------------------------------------------------------------
    @magic_arguments()
    @argument("-p", "--provider", help="provider name or package.module:Class")
    @argument("-m", "--model", help="model name")
    @argument("-t", "--temperature", type=float, help="sampling temperature")
    @argument("--url", help="provider base URL")
    @argument("--proxy", help="HTTP proxy URL")
    @argument("-c", "--thread", default=None, help="named history thread of this notebook (default: default)")
    @argument("--no-history", action="store_true", help="send only this prompt and record nothing")
    @argument("-s", "--system", help="system prompt for this cell")
    @argument(
        "-f",
        "--format",
        choices=FORMATS,
        default="markdown",
        help="markdown (default), text, or code (the answer's code also goes into a new cell below)",
    )
    @argument(
        "--cut-code",
        action="store_true",
        help="with -f code: place the code even from a cut answer (token limit, broken off), marked so",
    )
    @argument("-o", "--output", metavar="VAR", help="store the answer text in this variable")
    @argument("--context", metavar="VAR[,VAR...]", help="attach summaries of these variables to the prompt")
    @argument(
        "--agent",
        action="store_true",
        help="agent mode: the model may list and summarise variables, read cells, and propose code, "
        "which runs only when you click Run",
    )
    @argument("--auto-run", action="store_true", help="with --agent: run proposed code WITHOUT asking")
    @argument("--dry-run", action="store_true", help="show the exact messages that would be sent, send none")
    @argument(
        "--send-secret",
        action="append",
        default=[],
        metavar="NAME",
        help="send this secret as it is for this cell (a name the masking line lists); repeatable",
    )
    @line_cell_magic
    def acytoo(self, line: str, cell: str | None = None) -> None:
        """Ask the provider; the answer streams into this cell's output, rendered as Markdown.

        Cell magic: ``%%acytoo [options]`` then the prompt. Line magic: ``%acytoo help`` lists
        the subcommands (history, reset, threads, providers, config, use, export, explain, chat).
        """
        if cell is None:
            return self._subcommand(line)
        self._ask(*self._prepare_cell(line, cell))

    async def run_cell_async(self, line: str, cell: str) -> None:
        """``%%acytoo`` awaited on the kernel's own loop (the cell is rewritten to call this)."""
        # IPython expands {x} and $x in a magic's line before calling it; so does this path.
        line = self.shell.var_expand(line, 1)
        with signals_wake_loop():  # an interrupt cancels at once, not at the next chunk or timer
            await self._ask_async(*self._prepare_cell(line, cell))

    async def run_line_async(self, line: str) -> None:
        """``%acytoo ...`` awaited on the kernel's loop: ``explain`` streams, the rest are instant."""
        # As IPython does for any line magic it calls: {x} and $x expanded, for every subcommand.
        line = self.shell.var_expand(line, 1)
        words = line.split(None, 1)
        if words and words[0] == "explain":
            with signals_wake_loop():
                await self._ask_async(*self._prepare_explain(words[1] if len(words) > 1 else ""))
        else:
            self._subcommand(line)

    def _prepare_cell(self, line: str, cell: str) -> tuple[Any, str, str]:
        args = self.options(split_args(line))
        prompt = cell.strip()
        if not prompt:
            raise UsageError("%%acytoo: the cell is empty; write the prompt below the %%acytoo line")
        attach = [n.strip() for n in (args.context or "").split(",") if n.strip()]
        try:
            expanded = self.assistant.expand(prompt, attach, args.send_secret)
            if expanded != prompt:  # what was typed, and what it brought, for history and the chat
                labels = self.assistant.context().labels(prompt) + [f"{name} (--context)" for name in attach]
                args.typed = {"typed": prompt, "context": labels}
        except ContextError as exc:
            raise UsageError(f"%%acytoo: {exc}") from None
        return args, expanded, f"%%acytoo {line}\n{cell}"

    def _start(self, args: Any, prompt: str, typed: str) -> tuple[Request, ThrottledRenderer]:
        cell = self.cell_key(typed) if not args.no_history else None
        meta = {"execution_count": self.shell.execution_count - 1, **getattr(args, "typed", {})}
        try:
            request = self.assistant.request(
                prompt,
                thread=args.thread,
                provider=args.provider,
                model=args.model,
                temperature=args.temperature,
                url=args.url,
                proxy=args.proxy,
                system=args.system,
                history=not args.no_history,
                cell=cell,
                # IPython counts a stored cell before running it: this cell is In [count - 1]
                # (ipykernel's execute_reply says the same)
                meta=meta if cell else None,
                send_secrets=args.send_secret,
                # the cell as the frontend sent it: the saved document's source, until it is edited
                source=str(self._parent().get("content", {}).get("code") or typed),
            )
        except ProviderNotFound as exc:  # NoProviderChosen too: one line on how to choose, nothing sent
            raise UsageError(str(exc)) from None
        if getattr(args, "alone", False):
            request.history_chars = 0  # explain: this question alone is sent, and recorded in the thread
        renderer: ThrottledRenderer
        if getattr(self.shell, "kernel", None) is not None:
            renderer = CellOutput(args.format, self.assistant.render_interval)
        else:
            renderer = TerminalOutput()
        self.last_renderer = renderer
        return request, renderer

    def _ask(self, args: Any, prompt: str, typed: str) -> None:
        """Stream one answer from synchronous code (a terminal, or a call nested in user code)."""
        if args.dry_run:
            return self._dry_run(args, prompt, typed)
        if args.agent:
            try:
                return self.assistant.runner.run(self._agent(args, prompt, typed, on_loop=False))
            except KeyboardInterrupt:
                raise _message_only(AcytooInterrupted(AGENT_INTERRUPTED_LINE)) from None
        request, renderer = self._start(args, prompt, typed)
        reply = Reply()
        try:
            asked = self.assistant.ask(prompt, request=request, renderer=renderer, reply=reply)
            self.assistant.runner.run(asked)
        except KeyboardInterrupt:
            raise self._interrupted(args, reply) from None
        self._finish(args, reply, typed)

    async def _agent(self, args: Any, prompt: str, typed: str, on_loop: bool = True) -> None:
        """``--agent``: one episode drawn step by step; code runs only after Run (``agent_output``)."""
        from .agent_view import run_agent_cell

        request, _ = self._start(args, prompt, typed)
        try:
            episode = await run_agent_cell(self.assistant, request, self.shell, on_loop, args.auto_run)
        except asyncio.CancelledError:  # a kernel interrupt: the episode recorded what was done
            # Still an error, so Run All stops here; one calm line, said once (as for an answer).
            raise _message_only(AcytooInterrupted(AGENT_INTERRUPTED_LINE)) from None
        if args.output:
            self.shell.user_ns[args.output] = episode.answer
        if args.format == "code":
            self._place_episode(episode, typed)

    def _dry_run(self, args: Any, prompt: str, typed: str) -> None:
        """``--dry-run``: the messages (and tools, with ``--agent``) as they would be sent; nothing is."""
        from ..core.request import preview
        from .agent_view import show_preview

        request, _ = self._start(args, prompt, typed)
        show_preview(preview(request, args.agent), getattr(self.shell, "kernel", None) is not None)

    async def _ask_async(self, args: Any, prompt: str, typed: str) -> None:
        if args.dry_run:
            return self._dry_run(args, prompt, typed)
        if args.agent:
            return await self._agent(args, prompt, typed)
        request, renderer = self._start(args, prompt, typed)
        reply = Reply()
        try:
            await self.assistant.ask(prompt, request=request, renderer=renderer, reply=reply)
        except asyncio.CancelledError:  # ipykernel turns a kernel interrupt into a cancel
            # Still an error, so Run All stops here; one calm line, the answer's note left out.
            raise self._interrupted(args, reply) from None
        self._finish(args, reply, typed)

    def _interrupted(self, args: Any, reply: Reply) -> AcytooInterrupted:
        """-o gets an interrupted answer's text too, as the history does."""
        self.last_reply = reply
        if args.output and reply.answer:
            self.shell.user_ns[args.output] = reply.answer
        return _message_only(AcytooInterrupted(INTERRUPTED_LINE))

    def _finish(self, args: Any, reply: Reply, typed: str = "") -> None:
        """After the stream: report, store ``-o``, create the code cell."""
        self.last_reply = reply
        if args.output and reply.outcome != FAILED:  # a partial answer too: what the user saw
            self.shell.user_ns[args.output] = reply.answer
        if args.format == "code" and reply.outcome != FAILED:  # a cut answer's: refused, or marked
            self._place_code(reply.answer, typed, cut_short(reply), args.cut_code)
        report(reply)

    def _place_episode(self, episode: Any, typed: str) -> None:
        """``-f code`` on an agent cell: the runs you approved, in order, as one new cell below
        (these steps, without the model); an episode that ran nothing places its answer's code,
        when it ended complete."""
        runs = [s.code for s in episode.steps if s.kind == "run" and s.decision in ("run", "auto")]
        if runs:
            count = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
            head = f"# acytoo: the {count} approved in this episode, in order, without the model\n"
            code = head + "\n\n".join(code.rstrip() for code in runs)
            self._place(code, typed, "the episode's approved code")
        elif episode.answer and episode.outcome == COMPLETE:  # not a cut-off answer
            self._place_code(episode.answer, typed)
        else:
            print("acytoo: no cell was added: the episode ran no approved code and has no complete answer")

    def _place_code(self, text: str, typed: str, cut: str = "", anyway: bool = False) -> None:
        """Put the answer's code into a new cell below, and say so; a re-run with the same code adds none.

        Code from a cut answer (``cut`` says how it ended; an unclosed fence or Python that stops
        mid-statement count too) is refused with one line why, or with ``anyway`` placed under a
        comment that says so: running half a cell can replace a variable with something broken.

        The kernel cannot see or replace the cell it created (the ``set_next_input`` payload either
        inserts a cell below or, with ``replace=True``, overwrites the asking cell itself), so it
        remembers what it put below each cell this session and does not insert the same code twice.
        """
        block = first_block(text)
        if block is None:
            print("acytoo: the answer has no fenced code block, so no cell was added")
            return
        code = block.code
        if why := cut or block.incomplete():
            if not anyway:
                print(f"acytoo: no cell was added: the answer was cut ({why}), so its code may be "
                      "incomplete; -f code --cut-code places it anyway")
                return
            code = f"# acytoo: from a cut answer ({why}): may be incomplete\n{code}"
        self._place(code, typed)

    def _place(self, code: str, typed: str, what: str = "the answer's code") -> None:
        """Insert ``code`` as a new cell below, once per distinct code (see ``_place_code``)."""
        lines = f"{len(code.splitlines())} line{'s' if len(code.splitlines()) != 1 else ''}"
        in_kernel = getattr(self.shell, "kernel", None) is not None
        key = self._cell_base(typed)
        digest = hashlib.sha256(code.encode()).hexdigest()
        if in_kernel and self._placed.get(key) == digest:
            print(f"acytoo: {what} ({lines}) is the same as last run's, already in the cell below")
            return
        before = self._placed.get(key) if in_kernel else None
        self._placed[key] = digest
        self.shell.set_next_input(code, replace=False)
        if not in_kernel:
            print(f"acytoo: {what} ({lines}) is in your next prompt")
        elif before is None:
            print(f"acytoo: {what} ({lines}) is in a new cell below")
        else:
            print(f"acytoo: {what} ({lines}) changed: a new cell below has it, last run's follows")

    def options(self, argv: list[str] | None = None) -> Any:
        """The cell magic's options parsed from ``argv`` (defaults when empty)."""
        return self.acytoo.parser.parse_args(argv or [])
