"""The providers over real loopback HTTP against the local protocol server."""

from __future__ import annotations

import asyncio
import sys
import types

import aiohttp
import aiohttp.web
import pytest

from acytoo_magic.core.outbound import redact
from acytoo_magic.providers import (
    Acytoo,
    AsyncGeneratorProvider,
    OpenAICompatible,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderTimeout,
    ResponseTooLarge,
    credentials,
    resolve,
)
from acytoo_magic.providers.base import url_host
from acytoo_magic.providers.credentials import HiddenText, MaskedText, ScopedKey, key_for, origin
from acytoo_magic.server import fingerprint


@pytest.fixture(autouse=True)
def _no_proxy_from_the_shell(monkeypatch):
    """Providers trust the environment's proxies: these loopback tests must not meet the developer's."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


MULTILINGUAL = "Привет, мир! 你好，世界。こんにちは 🎉👩‍💻 naïve café — ok"


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def collect(provider, messages, **kwargs) -> list[str]:
    """The text chunks of a stream (a ``Usage`` the server reports after the text is left out)."""
    stream = provider.create_async_generator(kwargs.pop("model", "m"), messages, **kwargs)
    return [chunk async for chunk in stream if isinstance(chunk, str)]


async def test_acytoo_request_is_exactly_the_original_protocol(server):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    await collect(Acytoo, messages, url=server.url, model="gpt-4o-mini", temperature=0.2)
    (request,) = server.requests
    assert request["path"] == "/api/completions"
    assert request["method"] == "POST"
    assert request["headers"]["Accept"] == "*/*"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["json"] == {
        "key": "",
        "model": "gpt-4o-mini",
        "messages": messages,
        "temperature": 0.2,
        "password": "",
    }


async def test_acytoo_defaults_temperature_and_reads_url_from_env(server, monkeypatch):
    monkeypatch.setenv("ACYTOO_URL", server.url)
    text = "".join(await collect(Acytoo, user("hi"), model=""))
    assert 'You said: "hi"' in text
    assert server.requests[0]["json"]["temperature"] == 0.5
    assert server.requests[0]["json"]["model"] == "gpt-3.5-turbo"


async def test_utf8_split_at_every_byte_is_decoded_identically(server):
    chunks = await collect(Acytoo, user(f"[[echo chunk=1 delay=0.002]]{MULTILINGUAL}"), url=server.url)
    assert "".join(chunks) == MULTILINGUAL
    assert len(chunks) > 20  # really streamed, and no chunk carries a replacement character
    assert all("\ufffd" not in c for c in chunks)


@pytest.mark.parametrize("chunk", [2, 3, 5, 7])
async def test_utf8_other_chunk_sizes(server, chunk):
    chunks = await collect(Acytoo, user(f"[[echo chunk={chunk}]]{MULTILINGUAL}"), url=server.url)
    assert "".join(chunks) == MULTILINGUAL


async def test_invalid_utf8_is_replaced_not_fatal(server):
    text = "".join(await collect(Acytoo, user("[[fault=bad_utf8]] hello"), url=server.url))
    assert "\ufffd" in text and 'You said: "hello"' in text


async def test_openai_sse_stream_and_bearer_key(server):
    chunks = await collect(
        OpenAICompatible,
        user(f"[[echo chunk=3]]{MULTILINGUAL}"),
        url=f"{server.url}/v1",
        api_key="sk-test-123",
    )
    assert "".join(chunks) == MULTILINGUAL
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["json"]["stream"] is True
    assert request["headers"]["Authorization"] == fingerprint("Bearer sk-test-123")


@pytest.fixture
def notes(monkeypatch):
    """A fresh 'already told' set: the one-note-per-host rule starts over for each test."""
    monkeypatch.setattr(credentials, "_noted", set())


async def test_openai_key_from_env_goes_to_its_base_url(server, monkeypatch, notes, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-456")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    await collect(OpenAICompatible, user("x"))
    assert server.requests[0]["headers"]["Authorization"] == fingerprint("Bearer sk-env-456")
    assert capsys.readouterr().err == ""


async def test_openai_key_from_env_is_not_sent_to_another_host(server, monkeypatch, notes, capsys):
    """OPENAI_API_KEY belongs to api.openai.com (OPENAI_BASE_URL unset): a local server gets no key."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-456")
    await collect(OpenAICompatible, user("one"), url=f"{server.url}/v1")
    await collect(OpenAICompatible, user("two"), url=f"{server.url}/v1")
    assert [r["json"]["messages"][0]["content"] for r in server.requests] == ["one", "two"]
    assert all("Authorization" not in r["headers"] for r in server.requests)
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line, once for this host
    assert f"no API key sent to {server.url}: OPENAI_API_KEY is for https://api.openai.com only" in err
    assert "sk-env-456" not in err


