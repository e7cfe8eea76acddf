"""The g4f provider contract and the HTTP plumbing both built-ins share (errors: ``errors.py``).

A provider is anything with ``create_async_generator(model, messages, proxy=None, **kwargs)``
returning an async iterator of ``str`` (and, after the text, other objects such as ``Usage``).
``AsyncGeneratorProvider`` adds the convenience methods g4f users expect; the helpers below give
built-in providers one way to open a stream, retry, time out, cap the size, go through a proxy and
turn every failure into a one-line ``ProviderError``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ipaddress
import json
import os
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..core.errors import (
    HTTP_STATUS_HINTS,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderProtocolError,
    ProviderTimeout,
    ResponseTooLarge,
)
from ..core.loops import iterate
from ..core.outbound import redact

Messages = Sequence[Mapping[str, Any]]  # tool calls and results carry lists and ids too


@dataclass(frozen=True)
class Usage:
    """Token counts a backend reported for one reply, yielded after the text.

    A provider's stream may yield it (or any object with ``prompt_tokens`` and
    ``completion_tokens`` attributes, as g4f's ``Usage`` has) besides strings; front ends show it.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class ToolCall:
    """One function call a model asked for: ``arguments`` is the JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str = ""

    def for_provider(self) -> dict[str, Any]:
        """The call as an assistant message's ``tool_calls`` entry (OpenAI's shape)."""
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": "function", "function": function}


@dataclass(frozen=True)
class ToolCalls:
    """The calls a reply ended with, yielded after its text by a provider that speaks tools."""

    calls: tuple[ToolCall, ...]


class ToolCallParts:
    """Streamed tool-call pieces put together by ``index``, as OpenAI's ``delta.tool_calls`` send
    them (g4f's ``ToolCalls`` carry the same pieces): the id and name come once, the arguments' JSON
    text in pieces that are concatenated."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, delta: Any) -> None:
        """Merge one piece; ``ValueError`` names what is malformed (a provider turns it into its error)."""
        if not isinstance(delta, Mapping):
            raise ValueError("a tool call delta is not an object")
        index = delta.get("index", len(self._calls))
        if not isinstance(index, int):
            raise ValueError("a tool call delta has no integer index")
        call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        function = delta.get("function") or {}
        call["id"] = call["id"] or str(delta.get("id") or "")
        call["name"] = call["name"] or str(function.get("name") or "")
        arguments = function.get("arguments") or ""
        call["arguments"] += arguments if isinstance(arguments, str) else json.dumps(arguments)

    def result(self) -> ToolCalls | None:
        """The calls in index order (an id made up where the server sent none, as older llama.cpp)."""
        if not self._calls:
            return None
        calls = sorted(self._calls.items())
        return ToolCalls(tuple(ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"]) for i, c in calls))


@dataclass(frozen=True)
class Progress:
    """A note for the waiting line before the first text: a model being fetched, a long prompt read."""

    note: str


@dataclass(frozen=True)
class FinishReason:
    """Why the backend stopped, yielded after the text (g4f's class of this name has ``reason`` too).

    ``limit`` and ``setting`` say, for ``length``, which token limit ended the answer and how to
    raise it, so the status line can tell the user instead of leaving an answer cut mid-word;
    ``repetition`` is the bundled model stopped for repeating itself (``repetition.py``).
    """

    reason: str
    limit: int | None = None
    setting: str = ""

    @property
    def note(self) -> str:
        if self.reason == "repetition":
            return "stopped: the model began repeating itself"
        if self.reason != "length":
            return ""
        limit = f"the {self.limit:,}-token limit" if self.limit else "the token limit"
        return f"stopped at {limit}" + (f" (raise it: {self.setting})" if self.setting else "")


DEFAULT_RETRIES = 2
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_MAX_RETRY_WAIT = 30.0


def url_host(url: str | None) -> str:
    """``host[:port]`` of ``url`` without any ``user:password@``, for labels such as "contacting"."""
    with contextlib.suppress(ValueError):
        return redact(urlsplit(url or "").netloc.rpartition("@")[2])
    return ""


def remote_host(url: str | None) -> str:
    """``url``'s host[:port] when it is not this machine (a loopback address or localhost), else "":
    what a status line names, so an answer from elsewhere always says where it came from."""
    where = url_host(url)
    if not where:
        return ""
    with contextlib.suppress(ValueError):
        name = (urlsplit(url or "").hostname or "").rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            return ""
        if ipaddress.ip_address(name).is_loopback:
            return ""
    return where


PROXY_SCHEMES = ("http", "https")


def proxy_url(proxy: str | None, source: str = "") -> str | None:
    """The proxy to use: ``host:port`` means ``http://host:port`` (as curl and requests read it).

    Raises ``ValueError`` (one line, credentials masked, naming ``source``) for a scheme aiohttp
    cannot speak, such as ``socks5://``: it would otherwise talk HTTP to a SOCKS port.
    """
    proxy = (proxy or "").strip()
    if not proxy:
        return None
    scheme, sep, _ = proxy.partition("://")
    if not sep:
        return f"http://{proxy}"
    if scheme.lower() not in PROXY_SCHEMES:
        where = f" (from {source})" if source else ""
        raise ValueError(
            f"proxy {redact(proxy)}{where}: scheme {scheme!r} is not supported; "
            "use an HTTP proxy (http://host:port)"
        )
    return proxy


def env_proxy(url: str) -> tuple[str, str] | None:
    """The proxy the environment names for ``url``, and the variable naming it; None if it names none.

    ``HTTP_PROXY`` for http://, ``HTTPS_PROXY`` for https:// (lower case first), except for hosts
    ``NO_PROXY`` lists: the standard library's reading, as requests and aiohttp's ``trust_env``
    have it (and, where the environment names none, the system's settings on macOS and Windows).
    Resolved here rather than by ``trust_env``, so that every session (the caller's too) behaves
    the same and no netrc login is added to a request that carries an API key.
    """
    try:
        parts = urlsplit(url)
        host, scheme = parts.hostname, parts.scheme.lower()
    except ValueError:
        return None
    proxy = urllib.request.getproxies().get(scheme) if host else None
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    variable = next((v for v in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY") if os.environ.get(v)), "")
    return proxy, variable or "the system's proxy settings"


def make_timeout(timeout: float | aiohttp.ClientTimeout | None) -> aiohttp.ClientTimeout:
    """Turn a number into a per-read timeout, so a slow but steady stream never times out."""
    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout
    seconds = 60.0 if timeout is None else float(timeout)
    return aiohttp.ClientTimeout(total=None, connect=min(seconds, 30.0), sock_read=seconds)


def retry_delay(response_headers: Mapping[str, str], attempt: int) -> float:
    """Seconds to wait before the next attempt: ``Retry-After`` when given, else 0.5, 1, 2, ... s."""
    value = response_headers.get("Retry-After", "")
    with contextlib.suppress(ValueError):
        return min(max(float(value), 0.0), _MAX_RETRY_WAIT)
    return min(0.5 * 2**attempt, _MAX_RETRY_WAIT)


TRANSPORT_OPTIONS = ("session", "timeout", "retries", "max_response_bytes", "on_retry")


def transport_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments a built-in provider hands to ``HTTPStream``; others are ignored, as in g4f."""
    return {name: kwargs[name] for name in TRANSPORT_OPTIONS if kwargs.get(name) is not None}


class HTTPStream:
    """One streamed POST with retries, typed errors and a size cap; shared by the built-in providers.

    Iterating yields raw byte chunks (``iter_any``) or lines (``lines=True``). Every retry happens
    before the reply's status line arrives, so nothing already yielded is ever repeated: 429/503
    (honouring ``Retry-After``), and once when the server closes the connection before answering,
    as it does to a pooled keep-alive connection it has timed out (uvicorn after 5 s idle).

    ``proxy`` (``host:port`` means ``http://host:port``) wins; without it the environment's
    ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY`` apply (see ``env_proxy``), whichever session
    is used: the caller's ``session``, or one of its own for this request.
    """

    def __init__(
        self,
        provider: str,
        url: str,
        *,
        json: Any,
        headers: Mapping[str, str],
        proxy: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        retries: int = DEFAULT_RETRIES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        secrets: Iterable[str] = (),
        on_retry: Any = None,
    ) -> None:
        self.provider = provider
        self.url = url
        self.json = json
        self.headers = dict(headers)
        self.proxy = proxy or None
        self.session = session
        self.timeout = make_timeout(timeout)
        self.retries = max(0, int(retries))
        self.max_response_bytes = max_response_bytes
        self.secrets = tuple(s for s in secrets if s)
        self.on_retry = on_retry
        self.received = 0  # bytes of the reply body so far
        self.opened = False  # the server answered with a success status
        self.sent_proxy: str | None = None  # the proxy used: ``proxy`` or the environment's
        self.proxy_source = ""  # where ``sent_proxy`` came from, when not from ``proxy``
        self.reconnected = False  # the request was sent again after the server closed the connection

    def error(self, cls: type[ProviderError], message: str, **kwargs: Any) -> ProviderError:
        return cls(message, provider=self.provider, url=self.url, secrets=self.secrets, **kwargs)

    def _http_error(self, status: int, body: str) -> ProviderHTTPError:
        return ProviderHTTPError(status, body, provider=self.provider, url=self.url, secrets=self.secrets)

    def _translate(self, exc: BaseException, *, streaming: bool) -> ProviderError:
        """Map an aiohttp/asyncio failure to our family, without the library's text (it may name a proxy)."""
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            when = "in the middle of the reply" if streaming else "before the reply started"
            seconds = self.timeout.sock_read or self.timeout.total
            return self.error(ProviderTimeout, f"no data for {seconds:g} s {when}")
        source = f" (from {self.proxy_source})" if self.proxy_source else ""
        if isinstance(exc, aiohttp.ClientProxyConnectionError):
            return self.error(ProviderConnectionError, f"cannot connect to the proxy{source}")
        if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy answered CONNECT with an error
            hint = HTTP_STATUS_HINTS.get(exc.status, "")
            message = f"the proxy{source} refused the tunnel: HTTP {exc.status}{hint}"
            return self.error(ProviderConnectionError, message)
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return self.error(ProviderConnectionError, "cannot resolve the host name")
        if isinstance(exc, aiohttp.ClientConnectorError):
            if isinstance(exc.os_error, ConnectionRefusedError):
                return self.error(ProviderConnectionError, "cannot connect (connection refused)")
            reason = (exc.os_error.strerror if exc.os_error else "") or "failed"
            return self.error(ProviderConnectionError, f"cannot connect ({reason.lower()})")
        dropped = (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
        if isinstance(exc, dropped) and streaming:
            return self.error(
                ProviderConnectionError,
                f"connection dropped after {self.received} bytes of the reply",
            )
        if isinstance(exc, dropped):
            again = " (also when sent again)" if self.reconnected else ""
            return self.error(
                ProviderConnectionError, f"the server closed the connection before replying{again}"
            )
        if isinstance(exc, aiohttp.InvalidURL):
            return self.error(ProviderConnectionError, self._invalid_url(str(exc.url), source))
        if isinstance(exc, aiohttp.ClientError):
            return self.error(ProviderConnectionError, f"{type(exc).__name__}")
        if isinstance(exc, ValueError) and streaming:  # aiohttp's "Chunk too big" for an over-long line
            return self.error(ProviderProtocolError, "a line of the reply is too long")
        if isinstance(exc, ValueError):  # the request could not be built (a bad proxy, say)
            return self.error(ProviderError, str(exc))
        return self.error(ProviderError, type(exc).__name__)

    def _invalid_url(self, url: str, source: str) -> str:
        if not url or url not in (self.proxy, self.sent_proxy):
            return "invalid URL"
        return f"invalid proxy URL{source}"

    def _proxy(self) -> str | None:
        """The explicit proxy, else the environment's for this URL (``proxy_source`` says which)."""
        if self.proxy:
            return proxy_url(self.proxy)
        found = env_proxy(self.url)
        if found is None:
            return None
        self.proxy_source = found[1]
        return proxy_url(found[0], self.proxy_source)

    async def _post(self, session: aiohttp.ClientSession, proxy: str | None) -> aiohttp.ClientResponse:
        """POST once; sent again, once, if the server closes the connection before its status line.

        That is what a pooled keep-alive connection the server has meanwhile closed looks like
        (aiohttp retries only idempotent methods itself). Nothing of the reply has arrived, so
        nothing can be duplicated; failing to connect at all is not retried.
        """
        try:
            return await session.post(
                self.url, json=self.json, headers=self.headers, proxy=proxy, timeout=self.timeout
            )
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError) or self.reconnected:
                raise
            self.reconnected = True
        return await session.post(
            self.url, json=self.json, headers=self.headers, proxy=proxy, timeout=self.timeout
        )

    async def _open(self, session: aiohttp.ClientSession) -> aiohttp.ClientResponse:
        self.sent_proxy = self._proxy()
        attempt = 0
        while True:
            response = await self._post(session, self.sent_proxy)
            if response.status < 400:
                self.opened = True
                return response
            body = await _read_some(response)
            response.release()
            if response.status in (429, 503) and attempt < self.retries:
                delay = retry_delay(response.headers, attempt)
                if self.on_retry is not None:
                    self.on_retry(response.status, delay, attempt + 1)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            raise self._http_error(response.status, body)

    async def chunks(self, *, lines: bool = False) -> AsyncIterator[bytes]:
        """Yield byte chunks (or whole lines) of the reply, closing everything on exit or cancel."""
        async with contextlib.AsyncExitStack() as stack:
            session = self.session
            if session is None or session.closed:
                session = await stack.enter_async_context(aiohttp.ClientSession())
            streaming = False
            try:
                response = await self._open(session)
                stack.push_async_callback(_close_response, response)
                streaming = True
                source = response.content if lines else response.content.iter_any()
                async for chunk in source:
                    self.received += len(chunk)
                    if self.received > self.max_response_bytes:
                        allowed = len(chunk) - (self.received - self.max_response_bytes)
                        if not lines and allowed > 0:
                            yield chunk[:allowed]  # everything up to the cap reaches the user
                        raise self.error(
                            ResponseTooLarge,
                            f"reply larger than the {self.max_response_bytes} byte cap",
                        )
                    yield chunk
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                raise self._translate(exc, streaming=streaming) from None


async def _read_some(response: aiohttp.ClientResponse, limit: int = 4096) -> str:
    with contextlib.suppress(Exception):
        return (await response.content.read(limit)).decode("utf-8", "replace")
    return ""


async def _close_response(response: aiohttp.ClientResponse) -> None:
    """Close (not release) so a cancelled or failed stream never returns a half-read socket to the pool."""
    if not response.content.at_eof():
        response.close()
    else:
        response.release()


class Utf8Stream:
    """Incremental UTF-8 decoding: a character split across network chunks is kept, never garbled."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, chunk: bytes) -> str:
        return self._decoder.decode(chunk)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class AsyncGeneratorProvider:
    """Base class with the g4f contract; subclasses implement ``create_async_generator``."""

    url: str = ""
    working: bool = True
    supports_stream: bool = True
    supports_message_history: bool = True
    supports_gpt_35_turbo: bool = False
    takes_api_key: bool = False  # sends an API key (bound to its host: see ``credentials``)
    url_env: str = ""  # the environment variable that overrides ``url``

    @classmethod
    def base_url(cls, url: str | None = None) -> str:
        """The URL to use: the argument, else the environment variable, else the class default."""
        return (url or (os.environ.get(cls.url_env) if cls.url_env else None) or cls.url).rstrip("/")

    @classmethod
    def create_async_generator(
        cls, model: str, messages: Messages, proxy: str | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        raise NotImplementedError

    @classmethod
    async def create_async(
        cls, model: str, messages: Messages, proxy: str | None = None, **kwargs: Any
    ) -> str:
        """Join the whole stream's text (not its ``Usage``), for callers that do not care about streaming."""
        chunks = cls.create_async_generator(model, messages, proxy, **kwargs)
        return "".join([c async for c in chunks if isinstance(c, str)])

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = True, proxy: str | None = None, **kwargs: Any
    ) -> Iterator[str]:
        """Synchronous generator of chunks, usable with or without a running event loop.

        The stream runs on a loop in a worker thread (``loops.iterate``), so a running loop here (a
        notebook cell) is never re-entered or blocked by its own work. Streaming, it
        yields what the async generator does (text, then a ``Usage`` when the server reports one);
        ``stream=False`` yields the joined text only.
        """
        chunks = iterate(cls.create_async_generator(model, messages, proxy, **kwargs), "acytoo-completion")
        if stream:
            yield from chunks
        else:
            yield "".join(c for c in chunks if isinstance(c, str))
