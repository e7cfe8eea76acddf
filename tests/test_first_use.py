"""A new user's first minutes, in real kernels: nothing configured sends nothing anywhere; the
bundled model answers when it can; `%acytoo use` chooses a backend and the choice survives a
kernel restart (kept in the IPython profile the kernel reads at start, here a temporary one)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kernels import Kernel, kernel

from acytoo_magic.core.request import Reply, Request
from acytoo_magic.magic import choice
from acytoo_magic.providers import NoProviderChosen, choose

pytestmark = pytest.mark.notebook

# Every connection and name lookup the kernel's Python makes from here on, by Python's own audit
# events (sys.addaudithook): nothing is patched or mocked, and nothing can remove the hook.
AUDIT = """
import sys
contacted = []
def _audit(event, args):
    if event == "socket.connect":
        contacted.append(repr(args[1]))
    elif event == "socket.getaddrinfo":
        contacted.append(repr(args[0]))
sys.addaudithook(_audit)
"""
LOOPBACK = ("'127.0.0.1'", "('127.0.0.1'", "'localhost'", "('::1'", "'::1'")
FRAME = (
    "import pandas as pd\n"
    "df = pd.DataFrame({'region': ['North', 'South', 'South', 'West'],"
    " 'sales': [1200.0, 3400.0, 2900.0, None]})"
)


def fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A kernel's environment with nothing configured: no URL, no provider, an empty profile."""
    env = {
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "ACYTOO_HISTORY_DB": str(tmp_path / "history.sqlite3"),
        "JPY_SESSION_NAME": "first-use.ipynb",
    }
    return {**env, **extra}


def ok(k: Kernel, code: str, timeout: float = 180) -> str:
    out = k.execute(code, timeout=timeout)
    assert out.status == "ok", out.error
    return out.stdout


def usage_error(out) -> str:
    """The one line IPython prints for a UsageError (on stderr: it is not a traceback)."""
    assert out.status == "error", out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("UsageError: "), out.stderr
    return lines[0].removeprefix("UsageError: ")


def contacted_elsewhere(k: Kernel) -> list[str]:
    seen = json.loads(ok(k, "import json\nprint(json.dumps(contacted))"))
    return [address for address in seen if not address.startswith(LOOPBACK)]


@pytest.mark.local_model
def test_nothing_configured_a_df_question_is_answered_by_the_bundled_model_and_nothing_leaves(tmp_path):
    assert "ACYTOO_URL" not in os.environ  # conftest keeps the developer's settings out
    with kernel(**fresh_env(tmp_path)) as k:
        ok(k, AUDIT + FRAME)
        ok(k, "%load_ext acytoo_magic")
        out = k.execute("%%acytoo\nWhich region has the highest total sales in {df}?", timeout=300)
        assert out.status == "ok", out.error
        status = out.final_display["text/plain"].rsplit("\n— ", 1)[1]
        assert status.startswith("local · smollm2 · "), status
        assert contacted_elsewhere(k) == []
        shown = ok(k, "%acytoo config")
    assert "provider           'local' (nothing chosen: the bundled model answers" in shown


