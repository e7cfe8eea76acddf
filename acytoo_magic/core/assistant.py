"""``Assistant``: the core every front end shares: settings, history, session and loop use, context.

``await assistant.ask("Why NaN in {df}?")`` answers from code; the ``%%acytoo`` magic and the
``ChatWidget`` are thin front ends over the same object (they parse, draw and report). Nothing here
imports IPython's display machinery or ipywidgets: a script or a terminal uses it as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default, observe
from traitlets.config import Configurable

from .. import providers
from ..providers.base import url_host
from ..providers.credentials import MaskedUnicode, ScopedKey, configured_keys, key_for, shown_origin
from .budget import DailyBudget, Ledger
from .context import ErrorLog, NotebookContext
from .errors import AcytooError, HistoryError, HistoryLocked, ProviderNotFound
from .frames import NullRenderer, Renderer, Tee
from .history.document import LEVELS, Documents
from .history.identity import forget_identity, identity_for
from .history.store import HistoryStore, MemoryStore
from .history.store import default_history_path as _default_history_path
from .history.thread import DEFAULT_THREAD, Conversation
from .loops import Runner
from .outbound import Outbound, Secret, environment_secrets, namespace_secrets, redact, url_secrets
from .request import Reply, Request
from .stream import answer

if TYPE_CHECKING:
    from .agent import AgentView, Approve, Episode


def notebook_id(shell: Any = None) -> str:
    """The notebook's current path (live from the Jupyter server, VS Code's variable), else its
    launch name, the kernel's id, the terminal's cwd: see ``notebook.NotebookIdentity``."""
    return identity_for(shell).key()


DEFAULT_SYSTEM_PROMPT = (
    "You are a concise assistant for data analysis in a Jupyter notebook. Answer in Markdown."
)
DEFAULT_TEMPERATURE = 0.5  # for a provider with no sampling of its own


def _env_default(name: str, fallback: str) -> str:
    return os.environ.get(name) or fallback


class Assistant(Configurable):
    """Ask a provider with this notebook's history and context; every front end goes through here.

    Settings are traits: ``%config Assistant.model = "llama3.2"`` in a notebook, or
    ``c.Assistant.model`` in ``ipython_config.py`` (``AcytooMagics``, their earlier home, still works).
    """

    provider = Unicode(
        help="Provider: 'local', 'openai', 'acytoo', an entry-point name or package.module:Class. Env "
        "ACYTOO_PROVIDER. Empty (nothing chosen): 'acytoo' when a url is set, else the bundled model "
        "if it can answer here, else nothing is sent. `%acytoo use` chooses and remembers it."
    ).tag(config=True)
    model = Unicode(
        help="Model name sent to the provider; empty: the provider's own default (acytoo: gpt-3.5-turbo, "
        "openai: gpt-4o-mini, local: smollm2). Env ACYTOO_MODEL."
    ).tag(config=True)
    url = MaskedUnicode(
        help="Base URL of the provider (Acytoo: none, it must be set; OpenAI-compatible: "
        "https://api.openai.com/v1). Env ACYTOO_URL. api_key and ACYTOO_API_KEY are sent only to its host."
    ).tag(config=True)
    temperature = Float(
        None,
        allow_none=True,
        help="Sampling temperature; unset: 0.5, or the bundled model's own (Local.sampling).",
    ).tag(config=True)
    proxy = MaskedUnicode("", help="HTTP proxy URL for provider requests (credentials are never shown).").tag(
        config=True
    )
    api_key = MaskedUnicode(
        "",
        hidden=True,
        help="API key for OpenAI-compatible servers, sent only to the host of `url` (or the provider's "
        "default URL); empty reads ACYTOO_API_KEY (same rule) or OPENAI_API_KEY (sent only to "
        "OPENAI_BASE_URL or api.openai.com). Never shown or stored.",
    ).tag(config=True)
    history_path = Unicode(help="SQLite file of the conversation history. Env ACYTOO_HISTORY_DB.").tag(
        config=True
    )
    max_history_chars = Int(
        12_000,
        help="Characters of history sent with a prompt: the newest whole exchanges that fit; "
        "a longer message is cut to a quarter of it.",
    ).tag(config=True)
    system_prompt = Unicode(
        None,
        allow_none=True,
        help="System prompt sent first in every request; unset: the provider's own (the bundled model has "
        "one fit for its size), else: " + DEFAULT_SYSTEM_PROMPT,
    ).tag(config=True)
    render_interval = Float(0.08, help="Seconds between coalesced display updates while streaming.").tag(
        config=True
    )
    timeout = Float(60.0, help="Seconds without data (before or during a reply) before giving up.").tag(
        config=True
    )
    retries = Int(2, help="Retries for HTTP 429/503 before the first chunk (honours Retry-After).").tag(
        config=True
    )
    max_response_bytes = Int(
        32 * 1024 * 1024, help="A reply larger than this is cut there (what arrived is kept, marked partial)."
    ).tag(config=True)
    show_status = Bool(
        True, help="Show a small status line (provider, model, time, size) under each answer."
    ).tag(config=True)
    max_context_chars = Int(
        2_000, help="Characters each {variable}, {Out[n]} or {Err} may take in a prompt."
    ).tag(config=True)
    prices = Dict(
        value_trait=List(Float(), minlen=2, maxlen=2),
        help="Price per million tokens by model, [prompt, completion], e.g. {'gpt-4o-mini': [0.15, 0.6]}: "
        "the status line then shows each answer's cost.",
    ).tag(config=True)

    daily_max_tokens = Int(
        0,
        help="Tokens you may spend per day, every notebook and kernel together (one ledger in the history "
        "file; 0: no limit); a request passing it is refused.",
    ).tag(config=True)
    daily_max_cost = Float(
        0.0, help="Cost (by `prices`) you may spend per day, every notebook together (0: no limit)."
    ).tag(config=True)
    notebook_daily_max_tokens = Int(
        0, help="Tokens this notebook may spend per day, as well (0: no limit); a rename keeps its count."
    ).tag(config=True)
    notebook_daily_max_cost = Float(
        0.0, help="Cost (by `prices`) this notebook may spend per day, as well (0: no limit)."
    ).tag(config=True)
    notebook_record = Enum(
        LEVELS,
        "provenance",
        help="What each answer's output records in the saved notebook (docs/notebook-record.md), and so "
        "what a copy or a colleague's kernel sends again: 'provenance' (the prompt as typed, the answer, "
        "provider, host, model, tokens, cost; an episode's steps without their results), 'full' (also "
        "the prompt as sent, data summaries included, masked, and an episode's results), 'off' (nothing; "
        "the history file alone is the thread).",
    ).tag(config=True)
    agent_max_steps = Int(
        20, help="Agent mode: steps per episode at most; a model call is a step, and so is each tool call."
    ).tag(config=True)
    agent_max_tokens = Int(
        30_000, help="Agent mode: tokens (prompt + completion, reported or estimated) per episode at most."
    ).tag(config=True)
    agent_max_retries = Int(
        3, help="Agent mode: failed runs allowed after the first before the episode ends."
    ).tag(config=True)
    agent_auto_run = Bool(
        False,
        help="Agent mode: run the model's code WITHOUT asking (also where nobody can click, e.g. "
        "nbclient). Off: every run waits for Run / Skip / Stop, and is refused where nobody can click.",
    ).tag(config=True)

    @classmethod
    def section_names(cls) -> list[str]:
        # The settings were traits of AcytooMagics before: config written for it still applies.
        return ["AcytooMagics", *super().section_names()]

    @default("provider")
    def _default_provider(self) -> str:
        return _env_default("ACYTOO_PROVIDER", "")

    @default("model")
    def _default_model(self) -> str:
        return _env_default("ACYTOO_MODEL", "")

    @default("url")
    def _default_url(self) -> str:
        return _env_default("ACYTOO_URL", "")

    @default("history_path")
    def _default_history_path(self) -> str:
        return _env_default("ACYTOO_HISTORY_DB", str(_default_history_path()))

    def __init__(self, shell: Any = None, errors: ErrorLog | None = None, **kwargs: Any) -> None:
        """``shell``: an IPython shell, for the notebook's namespace and identity (None in a script)."""
        self._slot = _StoreSlot()
        self._entered = 0  # ``async with`` blocks open on this assistant
        self.shell = shell
        self.identity = identity_for(shell)  # follows the notebook document (rename, reused names)
        self.errors = errors if errors is not None else ErrorLog()
        self.runner = Runner()
        self._ledger = Ledger()  # this assistant's spend, written in order by a thread of its own
        self._documents = Documents()  # saved notebooks threads are rebuilt from, each read once per save
        super().__init__(**kwargs)
        # At interpreter exit (a kernel shutting down, a script ending): exchanges a lock held back
        # are written, the HTTP sessions closed. Bound to the parts, so the Assistant can still go.
        self._finalizer = weakref.finalize(self, _close_parts, self.runner, self._slot)

    @observe("history_path")
    def _history_path_changed(self, change: dict[str, Any]) -> None:
        _close_store(self._slot.release())

    # -- what a question is asked with ----------------------------------------------------------
    @property
    def store(self) -> HistoryStore:
        """The history store; an unusable file gives one warning and in-memory history instead.

        A file locked by another process is not unusable: the ``HistoryError`` says so, and the
        next use opens it again (an answer meanwhile goes without history, with a warning).
        """
        with self._slot.lock:
            if self._slot.store is None:
                store = HistoryStore(self.history_path)
                try:
                    store.threads("")  # opens and checks the file now, not in the middle of an answer
                except HistoryError as exc:
                    store.close()
                    if isinstance(exc, HistoryLocked):
                        raise
                    print(f"acytoo: {exc}; using in-memory history for this session", file=sys.stderr)
                    store = MemoryStore()
                self._slot.store = store
            return self._slot.store

    @property
    def notebook(self) -> str:
        """This notebook's history key, its rows sorted out when the key is new to this kernel."""
        return self.identity.resolve(self.store)

    def conversation(self, thread: str | None = None) -> Conversation:
        """A thread of this notebook; the history file is opened when it is first read or written
        (in a thread, during an answer), never while a request is being built on the loop."""
        # With a record kept in outputs, a notebook's saved document is its thread (``rebuild``).
        documents = self._documents if self.notebook_record != "off" else None
        return Conversation(
            lambda: self.store, lambda: self.notebook, thread or DEFAULT_THREAD,
            documents, self.identity.kernel,
        )

    def context(self, mask: Callable[[str], str] | None = None) -> NotebookContext:
        """What ``{name}``, ``{In[n]}``, ``{Err}`` refer to: the notebook's namespace (empty in a
        script); ``mask`` (a boundary's) is applied to values before a summary cuts them."""
        namespace = getattr(self.shell, "user_ns", None) or {}
        raw = getattr(getattr(self.shell, "history_manager", None), "input_hist_raw", None)
        context = NotebookContext(namespace, self.errors, self.max_context_chars, raw)
        if mask is not None:
            context.mask = mask
        return context

    def expand(self, text: str, attach: Sequence[str] = (), allow: Sequence[str] = ()) -> str:
        """The prompt with its references expanded and ``attach``'s summaries appended (``ContextError``),
        secrets masked as they are expanded, but for those ``allow`` names (``--send-secret``)."""
        context = self.context(mask=self.outbound(allow).mask)
        prompt = context.expand(text)
        return prompt + context.attach(list(attach)) if attach else prompt

    def request(
        self,
        prompt: str,
        *,
        thread: str | None = None,
        provider: Any = None,
        model: str | None = None,
        temperature: float | None = None,
        url: str | None = None,
        proxy: str | None = None,
        system: str | None = None,
        history: bool = True,
        cell: str | None = None,
        meta: Mapping[str, Any] | None = None,
        send_secrets: Sequence[str] = (),
        source: str = "",
    ) -> Request:
        """Everything one answer needs, from the settings and these overrides (``ProviderNotFound``).

        ``send_secrets``: names the boundary would mask (as its line lists them) to send as they are.
        ``source``: the asking cell's text, so its output's record can tell when it was edited since.
        """
        url = str(url or self.url) or None
        adapter = providers.adapt(provider or self.chosen_provider())
        name = adapter.name
        target = adapter.target(url)
        where = url_host(target)
        model = model or self.model or adapter.default_model
        # A key goes only to the host it was set for, and only to a provider that sends one.
        keys = self._keys_for(adapter)
        api_key = None if keys is None else key_for(target, keys) or adapter.no_key
        own = adapter.provider if adapter.builtin else None  # a provider of ours may have its own defaults
        if temperature is None:
            temperature = self.temperature
        if temperature is None and not hasattr(own, "sampling"):
            temperature = DEFAULT_TEMPERATURE  # the bundled model samples by Local.sampling instead
        if system is None:
            system = self.system_prompt
        if system is None:
            system = getattr(own, "system_prompt", None) or DEFAULT_SYSTEM_PROMPT
        options = {
            "url": url,
            "temperature": temperature,
            "timeout": self.timeout,
            "retries": self.retries,
            "max_response_bytes": self.max_response_bytes,
            "api_key": api_key,
        }
        return Request(
            prompt=prompt,
            provider=adapter.provider,
            model=model,
            conversation=self.conversation(thread) if history else None,
            system=system,
            # a provider may cap it: a small local model reads history at ~100 tokens/s
            history_chars=min(
                self.max_history_chars, getattr(adapter.provider, "max_history_chars", 1 << 62)
            ),
            proxy=str(proxy or self.proxy) or None,
            options=options,
            label=f"contacting {name} ({where})" if where else f"contacting {name}",
            provider_label=name,
            show_status=self.show_status,
            cell=cell if history else None,
            meta={**self.identity.stamp(), **(meta or {})},
            price=tuple(self.prices[model]) if model in self.prices else None,  # type: ignore[arg-type]
            spend=self.daily_budget(),
            outbound=self.outbound(send_secrets, url=url, proxy=proxy),
            record_level=self.notebook_record,
            cell_source=source,
        )

    def outbound(
        self, allow: Sequence[str] = (), url: str | None = None, proxy: str | None = None
    ) -> Outbound:
        """The boundary for one request: what it masks, read from the settings, the environment
        and the notebook's namespace, and read again before each message leaves (``outbound.py``)."""

        def secrets() -> list[Secret]:
            found = [Secret("api_key", str(self.api_key))] if self.api_key else []
            for name, value in (("url", self.url), ("proxy", self.proxy), ("--url", url), ("--proxy", proxy)):
                found += url_secrets(name, str(value or ""))
            namespace = getattr(self.shell, "user_ns", None) or {}
            return found + environment_secrets() + namespace_secrets(namespace)

        return Outbound(secrets, allow)

    def daily_budget(self) -> DailyBudget:
        """The daily spending limits over the ledger in the history file: yours, and this notebook's
        (its key and the file are found on first use, off the event loop, as for the conversation)."""
        return DailyBudget(
            lambda: self.notebook,
            self.daily_max_tokens,
            self.daily_max_cost,
            spent=lambda since, notebook: self.store.spent(notebook, since),
            add=lambda tokens, cost: self.store.add_spend(self.notebook, tokens, cost),
            notebook_max_tokens=self.notebook_daily_max_tokens,
            notebook_max_cost=self.notebook_daily_max_cost,
            ledger=self._ledger,
        )

    # -- asking ---------------------------------------------------------------------------------
    async def ask(
        self,
        prompt: str,
        *,
        renderer: Renderer | None = None,
        on_chunk: Callable[[str], Any] | None = None,
        reply: Reply | None = None,
        request: Request | None = None,
        **options: Any,
    ) -> Reply:
        """Answer ``prompt`` (taken as written: call ``expand`` for ``{name}`` references).

        ``options`` are ``request()``'s overrides (``thread``, ``model``, ``history=False``...).
        ``renderer`` draws the stream (a front end's), ``on_chunk`` receives each piece of text.
        A failed request does not raise: the reply says its ``outcome`` and ``error`` (``raise_for_status``
        raises it). Cancelling the task keeps the partial text, marked interrupted.
        """
        request = request or self.request(prompt, **options)
        if request.spend is not None and request.spend.active:  # BudgetExceeded: refused before sending
            await asyncio.to_thread(request.spend.check_request, request)
        drawer = renderer or NullRenderer()
        if on_chunk is not None:
            drawer = Tee(drawer, on_chunk)
        async with self.session_lease() as session:
            return await answer(request, drawer, session, reply)

    def session_lease(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """The HTTP session for one request: a shell's loop (a kernel's) and an ``async with`` block
        keep one across answers (``Runner.lease``)."""
        return self.runner.lease(keep=self.shell is not None or self._entered > 0)

    async def agent(
        self,
        prompt: str,
        *,
        approve: Approve | None = None,
        view: AgentView | None = None,
        request: Request | None = None,
        auto_run: bool = False,
        **options: Any,
    ) -> Episode:
        """Answer ``prompt`` in agent mode: the model may look at the notebook and propose code.

        ``approve(code)`` (the front end's: buttons, a terminal prompt) returns ``Decision.RUN``,
        ``SKIP`` or ``STOP`` for that exact code; None means nobody can click, and a run is refused
        unless the user opted in to running unasked (``agent_auto_run``, or ``auto_run`` for this
        call). Raises ``ToolsUnsupported`` for a provider without tools.
        """
        from .agent import run_agent

        return await run_agent(self, request or self.request(prompt, **options), approve, view, auto_run)

    def ask_sync(self, prompt: str, **options: Any) -> Reply:
        """``ask`` from synchronous code: a script, a terminal, a function in a notebook cell."""
        return self.runner.run(self.ask(prompt, **options))

    async def stream(self, prompt: str, **options: Any) -> AsyncIterator[str]:
        """The answer's text as it arrives: ``async for chunk in assistant.stream(...)``.

        Raises the provider's error (an ``AcytooError``) if the request fails.
        """
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        task = asyncio.ensure_future(self.ask(prompt, on_chunk=queue.put_nowait, **options))
        task.add_done_callback(lambda _task: queue.put_nowait(None))
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            task.result().raise_for_status()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- settings as shown ------------------------------------------------------------------------
    def chosen_provider(self) -> str:
        """The provider the next question goes to: the one set, else what ``providers.choose``
        picks (Acytoo for a set URL, the bundled model if it can answer); ``NoProviderChosen``."""
        return providers.choose(self.provider, str(self.url))

    def in_force(self) -> tuple[str, str]:
        """(provider label, model) the next question goes to, for a front end to show."""
        try:
            adapter = providers.adapt(self.chosen_provider())
        except providers.NoProviderChosen:
            return "no model chosen", "%acytoo use local (or openai, acytoo)"
        except ProviderNotFound:
            return self.provider, self.model
        return adapter.name, self.model or adapter.default_model

    def _keys_for(self, adapter: providers.Adapter) -> list[ScopedKey] | None:
        """The keys ``adapter``'s provider may be given, each bound to its host; None: it gets none."""
        origin = adapter.key_origin()
        return None if origin is None else configured_keys(str(self.api_key), str(self.url), origin)

    def effective_config(self) -> dict[str, Any]:
        """The settings in force, secrets masked."""
        config = {name: getattr(self, name) for name in sorted(self.trait_names(config=True))}
        config["api_key"] = "*** (set)" if self.api_key else "(not set: ACYTOO_API_KEY / OPENAI_API_KEY)"
        config["url"] = redact(self.url)
        config["proxy"] = redact(self.proxy)
        config["keys_go_to"] = f"(the {self.provider or 'chosen'} provider sends no key)"
        if self.temperature is None:
            config["temperature"] = f"(unset: {DEFAULT_TEMPERATURE})"
        if self.system_prompt is None:
            config["system_prompt"] = f"(unset: {DEFAULT_SYSTEM_PROMPT!r})"
        with contextlib.suppress(ProviderNotFound):
            adapter = providers.adapt(self.chosen_provider())
            config["keys_go_to"] = f"(the {adapter.name} provider sends no key)"
            own = adapter.provider if adapter.builtin else None
            if self.temperature is None and hasattr(own, "sampling"):
                config["temperature"] = f"(unset: {adapter.name}'s own, Local.sampling)"
            if self.system_prompt is None and getattr(own, "system_prompt", None):
                config["system_prompt"] = f"(unset: {adapter.name}'s own, Local.system_prompt)"
            config.update(getattr(adapter.provider, "settings_shown", dict)())  # its own (Local.max_tokens)
            keys = self._keys_for(adapter)  # the rule request() follows
            if keys is not None:
                shown = [f"{key.source} -> {shown_origin(key.scope)}" for key in keys if key.value]
                config["keys_go_to"] = "; ".join(shown) or "(no key set)"
        config["notebook"] = self.notebook
        config["history_file"] = str(self.store.path)
        return config

    async def __aenter__(self) -> Assistant:
        """``async with Assistant() as a:`` reuses one HTTP session; everything it opened is closed
        when the block ends."""
        self._entered += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._entered -= 1
        await self.aclose()

    async def aclose(self) -> None:
        """Close this loop's HTTP session, then what ``close`` closes (the history off the loop)."""
        await self.runner.aclose()
        self.runner.close()
        await asyncio.to_thread(_close_store, self._slot.release())

    def close(self) -> None:
        """Close the shared HTTP sessions, the loops this assistant owns, and the history file
        (writing exchanges a lock held back first; one line on stderr if they could not be).
        Using the assistant afterwards opens them again."""
        self.runner.close()
        _close_store(self._slot.release())


class _StoreSlot:
    """An Assistant's history store, reached from the loop and from ``to_thread`` workers.

    The lock makes one store per path; a replaced store is taken out under it and closed, so its
    connection and pending exchanges are never left behind.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.store: HistoryStore | None = None

    def release(self) -> HistoryStore | None:
        """Take the store out of use (the next use opens the file again); the caller closes it."""
        with self.lock:
            store, self.store = self.store, None
        return store


def _close_store(store: HistoryStore | None) -> None:
    """Close ``store``; exchanges that could not be saved are said on stderr, never dropped silently."""
    if store is None:
        return
    try:
        store.close()
    except HistoryError as exc:
        print(f"acytoo: {exc}", file=sys.stderr)


def _close_parts(runner: Runner, slot: _StoreSlot) -> None:
    runner.close()
    _close_store(slot.release())


_shared: dict[int, Assistant] = {}


def shared_assistant(shell: Any) -> Assistant:
    """The one Assistant of this IPython shell, shared by the magic, the widget and user code.

    Made on first use from the shell's config and registered with ``%config``.
    """
    found = _shared.get(id(shell))
    if found is None or found.shell is not shell:
        from IPython.core.error import UsageError

        # The extension's own failures are not what a user means by "the last error".
        errors = ErrorLog(ignored=(AcytooError, UsageError, KeyboardInterrupt))
        found = Assistant(shell=shell, errors=errors, config=getattr(shell, "config", None))
        _shared[id(shell)] = found
        configurables = getattr(shell, "configurables", None)
        if configurables is not None and found not in configurables:
            configurables.append(found)
        events = getattr(shell, "events", None)
        if events is not None:
            events.register("post_run_cell", errors.post_run_cell)
    return found


def forget_shared_assistant(shell: Any) -> None:
    """Close and drop the shell's Assistant (on ``%unload_ext``)."""
    found = _shared.pop(id(shell), None)
    if found is not None:
        configurables = getattr(shell, "configurables", None)
        if configurables is not None and found in configurables:
            configurables.remove(found)
        with contextlib.suppress(ValueError, AttributeError):
            shell.events.unregister("post_run_cell", found.errors.post_run_cell)
        forget_identity(shell)
        found.close()
