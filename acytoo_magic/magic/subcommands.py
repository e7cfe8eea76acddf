"""``%acytoo SUBCOMMAND``: the line magic's subcommands (history, reset, threads, providers,
config, use, export, explain, chat). Each parses its options with ``SubcommandParser`` (a one-line
``UsageError`` for a mistake), and its docstring's first line is its entry in ``%acytoo help``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser

from .. import providers
from ..core.errors import ContextError, ProviderNotFound
from ..core.history.thread import DEFAULT_THREAD
from ..core.outcome import label
from ..providers import local_model
from ..providers.base import remote_host, url_host
from . import choice, listing

CELL_EXAMPLES = (
    "%%acytoo                       then: Why does my groupby return NaN for {df}?",
    "%%acytoo -p local              then: Explain a left join   (the bundled model: offline, no key)",
    "%%acytoo -c plots -f code      then: Plot sales per month from {sales}",
    "%%acytoo -p openai -m llama3.2 --url http://localhost:11434/v1   (Ollama)",
    "%%acytoo --no-history -o summary --context df   then: Summarise this data",
    "%acytoo use local              then every cell, in every notebook, answers offline",
)


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
    """Where an exchange came from, for ``%acytoo history``: the document, this kernel or the
    cache (``rebuild``) after the cell (execution count) or chat, and whether it is stale."""
    where = message.meta.get("_from", "")
    if message.cell is None:
        asked = "chat"
    else:
        count = message.meta.get("execution_count")
        asked = f"cell In [{count}]" if count is not None else "cell"
    return " · ".join(part for part in (asked, where) if part)


def _labelled(entries: Any, note: str = "") -> list[Any]:
    """A rebuilt thread's exchanges as the listing's messages, each saying where it came from."""
    from dataclasses import replace

    from ..core.history.rebuild import STORED

    found = []
    for entry in entries:
        marks = [entry.origin + note] + (["stale: its cell was edited since"] if entry.stale else [])
        marks += [] if entry.verified else ["edited since it was recorded"]
        # no saved document: every exchange is the history file's, said by no mark
        where = {"_from": ", ".join(marks) if entry.origin != STORED else ""}
        found += [replace(m, meta={**m.meta, **where}) for m in (entry.prompt, entry.answer)]
    return found


def _subparser(name: str, help_text: str) -> SubcommandParser:
    return SubcommandParser(prog=f"%acytoo {name}", description=help_text, add_help=False)


class Subcommands:
    """The subcommands of ``AcytooMagics`` (a mixin: they use its assistant, shell and asking)."""

    assistant: Any
    shell: Any
    chat: Callable[[str, Any], Any] | None

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
        from ..core.history.rebuild import chain_problems

        thread = args.thread or DEFAULT_THREAD
        conversation = self.assistant.conversation(args.thread)
        sent, cache, documented = conversation.sources()
        messages = _labelled(sent) + _labelled(cache, ": not sent")
        if not messages:
            print(f"(thread {thread!r} is empty)")
            return
        problems = chain_problems(sent)
        about = [f"rebuilt from the saved notebook, {len(cache)} more not sent"]
        about = about if documented else [conversation.problem] if conversation.problem else []
        about.append("chain verifies" if not problems else "chain does not verify: " + "; ".join(problems))
        shown = (listing.full if args.full else listing.compact)(thread, messages, _origin, "; ".join(about))
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
        # The saved notebook is the record (docs/notebook-record.md): what it shows is still sent.
        document = self.assistant.conversation(thread).document()
        recorded = (document.records() or []) if document is not None else []
        # what is sent from it: the records that match what it shows (not a chat copy's)
        kept = [r for r in recorded if (thread is None or r.thread == thread)
                and not (r.problem or r.chat or r.legacy)]
        if kept:
            print(f"the saved notebook still records {len(kept)} exchange{'s' if len(kept) != 1 else ''} "
                  "of it, sent as the thread until their outputs are cleared and the notebook saved")

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

        parser = _subparser("chat", "open a chat widget")
        parser.add_argument("-c", "--thread", default=None)
        args = self._parse(parser, rest)
        if self.chat is None:
            raise UsageError("%acytoo chat: no chat widget here (%load_ext acytoo_magic adds it)")
        display(self.chat(args.thread or DEFAULT_THREAD, self.assistant))

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
                f"## {m.role}" + (f" ({label(m.outcome)})" if label(m.outcome) else "") + f"\n\n{m.content}"
                for m in messages
            )
        else:
            raise UsageError(f"%acytoo export: {path.name!r} must end in .md or .json")
        try:
            path.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"%acytoo export: cannot write {path}: {exc.strerror}") from None
        print(f"wrote {len(messages)} messages to {path}")
