"""The outbound boundary: everything a provider is sent passes ``Outbound`` first.

A prompt carries more than the user typed: ``{cfg}`` may hold a password, a cell an agent reads may
hold a token, a traceback quotes the line that set it. So every message (prompts after ``{…}``
expansion, history, tool results, agent steps) is masked before it leaves (``Request.open``), and
the user is told what was masked. Masked are:

- configured values: ``Assistant.api_key``, the password and secret-named query parameters of
  ``url`` and ``proxy``;
- environment values whose names look secret (``*_TOKEN``, ``*_KEY``, ``PGPASSWORD``, ``AUTH``…);
- the notebook's variables whose names look secret (strings, numbers, the strings of a tuple or
  list), and the secret-named entries of its plain dicts;
- in any text: a literal assigned to a secret-looking name (``service_token = "…"``,
  ``"password": "…"``, ``login(token="…")``), values in a known token format, and values assigned
  to secret keywords, by detect-secrets' own detectors (a maintained set of formats) and a few
  formats of ours for the providers this extension calls (Hugging Face, Anthropic, Google, Groq,
  Replicate, OpenAI project keys, bearer tokens), which detect-secrets 1.5 does not know.

Values read from the notebook and the environment are read again before each message leaves
(``refresh``): a secret that approved code or a ``load_dotenv()`` made during an episode is
masked too. Summaries mask a value before they cut or escape it (``context.summarize``), so no
part of a secret leaves either; this boundary then counts their ``[secret: NAME]`` marks as masked.
The provider sees ``[secret: NAME]``. Names passed as ``allow`` (``--send-secret``) go as they are.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Word parts of a name that mark its value secret (``MY_SERVICE_TOKEN``, ``dbPassword``), and the
# endings that do so for a name written as one word (``mytoken``, ``PGPASSWORD``, ``hfapikey``).
_SECRET_PARTS = frozenset(
    [
        "token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "pwd", "pass",
        "passphrase", "credential", "credentials", "auth", "authorization", "bearer", "apikey",
        "apikeys", "privatekey", "cookie", "cookies", "contraseña", "contrasena",
    ]
)  # fmt: skip
_SECRET_ENDINGS = ("token", "tokens", "password", "passwd", "secret", "apikey", "privatekey")
# "key" at the end of a variable's name is secret unless the word before it says it is data: a
# loop over a dict has ``key``, a table ``primary_key``. An environment ``*_KEY`` always is.
_DATA_KEYS = frozenset(
    [
        "sort", "primary", "foreign", "partition", "join", "merge", "group", "dict", "cache", "lookup",
        "hash", "index", "row", "column", "col", "map", "the", "a", "new", "old", "next", "prev", "last",
        "first", "this", "my",
    ]
)  # fmt: skip
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_]+")
MIN_VALUE = 6  # a shorter value is not masked wherever it appears ("1", "true", "dev")
MAX_MAPPING = 1_000  # a mapping larger than this is data, not configuration: not scanned
MAX_NAMES = 5_000  # namespace entries looked at per refresh
# detect-secrets detectors left out: public IPs are data, not secrets; high-entropy strings would
# mask every hash and id in a DataFrame; its keyword detector runs line by line below.
_SKIPPED_DETECTORS = frozenset(
    {"Public IP (ipv4)", "Base64 High Entropy String", "Hex High Entropy String", "Secret Keyword"}
)
# Formats detect-secrets 1.5 lacks, of the providers this extension exists to call.
_OWN_FORMATS = (
    (re.compile(r"\bhf_[A-Za-z0-9]{30,}"), "Hugging Face Token"),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}"), "Anthropic Key"),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), "Google API Key"),
    (re.compile(r"\bgsk_[A-Za-z0-9]{20,}"), "Groq Key"),
    (re.compile(r"\br8_[A-Za-z0-9]{20,}"), "Replicate Token"),
    (re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,}"), "OpenAI Key"),
    (re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=\-]{16,})"), "Bearer Token"),
)
_PEM = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----.*?(?:-----END[A-Z0-9 ]*-----|\Z)", re.S)
# The keyword detector reads one line at a time; only lines naming a keyword need it.
_KEYWORD_HINT = re.compile(r"(?i)key|pass|pwd|secret|contras")
# A literal assigned to a name, a key or a keyword argument: ``x = "…"``, ``"x": "…"``, ``x="…"``,
# ``environ["X"] = "…"``. The name decides (``looks_secret``), wherever the text came from.
_ASSIGNED = re.compile(r"[=:]\s*[rRbBuU]{0,2}(?P<quote>['\"])(?P<value>[^'\"\n]{6,400})(?P=quote)")
_NAME_BEFORE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)['\"]?\]?\s*\Z")  # found from the ``=`` back
# -- text cleaning and redaction: what every line shown or sent passes ---------------------------
# ANSI escape sequences (CSI, OSC, two-byte ESC forms), then any other C0/C1 control character
# except newline and tab: a terminal or JupyterLab's ANSI colouring would act on them. An OSC ends at
# a newline too, so cleaning is line-local: a streamed answer can be cleaned line by line.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# The same characters as _CONTROL, looked for in the text's UTF-8 bytes: C0 controls and DEL are
# single bytes there (``translate`` deletes every other byte value, fast), a C1 control (U+0080-U+009F)
# is 0xC2 and a byte 0x80-0x9F (0xC2 leads only U+0080-U+00BF). For 1 MB of text: 0.7 ms (ASCII) to
# 1.7 ms, where the regular expression's scan takes 2.0-3.1 ms (docs/streaming.md, issue 30).
_NOT_C0 = bytes(b for b in range(256) if not (b <= 0x08 or 0x0B <= b <= 0x1F or b == 0x7F))
_C1_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")


def _has_control(text: str) -> bool:
    """Whether ``text`` holds a character ``printable`` removes (``_CONTROL``'s), found fast."""
    data = text.encode("utf-8", "surrogatepass")
    if data.translate(None, _NOT_C0):
        return True
    return not text.isascii() and _C1_UTF8.search(data) is not None


def printable(text: str) -> str:
    """The text with ANSI escapes and control characters (all but newline and tab) removed."""
    if not _has_control(text):  # the usual case, one fast scan (ESC and CR are control characters)
        return text
    return _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))


