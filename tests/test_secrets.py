"""API keys go only to the host they were set for; keys and credentials never show or get stored."""

from __future__ import annotations

import base64
import json

import pytest
from kernels import is_waiting, kernel

from acytoo_magic.server import fingerprint

pytestmark = pytest.mark.notebook
KEY = "sk-test-SECRETKEY-0123456789"
ENV_KEY = "sk-env-OPENAIKEY-9876543210"
PROXY_PASSWORD = "proxypass-987654"
URL_PASSWORD = "urlpass-123456"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def shown(execution) -> list[str]:
    """Every text the output area showed, in order (waiting lines, answers, status lines)."""
    displays = [m["content"] for m in execution.messages if m["msg_type"].endswith("display_data")]
    return [content["data"]["text/plain"] for content in displays]


def test_secrets_appear_nowhere(server, history_db, tmp_path):
    log = tmp_path / "kernel.log"
    export = tmp_path / "thread.json"
    proxy = f"http://alice:{PROXY_PASSWORD}@127.0.0.1:{server.port}"  # the local server plays the proxy
    url_with_password = f"http://carol:{URL_PASSWORD}@127.0.0.1:{server.port}"
    outputs = []
    with (
        log.open("w") as stderr,
        kernel(
            stderr=stderr,
            OPENAI_API_KEY=ENV_KEY,
            ACYTOO_HISTORY_DB=str(history_db),
            JPY_SESSION_NAME="s.ipynb",
        ) as k,
    ):
        cells = [
            "import logging, sys\n"  # everything any library logs goes to the kernel's log file
            "logging.basicConfig(level=logging.DEBUG, force=True, stream=sys.__stderr__)",
            "%load_ext acytoo_magic",
            f"%config Assistant.proxy = {proxy!r}",
            "%config Assistant.url = 'http://secrets-test.invalid/v1'",
            "%config Assistant.provider = 'openai'",
            f"%config Assistant.api_key = {KEY!r}",  # bound to the host of url
            "%%acytoo\nhello through the proxy",  # 6
            "%%acytoo\n[[fault=401]] the server echoes the key back",
            "%%acytoo --proxy http://bob:" + PROXY_PASSWORD + "@127.0.0.1:9\nproxy down",
            "%acytoo config",  # 9
            "%acytoo history",
            f"%acytoo export {export}",
            "import acytoo_magic; print(acytoo_magic._magics.last_reply)",
            "from acytoo_magic import ChatWidget\nw = ChatWidget('default')\nw.send('[[fault=401]] widget')\n"
            "r = await w.wait()\nprint(w.error_area.value)",
            "%config Assistant",  # 14: IPython's own listing, with current values
            "%config Assistant.api_key",  # 15: the value as a cell's Out
            "%config Assistant.proxy",
            f"%%acytoo -p acytoo --url {url_with_password}\n"
            "[[fault=503 times=1 retry_after=0]] url credentials",
            f"%%acytoo -p acytoo --url {url_with_password}/x --proxy http://bob:{PROXY_PASSWORD}@127.0.0.1:9\n"
            "url credentials in an error",  # 18
        ]
        for code in cells:
            outputs.append(k.execute(code))
    answered = outputs[6]
    assert (
        answered.status == "ok"
        and 'You said: "hello through the proxy"' in answered.final_display["text/plain"]
    )
    headers = server.requests[0]["headers"]
    assert headers["Authorization"] == fingerprint(f"Bearer {KEY}")  # the key set for this host is used
    assert headers["Proxy-Authorization"] == fingerprint(basic("alice", PROXY_PASSWORD))  # and the proxy
    assert (
        outputs[7].error["ename"] == "AcytooError"
        and "incorrect API key provided: ***" in outputs[7].error["evalue"]
    )
    assert "cannot connect to the proxy" in outputs[8].error["evalue"]
    assert "*** (set)" in outputs[9].stdout and "http://***@127.0.0.1" in outputs[9].stdout
    listing = outputs[14].stdout
    assert "Assistant.api_key=" in listing and "Assistant.proxy=" in listing
    assert "Current: '***'" in listing and f"Current: 'http://***@127.0.0.1:{server.port}'" in listing
    assert outputs[15].of_type("execute_result")[0]["data"]["text/plain"] == "'***'"
    assert outputs[16].of_type("execute_result")[0]["data"]["text/plain"] == (
        f"'http://***@127.0.0.1:{server.port}'"
    )
    via_url = outputs[17]
    assert via_url.status == "ok"
    waiting = [text for text in shown(via_url) if is_waiting(text)]  # drawn by the retry notice
    assert waiting and waiting[0].startswith(f"… contacting acytoo (127.0.0.1:{server.port}) ")
    assert 'You said: "url credentials"' in via_url.final_display["text/plain"]
    assert "\n— acytoo · " in via_url.final_display["text/plain"]  # the status line is there too
    assert server.requests[-1]["headers"]["Authorization"] == fingerprint(basic("carol", URL_PASSWORD))
    assert f"at http://***@127.0.0.1:{server.port}/x/api/completions" in outputs[18].error["evalue"]
    everything = {
        "notebook outputs": json.dumps(  # what the extension shows; the cells' own code is the user's
            [m["content"] for out in outputs for m in out.messages if m["msg_type"] != "execute_input"],
            default=str,
        ),
        "history database": history_db.read_bytes().decode("utf-8", "replace"),
        "exported thread": export.read_text(),
        "kernel log": log.read_text(),
        "server request log": json.dumps(server.requests),
    }
    assert "DEBUG" in everything["kernel log"]  # the log was captured, at debug level
    for where, text in everything.items():
        for secret in (KEY, ENV_KEY, PROXY_PASSWORD, URL_PASSWORD):
            assert secret not in text, (where, secret)


