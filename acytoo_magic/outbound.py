"""The outbound boundary: everything a provider is sent passes ``Outbound.mask`` first.

A prompt carries more than the user typed: ``{cfg}`` may hold a password, a cell an agent reads may
hold a token, a traceback quotes the line that set it. So every message (prompts after ``{…}``
expansion, history, tool results, agent steps) is masked here before it leaves, and the user is
told what was masked. Masked are:

- configured values: ``Assistant.api_key``, ``ACYTOO_API_KEY``, ``OPENAI_API_KEY``, the
  credentials in ``url`` and ``proxy``;
- environment values whose names look secret (``*_TOKEN``, ``*_KEY``, ``PASSWORD``, ``AUTH``…);
- the notebook's variables whose names look secret, and secret-named entries of its mappings;
- values in a known token format (OpenAI, GitHub, AWS, Slack, JWT, PEM keys…) and values assigned
  to secret-named keywords in code, found by detect-secrets' own detectors (a maintained set of
  formats, not ours to keep up to date).

The provider sees ``[secret: NAME]``. Names passed as ``allow`` (``--send-secret``) go as they are.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Word parts of a name that mark its value secret. detect-secrets' keyword list (``DENYLIST``) is
# for code it scans; names here also say TOKEN, CREDENTIAL or AUTH, and "key" counts only
# qualified (``api_key``, ``SECRET_ACCESS_KEY``): ``key`` alone is every loop over a dict.
_SECRET_PARTS = frozenset(
    [
        "token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "pwd", "passphrase",
        "credential", "credentials", "auth", "apikey", "apikeys", "privatekey", "cookie", "cookies",
        "contraseña", "contrasena",
    ]
)  # fmt: skip
_KEY_QUALIFIERS = frozenset(
    ["api", "access", "secret", "private", "client", "auth", "service", "account", "signing", "master", "ssh"]
)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_]+")
MIN_VALUE = 6  # a shorter value is not masked wherever it appears ("1", "true", "dev")
MAX_MAPPING = 1_000  # a mapping larger than this is data, not configuration: not scanned
MAX_NAMES = 5_000  # namespace entries looked at per request
# detect-secrets detectors left out: public IPs are data, not secrets; high-entropy strings would
# mask every hash and id in a DataFrame.
_SKIPPED_DETECTORS = frozenset(
    {"Public IP (ipv4)", "Base64 High Entropy String", "Hex High Entropy String", "Secret Keyword"}
)
_PEM = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----.*?(?:-----END[A-Z0-9 ]*-----|\Z)", re.S)
# The keyword detector reads one line at a time; only lines naming a keyword need it.
_KEYWORD_HINT = re.compile(r"(?i)key|pass|pwd|secret|contras")


def looks_secret(name: str) -> bool:
    """Whether a variable, key or environment name says its value is a secret."""
    parts = [p.lower() for p in _WORD.findall(name)]
    if any(p in _SECRET_PARTS for p in parts):
        return True
    return any(p == "key" and i and parts[i - 1] in _KEY_QUALIFIERS for i, p in enumerate(parts))


@dataclass(frozen=True)
class Secret:
    """A value not to send, and the name the user reads for it (``api_key``, ``cfg['password']``)."""

    name: str
    value: str


def url_secrets(name: str, url: str | None) -> list[Secret]:
    """The password (and user) in ``url``'s credentials."""
    try:
        parts = urlsplit(url or "")
        password, user = parts.password, parts.username
    except ValueError:
        return []
    return [Secret(f"{name} credentials", value) for value in (password, user) if value]


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[Secret]:
    """Environment values whose names look secret."""
    environ = os.environ if environ is None else environ
    return [Secret(name, value) for name, value in environ.items() if looks_secret(name)]


def namespace_secrets(namespace: Mapping[str, Any]) -> list[Secret]:
    """The notebook's secret-named string variables and its mappings' secret-named string entries.

    One level deep and bounded: a variable holding a large mapping is data, and nothing is called
    (no ``__repr__``, no property): only ``str`` and ``bytes`` values count.
    """
    found: list[Secret] = []
    for count, (name, value) in enumerate(namespace.items()):
        if count >= MAX_NAMES:
            break
        if not isinstance(name, str) or name.startswith("_"):
            continue
        text = _text(value)
        if text is not None:
            if looks_secret(name):
                found.append(Secret(name, text))
        elif type(value) is dict and len(value) <= MAX_MAPPING:  # plain dicts: no user code runs
            found += [
                Secret(f"{name}[{key!r}]", text)
                for key, item in value.items()
                if isinstance(key, str) and looks_secret(key) and (text := _text(item)) is not None
            ]
    return found


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None


