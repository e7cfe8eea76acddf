"""Provider lookup: a built-in name, ``package.module:Class``, an entry point, or any provider object."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ..core.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderTimeout,
    ResponseTooLarge,
)
from . import local_model
from .acytoo import Acytoo
from .base import AsyncGeneratorProvider, ToolCallParts
from .local import Local
from .openai import OpenAICompatible

BUILTINS: dict[str, Any] = {"acytoo": Acytoo, "openai": OpenAICompatible, "local": Local}
ENTRY_POINT_GROUP = "acytoo_magic.providers"

__all__ = [
    "BUILTINS",
    "Acytoo",
    "Adapter",
    "AsyncGeneratorProvider",
    "NoProviderChosen",
    "OpenAICompatible",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderProtocolError",
    "ProviderTimeout",
    "ResponseTooLarge",
    "adapt",
    "available",
    "call_keywords",
    "choose",
    "is_builtin",
    "provider_name",
    "resolve",
]

# How to choose, said when nothing is chosen (one line, with the reason before it).
HOW_TO_CHOOSE = (
    "%acytoo use local (the bundled model, in this kernel), "
    "%acytoo use openai --url http://localhost:11434/v1 (Ollama or any OpenAI-compatible server; "
    "without --url: api.openai.com), or %acytoo use acytoo --url http://HOST:PORT"
)


class NoProviderChosen(ProviderNotFound):
    """Nothing was sent: no backend is chosen and the bundled model cannot answer, or the chosen
    one has no host to go to. The message says how to choose, in one line."""


def choose(provider: str | None, url: str | None) -> str:
    """The provider a question goes to when ``provider`` (the setting) may be empty.

    A chosen one is used as it is. With none: Acytoo when a URL is set (a host the user named),
    else the bundled model when it can answer here without fetching anything. Otherwise
    ``NoProviderChosen``: no data leaves for a host nobody chose.
    """
    if provider and provider.strip():
        return provider.strip()
    if url:
        return "acytoo"
    if not (reason := local_model.not_ready()):
        return "local"
    raise NoProviderChosen(
        f"no model chosen yet, so nothing was sent (the bundled model cannot answer: {reason}); "
        f"choose one: {HOW_TO_CHOOSE}"
    )


def require_host(adapter: Adapter, target: str) -> None:
    """``NoProviderChosen`` for a built-in provider that needs a URL and has none (Acytoo: its
    protocol has no public host one may assume): ``%acytoo use`` checks a choice with it; a
    request without one fails in the provider, before anything is sent."""
    if adapter.builtin and getattr(adapter.provider, "needs_url", False) and not target:
        raise NoProviderChosen(
            f"{adapter.name}: no server URL set, so nothing was sent; "
            f"%acytoo use {adapter.name} --url http://HOST:PORT (or set ACYTOO_URL)"
        )


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> dict[str, str]:
    """Name -> where it comes from, for ``%acytoo providers``."""
    found = {name: f"{cls.__module__}.{cls.__qualname__}" for name, cls in BUILTINS.items()}
    found.update({name: ep.value for name, ep in _plugins().items() if name not in found})
    return found


def is_provider(obj: Any) -> bool:
    return callable(getattr(obj, "create_async_generator", None))


def resolve(spec: Any) -> Any:
    """Return a provider for ``spec``: a name, ``module:Class``, an entry point, or an object.

    Anything with a ``create_async_generator`` method is accepted as is (a g4f provider class, say).
    """
    if is_provider(spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ProviderNotFound(f"not a provider: {spec!r} (expected a name or module:Class)")
    name = spec.strip()
    if name.lower() in BUILTINS:
        return BUILTINS[name.lower()]
    plugins = _plugins()
    if name in plugins:
        obj = plugins[name].load()
    elif ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ProviderNotFound(f"cannot load provider {name!r}: {exc}") from None
    else:
        known = ", ".join(sorted(available()))
        raise ProviderNotFound(f"unknown provider {name!r}; known: {known}, or module:Class")
    if not is_provider(obj):
        raise ProviderNotFound(
            f"{name!r} has no create_async_generator(model, messages, proxy=None, **kwargs)"
        )
    return obj


def provider_name(provider: Any) -> str:
    """A short label: the built-in name, else the package and class (``g4f Custom``)."""
    for name, cls in BUILTINS.items():
        if provider is cls:
            return name
    target = provider if inspect.isclass(provider) else type(provider)
    return f"{target.__module__.split('.')[0]} {target.__qualname__}"


def is_builtin(provider: Any) -> bool:
    """A provider of this package: it takes the shared session, timeout, retries and (maybe) a key."""
    return isinstance(provider, type) and issubclass(provider, AsyncGeneratorProvider)


# The keyword a foreign provider may name for each setting, in order of preference. g4f's
# OpenAI-style providers call the base URL ``base_url``; others ``api_base`` or ``url``.
FOREIGN_KEYWORDS = {
    "url": ("base_url", "api_base", "url"),
    "api_key": ("api_key",),
    "timeout": ("timeout",),
    "temperature": ("temperature",),
}
_told: set[tuple[str, str]] = set()  # (provider, setting) already reported as not passed


def declared_keywords(provider: Any) -> set[str]:
    """The keyword parameters ``create_async_generator`` names (``**kwargs`` does not count)."""
    try:
        parameters = inspect.signature(provider.create_async_generator).parameters.values()
    except (TypeError, ValueError):  # a C callable or a mock: nothing is known to be accepted
        return set()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in named}


def call_keywords(provider: Any, settings: Mapping[str, Any], session: Any = None) -> dict[str, Any]:
    """The keyword arguments ``provider`` gets for ``settings`` (url, api_key, timeout, ...).

    A built-in provider takes them all, with the shared session. A foreign (g4f) provider gets a
    setting only under a keyword its signature declares, since some forward unknown keywords into
    their JSON payload; a setting it cannot take is said once on stderr, not silently dropped.
    """
    given = {name: value for name, value in settings.items() if value is not None}
    if is_builtin(provider):
        return {**given, "session": session}
    declared = declared_keywords(provider)
    passed: dict[str, Any] = {}
    for name, value in given.items():
        keyword = next((k for k in FOREIGN_KEYWORDS.get(name, ()) if k in declared), None)
        if keyword is not None:
            passed[keyword] = value
        elif name in FOREIGN_KEYWORDS and (provider_name(provider), name) not in _told:
            _told.add((provider_name(provider), name))
            keywords = " or ".join(FOREIGN_KEYWORDS[name])
            print(
                f"acytoo: {provider_name(provider)} takes no {name} setting (its create_async_generator "
                f"has no {keywords} parameter); not passed",
                file=sys.stderr,
            )
    return passed


def _takes_tools(provider: Any) -> bool:
    """Ours declare ``supports_tools``; g4f's OpenAI-style providers declare ``supports_native_tools``
    and forward a ``tools`` keyword into their request (their ``extra_parameters``)."""
    if is_builtin(provider):
        return bool(getattr(provider, "supports_tools", False))
    return getattr(provider, "supports_native_tools", False) is True or "tools" in declared_keywords(provider)


@dataclass(frozen=True)
class Adapter:
    """One resolved provider, whatever its kind: its label, where it posts, whether a key may go
    there, whether it speaks tools, and its stream. Callers never branch on built-in or foreign."""

    provider: Any
    name: str
    builtin: bool
    tools: bool
    default_model: str

    def target(self, url: str | None) -> str:
        """The URL this provider will contact for the configured ``url`` (a label's host)."""
        if self.builtin:
            return self.provider.base_url(url)
        return str(url or getattr(self.provider, "url", "") or "")

    def key_origin(self) -> str | None:
        """Where a key with no host of its own may go (a built-in's default URL, else only the
        configured one: ""), or None: this provider is given no key at all.

        A foreign provider gets a key only if it also takes our URL setting (a ``base_url``-like
        keyword): otherwise it posts to a host of its own, which the key was never set for.
        """
        if self.builtin:
            return self.provider.base_url() if self.provider.takes_api_key else None
        declared = declared_keywords(self.provider)
        takes_url = any(name in declared for name in FOREIGN_KEYWORDS["url"])
        return "" if "api_key" in declared and takes_url else None

    @property
    def no_key(self) -> str | None:
        """The ``api_key`` value meaning "none": "" stops a built-in looking in the environment."""
        return "" if self.builtin else None

    def open(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        proxy: str | None,
        settings: Mapping[str, Any],
        session: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> AsyncIterator[Any]:
        """The provider's stream for these settings; with ``tools``, its calls come as one
        ``ToolCalls`` after the text, from either kind of provider."""
        kwargs = call_keywords(self.provider, settings, session)
        if tools:
            kwargs["tools"] = list(tools)
        stream = self.provider.create_async_generator(model, messages, proxy, **kwargs)
        return stream if self.builtin else _foreign_items(stream)


async def _foreign_items(stream: Any) -> AsyncIterator[Any]:
    """A g4f provider's items, its streamed ``ToolCalls`` pieces put together into ours."""
    parts = ToolCallParts()
    try:
        async for item in stream:
            if type(item).__name__ == "ToolCalls" and callable(getattr(item, "get_list", None)):
                for piece in item.get_list() or ():
                    parts.add(piece)
                continue
            yield item
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    if (calls := parts.result()) is not None:
        yield calls


def adapt(spec: Any) -> Adapter:
    """``resolve(spec)`` wrapped as an ``Adapter`` (``ProviderNotFound`` as resolve raises it)."""
    provider = resolve(spec)
    return Adapter(
        provider=provider,
        name=provider_name(provider),
        builtin=is_builtin(provider),
        tools=_takes_tools(provider),
        default_model=str(getattr(provider, "default_model", "") or ""),
    )