def test_a_key_goes_only_to_the_host_it_was_set_for(server, history_db):
    """`-p openai` against ACYTOO_URL gets no OPENAI_API_KEY; a key set for that host is sent there."""
    with kernel(
        ACYTOO_URL=f"{server.url}/v1", OPENAI_API_KEY=ENV_KEY, ACYTOO_HISTORY_DB=str(history_db)
    ) as k:
        k.execute("%load_ext acytoo_magic")
        first = k.execute("%%acytoo -p openai\nfirst")
        second = k.execute("%%acytoo -p openai\nsecond")
        k.execute(f"%config Assistant.api_key = {KEY!r}")  # bound to the url setting's host
        third = k.execute("%%acytoo -p openai\nthird")
        elsewhere = k.execute(f"%%acytoo -p openai --url http://localhost:{server.port}/v1\nelsewhere")
        k.execute("%config Assistant.provider = 'openai'")
        config = k.execute("%acytoo config").stdout
    for out, said in ((first, "first"), (second, "second"), (third, "third"), (elsewhere, "elsewhere")):
        assert out.status == "ok" and f'You said: "{said}"' in out.final_display["text/plain"]
    sent = {r["json"]["messages"][-1]["content"]: r["headers"].get("Authorization") for r in server.requests}
    assert sent == {
        "first": None,
        "second": None,
        "third": fingerprint(f"Bearer {KEY}"),
        "elsewhere": None,  # localhost is another host name than the 127.0.0.1 the key was set for
    }
    assert first.stderr == (
        f"acytoo: no API key sent to {server.url}: OPENAI_API_KEY is for https://api.openai.com only "
        "(for a key there, set Assistant.api_key with Assistant.url on that host)\n"
    )
    assert second.stderr == "" and third.stderr == ""  # once per host and session
    assert elsewhere.stderr.count("\n") == 1
    assert f"Assistant.api_key is for {server.url}" in elsewhere.stderr
    assert f"Assistant.api_key -> {server.url}; OPENAI_API_KEY -> https://api.openai.com" in config
    assert KEY not in config and ENV_KEY not in config
