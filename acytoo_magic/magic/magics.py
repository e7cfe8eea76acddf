"""``%%acytoo`` and ``%acytoo``: a thin front end that parses options and draws; the core does the rest."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser, argument, magic_arguments

from .. import providers
from ..core.assistant import Assistant, shared_assistant
from ..core.errors import AcytooError, AcytooInterrupted, ContextError, ProviderNotFound
from ..core.history.thread import DEFAULT_THREAD
from ..core.loops import signals_wake_loop
from ..core.outcome import COMPLETE, FAILED, INTERRUPTED, PARTIAL, label
from ..core.request import Reply, Request
from ..present.throttle import ThrottledRenderer
from ..providers import local_model
from ..providers.base import remote_host, url_host
from . import choice, listing
from .codeblocks import first_block
from .output import DisplayRenderer, TerminalRenderer

FORMATS = ("markdown", "text", "code")
CELL_EXAMPLES = (
    "%%acytoo                       then: Why does my groupby return NaN for {df}?",
    "%%acytoo -p local              then: Explain a left join   (the bundled model: offline, no key)",
    "%%acytoo -c plots -f code      then: Plot sales per month from {sales}",
    "%%acytoo -p openai -m llama3.2 --url http://localhost:11434/v1   (Ollama)",
    "%%acytoo --no-history -o summary --context df   then: Summarise this data",
    "%acytoo use local              then every cell, in every notebook, answers offline",
)
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


class SubcommandParser(MagicArgumentParser):
    """argparse for ``%acytoo SUBCOMMAND``: errors become a one-line UsageError with the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        usage = " ".join(self.format_usage().split())
        raise UsageError(f"{message}; {usage}")


def split_args(line: str) -> list[str]:
    """Shell-like splitting, so ``-s "be terse"`` means the words, not the quotes."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%acytoo: {exc} in {line!r}") from None


def _origin(message: Any) -> str:
    """Where an exchange came from, for ``%acytoo history``: the cell (execution count) or a chat."""
    if message.cell is None:
        return "chat"
    count = message.meta.get("execution_count")
    return f"cell In [{count}]" if count is not None else "cell"


def cut_short(reply: Reply) -> str:
    """How an answer was cut before its end ("" if it was not): broken off, interrupted, or
    stopped by the backend (the token limit, repeating itself)."""
    if reply.status in (PARTIAL, INTERRUPTED):
        return reply.note or str(reply.status)
    if reply.finish_reason in ("length", "repetition"):
        return (reply.finish_note or "stopped at the token limit").split(" (raise it")[0]
    return ""


def _one_line(exc: BaseException) -> BaseException:
    """The exception shown by IPython as its message alone: no class name, no traceback."""
    exc._render_traceback_ = lambda: [str(exc)]  # type: ignore[attr-defined]  # IPython's hook
    return exc


class _InterruptSaidOnce:
    """A drawer that leaves the "interrupted" note out: the cell's one-line error says it."""

    def close(self, text: str, note: str = "", status_line: str = "") -> None:
        super().close(text, "" if note == INTERRUPTED else note, status_line)  # type: ignore[misc]


class CellOutput(_InterruptSaidOnce, DisplayRenderer):
    """The notebook output area of one ``%%acytoo`` cell."""


class TerminalOutput(_InterruptSaidOnce, TerminalRenderer):
    """A terminal IPython's output of one ``%%acytoo`` cell."""


def _subparser(name: str, help_text: str) -> SubcommandParser:
    return SubcommandParser(prog=f"%acytoo {name}", description=help_text, add_help=False)


