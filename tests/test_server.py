"""The local protocol server as a user runs it: `python -m acytoo_magic.server`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields

import aiohttp
import openai
import pytest

from acytoo_magic.providers import Acytoo
from acytoo_magic.providers.local_model import Generation
from acytoo_magic.server import (
    LocalServer,
    ServerConfig,
    count_tokens,
    create_app,
    fingerprint,
    parse_directives,
    scripted_reply,
)
from acytoo_magic.server.scripted import ReplyPlan


def server_help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "acytoo_magic.server", "--help"], capture_output=True, text=True, check=True
    ).stdout


def documented() -> tuple[set[str], list[str]]:
    """The directives ``--help`` lists, and the fault modes it lists under ``fault=MODE``."""
    out = server_help()
    section = out.split("directives, written in the last user message")[1].split("\n\n")[0]
    names, modes, in_fault = set(), [], False
    for line in section.splitlines()[1:]:
        if entry := re.match(r"  (\w+)(?:=\w+)?\s+(\S+)", line):
            names.add(entry[1])
            in_fault = entry[1] == "fault"
            modes += entry[2].split("|") if in_fault else []
        elif in_fault and (mode := re.match(r"\s{10,}(\w+)\s", line)):
            modes.append(mode[1])
    return names, modes


def test_help_lists_exactly_the_endpoints_served():
    endpoints = server_help().split("\nendpoints:\n")[1]
    listed = set(re.findall(r"^  (GET|POST) +(/\S+)", endpoints, re.M))
    served = {(r.method, r.resource.canonical) for r in create_app().router.routes() if r.method != "HEAD"}
    assert listed == served - {("DELETE", "/_requests")} and ("DELETE", "/_requests") in served
    assert "(DELETE clears it)" in endpoints


async def test_every_documented_directive_and_fault_mode_does_what_help_says(server):
    names, modes = documented()
    # every setting a reply plan has is documented, and nothing else is
    assert names == {"echo", "size"} | {f.name for f in fields(ReplyPlan)} - {"body"}
    assert modes == ["400", "401", "403", "404", "429", "500", "503", "drop", "bad_utf8", "bad_sse", "huge"]

    async def ask(session: aiohttp.ClientSession, directive: str, path: str = "/api/completions"):
        body = {"messages": [{"role": "user", "content": f"{directive} hello"}], "stream": True}
        return await session.post(server.url + path, json=body)

    async with aiohttp.ClientSession() as session:
        normal = await (await ask(session, "")).read()
        for status in modes[:7]:
            async with await ask(session, f"[[fault={status}]]") as response:
                assert response.status == int(status)
        async with await ask(session, "[[fault=drop]]") as response:
            with pytest.raises(aiohttp.ClientPayloadError):  # half the reply, then the connection is cut
                await response.read()
        async with await ask(session, "[[fault=bad_utf8]]") as response:
            assert b"\xff\xfe" in await response.read()
        async with await ask(session, "[[fault=bad_sse]]", "/v1/chat/completions") as response:
            assert b"data: {not json\n\n" in await response.read()
        async with await ask(session, "[[fault=huge chunk=1048576]]") as response:
            assert len(await response.read()) == 64 * 1024 * 1024
    assert normal.startswith(b'You said: "hello"')


def test_server_process_answers_over_http():
    process = subprocess.Popen(
        [sys.executable, "-m", "acytoo_magic.server", "--backend", "scripted", "--port", "0", "--delay", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.split()[-1]
        chunks = list(Acytoo.create_completion("m", [{"role": "user", "content": "ping"}], url=url))
        assert 'You said: "ping"' in "".join(chunks)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_scripted_reply_shows_what_was_sent():
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "[[chunk=2]] second"},
    ]
    reply = scripted_reply(messages)
    assert 'You said: "second"' in reply
    assert "4 messages (2 from you)" in reply
    assert 'Before that you said: "first"' in reply
    assert parse_directives("a [[fault=500 times=1]] b") == ({"fault": "500", "times": "1"}, "a  b")


async def test_credentials_are_recorded_only_as_fingerprints(server):
    secrets = {
        "Authorization": "Bearer sk-recorded-never",
        "Proxy-Authorization": "Basic cHJveHk6cGFzcw==",
        "Cookie": "session=cookie-secret",
        "X-Api-Key": "xkey-secret",
    }
    async with aiohttp.ClientSession() as session:
        body = {"messages": [{"role": "user", "content": "[[echo]]hi"}]}
        async with session.post(f"{server.url}/api/completions", json=body, headers=secrets) as response:
            assert await response.text() == "hi"
        async with session.get(f"{server.url}/_requests") as response:
            served = await response.text()
    (request,) = server.requests
    for name, value in secrets.items():
        assert request["headers"][name] == fingerprint(value)  # which key arrived, provably...
        assert value not in served and value not in json.dumps(server.requests)  # ...but not the key
    assert fingerprint("Bearer sk-recorded-never") != fingerprint("Bearer sk-recorded-nevers")


class FakeModel:
    """What server.py uses of a local_model.LocalModel: a name, stream(), the generations list."""

    name = "fake-model"
    generations: list = []  # noqa: RUF012

    async def stream(self, messages, temperature, max_tokens):
        for piece in ("model ", "answer"):
            yield piece
        yield Generation(started=0.0, prompt_tokens=7, completion_tokens=2, finish_reason="stop")


async def test_a_model_server_keeps_no_request_log():
    config = ServerConfig(model=FakeModel())
    assert not config.keeps_request_log and ServerConfig().keeps_request_log
    with LocalServer(config) as running:
        async with aiohttp.ClientSession() as session:
            body = {"messages": [{"role": "user", "content": "hi"}]}
            headers = {"Authorization": "Bearer sk-model-server"}
            async with session.post(f"{running.url}/api/completions", json=body, headers=headers) as response:
                assert await response.text() == "model answer"
            for method in ("GET", "DELETE"):
                async with session.request(method, f"{running.url}/_requests") as response:
                    assert response.status == 404
    assert config.requests == []


def test_binding_beyond_loopback_warns_once_and_loopback_does_not():
    def first_lines(host: str) -> tuple[str, str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "acytoo_magic.server",
                "--backend",
                "scripted",
                "--host",
                host,
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            listening = process.stdout.readline()  # printed after the socket is bound (and any warning)
        finally:
            process.terminate()  # bound for as long as one line takes: nothing is served meanwhile
            _, err = process.communicate(timeout=10)
        return listening, err

    listening, err = first_lines("0.0.0.0")
    assert "listening on http://0.0.0.0:" in listening
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "listening on 0.0.0.0, not only loopback" in warnings[0]
    listening, err = first_lines("127.0.0.1")
    assert "listening on http://127.0.0.1:" in listening and "warning" not in err


# -- the OpenAI endpoint as clients expect it: the official `openai` client, and g4f's Custom ------


def client(server: LocalServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def words(text: str) -> int:
    return len(text.split())


async def test_openai_client_lists_models_and_gets_a_whole_answer_with_usage(server):
    async with client(server) as api:
        assert [m.id for m in (await api.models.list()).data] == ["scripted"]
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
        done = await api.chat.completions.create(model="m", messages=messages, stream=False)
    (choice,) = done.choices
    assert choice.message.content == scripted_reply(messages) and choice.finish_reason == "stop"
    assert done.usage.prompt_tokens == 4 and done.usage.completion_tokens == words(choice.message.content)
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    assert [r["method"] + " " + r["path"] for r in server.requests] == [
        "GET /v1/models",
        "POST /v1/chat/completions",
    ]


async def test_openai_client_streams_with_usage_last_and_max_tokens_gives_length(server):
    messages = [{"role": "user", "content": "[[chunk=5]] count my words please"}]
    async with client(server) as api:
        whole = await api.chat.completions.create(model="m", messages=messages)
        stream = await api.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        cut = await api.chat.completions.create(model="m", messages=messages, max_tokens=3)
        plain = await api.chat.completions.create(model="m", messages=messages, stream=True)
        plain_chunks = [chunk async for chunk in plain]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 5 and text == whole.choices[0].message.content
    *body, finish, last = chunks
    assert finish.choices[0].finish_reason == "stop" and all(c.usage is None for c in [*body, finish])
    assert last.choices == [] and last.usage.model_dump(include={"prompt_tokens", "completion_tokens"}) == {
        "prompt_tokens": 5,
        "completion_tokens": count_tokens(text),
    }
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3
    assert cut.choices[0].message.content.split() == text.split()[:3]
    assert all(c.usage is None for c in plain_chunks)  # usage only when asked for


@pytest.mark.parametrize(
    "status,error",
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
async def test_fault_statuses_reach_the_openai_client_as_its_own_errors(server, status, error):
    async with client(server) as api:
        for stream in (False, True):
            with pytest.raises(error) as info:
                await api.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": f"[[fault={status}]] x"}], stream=stream
                )
            assert info.value.status_code == status
            assert info.value.message.startswith(f"Error code: {status}")
            assert f"scripted fault {status}" in info.value.body["message"]
            assert info.value.type and set(info.value.body) == {"message", "type", "param", "code"}


async def test_bad_requests_get_openai_errors_and_the_acytoo_endpoint_keeps_its_own(server):
    async with aiohttp.ClientSession() as session:
        for body, param in ((b"{not json", None), (b'{"model": "m"}', "messages")):
            async with session.post(f"{server.url}/v1/chat/completions", data=body) as response:
                assert response.status == 400
                error = (await response.json())["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["type"] == "invalid_request_error" and error["param"] == param
        async with session.post(f"{server.url}/api/completions", data=b"{not json") as response:
            assert response.status == 400 and await response.json() == {"error": "body is not JSON"}
    async with client(server) as api:
        with pytest.raises(openai.BadRequestError) as info:
            await api.chat.completions.create(model="m", messages=None)
    assert info.value.param == "messages"


async def test_a_model_server_answers_openai_clients_from_the_model():
    with LocalServer(ServerConfig(model=FakeModel())) as running:
        async with client(running) as api:
            assert [m.id for m in (await api.models.list()).data] == ["fake-model"]
            whole = await api.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "[[echo]]not this"}]
            )
            stream = await api.chat.completions.create(
                model="x",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
    assert whole.choices[0].message.content == "model answer" and whole.choices[0].finish_reason == "stop"
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (7, 2)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "model answer"
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 2


async def test_a_model_server_refuses_tools_instead_of_answering_without_them():
    tools = [{"type": "function", "function": {"name": "list_variables", "parameters": {"type": "object"}}}]
    with LocalServer(ServerConfig(model=FakeModel())) as running:
        async with client(running) as api:
            with pytest.raises(openai.BadRequestError) as info:
                await api.chat.completions.create(
                    model="x", messages=[{"role": "user", "content": "hi"}], tools=tools
                )
            plain = await api.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    assert info.value.param == "tools" and info.value.code == "tools_unsupported"
    assert info.value.body["message"].startswith("fake-model does not support tools")
    assert "Ollama" in info.value.message
    assert plain.choices[0].message.content == "model answer"  # the same server, without tools


G4F_CLIENT = """
import asyncio, json, sys
from g4f.Provider import Custom
from g4f.providers.response import FinishReason, Usage

