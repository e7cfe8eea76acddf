"""The fault matrix: every way the network or server can fail, through the magic and the widget.

For each fault: the one-line message the user sees, what the history holds afterwards (nothing
for a failure; the partial answer, marked, for a drop), and the next request succeeding. The
table is written to tests/artifacts/fault_matrix.md for the closing note.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from standin import StandInServer

from acytoo_magic.magic.magics import INTERRUPTED_LINE
from acytoo_magic.server.scripted import filler

pytestmark = pytest.mark.notebook
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@dataclass
class Fault:
    name: str
    prompt: str
    message: str  # a fragment of the one-line message; "" for no error
    history: str | None  # status of the recorded answer, None when nothing may be recorded
    config: dict[str, object] = field(default_factory=dict)


FAULTS = [
    Fault(
        "connection refused",
        "hello",
        "cannot connect (connection refused)",
        None,
        {"url": "http://127.0.0.1:9"},
    ),
    Fault(
        "DNS failure", "hello", "cannot resolve the host name", None, {"url": "http://acytoo-test.invalid"}
    ),
    *(
        Fault(f"HTTP {status}", f"[[fault={status} retry_after=0]] hello", f"HTTP {status}", None)
        for status in (400, 401, 403, 404, 429, 500, 503)
    ),
    Fault(
        "stall before first byte",
        "[[stall=5]] hello",
        "no data for 2 s before the reply started",
        None,
        {"timeout": 2},
    ),
    Fault(
        "stall mid-stream",
        "[[stall_mid=5]] hello",
        "no data for 2 s in the middle of the reply",
        "partial",
        {"timeout": 2},
    ),
    Fault("dropped mid-stream", "[[fault=drop]] hello there", "connection dropped after", "partial"),
    Fault("invalid UTF-8 bytes", "[[fault=bad_utf8]] hello", "", "complete"),
    Fault(
        "malformed SSE line",
        "[[fault=bad_sse]] hello",
        "bad JSON in SSE line",
        "partial",
        {"provider": "openai", "url": "{url}/v1"},
    ),
    Fault(
        "reply over the size cap",
        "[[size=10000 chunk=100]]",
        "reply larger than the 2000 byte cap",
        "partial",
        {"max_response_bytes": 2000},
    ),
]
ROWS: dict[tuple[str, str], tuple[str, str, str]] = {}
HELD = "[[size=400000 chunk=64 delay=0.005 hold]] a long answer"  # held after 64 characters
SHOWN = filler(64).decode()
KEPT = "recorded, marked interrupted"
WAIT_FOR_TEXT = (  # a condition the widget's own state meets, checked from a cell as a user would
    "import asyncio\n"
    "async def shown():\n"
    f"    while w.renderer.last_frame is None or w.renderer.last_frame.text != {SHOWN!r}:\n"
    "        await asyncio.sleep(0.01)\n"
    "await asyncio.wait_for(shown(), 60)"
)


@pytest.fixture(scope="module")
def k(module_k, module_server):
    """The module's kernel (conftest's ``module_k``) with what every case uses imported, and a
    stand-in server whose streams stay open until released: an interrupt always comes mid-answer."""
    with StandInServer() as standin:
        module_k.execute("import acytoo_magic, json\nfrom acytoo_magic import ChatWidget")
        module_k.url, module_k.standin = module_server.url, standin
        yield module_k


@pytest.fixture(scope="module", autouse=True)
def fault_matrix():
    """Once the module has run: the rows its tests measured, as a table for the closing note."""
    yield
    lines = ["| fault | front end | message | history | recovery |", "|---|---|---|---|---|"]
    for (name, front), (message, history, recovery) in ROWS.items():
        lines.append(f"| {name} | {front} | {message.replace('|', '/')} | {history} | {recovery} |")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fault_matrix.md").write_text("\n".join(lines) + "\n")


def configure(k, fault: Fault) -> str:
    settings = {
        name: (value.format(url=k.url) if isinstance(value, str) else value)
        for name, value in fault.config.items()
    }
    assignments = "".join(f"m.{name} = {value!r}\n" for name, value in settings.items())
    k.execute(f"m = acytoo_magic._magics.assistant\n{assignments}")
    defaults = {"url": k.url, "provider": "acytoo", "timeout": 60.0, "max_response_bytes": 32 * 1024 * 1024}
    return "".join(f"m.{name} = {defaults[name]!r}\n" for name in settings)


def check_history(k, thread: str, fault: Fault) -> str:
    messages = k.history(thread)
    if fault.history is None:
        assert messages == [], messages
        return "nothing recorded"
    _user, assistant = messages
    assert assistant["status"] == fault.history and assistant["content"]
    return f"recorded, marked {fault.history}" if fault.history != "complete" else "recorded"


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_magic(k, fault):
    thread = f"magic {fault.name}"
    restore = configure(k, fault)
    try:
        out = k.execute(f"%%acytoo -c {json.dumps(thread)}\n{fault.prompt}")
    finally:
        k.execute(restore)
    if fault.message:
        assert out.status == "error"
        (line,) = out.error["traceback"]
        assert fault.message in line and "\n" not in line and "Traceback" not in line
        message = out.error["evalue"]
    else:
        assert out.status == "ok"
        message = "(no error; bad bytes shown as \ufffd)"
        assert "\ufffd" in out.final_display["text/plain"]
    history = check_history(k, thread, fault)
    after = k.execute(f"%%acytoo -c {json.dumps(thread)}\nrecovered?")
    assert after.status == "ok" and 'You said: "recovered?"' in after.final_display["text/plain"]
    ROWS[(fault.name, "magic")] = (message.split(": ", 1)[-1], history, "next request answered")


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_widget(k, fault):
    thread = f"widget {fault.name}"
    restore = configure(k, fault)
    try:
        k.execute(f"w = ChatWidget({thread!r})\nw.send({fault.prompt!r})\nr = await w.wait()")
    finally:
        k.execute(restore)
    status = k.execute("print(w.error_area.value)").stdout.strip()
    if fault.message:
        assert fault.message in status and "acytoo-error" in status and "\n" not in status
        message = html.unescape(status.split(">", 1)[1].rsplit("<", 1)[0]).split(": ", 1)[-1]
    else:
        assert status == ""
        message = "(no error; bad bytes shown as \ufffd)"
    assert k.execute("print(w.input.busy, w.stop_button.disabled)").stdout.strip() == "False True"
    history = check_history(k, thread, fault)
    k.execute("w.send('recovered?')\nr = await w.wait()")
    assert k.execute("print(r.outcome)").stdout.strip() == "complete"
    ROWS[(fault.name, "widget")] = (message, history, "next request answered")


def recovers(k, thread: str) -> None:
    after = k.execute(f"%%acytoo -c {json.dumps(thread)}\nrecovered?")
    assert after.status == "ok" and 'You said: "recovered?"' in after.final_display["text/plain"]


def test_magic_kernel_interrupt_keeps_what_was_shown(k):
    """Interrupted while the server is silent: the stream stays held until the module ends, so
    only the interrupt itself can end the cell (not a next chunk, nor the 60 s read timeout)."""
    thread = "magic kernel interrupt"
    k.execute(f"m = acytoo_magic._magics.assistant\nm.url = {k.standin.url!r}")
    try:
        out, shown = k.execute_interrupted(f"%%acytoo -c {json.dumps(thread)}\n{HELD}")
    finally:
        k.execute(f"m.url = {k.url!r}")
    # the interrupt ended it, said once in the one calm line; not the read timeout's error
    assert out.status == "error" and out.error["ename"] == "AcytooInterrupted"
    assert out.error["traceback"] == [INTERRUPTED_LINE] and "no data for" not in out.shown
    _user, assistant = k.history(thread)
    assert shown == SHOWN and assistant["status"] == "interrupted" and assistant["content"] == SHOWN
    text, _, small_print = out.final_display["text/plain"].partition("\n")
    assert text == SHOWN and "interrupted" not in small_print  # the error line says it, once
    recovers(k, thread)
    ROWS[("kernel interrupt", "magic")] = (out.error["evalue"], KEPT, "next request answered")


def test_widget_stop_keeps_what_was_shown(k):
    thread = "widget Stop"
    k.execute(f"m = acytoo_magic._magics.assistant\nm.url = {k.standin.url!r}")
    try:
        k.execute(f"w = ChatWidget({thread!r})\nw.send({HELD!r})")
        k.execute(WAIT_FOR_TEXT)  # all the stand-in sends before its hold is on screen
        stopped = k.execute(
            "w.stop()\nr = await w.wait()\nprint(r.outcome)\nprint(w.renderer.last_frame.note)"
        )
    finally:  # the stream stays held until the module ends: only Stop can have ended it
        k.execute(f"m.url = {k.url!r}")
    status, note = stopped.stdout.strip().split("\n")
    assert status == "interrupted" and note
    assert k.execute("print(w.input.busy, w.stop_button.disabled)").stdout.strip() == "False True"
    _user, assistant = k.history(thread)
    assert assistant["status"] == "interrupted" and assistant["content"] == SHOWN
    k.execute("w.send('recovered?')\nr = await w.wait()")
    assert k.execute("print(r.outcome)").stdout.strip() == "complete"
    ROWS[("Stop button", "widget")] = (f"(no error) {note}", KEPT, "next request answered")
