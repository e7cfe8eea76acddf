"""History durability: concurrent kernels, a killed kernel, an unusable database file."""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest
from kernels import kernel

pytestmark = pytest.mark.notebook
EXCHANGES = 300


def test_two_kernels_writing_one_database_lose_nothing(server, history_db):
    env = {"ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(history_db)}
    with (
        kernel(**env, JPY_SESSION_NAME="one.ipynb") as one,
        kernel(**env, JPY_SESSION_NAME="two.ipynb") as two,
    ):
        for k in (one, two):
            k.execute("%load_ext acytoo_magic\nimport acytoo_magic")
        code = (
            f"c = acytoo_magic._magics.assistant.conversation()\n"
            f"for i in range({EXCHANGES}):\n    c.record(f'question {{i}}', f'answer {{i}}')\n"
        )
        pending = [k.kc.execute(code) for k in (one, two)]  # both kernels write at the same time
        for k, msg_id in zip((one, two), pending, strict=True):
            while (reply := k.kc.get_shell_msg(timeout=120))["parent_header"]["msg_id"] != msg_id:
                pass
            assert reply["content"]["status"] == "ok"
    db = sqlite3.connect(history_db)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for notebook in ("one.ipynb", "two.ipynb"):
        rows = db.execute(
            "SELECT content FROM messages WHERE notebook = ? ORDER BY id", (notebook,)
        ).fetchall()
        assert len(rows) == 2 * EXCHANGES
        assert [r[0] for r in rows[::2]] == [f"question {i}" for i in range(EXCHANGES)]  # in order, paired


def test_a_kernel_killed_mid_answer_leaves_a_readable_database(server, history_db):
    with kernel(ACYTOO_URL=server.url, ACYTOO_HISTORY_DB=str(history_db), JPY_SESSION_NAME="k.ipynb") as k:
        k.execute("%load_ext acytoo_magic")
        assert k.execute("%%acytoo\nkept before the crash").status == "ok"
        k.kc.execute("%%acytoo\n[[size=1000000 chunk=10 delay=0.01]]")
        while True:  # wait until the answer is streaming, then kill the kernel process
            msg = k.kc.get_iopub_msg(timeout=30)
            text = msg["content"].get("data", {}).get("text/plain", "")
            if msg["msg_type"].endswith("display_data") and text.startswith("All work"):
                break
        k.km.signal_kernel(signal.SIGKILL)
        while k.km.is_alive():  # SIGKILL cannot be caught: wait for the process to be gone
            time.sleep(0.05)
    db = sqlite3.connect(history_db)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    contents = [
        r[0] for r in db.execute("SELECT content FROM messages WHERE notebook = 'k.ipynb' ORDER BY id")
    ]
    assert contents[0] == "kept before the crash" and len(contents) == 2


@pytest.mark.parametrize("kind", ["corrupt file", "a directory"])
def test_unusable_database_warns_and_the_magic_still_answers(server, tmp_path, kind):
    if kind == "corrupt file":
        path = tmp_path / "history.sqlite3"
        path.write_bytes(b"definitely not SQLite " * 200)
        before = path.read_bytes()
    else:
        path = tmp_path / "history-dir"
        path.mkdir()
    with kernel(ACYTOO_URL=server.url, ACYTOO_HISTORY_DB=str(path), JPY_SESSION_NAME="c.ipynb") as k:
        k.execute("%load_ext acytoo_magic")
        first = k.execute("%%acytoo\nstill answering?")
        assert first.status == "ok" and 'You said: "still answering?"' in first.final_display["text/plain"]
        (warning,) = first.stderr.strip().splitlines()
        assert (
            warning.startswith(f"acytoo: history database {path} is unusable")
            and "in-memory history" in warning
        )
        second = k.execute("%%acytoo\nand again")
        assert 'Before that you said: "still answering?"' in second.final_display["text/plain"]  # in memory
        assert second.stderr == ""  # warned once
    if kind == "corrupt file":
        assert path.read_bytes() == before
    else:
        assert list(path.iterdir()) == []


async def test_history_failing_mid_session_still_answers(server, tmp_path):
    """The database becomes unusable after the magic opened it: the answer still comes, with a warning."""
    from acytoo_magic.core.history.store import HistoryStore
    from acytoo_magic.core.history.thread import Conversation
    from acytoo_magic.core.request import Request
    from acytoo_magic.core.stream import answer
    from acytoo_magic.present.throttle import ThrottledRenderer
    from acytoo_magic.providers import Acytoo

    (tmp_path / "gone").mkdir()
    broken = Conversation(HistoryStore(tmp_path / "gone"), "nb")  # a directory: every read fails
    request = Request("still there?", Acytoo, "m", conversation=broken, options={"url": server.url})
    reply = await answer(request, ThrottledRenderer(lambda frame: None, 0.05))
    assert reply.outcome == "complete" and 'You said: "still there?"' in reply.answer
    assert "history database" in reply.history_warning and "gone" in reply.history_warning