async def test_acytoo_key_from_env_is_bound_to_acytoo_url(server, monkeypatch, notes, capsys):
    monkeypatch.setenv("ACYTOO_API_KEY", "sk-acytoo-789")
    monkeypatch.setenv("ACYTOO_URL", server.url)
    await collect(OpenAICompatible, user("same host"), url=f"{server.url}/v1")
    other = server.url.replace("127.0.0.1", "localhost")  # the same server under another host name
    await collect(OpenAICompatible, user("other host"), url=f"{other}/v1")
    first, second = server.requests
    assert first["headers"]["Authorization"] == fingerprint("Bearer sk-acytoo-789")
    assert "Authorization" not in second["headers"]
    assert "ACYTOO_API_KEY is for http://127.0.0.1:" in capsys.readouterr().err


async def test_acytoo_protocol_never_sends_a_key(server, monkeypatch):
    monkeypatch.setenv("ACYTOO_API_KEY", "sk-acytoo-789")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-456")
    monkeypatch.setenv("ACYTOO_URL", server.url)
    await collect(Acytoo, user("x"), api_key="sk-given")
    (request,) = server.requests
    assert "Authorization" not in request["headers"]
    assert request["json"]["key"] == "" and request["json"]["password"] == ""


async def test_an_explicit_empty_key_sends_none(server, monkeypatch, notes):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-456")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    await collect(OpenAICompatible, user("x"), api_key="")
    assert "Authorization" not in server.requests[0]["headers"]


async def test_url_credentials_and_a_key_are_one_clear_error(server):
    url = server.url.replace("http://", "http://carol:urlpass@") + "/v1"
    with pytest.raises(ProviderError) as info:
        await collect(OpenAICompatible, user("x"), url=url, api_key="sk-given")
    assert "user:password@ and an API key" in str(info.value)
    assert "urlpass" not in str(info.value) and "sk-given" not in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize(
    "a,b",
    [
        ("https://api.openai.com/v1", "HTTPS://API.OpenAI.com:443/other"),
        ("http://127.0.0.1:8000/v1", "http://user:pw@127.0.0.1:8000"),
        ("http://[::1]:80/v1", "http://[::1]/x"),
        ("http://bücher.example/v1", "http://xn--bcher-kva.example"),
    ],
)
def test_origin_is_normalised(a, b):
    assert origin(a) == origin(b) != ""


@pytest.mark.parametrize(
    "a,b",
    [
        ("https://api.openai.com/v1", "http://api.openai.com/v1"),  # scheme
        ("http://127.0.0.1:8000", "http://127.0.0.1:8001"),  # port
        ("http://127.0.0.1:8000", "http://localhost:8000"),  # host name
        ("https://api.openai.com", "https://api.openai.com.evil.example"),
    ],
)
def test_origins_differ(a, b):
    assert origin(a) != origin(b)


def test_a_key_goes_only_where_it_was_set(notes, capsys):
    key = ScopedKey("sk-1", "Assistant.api_key", "http://a.example:8000/v1")
    assert key_for("http://a.example:8000/v1/", [key]) == "sk-1"
    assert key_for("http://b.example:8000/v1", [key]) == ""
    assert key_for("not a url", [key]) == ""
    assert key_for("", [key]) == ""
    assert capsys.readouterr().err.count("\n") == 3  # one note per host (b.example, and two unusable)
    assert key_for("http://b.example:8000/v1", [key]) == ""
    assert capsys.readouterr().err == ""  # already told about that host


def test_masked_settings_show_no_secret():
    assert repr(MaskedText("http://bob:pw@proxy:3128")) == "'http://***@proxy:3128'"
    assert str(MaskedText("http://bob:pw@proxy:3128")) == "http://bob:pw@proxy:3128"
    assert repr(HiddenText("sk-abc")) == "'***'" and f"Bearer {HiddenText('sk-abc')}" == "Bearer sk-abc"
    assert repr(HiddenText("")) == "''"
    assert url_host("http://bob:pw@example.com:3128/v1") == "example.com:3128"


