"""The local protocol server as a user runs it: `python -m acytoo_magic.server`."""

from __future__ import annotations

import json
import subprocess
import sys

import aiohttp

from acytoo_magic.providers import Acytoo
from acytoo_magic.server import LocalServer, ServerConfig, fingerprint, parse_directives, scripted_reply


def test_help_documents_every_mode():
    out = subprocess.run(
        [sys.executable, "-m", "acytoo_magic.server", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for word in (
        "--port",
        "--chunk-size",
        "--delay",
        "--fault",
        "echo",
        "size=N",
        "stall=S",
        "stall_mid=S",
        "drop",
        "bad_utf8",
        "bad_sse",
        "huge",
        "429",
        "retry_after",
        "/api/completions",
        "/v1/chat/completions",
    ):
        assert word in out, word


def test_server_process_answers_over_http():
    process = subprocess.Popen(
        [sys.executable, "-m", "acytoo_magic.server", "--port", "0", "--delay", "0"],
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

    async def stream(self, messages, temperature, max_tokens, gone):
        for piece in ("model ", "answer"):
            yield piece


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
            [sys.executable, "-m", "acytoo_magic.server", "--host", host, "--port", "0"],
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
