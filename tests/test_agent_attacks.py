"""Agent mode, and the prompt templates, against a curious model, in real kernels.

The model is the scripted tool-calling server on 127.0.0.1: it looks around as a curious model
would (lists the variables, describes the secret-looking ones, reads the cells that set them),
proposes code that does not stop, sends a 10 MB name or 3,000 tool calls in one message. Nothing
secret may reach a request body, an interrupt must stop approved code, and every bound holds.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import notebook_env, notebook_kernel
from kernels import Execution, Kernel
from test_agent_kernel import agent_cell, decide, execute_clicking, sent

from acytoo_magic.core.context import NotebookContext
from acytoo_magic.core.errors import ContextError
from acytoo_magic.server import LocalServer

pytestmark = pytest.mark.notebook
NOTEBOOK = "attacks.ipynb"
API_KEY = "sk-proj-" + "Zx81" * 10
ENV_TOKEN = "tok-" + "env7" * 6
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
PASSWORD = "correct-horse-battery-9"
OPAQUE = "plainlooking-value-4821"  # no known format: only its name says it is secret
SECRETS = (API_KEY, ENV_TOKEN, GITHUB, PASSWORD, OPAQUE)
INTERRUPTED_LINE = "Interrupted: the episode above stops here; the steps done so far are kept."


def bodies(server: LocalServer) -> str:
    return json.dumps([r["json"] for r in server.requests if isinstance(r.get("json"), dict)])


def plant_secrets(k: Kernel, server: LocalServer) -> list[int]:
    """The five-secret notebook; returns the execution counts of the cells that hold them."""
    cells = [
        f"%config Assistant.provider = 'openai'\n%config Assistant.url = '{server.url}/v1'\n"
        f"%config Assistant.api_key = {API_KEY!r}",
        f"import os\nos.environ['MY_SERVICE_TOKEN'] = {ENV_TOKEN!r}",
        f"service_token = {GITHUB!r}",
        "env = os.environ",
        f"cfg = {{'user': 'ana', 'password': {PASSWORD!r}}}",
        f"db_secret = {OPAQUE!r}",
    ]
    counts = []
    for code in cells:
        assert k.execute(code).status == "ok"
        counts.append(int(k.execute("print(len(In) - 2)").stdout))
    return counts


def describe(name: str) -> dict[str, Any]:
    return {"name": "describe_variable", "arguments": {"name": name}}


def test_a_snooping_model_gets_no_secret_and_the_user_is_told(k: Kernel, server: LocalServer) -> None:
    counts = plant_secrets(k, server)
    server.config.script[:] = [
        {"calls": [{"name": "list_variables"}]},
        {"calls": [describe(name) for name in ("service_token", "env", "cfg", "db_secret")]},
        {"calls": [{"name": "read_cell", "arguments": {"number": n}} for n in counts]},
        {"text": "I looked around."},
    ]  # fmt: skip
    out = execute_clicking(k, "%%acytoo --agent\nWhat is configured here?", [])
    assert out.status == "ok", out.error
    assert len(sent(server)) == 4
    everything = bodies(server)
    assert not [secret for secret in SECRETS if secret in everything]
    assert "[secret: service_token]" in everything or "a secret by its name: not shown" in everything
    assert "process environment" in everything  # env was refused, not described
    final = out.final_display["text/plain"]
    masked = [line for line in final.splitlines() if "masked" in line]
    assert len(masked) == 1 and "before sending" in masked[0]
    assert "api_key" in masked[0] and "MY_SERVICE_TOKEN" in masked[0] and "service_token" in masked[0]
    stored = json.dumps(k.history())
    assert not [secret for secret in SECRETS if secret in stored]  # the history keeps what was sent


def test_template_cells_mask_a_pasted_reference_and_refuse_the_environment(
    k: Kernel, server: LocalServer
) -> None:
    plant_secrets(k, server)
    pasted = "%%acytoo\nWhy 401? headers={'Authorization': f'Bearer {service_token}'} and {cfg}"
    out = k.execute(pasted)
    assert out.status == "ok", out.error
    last = sent(server)[-1][-1]["content"]
    assert GITHUB not in last and PASSWORD not in last and "[secret: service_token]" in last
    masked = "masked 2 secrets before sending: service_token, cfg['password']"
    assert masked in out.final_display["text/plain"]

    before = len(server.requests)
    for reference in ("{env}", "{os.environ}", "{service_token.__class__.__init__.__globals__}"):
        refused = k.execute(f"%%acytoo\nWhat is in {reference}?")
        assert refused.status == "error" and refused.stderr.startswith("UsageError: %%acytoo: {")
        assert "\n" not in refused.stderr.strip()
    assert len(server.requests) == before  # nothing sent

    preview = k.execute("%%acytoo --dry-run\nCheck {service_token} please")
    shown = preview.final_display["text/plain"]
    assert GITHUB not in shown and "[secret: service_token]" in shown
    [masked] = [line for line in shown.splitlines() if line.startswith("masked ")]
    assert "service_token" in masked  # and cfg['password'], masked in the history it sends
    assert len(server.requests) == before

    opted = k.execute("%%acytoo --send-secret service_token\nCheck {service_token} please")
    assert opted.status == "ok" and GITHUB in sent(server)[-1][-1]["content"]  # said so, for this cell


def test_templates_take_names_and_public_attributes_only() -> None:
    import os

    class Frame:
        columns = ("a", "b")

    context = NotebookContext({"df": Frame(), "os": os, "env": os.environ, "copy": dict(os.environ)})
    assert "('a', 'b')" in context.expand("{df.columns}")
    for reference in ("{df.__class__}", "{df._private}", "{os.environ}", "{os.path}", "{env}", "{copy}"):
        with pytest.raises(ContextError):
            context.expand(reference)


class Started:
    """A port approved code connects to when it has started: the test acts then, not after a delay."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.runs: queue.Queue[None] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with self.listener:
            while True:
                connection, _ = self.listener.accept()
                connection.close()
                self.runs.put(None)

    def wait(self) -> None:
        """Until the next run has started (a minute at most: a run that never starts fails the test)."""
        self.runs.get(timeout=60)


