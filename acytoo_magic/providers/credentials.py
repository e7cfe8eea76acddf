"""Where an API key may go, and how a secret setting shows itself.

A key is bound to the origin (scheme, host, port) it was configured for, and is sent only there:

- ``OPENAI_API_KEY`` belongs to ``OPENAI_BASE_URL``, or ``https://api.openai.com`` when that is unset
  (the official ``openai`` client's own rule);
- ``Assistant.api_key`` and ``ACYTOO_API_KEY`` belong to the configured URL (the ``url`` setting,
  ``ACYTOO_URL``), or to the provider's default URL when none is configured.

A request to any other origin (``-p openai`` against an Acytoo URL, a per-cell ``--url`` elsewhere)
goes without a key, and stderr says so once per origin and session.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from traitlets import Unicode

from ..core.outbound import redact

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_noted: set[str] = set()  # origins already told about a withheld key, in this process


def origin(url: str | None) -> str:
    """``scheme://host:port`` of ``url``, normalised (case, default port, IDNA); "" when it has none."""
    try:
        parts = urlsplit((url or "").strip())
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        return ""
    if not host or not port or parts.scheme.lower() not in _DEFAULT_PORTS:
        return ""
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}:{port}"


def shown_origin(url: str | None) -> str:
    """The origin as a user reads it: no credentials, no default port."""
    found = origin(url)
    for scheme, port in _DEFAULT_PORTS.items():
        found = found.removesuffix(f":{port}") if found.startswith(f"{scheme}://") else found
    return found or redact(url or "")


@dataclass(frozen=True)
class ScopedKey:
    """An API key, where it was set (for messages), and the base URL it was configured for."""

    value: str
    source: str
    scope: str

    def allows(self, url: str | None) -> bool:
        here = origin(url)
        return bool(self.value) and bool(here) and here == origin(self.scope)


def env_keys(configured_url: str | None, provider_default: str) -> list[ScopedKey]:
    """The keys from the environment, each bound to its URL (see the module docstring)."""
    keys = []
    if value := os.environ.get("ACYTOO_API_KEY", ""):
        keys.append(ScopedKey(value, "ACYTOO_API_KEY", configured_url or provider_default))
    if value := os.environ.get("OPENAI_API_KEY", ""):
        scope = os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_URL  # the openai client's own rule
        keys.append(ScopedKey(value, "OPENAI_API_KEY", scope))
    return keys


def configured_keys(setting: str, configured_url: str, provider_default: str) -> list[ScopedKey]:
    """Every key that is set, in the order they are tried: the ``api_key`` setting, then the environment."""
    scope = configured_url or provider_default
    return [ScopedKey(setting, "Assistant.api_key", scope), *env_keys(configured_url, provider_default)]


def key_for(url: str, candidates: Iterable[ScopedKey]) -> str:
    """The first candidate key bound to ``url``'s origin, else "" (and one note per origin and session)."""
    candidates = [key for key in candidates if key.value]
    for key in candidates:
        if key.allows(url):
            return key.value
    here = origin(url) or redact(url)
    if candidates and here not in _noted:
        _noted.add(here)
        withheld = ", ".join(f"{key.source} is for {shown_origin(key.scope)}" for key in candidates)
        print(
            f"acytoo: no API key sent to {shown_origin(url)}: {withheld} only "
            "(for a key there, set Assistant.api_key with Assistant.url on that host)",
            file=sys.stderr,
            flush=True,
        )
    return ""


class MaskedText(str):
    """A string whose ``repr`` is masked; ``str()`` and every string operation still see the value."""

    mask: Callable[[str], str] = staticmethod(redact)

    def __repr__(self) -> str:
        return repr(self.mask(str(self)))


class HiddenText(MaskedText):
    """A secret: its ``repr`` is ``'***'`` when set."""

    mask = staticmethod(lambda value: "***" if value else "")


class MaskedUnicode(Unicode):  # type: ignore[type-arg]
    """A string setting whose current value never shows in ``%config`` listings or a cell's ``Out``.

    URL credentials are masked (``http://***@host``); with ``hidden=True`` the whole value is.
    """

    def __init__(self, default_value: Any = "", *, hidden: bool = False, **kwargs: Any) -> None:
        self.text_type = HiddenText if hidden else MaskedText
        super().__init__(default_value, **kwargs)

    def validate(self, obj: Any, value: Any) -> Any:
        return self.text_type(super().validate(obj, value))
