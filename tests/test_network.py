"""Networks as users have them: proxies from the environment, servers that close idle connections,
servers that refuse ``stream_options``. Every server here is real and listens on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from acytoo_magic.providers import (
    Acytoo,
    OpenAICompatible,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
)
from acytoo_magic.providers import openai as openai_module
from acytoo_magic.providers.base import Usage
from acytoo_magic.server import fingerprint

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean_network_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy or netrc login from the developer's home, no server remembered as refusing
    ``stream_options``."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setattr(openai_module, "_no_stream_options", set(), raising=False)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def collect(provider, messages, **kwargs) -> list:
    return [c async for c in provider.create_async_generator(kwargs.pop("model", "m"), messages, **kwargs)]


@contextlib.asynccontextmanager
async def serving(handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """Run ``handler`` for every request (any method, any target: a proxy sees absolute URLs and
    CONNECT) on 127.0.0.1; yield its ``http://host:port``."""
    runner = web.ServerRunner(web.Server(handler), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


# --- token usage from OpenAI-compatible servers ----------------------------------------------------


class OpenAIServer:
    """A small OpenAI-compatible endpoint: two deltas, then usage when asked for it.

    ``refuse``: "named" answers a request carrying ``stream_options`` with 400 naming the field (as
    Azure and strict validators do), "unnamed" with a bare 422, "always" refuses every request.
    """

    def __init__(self, refuse: str = "") -> None:
        self.refuse = refuse
        self.bodies: list[dict] = []

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        if self.refuse == "always":
            return web.json_response({"error": {"message": "model 'm' not found"}}, status=400)
        if "stream_options" in body and self.refuse == "named":
            message = "Unrecognized request argument supplied: stream_options"
            return web.json_response({"error": {"message": message}}, status=400)
        if "stream_options" in body and self.refuse == "unnamed":
            return web.json_response({"detail": "Extra inputs are not permitted"}, status=422)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for text in ("Hello", ", world"):
            event = {"choices": [{"index": 0, "delta": {"content": text}}]}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        if body.get("stream_options", {}).get("include_usage"):
            usage = {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
            event = {"choices": [], "usage": usage}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def asked_for_usage(self) -> list[bool]:
        return ["stream_options" in body for body in self.bodies]


async def test_usage_is_yielded_after_the_text():
    backend = OpenAIServer()
    async with serving(backend) as url:
        chunks = await collect(OpenAICompatible, user("hi"), url=f"{url}/v1")
        text = await OpenAICompatible.create_async("m", user("hi"), url=f"{url}/v1")
    assert chunks == ["Hello", ", world", Usage(prompt_tokens=12, completion_tokens=2)]
    assert text == "Hello, world"  # the joined text leaves the counts out
    assert backend.bodies[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("refuse", ["named", "unnamed"])
async def test_a_server_refusing_stream_options_is_asked_again_without_it_and_remembered(refuse):
    backend = OpenAIServer(refuse=refuse)
    async with serving(backend) as url:
        first = await collect(OpenAICompatible, user("one"), url=f"{url}/v1")
        assert first == ["Hello", ", world"]  # the text streams; no counts to give
        assert backend.asked_for_usage() == [True, False]  # one retry, without the option
        second = await collect(OpenAICompatible, user("two"), url=f"{url}/v1")
    assert second == ["Hello", ", world"]
    assert backend.asked_for_usage() == [True, False, False]  # straight away without it
    assert [b["messages"][0]["content"] for b in backend.bodies] == ["one", "one", "two"]


async def test_what_is_remembered_belongs_to_that_server_only():
    refusing, taking = OpenAIServer(refuse="named"), OpenAIServer()
    async with serving(refusing) as refusing_url, serving(taking) as taking_url:
        await collect(OpenAICompatible, user("x"), url=f"{refusing_url}/v1")
        chunks = await collect(OpenAICompatible, user("x"), url=f"{taking_url}/v1")
    assert chunks[-1] == Usage(12, 2)
    assert taking.asked_for_usage() == [True]


async def test_a_refusal_that_is_not_about_the_option_is_reported_and_not_remembered():
    backend = OpenAIServer(refuse="always")
    async with serving(backend) as url:
        with pytest.raises(ProviderHTTPError) as info:
            await collect(OpenAICompatible, user("x"), url=f"{url}/v1", api_key="sk-never-shown")
        assert backend.asked_for_usage() == [True, False]
        with pytest.raises(ProviderHTTPError):
            await collect(OpenAICompatible, user("x"), url=f"{url}/v1")
    assert backend.asked_for_usage() == [True, False, True, False]  # still asked: not the option's fault
    message = str(info.value)
    assert info.value.status == 400 and "model 'm' not found" in message
    assert message.startswith(f"OpenAI-compatible at {url}/v1/chat/completions: HTTP 400")
    assert "\n" not in message and "sk-never-shown" not in message


# --- proxies --------------------------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "upgrade", "host"}


class RecordingProxy:
    """A forwarding HTTP proxy that records each request target passing through it.

    CONNECT (an https:// target) is recorded and refused with 403: no TLS here, but it shows the
    request went to the proxy.
    """

    def __init__(self, login: str = "") -> None:
        self.seen: list[str] = []
        self.login = login  # "user:password" the proxy asks for, if any

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        self.seen.append(f"{request.method} {request.raw_path}")
        expected = "Basic " + base64.b64encode(self.login.encode()).decode()
        if self.login and request.headers.get("Proxy-Authorization") != expected:
            return web.Response(status=407, text="login first", headers={"Proxy-Authenticate": "Basic"})
        if request.method == "CONNECT":
            return web.Response(status=403, text="no tunnels here")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with (
            aiohttp.ClientSession() as upstream_session,  # trust_env off: a proxy does not proxy itself
            upstream_session.request(
                request.method, request.raw_path, data=await request.read(), headers=headers
            ) as upstream,
        ):
            response = web.StreamResponse(
                status=upstream.status, headers={"content-type": upstream.headers["content-type"]}
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[RecordingProxy, str]]:
    recording = RecordingProxy()
    async with serving(recording) as url:
        yield recording, url


async def test_http_proxy_from_the_environment_is_used(server, proxy, monkeypatch):
    recording, proxy_url = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    text = "".join(await collect(Acytoo, user("via the environment's proxy"), url=server.url))
    assert 'You said: "via the environment\'s proxy"' in text
    assert recording.seen == [f"POST {server.url}/api/completions"]
    assert len(server.requests) == 1


async def test_a_proxy_login_from_the_environment_is_sent_and_a_missing_one_explained(server, monkeypatch):
    guarded = RecordingProxy(login="alice:s3cret")
    async with serving(guarded) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        with pytest.raises(ProviderHTTPError) as info:
            await collect(Acytoo, user("no login"), url=server.url)
        monkeypatch.setenv("HTTP_PROXY", proxy_url.replace("http://", "http://alice:s3cret@"))
        text = "".join(await collect(Acytoo, user("with login"), url=server.url))
    assert "HTTP 407 (proxy authentication required: put user:password@ in the proxy URL)" in str(info.value)
    assert 'You said: "with login"' in text
    assert [r["json"]["messages"][0]["content"] for r in server.requests] == ["with login"]


async def test_no_proxy_bypasses_it(server, proxy, monkeypatch):
    recording, proxy_url = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    text = "".join(await collect(Acytoo, user("direct"), url=server.url))
    assert 'You said: "direct"' in text
    assert recording.seen == []
    assert len(server.requests) == 1


async def test_https_proxy_from_the_environment_is_used_for_https(monkeypatch, proxy):
    recording, proxy_url = proxy
    monkeypatch.setenv("HTTPS_PROXY", proxy_url)
    with pytest.raises(ProviderConnectionError) as info:
        await collect(OpenAICompatible, user("x"), url="https://api.example.invalid/v1", api_key="sk-k")
    assert recording.seen == ["CONNECT api.example.invalid:443"]
    assert "the proxy (from HTTPS_PROXY) refused the tunnel: HTTP 403 (forbidden)" in str(info.value)
    assert "sk-k" not in str(info.value)


async def test_an_explicit_proxy_wins_over_the_environment(server, monkeypatch):
    from_env, explicit = RecordingProxy(), RecordingProxy()
    async with serving(from_env) as env_url, serving(explicit) as explicit_url:
        monkeypatch.setenv("HTTP_PROXY", env_url)
        await collect(Acytoo, user("one"), url=server.url, proxy=explicit_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the environment's exceptions do not apply to it
        await collect(Acytoo, user("two"), url=server.url, proxy=explicit_url)
    assert from_env.seen == []
    assert explicit.seen == [f"POST {server.url}/api/completions"] * 2


async def test_a_proxy_without_a_scheme_is_http(server, proxy):
    recording, proxy_url = proxy
    text = "".join(
        await collect(Acytoo, user("no scheme"), url=server.url, proxy=proxy_url.removeprefix("http://"))
    )
    assert 'You said: "no scheme"' in text
    assert recording.seen == [f"POST {server.url}/api/completions"]


async def test_a_proxy_aiohttp_cannot_speak_is_one_clear_line(server):
    with pytest.raises(ProviderError) as info:
        await collect(Acytoo, user("x"), url=server.url, proxy="socks5://alice:s3cret@127.0.0.1:1080")
    message = str(info.value)
    assert message == (
        f"Acytoo at {server.url}/api/completions: proxy socks5://***@127.0.0.1:1080: "
        "scheme 'socks5' is not supported; use an HTTP proxy (http://host:port)"
    )
    assert server.requests == []


async def test_a_proxy_variable_without_a_scheme_is_http(server, proxy, monkeypatch):
    recording, proxy_url = proxy
    monkeypatch.setenv("http_proxy", proxy_url.removeprefix("http://"))
    await collect(Acytoo, user("x"), url=server.url)
    assert recording.seen == [f"POST {server.url}/api/completions"]


async def test_a_proxy_from_the_environment_is_named_when_it_fails(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://alice:s3cret@127.0.0.1:9")
    with pytest.raises(ProviderConnectionError) as info:
        await collect(Acytoo, user("x"), url="http://example.invalid")
    assert str(info.value) == (
        "Acytoo at http://example.invalid/api/completions: cannot connect to the proxy (from HTTP_PROXY)"
    )
    monkeypatch.setenv("HTTPS_PROXY", "socks5://alice:s3cret@127.0.0.1:1080")
    with pytest.raises(ProviderError) as info:
        await collect(Acytoo, user("x"), url="https://example.invalid")
    assert str(info.value) == (
        "Acytoo at https://example.invalid/api/completions: proxy socks5://***@127.0.0.1:1080 "
        "(from HTTPS_PROXY): scheme 'socks5' is not supported; use an HTTP proxy (http://host:port)"
    )


@pytest.mark.parametrize("trust_env", [False, True])
async def test_the_environment_applies_whichever_session_is_used(server, proxy, monkeypatch, trust_env):
    """The runner's shared session, or any a caller passes, goes through the same proxy rules."""
    recording, proxy_url = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    async with aiohttp.ClientSession(trust_env=trust_env) as session:
        await collect(Acytoo, user("proxied"), url=server.url, session=session)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        await collect(Acytoo, user("direct"), url=server.url, session=session)
    assert recording.seen == [f"POST {server.url}/api/completions"]
    assert [r["json"]["messages"][0]["content"] for r in server.requests] == ["proxied", "direct"]


async def test_no_netrc_login_is_added(server, monkeypatch, tmp_path):
    """A netrc entry for the host neither travels with a request nor clashes with an API key."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login bob password netrc-pass-123\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    await collect(Acytoo, user("x"), url=server.url)
    await collect(OpenAICompatible, user("x"), url=f"{server.url}/v1", api_key="sk-k")
    acytoo, openai = server.requests
    assert "Authorization" not in acytoo["headers"]
    assert openai["headers"]["Authorization"] == fingerprint("Bearer sk-k")


# --- connections the server closes ----------------------------------------------------------------


class ClosesIdleConnections:
    """A raw HTTP/1.1 server that answers the first request on each connection and keeps it open
    (no ``Connection: close``), then closes it, unanswered, when another request arrives there.

    That is what a client sees when the server's idle timeout fires (uvicorn: 5 s) just as a
    pooled connection is reused; here it happens every time, with no waiting.
    """

    def __init__(self, body: Callable[[dict], bytes], content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.completed: list[str] = []  # the prompt of each request answered
        self.dropped: list[str] = []  # ... and of each closed unanswered
        self.connections = 0
        self.answer_first = True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = not self.answer_first
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                payload = json.loads(await reader.readexactly(length))
                prompt = payload["messages"][-1]["content"]
                if answered:
                    self.dropped.append(prompt)
                    return
                reply = self.body(payload)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                    % (self.content_type.encode(), len(reply), reply)
                )
                await writer.drain()
                self.completed.append(prompt)
                answered = True
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        try:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        finally:
            server.close()
            await server.wait_closed()


def acytoo_body(payload: dict) -> bytes:
    return f"answer to {payload['messages'][-1]['content']}".encode()


def sse_body(payload: dict) -> bytes:
    delta = {"choices": [{"delta": {"content": f"answer to {payload['messages'][-1]['content']}"}}]}
    return f"data: {json.dumps(delta)}\n\ndata: [DONE]\n\n".encode()


@pytest.mark.parametrize(
    "provider,path,body,content_type",
    [(Acytoo, "", acytoo_body, "text/plain"), (OpenAICompatible, "/v1", sse_body, "text/event-stream")],
)
async def test_a_pooled_connection_the_server_closed_is_retried_once(provider, path, body, content_type):
    backend = ClosesIdleConnections(body, content_type)
    async with backend.running() as url, aiohttp.ClientSession() as session:
        first = await collect(provider, user("one"), url=url + path, session=session)
        second = await collect(provider, user("two"), url=url + path, session=session)
    assert "".join(first) == "answer to one"
    assert "".join(second) == "answer to two"
    assert backend.dropped == ["two"]  # it went out on the pooled connection, which the server closed
    assert backend.completed == ["one", "two"]  # and was answered exactly once, on a new one
    assert backend.connections == 2


async def test_a_server_that_always_closes_is_tried_twice_then_reported():
    backend = ClosesIdleConnections(acytoo_body, "text/plain")
    backend.answer_first = False  # closes every connection as soon as a request arrives
    async with backend.running() as url:
        with pytest.raises(ProviderConnectionError) as info:
            await collect(Acytoo, user("x"), url=url)
    assert backend.dropped == ["x", "x"]
    assert str(info.value) == (
        f"Acytoo at {url}/api/completions: the server closed the connection before replying "
        "(also when sent again)"
    )


async def test_a_stream_dropped_midway_is_not_sent_again(server):
    received = []
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderConnectionError) as info:
            async for chunk in Acytoo.create_async_generator(
                "m", user("[[fault=drop]] a longer message"), url=server.url, session=session
            ):
                received.append(chunk)
    assert "".join(received).startswith('You said: "a longer')  # the partial text reached the caller
    assert "connection dropped after" in str(info.value)
    assert len(server.requests) == 1  # and the request was not repeated (that would repeat text)