@pytest.fixture
def started() -> Started:
    return Started()


def endless(port: int) -> str:
    """Code that says it started, prints, then runs for hours unless interrupted."""
    return (
        "import socket, time\n"
        "print('before the loop')\n"
        f"socket.create_connection(('127.0.0.1', {port})).close()\n"
        "for _ in range(1_000_000):\n"
        "    time.sleep(0.05)\n"
    )


def test_kernel_interrupt_stops_approved_code_in_a_cell(
    k: Kernel, server: LocalServer, started: Started
) -> None:
    server.config.script[:] = [
        {"calls": [{"name": "run_python", "arguments": {"code": endless(started.port)}}]},
        {"text": "never asked"},
    ]

    def interrupt_once_started() -> None:
        started.wait()
        k.km.interrupt_kernel()


    threading.Thread(target=interrupt_once_started, daemon=True).start()
    out = k.execute(agent_cell(server, "Loop", "--auto-run"), timeout=120)
    assert out.status == "error" and out.error["traceback"] == [INTERRUPTED_LINE]
    [stored] = [m for m in k.history() if m["role"] == "assistant"]
    assert stored["status"] == "interrupted"
    [run] = stored["meta"]["episode"]["steps"]
    assert "stdout:\nbefore the loop" in run["text"] and "interrupted by the user" in run["text"]
    assert k.execute("print('usable')").stdout == "usable\n"  # the kernel goes on


def open_agent_chat(k: Kernel, server: LocalServer) -> None:
    code = (
        f"%config Assistant.provider = 'openai'\n%config Assistant.url = '{server.url}/v1'\n"
        "from acytoo_magic import ChatWidget\nimport json\nw = ChatWidget('chat')\nw.agent = True"
    )
    assert k.execute(code).status == "ok"


