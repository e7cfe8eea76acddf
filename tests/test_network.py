"""Networks as users have them: proxies from the environment, servers that close idle connections,
servers that refuse ``stream_options``. Every server here is real and listens on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from acytoo_magic.providers import (
    OpenAICompatible,
    ProviderHTTPError,
)
from acytoo_magic.providers import openai as openai_module
from acytoo_magic.providers.base import Usage

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