# What a text linkifier makes live: JupyterLab's (rendermime's ``autolink``, ``webLinkRegex``) links
# any "scheme://" and any "data:" inside plain output, VS Code and terminal emulators do much the same.
_LINKABLE = re.compile(r"data:|javascript:|vbscript:|[a-z][a-z0-9+.-]*:(?=//)", re.IGNORECASE)


def unlinkable(text: str) -> str:
    """Plain text in which a linkifier finds no unsafe link: ``data[:]``, ``javascript[:]//``...

    For reply text shown as ``text/plain`` where a front end may turn URLs into live links (a
    listing, a terminal): printable, and every URL scheme other than http(s) broken with ``[:]``
    so it stays readable but is no link (mailto and relative paths are not linkified).
    """

    def defang(match: re.Match[str]) -> str:
        scheme = match.group(0)
        return scheme if scheme.lower() in ("http:", "https:") else scheme[:-1] + "[:]"

    return _LINKABLE.sub(defang, printable(text))


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove URL credentials, bearer tokens and any known secret value from ``text``."""
    text = _USERINFO.sub("***@", text)
    text = _BEARER.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


_MARK = re.compile(r"\[secret: ([^\n]{1,200}?)\](?!\])")  # a name may end in "]": cfg['password']


@functools.lru_cache(maxsize=8192)  # read again before every message: a notebook's names repeat
def looks_secret(name: str, environment: bool = False) -> bool:
    """Whether a variable, key or environment name says its value is a secret."""
    parts = [p.lower() for p in _WORD.findall(name)]
    if not parts:
        return False
    if any(p in _SECRET_PARTS for p in parts) or parts[-1].endswith(_SECRET_ENDINGS):
        return True
    if parts[-1] == "key" and len(parts) > 1:
        return environment or parts[-2] not in _DATA_KEYS
    return parts[-1].endswith("apikey")


def strong(value: str) -> bool:
    """Whether a value found by its name is worth masking wherever it appears: long, and not a
    plain word (``token = "pandas"`` left over from a loop would mask "pandas" in every prompt)."""
    if len(value) < 8:
        return False
    return len(value) >= 16 or not value.isalpha()


@dataclass(frozen=True)
class Secret:
    """A value not to send, and the name the user reads for it (``api_key``, ``cfg['password']``).

    ``named``: found by a name (a variable's, an environment value's), not configured: masked only
    when it is ``strong``. A configured value is masked from ``MIN_VALUE`` characters on.
    """

    name: str
    value: str
    named: bool = False

    @property
    def worth_masking(self) -> bool:
        return strong(self.value) if self.named else len(self.value) >= MIN_VALUE


def url_secrets(name: str, url: str | None) -> list[Secret]:
    """The password in ``url``'s credentials and its secret-named query parameters (``?key=…``)."""
    try:
        parts = urlsplit(url or "")
        password = parts.password
        query = parse_qsl(parts.query, keep_blank_values=False)
    except ValueError:
        return []
    found = [Secret(f"{name} credentials", password)] if password else []
    found += [
        Secret(f"{name} ?{key}", value)
        for key, value in query
        if key.lower() in ("key", "code", "sig", "signature") or looks_secret(key, environment=True)
    ]
    return found