@functools.lru_cache(maxsize=1)
def _detectors() -> tuple[Any, ...]:
    """detect-secrets' format detectors, imported on first use (it loads all its plugins)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    mapping = get_mapping_from_secret_type_to_class()
    return tuple(cls() for kind, cls in mapping.items() if kind not in _SKIPPED_DETECTORS)


@functools.lru_cache(maxsize=1)
def _keyword_detector() -> Any:
    from detect_secrets.plugins.keyword import KeywordDetector

    return KeywordDetector()


@functools.lru_cache(maxsize=1)
def _formats() -> tuple[tuple[Any, str], ...]:
    """(pattern, name) of every format detector's patterns, named by its ``secret_type``."""
    return tuple(
        (pattern, str(detector.secret_type)) for detector in _detectors() for pattern in detector.denylist
    )


def _secret_part(match: re.Match[str]) -> str:
    """What a detector's pattern found: the whole match, or, for a pattern that finds a value by its
    context (``aws_secret = '…'``), the long group that is the value."""
    groups = [group for group in match.groups() if group and len(group) >= 12]
    return max(groups, key=len) if groups else match.group(0)


class Outbound:
    """What may leave for one request: ``mask`` text, ``mask_messages`` a request's messages.

    ``found`` counts what was masked, by name, in the order first met; ``line()`` says it on screen.
    """

    def __init__(
        self, secrets: Iterable[Secret] = (), allow: Collection[str] = (), formats: bool = True
    ) -> None:
        self.allow = frozenset(allow)
        secrets = list(secrets)
        # An allowed secret's value goes as it is even where a format detector would catch it.
        self._allowed_values = {s.value for s in secrets if s.name in self.allow}
        names: dict[str, str] = {}
        for secret in sorted(secrets, key=lambda s: -len(s.value)):
            value = secret.value
            if len(value) >= MIN_VALUE and secret.name not in self.allow and self._maskable(value):
                names.setdefault(value, secret.name)
        self._names = names
        self._values = re.compile("|".join(map(re.escape, names))) if names else None
        self.formats = formats
        self.found: dict[str, int] = {}
        self._cache: dict[str, tuple[str, tuple[str, ...]]] = {}

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``[secret: NAME]``."""
        if not text:
            return text
        cached = self._cache.get(text)
        if cached is None:
            hits: list[str] = []
            masked = self._mask(text, hits)
            cached = self._cache[text] = (masked, tuple(hits))
            self._cache.setdefault(masked, (masked, ()))  # masking what was masked finds nothing new
        for name in cached[1]:
            self.found[name] = self.found.get(name, 0) + 1
        return cached[0]

    def _mask(self, text: str, hits: list[str]) -> str:
        def hide(name: str) -> str:
            hits.append(name)
            return f"[secret: {name}]"

        if self._values is not None:
            text = self._values.sub(lambda m: hide(self._names[m.group(0)]), text)
        if not self.formats:
            return text
        text = _PEM.sub(lambda m: m[0] if m[0] in self._allowed_values else hide("Private Key"), text)
        values: dict[str, str] = {}
        for pattern, name in _formats():
            for match in pattern.finditer(text):
                value = _secret_part(match)
                if self._maskable(value):
                    values.setdefault(value, name)
        keyword = _keyword_detector()
        for line in text.splitlines():
            if _KEYWORD_HINT.search(line):
                for value in keyword.analyze_string(line):
                    if self._maskable(value) and len(value) >= MIN_VALUE:
                        values.setdefault(value, "Secret Keyword")
        if values:
            pattern = re.compile("|".join(map(re.escape, sorted(values, key=len, reverse=True))))
            text = pattern.sub(lambda m: hide(values[m.group(0)]), text)
        return text

    def _maskable(self, value: str) -> bool:
        return value not in self._allowed_values and "[secret:" not in value

    def mask_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Copies of ``messages`` masked: contents, and the arguments of tool calls."""
        return [self._message(message) for message in messages]

    def _message(self, message: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(message)
        if isinstance(out.get("content"), str):
            out["content"] = self.mask(out["content"])
        calls = out.get("tool_calls")
        if isinstance(calls, list):
            out["tool_calls"] = [self._call(call) for call in calls]
        return out

    def _call(self, call: Any) -> Any:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("arguments"), str):
            return call
        return {**call, "function": {**function, "arguments": self.mask(function["arguments"])}}

    def line(self) -> str:
        """One line for the screen: what was masked, by name ("" when nothing was)."""
        if not self.found:
            return ""
        names = list(self.found)
        count = len(names)
        shown = ", ".join(names[:8]) + (f" and {count - 8} more" if count > 8 else "")
        return (
            f"masked {count} secret{'s' if count != 1 else ''} before sending: {shown} "
            "(send one anyway: --send-secret NAME)"
        )

