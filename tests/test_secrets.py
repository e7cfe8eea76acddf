"""API keys and proxy credentials never reach the history, outputs, config, errors or logs."""

from __future__ import annotations

import json

import pytest
from kernels import kernel

pytestmark = pytest.mark.notebook
KEY = "sk-test-SECRETKEY-0123456789"
PROXY_PASSWORD = "proxypass-987654"


def test_secrets_appear_nowhere(server, history_db, tmp_path):
    log = tmp_path / "kernel.log"
    export = tmp_path / "thread.json"
    proxy = f"http://alice:{PROXY_PASSWORD}@127.0.0.1:{server.port}"  # the local server plays the proxy
    outputs = []
    with (
        log.open("w") as stderr,
        kernel(
            stderr=stderr, OPENAI_API_KEY=KEY, ACYTOO_HISTORY_DB=str(history_db), JPY_SESSION_NAME="s.ipynb"
        ) as k,
    ):
        cells = [
            "import logging; logging.basicConfig(level=logging.DEBUG)",
            "%load_ext acytoo_magic",
            f"%config AcytooMagics.proxy = {proxy!r}",
            "%config AcytooMagics.url = 'http://secrets-test.invalid/v1'",
            "%config AcytooMagics.provider = 'openai'",
            "%%acytoo\nhello through the proxy",
            "%%acytoo\n[[fault=401]] the server echoes the key back",
            "%%acytoo --proxy http://bob:" + PROXY_PASSWORD + "@127.0.0.1:9\nproxy down",
            f"%config AcytooMagics.api_key = {KEY!r}",
            "%acytoo config",
            "%acytoo history",
            f"%acytoo export {export}",
            "import acytoo_magic; print(acytoo_magic._magics.last_reply)",
            "from acytoo_magic import ChatWidget\nw = ChatWidget('default')\nw.send('[[fault=401]] widget')\n"
            "r = await w.wait()\nprint(w.status.value)",
        ]
        for code in cells:
            outputs.append(k.execute(code))
    answered = outputs[5]
    assert (
        answered.status == "ok"
        and 'You said: "hello through the proxy"' in answered.final_display["text/plain"]
    )
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # the key is used...
    assert "Proxy-Authorization" in server.requests[0]["headers"]  # ...and so is the proxy
    assert (
        outputs[6].error["ename"] == "AcytooError"
        and "incorrect API key provided: ***" in outputs[6].error["evalue"]
    )
    assert "cannot connect to the proxy" in outputs[7].error["evalue"]
    assert "*** (set)" in outputs[9].stdout
    everything = {
        "notebook outputs": json.dumps(  # what the extension shows; the cells' own code is the user's
            [m["content"] for out in outputs for m in out.messages if m["msg_type"] != "execute_input"],
            default=str,
        ),
        "history database": history_db.read_bytes().decode("utf-8", "replace"),
        "exported thread": export.read_text(),
        "kernel log": log.read_text(),
    }
    assert "DEBUG" in everything["kernel log"] or everything["kernel log"]  # the log was captured
    for where, text in everything.items():
        assert KEY not in text, where
        assert PROXY_PASSWORD not in text, where
