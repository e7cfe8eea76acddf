"""Real g4f providers through %%acytoo: the settings they declare, their labels, their usage objects."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.notebook

CUSTOM = "-p g4f.Provider:Custom -m scripted"


NOTEBOOK = "g4f.ipynb"  # conftest's k


@pytest.fixture
def url(server):
    """The local server's OpenAI-compatible endpoint, as g4f's Custom provider takes it."""
    return server.url + "/v1"


def status_of(execution) -> str:
    return execution.final_display["text/plain"].rsplit("\n— ", 1)[1]


def test_g4f_custom_gets_the_url_streams_keeps_history_and_reports_usage(k, url, server):
    first = k.execute(f"%%acytoo {CUSTOM} --url {url}\n[[chunk=4]] hello from g4f")
    assert first.status == "ok", first.error
    assert first.final_display["text/plain"].startswith('You said: "hello from g4f"')
    assert len(first.display_updates) >= 1  # streamed into the output area
    status = status_of(first)
    assert status.startswith("g4f Custom · scripted · ")  # a label, not g4f.Provider.needs_auth.Custom:Custom
    assert " tokens" in status and "≈" not in status  # g4f's Usage object, counted by the server
    second = k.execute(f"%%acytoo {CUSTOM} --url {url}\nand again")
    assert 'Before that you said: "hello from g4f"' in second.final_display["text/plain"]
    sent = server.requests[-1]["json"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["temperature"] == 0.5  # declared by Custom, so passed
    loop = k.execute("import asyncio\nprint(getattr(asyncio.get_running_loop(), '_nest_patched', False))")
    assert loop.stdout.strip() == "False"  # g4f's async path leaves the kernel's loop alone


def test_g4f_failure_is_one_line_and_records_nothing(k, url):
    out = k.execute(f"%%acytoo {CUSTOM} --url {url} -c errors\n[[fault=500]] fails")
    assert out.status == "error" and out.error["ename"] == "AcytooError"
    (line,) = out.error["traceback"]
    assert "g4f Custom" in line and "500" in line and "Traceback" not in line
    stored = k.execute(
        "import acytoo_magic\nprint(len(acytoo_magic._magics.assistant.conversation('errors').messages()))"
    )
    assert stored.stdout.strip() == "0"


def test_a_foreign_provider_gets_only_what_it_declares_and_is_told_once(k):
    k.execute(
        "import sys, types\n"
        "seen = []\n"
        "class Echo:\n"
        "    @classmethod\n"
        "    async def create_async_generator(cls, model, messages, proxy=None, api_base=None, **kwargs):\n"
        "        seen.append({'api_base': api_base, 'kwargs': sorted(kwargs)})\n"
        "        yield 'ok'\n"
        "sys.modules['echo_provider'] = types.SimpleNamespace(Echo=Echo)\n"
    )
    first = k.execute("%%acytoo -p echo_provider:Echo --url http://127.0.0.1:9/v1 -t 0.3\nhi")
    assert first.status == "ok", first.error
    assert "Echo takes no temperature setting" in first.stderr
    again = k.execute("%%acytoo -p echo_provider:Echo --url http://127.0.0.1:9/v1\nhi again")
    assert "takes no" not in again.stderr  # said once, not on every cell
    seen = json.loads(k.execute("import json\nprint(json.dumps(seen))").stdout)
    # the URL under the keyword it declares, and nothing undeclared slipped into **kwargs
    assert seen == [{"api_base": "http://127.0.0.1:9/v1", "kwargs": []}] * 2


def test_the_widget_streams_from_g4f_custom_and_stop_keeps_the_partial_answer(k, url):
    k.execute(
        "%config Assistant.provider = 'g4f.Provider:Custom'\n"
        f"%config Assistant.url = {url!r}\n"
        "%config Assistant.model = 'scripted'\n"
        "from acytoo_magic import ChatWidget\nimport asyncio\n"
        "w = ChatWidget('g4f chat')\nw.send('[[size=200000 chunk=20 delay=0.01]]')\n"
    )
    waited = k.execute(  # polls the widget's own state from a cell, as a user would
        "while not (w.renderer and w.renderer.last_frame and w.renderer.last_frame.text):\n"
        "    await asyncio.sleep(0.02)\nprint(w.streaming)"
    )
    assert waited.stdout.strip() == "True"
    stopped = k.execute(
        "w.stop()\nr = await w.wait()\nprint(r.outcome, 0 < len(r.answer) < 2e5, w.input.busy)"
    )
    assert stopped.stdout.split() == ["interrupted", "True", "False"]
    assert "interrupted" in k.execute("%acytoo history -c 'g4f chat'").shown


def test_agent_mode_runs_through_g4f_custom_with_its_streamed_tool_calls(k, url, server):
    """g4f's OpenAI-style providers forward ``tools`` and yield the streamed ``delta.tool_calls``
    pieces as their own ``ToolCalls``: the adapter puts them together, so an episode works as with
    ``-p openai`` (a provider without tools is refused: test_agent_kernel)."""
    assert k.execute("sizes = {'a': 1, 'b': 22}").status == "ok"
    server.config.script[:] = [
        {"calls": [{"name": "describe_variable", "arguments": {"name": "sizes"}}]},
        {"text": "`sizes` has **2** keys."},
    ]
    out = k.execute(f"%%acytoo --agent {CUSTOM} --url {url}\nHow many keys has sizes?")
    assert out.status == "ok", out.error
    bodies = [r["json"] for r in server.requests if r["path"] == "/v1/chat/completions"]
    assert len(bodies) == 2 and "describe_variable" in [t["function"]["name"] for t in bodies[0]["tools"]]
    asked, answered = bodies[1]["messages"][-2:]
    assert asked["tool_calls"][0]["function"] == {
        "name": "describe_variable",
        "arguments": json.dumps({"name": "sizes"}),
    }
    assert answered["role"] == "tool" and answered["tool_call_id"] == asked["tool_calls"][0]["id"]
    assert "'b': 22" in answered["content"]
    shown = [c["data"].get("text/html", "") for c in out.of_type("display_data", "update_display_data")]
    assert any("<strong>2</strong> keys" in html for html in shown)
    [stored] = [m for m in k.history() if m["role"] == "assistant"]
    assert stored["status"] == "complete"
    assert [s["name"] for s in stored["meta"]["episode"]["steps"]] == ["describe_variable"]