_NOT_SECRET_ENVIRONMENT = frozenset({"PWD", "OLDPWD"})  # the shell's directories, not passwords


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[Secret]:
    """Environment values whose names look secret."""
    environ = os.environ if environ is None else environ
    return [
        Secret(name, value, named=True)
        for name, value in environ.items()
        if looks_secret(name, True) and name not in _NOT_SECRET_ENVIRONMENT
    ]


def namespace_secrets(namespace: Mapping[str, Any]) -> list[Secret]:
    """The notebook's secret-named values (a string, a number, the strings of a tuple or list) and
    the secret-named entries of its plain dicts.

    One level deep and bounded: a variable holding a large mapping is data, and nothing is called
    (no ``__repr__``, no property): only built-in strings, bytes, numbers and containers are read.
    """
    found: list[Secret] = []
    for count, (name, value) in enumerate(namespace.items()):
        if count >= MAX_NAMES:
            break
        if not isinstance(name, str) or name.startswith("_"):
            continue
        if looks_secret(name):
            found += _leaves(name, value)
        elif type(value) is dict and len(value) <= MAX_MAPPING:  # plain dicts: no user code runs
            for key, item in value.items():
                if isinstance(key, str) and looks_secret(key):
                    found += _leaves(f"{name}[{key!r}]", item)
    return found


def _leaves(name: str, value: Any) -> list[Secret]:
    text = _text(value)
    if text is not None:
        return [Secret(name, text, named=True)]
    if type(value) in (tuple, list) and len(value) <= 8:  # credentials, not a list of data
        return [Secret(f"{name}[{i}]", t, named=True) for i, item in enumerate(value) if (t := _text(item))]
    return []


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if type(value) in (int, float):
        return str(value)
    return None


