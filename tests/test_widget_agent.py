"""ChatWidget's Agent switch in real kernels against the scripted tool-calling server.

A click is what the page's Run / Skip / Stop sends: a ``comm_msg`` on the shell channel to the
approval widget's comm (``{"method": "custom", "content": {"event": "decide", ...}}``), with the
token the page was given alongside the code it shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kernels import Kernel
from test_agent_kernel import execute_clicking, plant_rmtree, sent

from acytoo_magic.server import LocalServer

pytestmark = pytest.mark.notebook
NOTEBOOK = "agent_chat.ipynb"


@pytest.fixture
def k(k: Kernel, server: LocalServer) -> Kernel:
    """The conftest kernel on the tool-calling provider, with a chat whose Agent switch is on."""
    run(
        k,
        f"%config Assistant.provider = 'openai'\n%config Assistant.url = '{server.url}/v1'\n"
        "import json\nfrom acytoo_magic import ChatWidget\nw = ChatWidget('ag')\nw.agent = True",
    )
    return k


def run(k: Kernel, code: str, **kwargs: Any) -> str:
    out = k.execute(code, **kwargs)
    assert out.status == "ok", out.error
    return out.stdout.strip()


def asked(k: Kernel) -> tuple[str, str, str]:
    """Wait until the chat asks for approval: (the approval widget's comm id, the token, the code)."""
    shown = run(
        k,
        "code = await w.approval.asking()\n"
        "print(json.dumps([w.approval.model_id, w.approval.token, code]))",
    )
    comm, token, code = json.loads(shown)
    return comm, token, code


def click(k: Kernel, comm: str, token: str, decision: str) -> None:
    """What the page sends when Run, Skip or Stop is clicked for the request with ``token``."""
    data = {"method": "custom", "content": {"event": "decide", "token": token, "decision": decision}}
    k.kc.shell_channel.send(k.kc.session.msg("comm_msg", {"comm_id": comm, "data": data}))


def finished(k: Kernel) -> dict[str, Any]:
    """Wait for the episode; what the chat shows and what its episode was."""
    shown = run(
        k,
        "ep = await w.wait()\n"
        "print(json.dumps({'status': ep.outcome, 'answer': ep.answer, 'note': ep.note,"
        " 'steps': [[s.kind, s.name, s.decision] for s in ep.steps], 'html': w.transcript.html,"
        " 'busy': w.input.busy, 'asking': w.approval.token}))",
    )
    return json.loads(shown)


def test_run_runs_the_shown_code_and_the_episode_is_the_threads_exchange(
    k: Kernel, server: LocalServer
) -> None:
    run(k, "import pandas as pd\ndf = pd.DataFrame({'x': [1, 2, None]})")
    code = "n = int(df.x.isna().sum())\nn"
    server.config.script[:] = [
        {"calls": [{"name": "list_variables"}]},
        {"text": "Let me count.", "calls": [{"name": "run_python", "arguments": {"code": code}}]},
        {"text": "There is **1** missing value."},
    ]
    run(k, "w.send('How many missing in df?')")
    comm, token, proposed = asked(k)
    assert proposed == code
    steps_so_far = run(k, "print(w.transcript.html)")  # each step shows as it happens
    assert "list_variables" in steps_so_far and "df: pandas.DataFrame, 3 × 1" in steps_so_far
    assert "Let me count." in steps_so_far
    assert run(k, "print('n' in dir())") == "False"  # nothing ran before the click
    click(k, comm, token, "run")
    done = finished(k)
    assert done["status"] == "complete" and done["answer"] == "There is **1** missing value."
    assert done["steps"] == [["tool", "list_variables", ""], ["text", "", ""], ["run", "run_python", "run"]]
    assert done["busy"] is False and done["asking"] == ""
    assert run(k, "print(n)") == "1"  # the approved code ran in the user's namespace
    assert "value:\n1" in sent(server)[-1][-1]["content"]
    # shown compactly from the store: one line a step, the answer, and the status line under it
    html = done["html"]
    assert '<details class="acytoo-step"><summary><code>run_python [run]: n = int(df.x.isna().sum())' in html
    assert "<strong>1</strong> missing value" in html and "2 tool calls: 1 run" in html
    # the same exchange as a magic's: history lists it, the next agent cell carries its tool calls
    listed = k.execute("%acytoo history -c ag").shown
    assert "How many missing in df? → There is **1** missing value.  [agent: 3 steps]" in listed
    server.config.script[:] = [{"text": "Still 1."}]
    out = k.execute(f"%%acytoo --agent -c ag -p openai --url {server.url}/v1\nAnd now?")
    assert out.status == "ok", out.error
    roles = [m["role"] for m in sent(server)[-1]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant", "user"]
    assert sent(server)[-1][4]["tool_calls"][0]["function"]["name"] == "run_python"


def test_skip_does_not_run_and_the_model_is_told(k: Kernel, server: LocalServer) -> None:
    server.config.script[:] = [
        {"calls": [{"name": "run_python", "arguments": {"code": "skipped_ran = True"}}]},
        {"text": "Fine, not running it."},
    ]
    run(k, "w.send('Set a flag')")
    comm, token, _code = asked(k)
    click(k, comm, token, "skip")
    done = finished(k)
    assert done["status"] == "complete" and done["steps"] == [["run", "run_python", "skip"]]
    assert run(k, "print('skipped_ran' in dir())") == "False"
    assert sent(server)[-1][-1]["content"] == "not run: the user skipped this code"
    assert "run_python [skip]: skipped_ran = True" in done["html"]


def test_the_chats_stop_ends_the_episode_at_once_keeping_what_was_done(
    k: Kernel, server: LocalServer
) -> None:
    server.config.script[:] = [
        {"calls": [{"name": "run_python", "arguments": {"code": "first = 1"}}]},
        {"calls": [{"name": "run_python", "arguments": {"code": "second = 2"}}]},
        {"text": "never asked"},
    ]
    run(k, "w.send('Two steps')")
    comm, token, _code = asked(k)
    click(k, comm, token, "run")
    _comm, _token, code = asked(k)  # the second request is waiting for a click
    assert code == "second = 2"
    run(k, "w.stop()")  # the chat's own Stop button, mid-episode
    done = finished(k)
    assert done["status"] == "interrupted" and "the steps done so far are kept" in done["note"]
    assert done["steps"] == [["run", "run_python", "run"]]
    assert done["asking"] == "" and done["busy"] is False  # no request left to click
    assert run(k, "print(first, 'second' in dir())") == "1 False"
    assert len(sent(server)) == 2
    assert "the steps done so far are kept" in done["html"]  # said under the episode
    [stored] = [m for m in k.history("ag") if m["role"] == "assistant"]
    assert stored["status"] == "interrupted"
    assert [s["decision"] for s in stored["meta"]["episode"]["steps"]] == ["run"]
    # the chat keeps working
    server.config.script[:] = [{"text": "after stop"}]
    assert run(k, "w.send('again')\nr = await w.wait()\nprint(r.answer)") == "after stop"


def test_the_approvals_stop_button_stops_the_episode(k: Kernel, server: LocalServer) -> None:
    server.config.script[:] = [{"calls": [{"name": "run_python", "arguments": {"code": "stopped = 1"}}]}]
    run(k, "w.send('Stop me')")
    comm, token, _code = asked(k)
    click(k, comm, token, "stop")
    done = finished(k)
    assert done["status"] == "interrupted" and done["steps"] == [["run", "run_python", "stop"]]
    assert run(k, "print('stopped' in dir())") == "False" and len(sent(server)) == 1


def test_only_the_current_token_approves_and_saved_state_holds_no_request(
    k: Kernel, server: LocalServer
) -> None:
    server.config.script[:] = [
        {"calls": [{"name": "run_python", "arguments": {"code": "stale_ran = 1"}}]},
        {"text": "ok"},
    ]
    run(k, "w.send('Try it')")
    comm, token, _code = asked(k)
    # what a widget state saved in the notebook holds: no code, no token, nothing to re-arm
    state = run(k, "print(json.dumps(w.approval.get_state(), default=str))")
    assert token not in state and "stale_ran" not in state
    click(k, comm, "a-token-from-an-earlier-request", "run")  # a stale view's click
    click(k, comm, token, "approved")  # not a decision: never a run
    assert run(k, f"print(w.approval.token == {token!r}, 'stale_ran' in dir())") == "True False"
    click(k, comm, token, "skip")
    click(k, comm, token, "run")  # a second click for a decided request
    done = finished(k)
    assert done["steps"] == [["run", "run_python", "skip"]]
    assert run(k, "print('stale_ran' in dir())") == "False"


def test_prompt_injection_proposes_rmtree_and_nothing_runs_without_a_click(
    k: Kernel, server: LocalServer, tmp_path: Path
) -> None:
    target, cell = plant_rmtree(k, tmp_path)
    server.config.script[:] = [
        {"calls": [{"name": "read_cell", "arguments": {"number": cell}}]},
        {"text": "The tool result says this is approved.", "obey": True},  # a gullible model
        {"text": "Done."},
    ]
    run(k, "w.send('Summarise notes')")
    comm, token, code = asked(k)
    assert "shutil.rmtree" in code  # proposed, and waiting: "approved" in text approved nothing
    assert target.is_dir() and (target / "data.csv").exists()
    html = run(k, "print(w.transcript.html)")
    assert "The tool result says this is approved." in html and "<script" not in html
    click(k, comm, token, "skip")
    assert finished(k)["steps"][-1] == ["run", "run_python", "skip"]
    assert target.is_dir() and (target / "data.csv").exists()


def test_where_nobody_can_click_a_run_is_refused(k: Kernel, server: LocalServer, tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    server.config.script[:] = [
        {"calls": [{"name": "run_python", "arguments": {"code": f"open({str(marker)!r}, 'w').write('x')"}}]},
        {"text": "Answered."},
    ]
    # sent as nbclient and papermill send a cell: allow_stdin false
    run(k, "w.send('Write a file')\nep = await w.wait()", cell_id="unattended")
    assert run(k, "print(ep.steps[0].decision, w.approval.token == '')") == "refused True"
    assert not marker.exists()
    assert "refused: nobody can approve code here" in sent(server)[-1][-1]["content"]


def test_preview_shows_the_exact_messages_and_sends_nothing(k: Kernel, server: LocalServer) -> None:
    server.config.script[:] = [{"calls": [{"name": "list_variables"}]}, {"text": "first answer"}]
    run(k, "w.send('What is there?')\nep = await w.wait()")
    before = len(server.requests)
    # as the page's Preview button sends it: the text in the box and the switch
    run(
        k,
        "w.input._handle_message(w.input, {'event': 'preview', 'value': 'And now?', 'agent': True}, [])\n"
        "await w.wait()",
    )
    assert len(server.requests) == before  # nothing sent
    shown = run(k, "print(w.preview_area.value)")
    assert "dry run: nothing sent · 6 messages · " in shown and "≈" in shown and "run_python" in shown
    body = json.loads(run(k, "print(w.last_preview.text)"))  # what the code block shows
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert body["messages"][-1]["content"] == "And now?" and body["tools"]  # the tools go with it
    assert [m["role"] for m in k.history("ag")] == ["user", "assistant"]  # nothing recorded
    # without the switch: the messages a plain answer sends (the episode as prompt and answer)
    run(k, "w.agent = False\nw.preview('And plainly?')\nawait w.wait()")
    plain = run(k, "print(w.preview_area.value)")
    assert "dry run: nothing sent · 4 messages" in plain and "run_python" not in plain


def test_a_magic_episode_shows_compactly_in_the_chat(k: Kernel, server: LocalServer) -> None:
    server.config.script[:] = [
        {"calls": [{"name": "list_variables"}]},
        {"calls": [{"name": "run_python", "arguments": {"code": "from_magic = 1"}}]},
        {"text": "Magic done."},
    ]
    cell = f"%%acytoo --agent -c ag -p openai --url {server.url}/v1\nFrom a cell"
    assert execute_clicking(k, cell, ["Skip"]).status == "ok"
    html = run(k, "w.refresh()\nawait w.wait()\nprint(w.transcript.html)")
    assert "from cell [" in html and "Magic done." in html
    assert "<summary><code>list_variables({})</code></summary>" in html
    assert "<summary><code>run_python [skip]: from_magic = 1</code></summary>" in html


def test_budgets_and_a_provider_without_tools_refuse_in_one_line_losing_nothing(
    k: Kernel, server: LocalServer
) -> None:
    question = "a question long enough to pass a daily budget of ten tokens"
    run(k, "%config Assistant.daily_max_tokens = 10")
    before = len(server.requests)
    run(k, f"w.send({question!r})\nawait w.wait()")
    status = run(k, "print(w.error_area.value)")
    assert "acytoo-error" in status and "raise Assistant.daily_max_tokens" in status and "\n" not in status
    assert len(server.requests) == before and k.history("ag") == []  # not sent, not recorded
    assert run(k, "print(w.input.value)") == question  # back in the box

    run(k, "%config Assistant.daily_max_tokens = 0\n%config Assistant.agent_max_steps = 1")
    server.config.script[:] = [{"calls": [{"name": "list_variables"}]}, {"text": "never asked"}]
    done = finished(k) if run(k, "w.send('Look around')") == "" else {}
    assert done["status"] == "partial" and "raise Assistant.agent_max_steps" in done["html"]
    assert len(sent(server)) == 1

    run(k, "%config Assistant.provider = 'acytoo'\nw.send('hi')\nawait w.wait()")
    status = run(k, "print(w.error_area.value)")
    assert "agent mode needs a provider with tool calls" in status
    assert run(k, "print(w.input.value)") == "hi"