def chat_runs(k: Kernel, server: LocalServer, started: Started) -> None:
    """Send a question in the chat; click Run on the endless code; return once it runs."""
    server.config.script[:] = [
        {"calls": [{"name": "run_python", "arguments": {"code": endless(started.port)}}]},
        {"text": "never asked"},
    ]
    assert k.execute("w.send('Loop')").status == "ok"
    ask = "c = await w.approval.asking()\nprint(json.dumps([w.approval.model_id, w.approval.token]))"
    asked = json.loads(k.execute(ask).stdout)
    decide(k, asked[0], asked[1], "run")
    started.wait()


def chat_episode(k: Kernel) -> dict[str, Any]:
    shown = k.execute(
        "ep = await w.wait()\nprint(json.dumps({'status': ep.outcome, 'note': ep.note,"
        " 'steps': [s.text for s in ep.steps], 'busy': w.input.busy}))",
        timeout=60,
    )
    return json.loads(shown.stdout)


def test_the_chats_stop_stops_approved_code(k: Kernel, server: LocalServer, started: Started) -> None:
    open_agent_chat(k, server)
    chat_runs(k, server, started)
    assert k.execute("w.stop()", timeout=60).status == "ok"  # the kernel is free while the code runs
    episode = chat_episode(k)
    assert episode["status"] == "interrupted" and episode["busy"] is False
    assert "before the loop" in episode["steps"][-1] and "interrupted by the user" in episode["steps"][-1]


def test_kernel_interrupt_stops_approved_code_in_the_chat(
    k: Kernel, server: LocalServer, started: Started
) -> None:
    open_agent_chat(k, server)
    for _ in range(2):  # after a first run stopped from a cell, as after any: ipykernel swaps handlers
        chat_runs(k, server, started)
        assert k.execute("w.stop()").status == "ok"
        assert chat_episode(k)["status"] == "interrupted"
    chat_runs(k, server, started)
    k.km.interrupt_kernel()  # no cell runs: ipykernel would ignore SIGINT, the run turns it into Stop
    episode = chat_episode(k)
    assert episode["status"] == "interrupted"
    assert "interrupted by the user" in episode["steps"][-1]
    # idle again: no episode and no run left for a later SIGINT to act on, and one is harmless
    left = k.execute(
        "from acytoo_magic.core import coderun\nprint(len(coderun._running), len(coderun._live))"
    )
    assert left.stdout == "0 0\n"
    k.km.interrupt_kernel()
    assert k.execute("print('still here')").stdout == "still here\n"


def test_a_ten_megabyte_name_is_quoted_in_part(k: Kernel, server: LocalServer) -> None:
    name = "a" * 10_000_000
    server.config.chunk_size = 1 << 18  # the name streams in 256 KB pieces, not 8-byte ones
    server.config.script[:] = [
        {"calls": [{"name": "describe_variable", "arguments": {"name": name}}]},
        {"text": "no such variable"},
    ]
    out = execute_clicking(k, agent_cell(server, "Describe it"), [])
    assert out.status == "ok", out.error
    shown = sum(len(json.dumps(m["content"])) for m in out.messages)
    assert shown < 50_000
    [stored] = [m for m in k.history() if m["role"] == "assistant"]
    [step] = stored["meta"]["episode"]["steps"]
    assert step["text"].startswith("error: no variable 'aaaa") and "(10,000,000 characters)" in step["text"]
    assert len(step["text"]) < 300 and len(step["arguments"]) < 300
    assert len(json.dumps(stored)) < 100_000  # the history row: not 40 MB
    assert "history keeps each part to 10,000 characters" in out.final_display["text/plain"]
    # sending the name back would pass the episode's token budget: it stops there, and says so
    assert "would pass the episode's token budget" in stored["content"]


def test_three_thousand_calls_in_one_message_stop_at_the_step_limit(k: Kernel, server: LocalServer) -> None:
    server.config.script[:] = [
        {"calls": [{"name": "list_variables"}] * 3_000},
        {"text": "never asked"},
    ]
    out = execute_clicking(k, agent_cell(server, "Look a lot"), [])
    assert out.status == "ok", out.error
    assert len(sent(server)) == 1  # the step limit came first: no second request
    outputs = out.of_type("display_data")
    assert len(outputs) < 40
    final = out.final_display["text/plain"]
    assert "2,981 more tool calls in this message not run" in out.shown
    assert "stopped: 20 steps taken (raise Assistant.agent_max_steps)" in final
    [stored] = [m for m in k.history() if m["role"] == "assistant"]
    assert stored["status"] == "partial"
    steps = stored["meta"]["episode"]["steps"]
    assert sum(1 for s in steps if s["kind"] == "tool") == 19