@functools.lru_cache(maxsize=1)
def _formats() -> tuple[tuple[Any, str], ...]:
    """(pattern, name) of detect-secrets' format detectors (imported on first use: it loads all its
    plugins), named by their ``secret_type``, then ours."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    theirs = tuple(
        (pattern, str(cls.secret_type))
        for kind, cls in get_mapping_from_secret_type_to_class().items()
        if kind not in _SKIPPED_DETECTORS
        for pattern in cls().denylist
    )
    return theirs + _OWN_FORMATS


@functools.lru_cache(maxsize=1)
def _keyword_detector() -> Any:
    from detect_secrets.plugins.keyword import KeywordDetector

    return KeywordDetector()


def warm() -> None:
    """Import the detectors now (half a second), so the first request does not pay for it."""
    _formats()
    _keyword_detector()


def _secret_part(match: re.Match[str]) -> str:
    """What a pattern found: the whole match, or, for a pattern that finds a value by its context
    (``aws_secret = '…'``, ``Bearer …``), the long group that is the value."""
    groups = [group for group in match.groups() if group and len(group) >= 12]
    return max(groups, key=len) if groups else match.group(0)


def map_texts(message: Mapping[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """A copy of a provider message with ``change`` applied to its text: its content and the
    arguments of its tool calls."""
    out = dict(message)
    if isinstance(out.get("content"), str):
        out["content"] = change(out["content"])
    calls = out.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [_call_text(call, change) for call in calls]
    return out


def _call_text(call: Any, change: Callable[[str], str]) -> Any:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("arguments"), str):
        return call
    return {**call, "function": {**function, "arguments": change(function["arguments"])}}


class Outbound:
    """What may leave for one request: ``mask`` text, ``mask_messages`` a request's messages.

    ``secrets``: the values to mask, or a callable that reads them (called again by ``refresh``).
    ``found`` counts what was masked, by name, in the order first met; ``line()`` says it on screen.
    """

    def __init__(
        self, secrets: Iterable[Secret] | Callable[[], Iterable[Secret]] = (), allow: Collection[str] = ()
    ) -> None:
        self.allow = frozenset(allow)
        self._read = secrets if callable(secrets) else None
        self.found: dict[str, int] = {}
        self._known: frozenset[Secret] | None = None
        self._use(list(secrets()) if callable(secrets) else list(secrets))

    def refresh(self) -> None:
        """Read the notebook's and the environment's secrets again (approved code may have made some)."""
        if self._read is not None:
            self._use(list(self._read()))

    def _use(self, secrets: list[Secret]) -> None:
        known = frozenset(secrets)
        if known == self._known:
            return
        self._known = known
        # An allowed secret's value goes as it is even where a pattern would catch it.
        self._allowed_values = {s.value for s in secrets if s.name in self.allow}
        names: dict[str, str] = {}
        for secret in sorted(secrets, key=lambda s: -len(s.value)):
            if secret.worth_masking and secret.name not in self.allow and self._maskable(secret.value):
                names.setdefault(secret.value, secret.name)
        self._names = names
        self._values = re.compile("|".join(map(re.escape, names))) if names else None
        self._cache: dict[str, tuple[str, tuple[str, ...]]] = {}

    def strict(self) -> Outbound:
        """The same boundary without the allow-list (``--send-secret``): for what is kept rather
        than sent, such as a notebook's record, which travels with the file."""
        if not self.allow:
            return self
        return Outbound(list(self._known or ()))

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``[secret: NAME]``."""
        if not text:
            return text
        cached = self._cache.get(text)
        if cached is None:
            hits: list[str] = []
            masked = self._mask(text, hits)
            cached = self._cache[text] = (masked, tuple(hits))
            self._cache.setdefault(masked, (masked, tuple(_MARK.findall(masked))))  # masked again: the same
        for name in cached[1]:
            self.found[name] = self.found.get(name, 0) + 1
        return cached[0]

    def _mask(self, text: str, hits: list[str]) -> str:
        hits += _MARK.findall(text)  # masked before it came here (a summary masks before it cuts)

        def hide(name: str) -> str:
            hits.append(name)
            return f"[secret: {name}]"

        if self._values is not None:
            text = self._values.sub(lambda m: hide(self._names[m.group(0)]), text)
        text = self._assigned(text, hide)
        if "Private Key" not in self.allow:
            text = _PEM.sub(lambda m: m[0] if m[0] in self._allowed_values else hide("Private Key"), text)
        values: dict[str, str] = {}
        for pattern, name in _formats():
            if name in self.allow:
                continue
            for match in pattern.finditer(text):
                value = _secret_part(match)
                if self._maskable(value):
                    values.setdefault(value, name)
        if "Secret Keyword" not in self.allow:
            keyword = _keyword_detector()
            for line in text.splitlines():
                if _KEYWORD_HINT.search(line):
                    for value in keyword.analyze_string(line):
                        if len(value) >= MIN_VALUE and self._maskable(value):
                            values.setdefault(value, "Secret Keyword")
        if values:
            pattern = re.compile("|".join(map(re.escape, sorted(values, key=len, reverse=True))))
            text = pattern.sub(lambda m: hide(values[m.group(0)]), text)
        return text

    def _assigned(self, text: str, hide: Callable[[str], str]) -> str:
        """Literals assigned to a secret-looking name: found from each ``=``/``:`` before a quote
        (few in any text), the name read backwards from there."""
        parts: list[str] = []
        done = 0
        for match in _ASSIGNED.finditer(text):
            before = _NAME_BEFORE.search(text, max(0, match.start() - 80), match.start())
            name, value = (before["name"] if before else ""), match["value"]
            if not name or name in self.allow or not looks_secret(name):
                continue
            if not self._maskable(value) or not strong(value):
                continue
            start, end = match.span("value")
            parts += [text[done:start], hide(name)]
            done = end
        return "".join(parts) + text[done:] if parts else text

    def _maskable(self, value: str) -> bool:
        return value not in self._allowed_values and "[secret:" not in value

    def mask_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Copies of ``messages`` masked: contents, and the arguments of tool calls."""
        return [map_texts(message, self.mask) for message in messages]

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