async def test_openai_malformed_sse_is_a_protocol_error(server):
    with pytest.raises(ProviderProtocolError) as info:
        await collect(OpenAICompatible, user("[[fault=bad_sse]] x"), url=f"{server.url}/v1")
    assert "bad JSON in SSE line" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500])
@pytest.mark.parametrize("provider,path", [(Acytoo, ""), (OpenAICompatible, "/v1")])
async def test_http_status_is_a_typed_one_line_error(server, status, provider, path):
    with pytest.raises(ProviderHTTPError) as info:
        await collect(
            provider, user(f"[[fault={status}]] x"), url=server.url + path, api_key="sk-never-shown"
        )
    error = info.value
    assert error.status == status
    assert "scripted fault" in error.body
    message = str(error)
    assert "\n" not in message
    assert f"HTTP {status}" in message and server.url in message
    assert "sk-never-shown" not in message


async def test_retry_after_is_honoured_then_succeeds(server):
    retries = []
    chunks = await collect(
        Acytoo,
        user("[[fault=429 times=2 retry_after=0]] again"),
        url=server.url,
        on_retry=lambda status, delay, attempt: retries.append((status, delay, attempt)),
    )
    assert 'You said: "again"' in "".join(chunks)
    assert retries == [(429, 0.0, 1), (429, 0.0, 2)]
    assert len(server.requests) == 3


async def test_retries_are_bounded(server):
    with pytest.raises(ProviderHTTPError) as info:
        await collect(Acytoo, user("[[fault=503 retry_after=0]] x"), url=server.url, retries=1)
    assert info.value.status == 503
    assert len(server.requests) == 2


async def test_dropped_stream_yields_partial_text_then_raises(server):
    received = []
    with pytest.raises(ProviderConnectionError) as info:
        async for chunk in Acytoo.create_async_generator(
            "m", user("[[fault=drop]] a longer message"), url=server.url
        ):
            received.append(chunk)
    assert received and "".join(received).startswith('You said: "a longer')
    assert "connection dropped" in str(info.value)


async def test_stall_before_first_byte_times_out(server):
    with pytest.raises(ProviderTimeout) as info:
        await collect(Acytoo, user("[[stall=5]] x"), url=server.url, timeout=2)
    assert "before the reply started" in str(info.value)


async def test_stall_mid_stream_times_out_after_partial_text(server):
    received = []
    with pytest.raises(ProviderTimeout) as info:
        async for chunk in Acytoo.create_async_generator(
            "m", user("[[stall_mid=5]] x"), url=server.url, timeout=2
        ):
            received.append(chunk)
    assert received
    assert "in the middle of the reply" in str(info.value)


async def test_reply_over_the_cap_is_response_too_large(server):
    received = []
    with pytest.raises(ResponseTooLarge):
        async for chunk in Acytoo.create_async_generator(
            "m", user("[[size=100000 chunk=4096]]"), url=server.url, max_response_bytes=50_000
        ):
            received.append(chunk)
    assert 40_000 < len("".join(received)) <= 50_000


async def test_connection_refused_and_dns_failure():
    with pytest.raises(ProviderConnectionError, match="connection refused"):
        await collect(Acytoo, user("x"), url="http://127.0.0.1:9")
    with pytest.raises(ProviderConnectionError, match="cannot resolve"):
        await collect(Acytoo, user("x"), url="http://no-such-host.invalid")


async def test_proxy_credentials_never_reach_the_message():
    with pytest.raises(ProviderConnectionError) as info:
        await collect(Acytoo, user("x"), url="http://127.0.0.1:9", proxy="http://alice:s3cret@127.0.0.1:9")
    assert "s3cret" not in str(info.value) and "alice" not in str(info.value)


async def test_proxy_is_honoured(server):
    """An unresolvable host is reached through the proxy: the local server plays the proxy."""
    text = "".join(await collect(Acytoo, user("via proxy"), url="http://example.invalid", proxy=server.url))
    assert 'You said: "via proxy"' in text
    assert server.requests[0]["headers"]["Host"] == "example.invalid"