@magics_class
class AcytooMagics(Magics):
    """Ask an LLM from a cell; the answer streams in place as Markdown. Settings: ``%config Assistant``."""

    def __init__(self, shell: Any = None, assistant: Assistant | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.assistant = assistant if assistant is not None else shared_assistant(shell)
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
            )
        except ProviderNotFound as exc:  # NoProviderChosen too: one line on how to choose, nothing sent
            raise UsageError(str(exc)) from None
        if getattr(args, "alone", False):
            request.budget = 0  # explain: this question alone is sent, and recorded in the thread
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
                raise _one_line(AcytooInterrupted(AGENT_INTERRUPTED_LINE)) from None
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
            raise _one_line(AcytooInterrupted(AGENT_INTERRUPTED_LINE)) from None
        if args.output:
            self.shell.user_ns[args.output] = episode.answer
        if args.format == "code" and episode.answer and episode.status == COMPLETE:  # not a cut-off answer
            self._place_code(episode.answer, typed)

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
        if args.output and reply.text:
            self.shell.user_ns[args.output] = reply.text
        return _one_line(AcytooInterrupted(INTERRUPTED_LINE))

    def _finish(self, args: Any, reply: Reply, typed: str = "") -> None:
        """After the stream: report, store ``-o``, create the code cell."""
        self.last_reply = reply
        if reply.history_warning:
            print(f"acytoo: {reply.history_warning}", file=sys.stderr)
        if args.output and reply.status != FAILED:  # a partial answer too: what the user saw
            self.shell.user_ns[args.output] = reply.text
        if args.format == "code" and reply.status != FAILED:  # a cut answer's: refused, or marked
            self._place_code(reply.text, typed, cut_short(reply), args.cut_code)
        if reply.error is not None:
            raise AcytooError(str(reply.error))

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
        lines = f"{len(code.splitlines())} line{'s' if len(code.splitlines()) != 1 else ''}"
        in_kernel = getattr(self.shell, "kernel", None) is not None
        key = self._cell_base(typed)
        digest = hashlib.sha256(code.encode()).hexdigest()
        if in_kernel and self._placed.get(key) == digest:
            print(f"acytoo: the answer's code ({lines}) is the same as last run's, already in the cell below")
            return
        before = self._placed.get(key) if in_kernel else None
        self._placed[key] = digest
        self.shell.set_next_input(code, replace=False)
        if not in_kernel:
            print(f"acytoo: the answer's code ({lines}) is in your next prompt")
        elif before is None:
            print(f"acytoo: the answer's code ({lines}) is in a new cell below")
        else:
            print(f"acytoo: the answer's code ({lines}) changed: a new cell below has it, last run's follows")

    def options(self, argv: list[str] | None = None) -> Any:
        """The cell magic's options parsed from ``argv`` (defaults when empty)."""
        return self.acytoo.parser.parse_args(argv or [])

    # -- line subcommands ------------------------------------------------------------------
    def _subcommand(self, line: str) -> None:
        words = line.split(None, 1)
        name = words[0] if words else "help"
        rest = words[1] if len(words) > 1 else ""
        handler = self.subcommands().get(name)
        if handler is None:
            raise UsageError(f"%acytoo: unknown subcommand {name!r}; one of: {', '.join(self.subcommands())}")
        handler(rest)

    def subcommands(self) -> dict[str, Any]:
        """The table of ``%acytoo`` subcommands; help is built from it, so it cannot drift."""
        return {
            "help": self._help,
            "history": self._history,
            "reset": self._reset,
            "threads": self._threads,
            "providers": self._providers,
            "config": self._config,
            "use": self._use,
            "export": self._export,
            "explain": self._explain,
            "chat": self._chat,
        }

    def _parse(self, parser: SubcommandParser, rest: str) -> Any:
        return parser.parse_args(split_args(rest))

    def _help(self, rest: str) -> None:
        """Show this overview: %acytoo help."""
        lines = ["%%acytoo [options] + the prompt in the cell body. Options (%%acytoo? has the details):"]
        for action in self.acytoo.parser._actions:
            if action.option_strings and action.dest != "help":
                flags = ", ".join(action.option_strings)
                lines.append(f"  {flags:<22} {action.help}")
        lines += ["", "Examples:", *(f"  {example}" for example in CELL_EXAMPLES), "", "Subcommands:"]
        for handler in self.subcommands().values():  # each docstring's first line: "What it does: usage."
            what, _, usage = (handler.__doc__ or "").strip().splitlines()[0].rstrip(".").partition(": %")
            lines.append(f"  %{usage:<40} {what[0].lower()}{what[1:]}")
        lines += [
            "",
            "In a prompt: {df} a variable (summarised), {In[3]} / {Out[3]} a cell, {Err} the last error.",
        ]
        print("\n".join(lines))

    def _history(self, rest: str) -> None:
        """List a thread, one line an exchange (--full: whole): %acytoo history [-c THREAD] [--full]."""
        from IPython.display import display

        parser = _subparser("history", "list a thread")
        parser.add_argument("-c", "--thread", default=None)
        parser.add_argument("--full", action="store_true")
        args = self._parse(parser, rest)
        thread = args.thread or DEFAULT_THREAD
        messages = self.assistant.conversation(args.thread).messages()
        if not messages:
            print(f"(thread {thread!r} is empty)")
            return
        shown = (listing.full if args.full else listing.compact)(thread, messages, _origin)
        display(shown.bundle(), raw=True)  # a reply is shown through the one policy, stored or live

    def _reset(self, rest: str) -> None:
        """Forget a thread, or all threads of this notebook: %acytoo reset [-c THREAD | --all]."""
        parser = _subparser("reset", "forget history")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("-c", "--thread", default=None)
        group.add_argument("--all", action="store_true")
        args = self._parse(parser, rest)
        notebook = self.assistant.notebook
        thread = None if args.all else (args.thread or DEFAULT_THREAD)
        removed = self.assistant.store.reset(notebook, thread)
        print(f"removed {removed} messages from {'all threads' if thread is None else repr(thread)}")

    def _threads(self, rest: str) -> None:
        """List this notebook's threads, or take over a renamed one's: %acytoo threads [--adopt OLD]."""
        parser = _subparser("threads", "list threads")
        parser.add_argument("--adopt", metavar="NOTEBOOK", help="move NOTEBOOK's threads to this notebook")
        args = self._parse(parser, rest)
        notebook = self.assistant.notebook
        if args.adopt:
            moved = self.assistant.store.move(args.adopt, notebook)
            print(f"moved {moved} messages from {args.adopt!r} to {notebook!r}")
        rows = self.assistant.store.threads(notebook)
        tokens = self.assistant.store.tokens(notebook)
        print(f"threads of {notebook!r} ({self.assistant.daily_budget().shown()}):")
        for thread, count, _last in rows:
            prompt, completion, estimated = tokens.get(thread, (0, 0, False))
            about = "≈" if estimated else ""
            print(f"  {thread}: {count} messages · {about}{prompt:,} tokens in, {about}{completion:,} out")
        if rows:
            return
        print("  (none yet)")
        others = [(name, count) for name, count in self.assistant.store.notebooks() if name != notebook]
        if others:
            listed = ", ".join(f"{name!r} ({count} messages)" for name, count in others[:5])
            print(f"other notebooks in {self.assistant.store.path}: {listed}")
            print(f"renamed this notebook? carry its threads over: %acytoo threads --adopt {others[0][0]}")

    def _providers(self, rest: str) -> None:
        """List the providers -p accepts: %acytoo providers."""
        self._parse(_subparser("providers", "list providers"), rest)
        for name, where in providers.available().items():
            print(f"{name:<10} {where}")
        print("any other: -p package.module:Class (a g4f-style provider)")

    def _config(self, rest: str) -> None:
        """Show the effective settings, secrets masked: %acytoo config."""
        self._parse(_subparser("config", "show settings"), rest)
        config = self.assistant.effective_config()
        path = config.pop("history_file", None) or config.get("history_path")
        config.pop("history_path", None)
        print(f"{'provider':<18} {self._choice_shown()}")
        config.pop("provider", None)
        for name, value in config.items():
            print(f"{name:<18} {value!r}")
        move = "move it: %config Assistant.history_path = '...' (or ACYTOO_HISTORY_DB)"
        print(f"{'history':<18} {path}\n{'':<18} {move}; clear it: %acytoo reset [--all]")

    def _use(self, rest: str) -> None:
        """Choose the backend, kept for every kernel: %acytoo use local|openai|acytoo|auto [--url URL] [-m M].

        The choice goes to the IPython profile's ``ipython_config.json`` (``choice``), which every
        kernel and IPython of this user reads at start; without a provider, says what is chosen.
        """
        parser = _subparser("use", "choose the backend and keep the choice")
        parser.add_argument("provider", nargs="?", help="local, openai, acytoo, module:Class, or auto")
        parser.add_argument("--url", default="", help="the server's base URL (needed for acytoo)")
        parser.add_argument("-m", "--model", default="", help="the model (default: the provider's own)")
        args = self._parse(parser, rest)
        path = choice.config_file(self.shell)
        if args.provider is None:  # what is chosen, and where it is kept
            print(f"provider: {self._choice_shown()}")
            return
        name = args.provider.strip()
        if name.lower() == "auto":
            self._remember(path, {})
            defaults = self.assistant.trait_defaults("provider", "url", "model")  # the environment's
            self.assistant.provider, self.assistant.url, self.assistant.model = (
                defaults["provider"], defaults["url"], defaults["model"]
            )
            print(f"acytoo: no backend chosen any more (removed from {path}); {self._choice_shown()}")
            return
        try:
            adapter = providers.adapt(name)
            target = adapter.target(args.url or None)
            providers.require_host(adapter, target)
        except ProviderNotFound as exc:
            raise UsageError(f"%acytoo use: {exc}") from None
        if adapter.name == "local" and (reason := local_model.not_ready()) and "downloaded" not in reason:
            raise UsageError(f"%acytoo use local: the bundled model cannot run here: {reason}")
        chosen = {"provider": name.lower() if name.lower() in providers.BUILTINS else name,
                  "url": args.url, "model": args.model}
        self._remember(path, chosen)
        self.assistant.provider, self.assistant.url, self.assistant.model = (
            chosen["provider"], chosen["url"], chosen["model"]
        )
        if remote := remote_host(target):
            sent = f"questions, with the {{df}} summaries and history in them, go to {remote}"
        elif where := url_host(target):
            sent = f"questions go to {where}, on this machine"
        else:
            sent = "nothing leaves this machine"
        fetch = " (its model is fetched once, 98 MB, on the first question)" if adapter.name == "local" and (
            local_model.smollm2_on_disk() is None) else ""
        print(f"acytoo: {adapter.name}{fetch} answers from now on, in every notebook and kernel "
              f"(kept in {path}; %acytoo use auto forgets it): {sent}")

    def _remember(self, path: Path, chosen: dict[str, str]) -> None:
        try:
            choice.remember(path, chosen)
        except choice.ChoiceFileError as exc:
            raise UsageError(f"%acytoo use: {exc}") from None

    def _choice_shown(self) -> str:
        """The provider in force and why: chosen and kept (where), set for this session, or none."""
        assistant = self.assistant
        try:
            kept = choice.stored(choice.config_file(self.shell))
        except choice.ChoiceFileError as exc:
            kept = {}
            print(f"acytoo: {exc}", file=sys.stderr)
        setting = assistant.provider.strip()
        if setting:
            if kept.get("provider") == setting:
                why = f"chosen with %acytoo use, kept in {choice.config_file(self.shell)}"
            elif os.environ.get("ACYTOO_PROVIDER") == setting:
                why = "from ACYTOO_PROVIDER, for this session; %acytoo use keeps a choice"
            else:
                why = f"set for this session; %acytoo use {setting} keeps it"
            return f"{setting!r} ({why})"
        try:
            name = assistant.chosen_provider()
        except providers.NoProviderChosen as exc:
            return f"none ({exc})"
        if name == "acytoo":
            return "'acytoo' (nothing chosen; a url is set, so the Acytoo protocol there)"
        return (f"{name!r} (nothing chosen: the bundled model answers, in this kernel, as its runtime is "
                "installed; %acytoo use local keeps it, %acytoo use openai --url ... picks a server)")

    def _explain(self, rest: str) -> None:
        """Ask the cause and a fix of the last error (or N's): %acytoo explain [N] [-c THREAD] [--thread]."""
        self._ask(*self._prepare_explain(rest))

    def _prepare_explain(self, rest: str) -> tuple[Any, str, str]:
        """The error, its cell's code and the variables that code uses, sent without the thread's
        earlier exchanges (an earlier wrong answer would be repeated); ``--thread`` sends them too."""
        parser = _subparser("explain", "explain an error")
        parser.add_argument("cell", nargs="?", type=int, default=None)
        parser.add_argument("-c", dest="name", default=None, help="the thread it is recorded in")
        parser.add_argument("--thread", action="store_true", help="send the thread's history with it")
        args = self._parse(parser, rest)
        try:
            prompt = self.assistant.context().explain_prompt(args.cell)
        except ContextError as exc:
            raise UsageError(f"%acytoo explain: {exc}") from None
        options = self.options(["-c", args.name] if args.name else [])
        options.alone = not args.thread
        typed = f"%acytoo explain {rest}".strip()
        options.typed = {"typed": typed, "context": ["Err" if args.cell is None else f"Err[{args.cell}]"]}
        return options, prompt, typed

    def _chat(self, rest: str) -> None:
        """Open a chat widget on a thread of this notebook: %acytoo chat [-c THREAD]."""
        from IPython.display import display

        from ..widget.chat import ChatWidget

        parser = _subparser("chat", "open a chat widget")
        parser.add_argument("-c", "--thread", default=None)
        args = self._parse(parser, rest)
        display(ChatWidget(args.thread or DEFAULT_THREAD, assistant=self.assistant))

    def _export(self, rest: str) -> None:
        """Write a thread to a file, Markdown or JSON by extension: %acytoo export [-c THREAD] PATH."""
        parser = _subparser("export", "export a thread")
        parser.add_argument("-c", "--thread", default=None)
        parser.add_argument("path")
        args = self._parse(parser, rest)
        path = Path(args.path).expanduser()
        messages = self.assistant.conversation(args.thread).messages()
        if path.suffix.lower() == ".json":
            text = json.dumps([m.to_json() for m in messages], indent=2, ensure_ascii=False)
        elif path.suffix.lower() in (".md", ".markdown"):
            text = "\n\n".join(
                f"## {m.role}" + (f" ({label(m.status)})" if label(m.status) else "") + f"\n\n{m.content}"
                for m in messages
            )
        else:
            raise UsageError(f"%acytoo export: {path.name!r} must end in .md or .json")
        try:
            path.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"%acytoo export: cannot write {path}: {exc.strerror}") from None
        print(f"wrote {len(messages)} messages to {path}")
