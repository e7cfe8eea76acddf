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
from kernels import kernel

from acytoo_magic.server import LocalServer, ServerConfig

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
        "no data for 0.5 s before the reply started",
        None,
        {"timeout": 0.5},
    ),
    Fault(
        "stall mid-stream",
        "[[stall_mid=5]] hello",
        "no data for 0.5 s in the middle of the reply",
        "partial",
        {"timeout": 0.5},
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


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    db = tmp_path_factory.mktemp("faults") / "history.sqlite3"
    with (
        LocalServer(ServerConfig(chunk_size=4, delay=0.0)) as server,
        kernel(ACYTOO_URL=server.url, ACYTOO_HISTORY_DB=str(db), JPY_SESSION_NAME="faults.ipynb") as running,
    ):
        running.execute(
            "%load_ext acytoo_magic\nimport acytoo_magic, json\nfrom acytoo_magic import ChatWidget"
        )
        running.url = server.url
        yield running


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
    status = k.execute("print(w.status.value)").stdout.strip()
    if fault.message:
        assert fault.message in status and "acytoo-error" in status and "\n" not in status
        message = html.unescape(status.split(">", 1)[1].rsplit("<", 1)[0]).split(": ", 1)[-1]
    else:
        assert status == ""
        message = "(no error; bad bytes shown as \ufffd)"
    assert k.execute("print(w.input.busy, w.stop_button.disabled)").stdout.strip() == "False True"
    history = check_history(k, thread, fault)
    k.execute("w.send('recovered?')\nr = await w.wait()")
    assert k.execute("print(r.status)").stdout.strip() == "complete"
    ROWS[(fault.name, "widget")] = (message, history, "next request answered")


def test_interrupt_rows_and_write_the_matrix():
    """Interrupts are tested in test_magic_kernel / test_widget_kernel; the table lists them too."""
    ROWS[("kernel interrupt / Stop", "magic")] = (
        "interrupted; the partial answer is kept, marked",
        "recorded, marked interrupted",
        "next cell answered",
    )
    ROWS[("kernel interrupt / Stop", "widget")] = (
        "(Stop) partial answer kept",
        "recorded, marked interrupted",
        "next request answered",
    )
    lines = ["| fault | front end | message | history | recovery |", "|---|---|---|---|---|"]
    for (name, front), (message, history, recovery) in ROWS.items():
        lines.append(f"| {name} | {front} | {message.replace('|', '/')} | {history} | {recovery} |")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fault_matrix.md").write_text("\n".join(lines) + "\n")
    assert len(ROWS) >= 2 * len(FAULTS)