async def test_shared_session_reuses_one_connection(server):
    async with aiohttp.ClientSession() as session:
        await collect(Acytoo, user("one"), url=server.url, session=session)
        await collect(Acytoo, user("two"), url=server.url, session=session)
        assert not session.closed  # a shared session belongs to the caller
    await collect(Acytoo, user("three"), url=server.url)
    peers = [tuple(r["peer"]) for r in server.requests]
    assert peers[0] == peers[1]
    assert peers[2] != peers[0]


async def test_cancelling_a_stream_closes_its_connection(server):
    async with aiohttp.ClientSession() as session:
        agen = Acytoo.create_async_generator(
            "m", user("[[size=100000 chunk=10 delay=0.01]]"), url=server.url, session=session
        )
        await agen.__anext__()
        await agen.aclose()
        assert session.connector is not None
        # the half-read connection is closed, not returned to the pool
        assert sum(len(v) for v in session.connector._conns.values()) == 0


class ForeignProvider:
    """Only the g4f contract, no base class, no session or timeout keywords."""

    url = "https://example.invalid"
    working = True

    @staticmethod
    async def create_async_generator(model, messages, proxy=None, **kwargs):
        for word in ("foreign ", "answer"):
            yield word


def test_resolve_accepts_builtins_paths_and_foreign_objects(monkeypatch):
    assert resolve("acytoo") is Acytoo
    assert resolve("OpenAI") is OpenAICompatible
    assert resolve(ForeignProvider) is ForeignProvider
    module = types.ModuleType("third_party_g4f")
    module.Provider = ForeignProvider
    monkeypatch.setitem(sys.modules, "third_party_g4f", module)
    assert resolve("third_party_g4f:Provider") is ForeignProvider
    with pytest.raises(ProviderNotFound, match="unknown provider 'nope'"):
        resolve("nope")
    with pytest.raises(ProviderNotFound, match="cannot load provider"):
        resolve("no_such_module_xyz:Thing")
    with pytest.raises(ProviderNotFound, match="has no create_async_generator"):
        resolve("sys:path")


async def test_create_async_joins_the_stream(server):
    text = await Acytoo.create_async("m", user("[[echo]]joined"), url=server.url)
    assert text == "joined"


def test_create_completion_without_a_running_loop(server):
    chunks = list(Acytoo.create_completion("m", user("[[echo chunk=2 delay=0.01]]sync ✓"), url=server.url))
    assert "".join(chunks) == "sync ✓" and len(chunks) > 1
    assert list(Acytoo.create_completion("m", user("[[echo]]whole"), stream=False, url=server.url)) == [
        "whole"
    ]


async def test_create_completion_inside_a_running_loop(server):
    asyncio.get_running_loop()  # as in a notebook cell
    chunks = list(Acytoo.create_completion("m", user("[[echo chunk=2]]in loop"), url=server.url))
    assert "".join(chunks) == "in loop"


def test_base_contract_attributes():
    for cls in (Acytoo, OpenAICompatible):
        assert issubclass(cls, AsyncGeneratorProvider)
        for name in (
            "url",
            "working",
            "supports_stream",
            "supports_message_history",
            "supports_gpt_35_turbo",
        ):
            assert hasattr(cls, name)


def test_redaction():
    assert redact("http://bob:pw@proxy:3128") == "http://***@proxy:3128"
    assert redact("Authorization: Bearer sk-abc") == "Authorization: Bearer ***"
    assert redact("key sk-abcdef leaked", secrets=["sk-abcdef"]) == "key *** leaked"
    error = ProviderError("boom\nsecond line", provider="P", url="http://u:p@h/x")
    assert str(error) == "P at http://***@h/x: boom second line"


async def test_a_redirect_to_another_host_drops_the_key(server):
    """The key goes with the request to its host; a redirect elsewhere does not carry it along."""

    async def redirect(request):
        raise aiohttp.web.HTTPTemporaryRedirect(f"http://localhost:{server.port}/v1/chat/completions")

    app = aiohttp.web.Application()
    app.router.add_post("/v1/chat/completions", redirect)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]
        redirector = f"http://127.0.0.1:{port}/v1"
        text = "".join(await collect(OpenAICompatible, user("redirected"), url=redirector, api_key="sk-r"))
    finally:
        await runner.cleanup()
    assert 'You said: "redirected"' in text
    (request,) = server.requests
    assert "Authorization" not in request["headers"]
