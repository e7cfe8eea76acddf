"""%%acytoo in a plain (terminal) IPython shell: no running loop, the extension's own loop is used."""

from __future__ import annotations

import re

import pytest
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture
def shell(server, history_db, monkeypatch):
    monkeypatch.setenv("ACYTOO_URL", server.url)
    monkeypatch.setenv("ACYTOO_HISTORY_DB", str(history_db))
    monkeypatch.setenv("JPY_SESSION_NAME", "terminal-test")
    InteractiveShell.clear_instance()  # IPython's shell is a process-wide singleton: a fresh one here
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "acytoo_magic")
    yield ip
    ip.run_line_magic("unload_ext", "acytoo_magic")
    InteractiveShell.clear_instance()  # and none left for the next test


def test_terminal_streams_to_stdout_and_keeps_history(shell, server, capsys):
    shell.run_cell_magic("acytoo", "", "[[echo chunk=3]]Hello from a terminal ✓")
    out = capsys.readouterr().out
    assert out.startswith("Hello from a terminal ✓\n— acytoo · gpt-3.5-turbo · ")
    assert re.search(r" · 23 characters in \d+\.\d s · ≈\d+ tokens in, ≈6 out\n$", out)
    shell.run_cell_magic("acytoo", "", "second")
    assert 'Before that you said: "Hello from a terminal ✓"' in capsys.readouterr().out
    sent = server.requests[-1]["json"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    # one loop of the extension's own, one shared session: both requests used one connection
    assert server.requests[0]["peer"] == server.requests[1]["peer"]


def test_terminal_error_is_one_line(shell):
    from acytoo_magic.core.errors import AcytooError

    with pytest.raises(AcytooError) as info:
        shell.run_cell_magic("acytoo", "", "[[fault=503 retry_after=0]] x")
    assert info.value._render_traceback_()[0].endswith(
        'HTTP 503 (service unavailable): {"error": {"message": "scripted fault 503", "code": 503}}'
    )


def test_unload_closes_the_shared_session(shell):
    import acytoo_magic

    shell.run_cell_magic("acytoo", "", "open a session")
    runner = acytoo_magic._magics.assistant.runner
    (session,) = runner._sessions.values()
    shell.run_line_magic("unload_ext", "acytoo_magic")
    assert session.closed
    shell.run_line_magic("load_ext", "acytoo_magic")


def test_history_in_a_terminal_is_plain_text_with_no_unsafe_link(shell, capsys):
    shell.run_cell_magic("acytoo", "", "[[echo]]see data:text/html,x and javascript://%0Aalert(1) and https://example.org/")
    capsys.readouterr()
    shell.run_line_magic("acytoo", "history --full")
    shown = capsys.readouterr().out
    assert "see data[:]text/html,x and javascript[:]//%0Aalert(1) and https://example.org/" in shown
    assert "<" not in shown  # the plain form, not the HTML