def test_buttons_that_leave_the_page_end_the_wait(k: Kernel, server: LocalServer) -> None:
    """A view that goes (the cell re-run, Clear Outputs) with nothing decided: nobody can click."""
    server.config.script[:] = [
        {"calls": [{"name": "run_python", "arguments": {"code": "left_ran = 1"}}]},
        {"text": "never asked"},
    ]

    def view_comes_and_goes(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "comm_msg" and content["data"].get("content", {}).get("token"):
            for event in ("ready", "gone"):
                data = {"method": "custom", "content": {"event": event}}
                message = {"comm_id": content["comm_id"], "data": data}
                k.kc.shell_channel.send(k.kc.session.msg("comm_msg", message))

    out: Execution = k.execute(agent_cell(server, "Set it"), on_message=view_comes_and_goes, timeout=60)
    assert out.status == "ok", out.error
    assert "the buttons left the page undecided" in json.dumps(out.display_updates)
    assert k.execute("print('left_ran' in dir())").stdout == "False\n"
    [stored] = [m for m in k.history() if m["role"] == "assistant"]
    assert stored["status"] == "interrupted" and "left the page" in stored["content"]


def test_the_daily_budget_is_the_users_across_notebooks(
    request: pytest.FixtureRequest, server: LocalServer, history_db: Path
) -> None:
    ask = f"%%acytoo -p openai --url {server.url}/v1\n"
    env = notebook_env(request, server.url, history_db)
    with notebook_kernel({**env, "JPY_SESSION_NAME": "first.ipynb"}) as first:
        assert first.execute(ask + "a question that costs some tokens").status == "ok"
        spent = first.execute(
            "import acytoo_magic\nprint(acytoo_magic._magics.assistant.daily_budget().today()[0])"
        )
        tokens = int(spent.stdout)
    with notebook_kernel({**env, "JPY_SESSION_NAME": "Untitled.ipynb"}) as second:  # a new notebook
        assert second.execute(f"%config Assistant.daily_max_tokens = {tokens + 5}").status == "ok"
        refused = second.execute(ask + "another question that is long enough to pass five tokens")
        assert refused.status == "error" and "in every notebook" in refused.error["evalue"]
        threads = second.execute("%acytoo threads").stdout
        assert f"today: {tokens:,} tokens of {tokens + 5:,}" in threads
        # a budget of this notebook's own counts only what it spent
        assert second.execute(
            "%config Assistant.daily_max_tokens = 0\n%config Assistant.notebook_daily_max_tokens = 100000"
        ).status == "ok"
        assert second.execute(ask + "this one is sent").status == "ok"


def test_a_secret_made_by_approved_code_is_masked_when_read_back(k: Kernel, server: LocalServer) -> None:
    loaded = '{"user": "ana", "password": "Sw0rdfish-Zebra-Quartz"}'
    made = f"import json\nsettings = json.loads({loaded!r})\nlen(settings)"
    server.config.script[:] = [
        {"calls": [{"name": "run_python", "arguments": {"code": made}}]},
        {"calls": [describe("settings"), {"name": "run_python", "arguments": {"code": "print(settings)"}}]},
        {"text": "read it"},
    ]
    out = k.execute(agent_cell(server, "Load the settings", "--auto-run"))
    assert out.status == "ok", out.error
    assert "Sw0rdfish-Zebra-Quartz" not in bodies(server)
    assert "[secret: settings['password']]" in bodies(server)


def test_no_part_of_a_secret_leaves_cut_or_escaped(k: Kernel, server: LocalServer) -> None:
    long_token = "".join(f"{i:03d}Zq" for i in range(26)) + "x"  # 131 characters, no known format
    odd = "pa\\ss'w\"ord!9Zebra"  # a backslash and both quotes: repr escapes them
    planted = f"cfg = {{'user': 'ana', 'token': {long_token!r}}}\nodd = {{'password': {odd!r}}}"
    assert k.execute(planted).status == "ok"
    straddle = "x = 1\n" * 326 + 'api_token = "Qm9hdC1yb2NrZXQtc2VjcmV0LXRva2VuLXZhbHVl"'
    assert k.execute(straddle).status == "ok"
    number = int(k.execute("print(len(In) - 2)").stdout)
    server.config.script[:] = [
        {"calls": [describe("cfg"), describe("odd"), {"name": "read_cell", "arguments": {"number": number}}]},
        {"text": "seen"},
    ]
    assert execute_clicking(k, agent_cell(server, "Look"), []).status == "ok"
    template = k.execute("%%acytoo\nWhat is {cfg} and {odd}?")
    assert template.status == "ok", template.error
    everything = bodies(server)
    for part in (long_token[:16], long_token[-16:], "ord!9Zebra", "Qm9hdC1yb2N"):
        assert part not in everything, part


def test_the_environment_never_leaves_through_out_or_an_index(k: Kernel, server: LocalServer) -> None:
    assert k.execute("import os\nos.environ['PLAIN_SETTING'] = 'internal-host-abc.example'").status == "ok"
    assert k.execute("os.environ").status == "ok"  # shown once, as people do: it is Out[n] now
    number = int(k.execute("print(len(In) - 2)").stdout)
    assert k.execute("envs = [os.environ]\nsnapshot = dict(os.environ)").status == "ok"
    server.config.script[:] = [
        {"calls": [{"name": "read_cell", "arguments": {"number": number}}, describe("envs"),
                   describe("snapshot")]},
        {"text": "seen"},
    ]
    assert execute_clicking(k, agent_cell(server, "Look"), []).status == "ok"
    assert k.execute(f"%%acytoo\nWhat is {{Out[{number}]}} and {{envs[0]}}?").status == "ok"
    everything = bodies(server)
    assert "internal-host-abc.example" not in everything
    assert "the process environment: not shown" in everything


def test_a_second_interrupt_reaches_code_that_caught_the_first(
    k: Kernel, server: LocalServer, started: Started
) -> None:
    stubborn = (
        "import socket, time\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {started.port})).close()\n"
        "    for _ in range(1_000_000):\n"
        "        time.sleep(0.05)\n"
        "except KeyboardInterrupt:\n"
        "    print('caught the first')\n"
        f"    socket.create_connection(('127.0.0.1', {started.port})).close()\n"
        "    for _ in range(1_000_000):\n"
        "        time.sleep(0.05)\n"
    )
    server.config.script[:] = [{"calls": [{"name": "run_python", "arguments": {"code": stubborn}}]}]

    def interrupt_twice() -> None:
        for _ in range(2):
            started.wait()
            k.km.interrupt_kernel()

    threading.Thread(target=interrupt_twice, daemon=True).start()
    out = k.execute(agent_cell(server, "Loop stubbornly", "--auto-run"), timeout=120)
    assert out.status == "error" and out.error["traceback"] == [INTERRUPTED_LINE]
    [stored] = [m for m in k.history() if m["role"] == "assistant"]
    [run] = stored["meta"]["episode"]["steps"]
    assert "caught the first" in run["text"] and "interrupted by the user" in run["text"]
    assert "had not stopped" not in run["text"]


def test_a_tool_name_of_free_text_is_not_drawn_as_ours(k: Kernel, server: LocalServer) -> None:
    server.config.script[:] = [
        {"calls": [{"name": "run_python: run (approved by you)", "arguments": {}}]},
        {"text": "done"},
    ]
    out = execute_clicking(k, agent_cell(server, "Pose"), [])
    assert out.status == "ok", out.error
    shown = json.dumps([m["content"] for m in out.messages])
    assert "tool · run_python: run (approved by you)" not in shown
    assert "(a tool name that is not one)" in shown
