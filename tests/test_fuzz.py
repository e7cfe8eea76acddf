"""Fuzzing with hypothesis: whatever the input or the stream does, no uncaught exception reaches the user."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from acytoo_magic.providers import Acytoo, OpenAICompatible, ProviderError
from acytoo_magic.providers.base import Utf8Stream

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(text=st.text(), cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=40))
@settings(max_examples=400, deadline=None)
def test_random_chunk_boundaries_decode_to_the_original(text, cuts):
    data = text.encode()
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    decoder = Utf8Stream()
    assert "".join(decoder.decode(p) for p in pieces) + decoder.flush() == text


class BodyServer:
    """A real HTTP server on 127.0.0.1 that answers with whatever bytes the test sets, in pieces."""

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for piece in self.body:
            await response.write(piece)
        await response.write_eof()
        return response

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_post("/api/completions", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    def __enter__(self) -> BodyServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def body_server():
    with BodyServer() as running:
        yield running


def sse(text: str) -> bytes:
    import json

    return b"data: " + json.dumps({"choices": [{"delta": {"content": text}}]}).encode() + b"\n\n"


@given(
    words=st.lists(st.text(max_size=20), max_size=12),
    cut=st.integers(min_value=0, max_value=10_000),
    split=st.integers(min_value=1, max_value=64),
    garbage=st.binary(max_size=30),
)
@FUZZ
def test_sse_streams_cut_anywhere_end_in_text_or_a_typed_error(body_server, words, cut, split, garbage):
    stream = b"".join(sse(w) for w in words) + b"data: [DONE]\n\n"
    stream = stream[: cut % (len(stream) + 1)] + garbage
    body_server.body = [stream[i : i + split] for i in range(0, len(stream), split)]

    async def consume() -> str:
        return "".join(
            [c async for c in OpenAICompatible.create_async_generator("m", [], url=f"{body_server.url}/v1")]
        )

    try:
        text = asyncio.run(consume())
    except ProviderError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(text, str)


@given(payload=st.binary(max_size=300), split=st.integers(min_value=1, max_value=16))
@FUZZ
def test_acytoo_raw_bytes_never_raise_past_the_provider(body_server, payload, split):
    body_server.body = [payload[i : i + split] for i in range(0, len(payload), split)]
    text = asyncio.run(Acytoo.create_async("m", [], url=body_server.url))
    assert text == payload.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def magics(tmp_path_factory):
    import acytoo_magic

    InteractiveShell.clear_instance()  # a fresh shell of its own, cleared again after
    shell = InteractiveShell.instance()
    acytoo_magic.load_ipython_extension(shell)
    acytoo_magic._magics.assistant.history_path = str(tmp_path_factory.mktemp("fuzz") / "h.sqlite3")
    shell.user_ns.update(df=[1, 2, 3], In=["", "x = 1"], Out={1: 2})
    yield acytoo_magic._magics
    acytoo_magic.unload_ipython_extension(shell)
    InteractiveShell.clear_instance()


OPTION_WORDS = st.sampled_from(
    [
        "-p",
        "-m",
        "-t",
        "--url",
        "--proxy",
        "-c",
        "--no-history",
        "-s",
        "-f",
        "-o",
        "--context",
        "code",
        "text",
        "markdown",
        "x",
        "0.5",
        "nan",
        "'",
        '"',
        "--",
        "-",
        "acytoo",
        "openai",
        "a:b",
        "{",
        "}",
        "df",
        "=",
        "--bogus",
    ]
)


@given(words=st.lists(OPTION_WORDS, max_size=8), body=st.text(max_size=200))
@FUZZ
def test_option_strings_and_prompt_bodies_parse_or_give_a_usage_error(magics, words, body):
    """Everything before the request is sent: options, braces, references. Only UsageError may escape."""
    try:
        magics._start(*magics._prepare_cell(" ".join(words), body))
    except UsageError as exc:
        assert "\n" not in str(exc)


BRACES_AND_NAMES = st.text(alphabet=st.sampled_from("{}[]abc0123 Err In Out df_.-\n"), max_size=60)


@given(body=BRACES_AND_NAMES)
@FUZZ
def test_unbalanced_braces_and_references(magics, body):
    try:
        magics._prepare_cell("--no-history", body or "x")
    except UsageError as exc:
        assert str(exc).startswith("%%acytoo:") and "\n" not in str(exc)


@given(text=BRACES_AND_NAMES.filter(str.strip))
@FUZZ
def test_doubled_braces_always_give_the_text_back(magics, text):
    """Whatever looks like a reference, a user can send it literally by doubling its braces."""
    escaped = text.replace("{", "{{").replace("}", "}}")
    _args, prompt, _typed = magics._prepare_cell("--no-history", escaped)
    assert prompt == text.strip()
