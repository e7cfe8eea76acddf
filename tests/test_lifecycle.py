"""A script's lifecycle: the one-liners leave nothing behind on stderr, and nothing typed is lost.

Each case runs in a fresh interpreter against the real local server, as a user's script would;
``-W always::ResourceWarning`` makes any unclosed socket or session speak up.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from acytoo_magic.core.history.store import HistoryStore


def run(code: str, server, history_db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(history_db)}
    done = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


def answers(history_db: Path) -> list[str]:
    store = HistoryStore(history_db)
    notebook = store.notebooks()[0][0]
    return [m.content for m in store.load(notebook, "default") if m.role == "assistant"]


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(
            """
            import asyncio
            from acytoo_magic import Assistant
            print(asyncio.run(Assistant().ask("[[echo]]one")).outcome)
            """,
            id="asyncio.run one-liner",
        ),
        pytest.param(
            """
            import asyncio
            from acytoo_magic import Assistant
            assistant = Assistant()  # kept to the end of the script, never closed by hand
            asyncio.run(assistant.ask("[[echo]]one"))
            print(asyncio.run(assistant.ask("[[echo]]two")).outcome)
            """,
            id="asyncio.run twice, one assistant",
        ),
        pytest.param(
            """
            import asyncio
            from acytoo_magic import Assistant

            async def main():
                async with Assistant() as assistant:
                    await assistant.ask("[[echo]]one")
                    return await assistant.ask("[[echo]]two")

            print(asyncio.run(main()).outcome)
            """,
            id="async with",
        ),
        pytest.param(
            """
            from acytoo_magic import Assistant
            assistant = Assistant()
            assistant.ask_sync("[[echo]]one")
            print(assistant.ask_sync("[[echo]]two").outcome)
            """,
            id="ask_sync",
        ),
    ],
)
def test_a_script_ends_quietly(script, server, history_db):
    done = run(script, server, history_db)
    assert done.stderr == ""
    assert done.stdout.split() == ["complete"]
    assert answers(history_db)[-1] in ("one", "two")


def test_an_exchange_a_lock_held_back_is_written_when_the_script_ends(server, history_db):
    """The file is locked while the answer is recorded: kept in memory, said, written at exit."""
    done = run(
        f"""
        import sqlite3
        from acytoo_magic import Assistant
        assistant = Assistant()
        assistant.store.threads("")  # the file exists
        locker = sqlite3.connect({str(history_db)!r}, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        reply = assistant.ask_sync("[[echo]]kept")
        locker.execute("ROLLBACK")
        print(reply.outcome)
        print(reply.history_warning)
        """,
        server,
        history_db,
    )
    status, warning = done.stdout.splitlines()
    assert status == "complete" and "kept in memory" in warning
    assert answers(history_db) == ["kept"]
    assert done.stderr == ""


def test_closing_while_still_locked_says_how_many_exchanges_were_lost(server, history_db):
    store = HistoryStore(history_db, busy_timeout=0.05)
    store.threads("")
    locker = sqlite3.connect(history_db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    from acytoo_magic.core.errors import HistoryError, HistoryLocked
    from acytoo_magic.core.history.thread import Conversation

    with pytest.raises(HistoryLocked):
        Conversation(store, "nb").record("q", "a")
    assert store.pending == 1
    lost = r"1 exchange\(s\) held back by a lock could not be saved on closing"
    with pytest.raises(HistoryError, match=lost):
        store.close(timeout=0.05)
    assert store.closed
    locker.execute("ROLLBACK")