def test_without_the_bundled_runtime_the_first_question_says_how_to_choose_and_sends_nothing(tmp_path):
    """A CPU the bundled runtime cannot use (its flags read from a file, as the runtime's own check
    does) stands for a machine without it; nothing is configured."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse sse2\n")
    with kernel(**fresh_env(tmp_path)) as k:
        ok(
            k,
            AUDIT
            + FRAME
            + "\nfrom acytoo_magic.providers import local_model"
            + f"\nlocal_model.CPUINFO = local_model.Path({str(cpuinfo)!r})",
        )
        ok(k, "%load_ext acytoo_magic")
        line = usage_error(k.execute("%%acytoo\nWhich region has the highest total sales in {df}?"))
        assert line.startswith("no model chosen yet, so nothing was sent")
        assert "this CPU lacks AVX2" in line and "%acytoo use local" in line and "%acytoo use openai" in line
        assert contacted_elsewhere(k) == [] and json.loads(ok(k, "print(json.dumps(contacted))")) == []
        assert (
            ok(
                k,
                "import acytoo_magic\nprint(len(acytoo_magic._magics.assistant.conversation().messages()))",
            ).strip()
            == "0"
        )
        # the Acytoo protocol has no host of its own any more: a URL is a choice, none is no request
        out = k.execute("%%acytoo -p acytoo\nhello")
        assert out.status == "error" and out.error["ename"] == "AcytooError"
        assert out.error["evalue"].startswith("Acytoo: no server URL set, so nothing was sent")
        assert json.loads(ok(k, "print(json.dumps(contacted))")) == []


def test_use_keeps_the_choice_in_the_profile_across_a_kernel_restart(tmp_path, server):
    env = fresh_env(tmp_path)
    profile = tmp_path / "ipython" / "profile_default"
    with kernel(**env) as k:
        ok(k, "%load_ext acytoo_magic")
        said = ok(k, f"%acytoo use openai --url {server.url}/v1 -m tiny")
        assert f"kept in {profile / 'ipython_config.json'}" in said
        assert said.rstrip().endswith(f"questions go to {server.url.split('//')[1]}, on this machine")
        assert json.loads((profile / "ipython_config.json").read_text()) == {
            "Assistant": {"provider": "openai", "url": f"{server.url}/v1", "model": "tiny"}
        }
        k.restart()
        ok(k, "%load_ext acytoo_magic")
        out = k.execute("%%acytoo\n[[echo]]still chosen")
        assert out.status == "ok", out.error
        assert out.final_display["text/plain"].startswith("still chosen")
        assert out.final_display["text/plain"].rsplit("\n— ", 1)[1].startswith("openai · tiny · ")
        assert server.requests[-1]["path"] == "/v1/chat/completions"
        config = ok(k, "%acytoo config")
        kept = profile / "ipython_config.json"
        assert f"provider           'openai' (chosen with %acytoo use, kept in {kept})" in config
        # The user's own settings in that file stay; `auto` forgets only the choice.
        data = json.loads((profile / "ipython_config.json").read_text())
        data["InteractiveShell"] = {"colors": "nocolor"}
        (profile / "ipython_config.json").write_text(json.dumps(data))
        assert "no backend chosen any more" in ok(k, "%acytoo use auto")
        assert json.loads((profile / "ipython_config.json").read_text()) == {
            "InteractiveShell": {"colors": "nocolor"}
        }
        k.restart()
        ok(k, "%load_ext acytoo_magic")
        assert "provider           'local' (nothing chosen" in ok(k, "%acytoo config")


def test_use_refuses_what_cannot_work_in_one_line(tmp_path):
    with kernel(**fresh_env(tmp_path)) as k:
        ok(k, "%load_ext acytoo_magic")
        for line, said in [
            ("%acytoo use acytoo", "acytoo: no server URL set, so nothing was sent"),
            ("%acytoo use nonesuch", "unknown provider 'nonesuch'"),
        ]:
            assert said in usage_error(k.execute(line)), line
        assert not (tmp_path / "ipython" / "profile_default" / "ipython_config.json").exists()


def test_a_broken_config_file_is_said_and_left_alone(tmp_path):
    path = tmp_path / "profile" / choice.FILE_NAME
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(choice.ChoiceFileError, match="is not valid JSON"):
        choice.remember(path, {"provider": "local"})
    assert path.read_text() == "{not json"
    path.write_text('{"Assistant": {"api_key": "kept-as-is", "provider": "openai"}}')
    choice.remember(path, {"provider": "local", "url": ""})
    kept = {"provider": "local", "url": "", "model": ""}  # "": no ACYTOO_URL later changes the choice
    assert json.loads(path.read_text()) == {"Assistant": {"api_key": "kept-as-is", **kept}}
    assert choice.stored(path) == kept
    choice.remember(path, {})
    assert json.loads(path.read_text()) == {"Assistant": {"api_key": "kept-as-is"}}


def test_choose_picks_a_set_url_else_the_bundled_model_else_nothing(monkeypatch):
    from acytoo_magic.providers import local_model

    assert choose("openai", "") == "openai" and choose("", "http://127.0.0.1:9/") == "acytoo"
    monkeypatch.setattr(local_model, "not_ready", lambda: "")
    assert choose("", "") == "local"
    monkeypatch.setattr(
        local_model, "not_ready", lambda: "its runtime is not installed (pip install xllamacpp)"
    )
    with pytest.raises(
        NoProviderChosen, match=r"^no model chosen yet, so nothing was sent \(the bundled model"
    ):
        choose("", "")


def test_the_status_line_names_a_host_that_is_not_this_machine():
    def line(url: str) -> str:
        request = Request("hi", "openai", "gpt-4o-mini", options={"url": url}, provider_label="openai")
        return request.status_line(Reply())

    assert line("https://api.example.org/v1").startswith("openai (api.example.org) · gpt-4o-mini · ")
    assert line("http://user:secret@models.example.org:8443/v1").startswith(
        "openai (models.example.org:8443) · "
    )
    for here in ("http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1"):
        assert line(here).startswith("openai · gpt-4o-mini · "), here
    local = Request("hi", "local", "smollm2", provider_label="local")
    assert local.status_line(Reply()).startswith("local · smollm2 · ")