async def ask(stream):
    items = []
    async for item in Custom.create_async_generator(
        "scripted", [{"role": "user", "content": "[[chunk=4]] hello from g4f"}],
        base_url=sys.argv[1], api_key="x", stream=stream,
    ):
        if isinstance(item, str):
            items.append(["text", item])
        elif isinstance(item, Usage):
            items.append(["usage", item.get_dict()])
        elif isinstance(item, FinishReason):
            items.append(["finish", item.reason])
    return items

print(json.dumps({"models": list(Custom.get_models(base_url=sys.argv[1])),
                  "stream": asyncio.run(ask(True)), "whole": asyncio.run(ask(False))}))
"""


def test_g4f_custom_provider_lists_models_streams_and_gets_usage(server):
    # In a subprocess: g4f's sync helpers patch a running loop with nest_asyncio2, and it caches
    # models on the Custom class; neither should leak into this test process.
    out = subprocess.run(
        [sys.executable, "-c", G4F_CLIENT, server.url + "/v1"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["models"] == ["scripted"]
    for mode in ("stream", "whole"):
        items = result[mode]
        text = "".join(value for kind, value in items if kind == "text")
        assert 'You said: "hello from g4f"' in text, mode
        assert ["finish", "stop"] in items, mode
        (usage,) = [value for kind, value in items if kind == "usage"]
        assert usage["prompt_tokens"] == 4 and usage["completion_tokens"] == count_tokens(text), mode
    assert [server.requests[0]["method"], server.requests[0]["path"]] == ["GET", "/v1/models"]
    assert server.requests[1]["json"]["stream_options"] == {"include_usage": True}
