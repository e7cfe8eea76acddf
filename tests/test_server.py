"""The local protocol server as a user runs it: `python -m acytoo_magic.server`."""

from __future__ import annotations

import subprocess
import sys

from acytoo_magic.providers import Acytoo
from acytoo_magic.server import parse_directives, scripted_reply


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
