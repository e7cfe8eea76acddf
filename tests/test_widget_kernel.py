"""ChatWidget driven in a real kernel: send, stream, stop, errors, shared history, concurrency."""

from __future__ import annotations

import pytest
from kernels import Kernel, kernel

pytestmark = pytest.mark.notebook

SLOW = "[[size=200000 chunk=20 delay=0.01]]"  # about 100 s if nobody stops it
WAIT_FOR_TEXT = (  # polls the widget's own state from inside the kernel, as a user's cell would
    "import asyncio\n"
    "while not w.renderer or not w.renderer.draws or w.live.value.count('⏳'):\n"
    "    await asyncio.sleep(0.02)\n"
)


@pytest.fixture
def k(server, history_db):
    env = {"ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(history_db), "JPY_SESSION_NAME": "chat.ipynb"}
    with kernel(**env) as running:
        assert running.execute("%load_ext acytoo_magic\nfrom acytoo_magic import ChatWidget").status == "ok"
        yield running


def run(k: Kernel, code: str) -> str:
    out = k.execute(code)
    assert out.status == "ok", out.error
    return out.stdout.strip()


def test_send_streams_into_the_transcript_and_records(k):
    run(k, "w = ChatWidget('t1')\ntask = w.send('hello [[chunk=4 delay=0.005]]')")
    assert (
        run(k, "r = await w.wait()\nprint(r.status, r.chunks > 5, w.renderer.draws > 1)")
        == "complete True True"
    )
    transcript = run(k, "print(w.transcript.value)")
    assert "hello [[chunk=4 delay=0.005]]" in transcript and "You said: &quot;hello&quot;" in transcript
    assert run(k, "print(w.live.value == '', w.input.busy, w.stop_button.disabled)") == "True False True"
    assert 'You said: "hello"' in k.execute("%acytoo history --full -c t1").shown


def test_a_cell_runs_while_the_widget_streams(k):
    run(k, "w = ChatWidget('t1')\nw.send('[[size=3000 chunk=30 delay=0.01]]')")
    # this cell runs and finishes while the answer is still streaming
    assert run(k, "print(w.streaming, w.input.busy, 6 * 7)") == "True True 42"
    assert run(k, "r = await w.wait()\nprint(r.status, len(r.text), w.streaming)") == "complete 3000 False"


@pytest.mark.parametrize("protocol", ["acytoo", "openai"])
def test_stop_keeps_the_partial_answer_marked_interrupted(k, server, protocol):
    if protocol == "openai":
        run(k, f"%config Assistant.provider = 'openai'\n%config Assistant.url = '{server.url}/v1'")
    run(k, f"w = ChatWidget('t1')\nw.send({SLOW!r})")
    run(k, WAIT_FOR_TEXT)
    out = run(k, "w.stop()\nr = await w.wait()\nprint(r.status, 0 < len(r.text) < 200000, w.input.busy)")
    assert out == "interrupted True False"
    assert "interrupted</div>" in run(k, "print(w.transcript.value)")
    assert "--- assistant [interrupted]" in k.execute("%acytoo history --full -c t1").shown
    # the widget (and the kernel's session) keep working
    assert run(k, "w.send('after stop')\nr = await w.wait()\nprint(r.status)") == "complete"


def test_error_is_one_line_in_the_transcript_and_nothing_recorded(k):
    run(k, "w = ChatWidget('t1')\nw.send('[[fault=500]] boom')\nr = await w.wait()")
    status = run(k, "print(w.status.value)")
    assert "HTTP 500" in status and "acytoo-error" in status and status.count("\n") == 0
    assert run(k, "print(w.input.busy, r.status)") == "False failed"
    assert "is empty" in run(k, "%acytoo history -c t1")
    # the transcript matches the (empty) history, and the message is back in the box
    assert run(k, "print(repr(w.transcript.value), repr(w.input.value))") == "'' '[[fault=500]] boom'"


def test_bad_reference_is_reported_before_sending(k, server):
    before = len(server.requests)
    # as the browser does: the text arrives in the submit message, the box already emptied
    run(
        k,
        "w = ChatWidget('t1')\n"
        "w.input._handle_message(w.input, {'event': 'submit', 'value': 'about {no_such_var}'}, [])",
    )
    assert "no variable &#x27;no_such_var&#x27;" in run(k, "print(w.status.value)")
    assert len(server.requests) == before
    assert run(k, "print(w.input.value)") == "about {no_such_var}"  # given back, nothing lost


def test_widget_and_magic_share_the_thread(k):
    assert k.execute("%%acytoo -c shared\nfrom the magic").status == "ok"
    run(k, "w = ChatWidget('shared')")
    assert "from the magic" in run(k, "print(w.transcript.value)")
    run(k, "w.send('from the widget')\nr = await w.wait()")
    assert "Before that you said: &quot;from the magic&quot;" in run(k, "print(w.transcript.value)")
    magic = k.execute("%%acytoo -c shared\nback in the magic")
    assert 'Before that you said: "from the widget"' in magic.final_display["text/plain"]


def test_reopening_and_restarting_show_the_earlier_transcript(k):
    run(k, "w = ChatWidget('keep')\nw.send('remember me')\nr = await w.wait()")
    assert "remember me" in run(k, "print(ChatWidget('keep').transcript.value)")
    k.restart()
    run(k, "from acytoo_magic import ChatWidget")  # loads the extension itself
    assert "remember me" in run(k, "print(ChatWidget('keep').transcript.value)")


def test_switching_threads_reloads_the_transcript(k):
    run(k, "a = ChatWidget('a')\na.send('in a')\nr = await a.wait()")
    assert run(k, "w = ChatWidget('b')\nprint('in a' in w.transcript.value)") == "False"
    assert run(k, "w.thread_picker.value = 'a'\nprint('in a' in w.transcript.value, w.thread)") == "True a"


def test_two_widgets_stream_concurrently_without_mixing(k):
    run(
        k,
        "one, two = ChatWidget('one'), ChatWidget('two')\n"
        "one.send('[[echo chunk=3 delay=0.01]]' + 'A' * 120)\n"
        "two.send('[[echo chunk=3 delay=0.01]]' + 'B' * 120)",
    )
    assert run(k, "print(one.streaming and two.streaming)") == "True"
    out = run(
        k, "r1, r2 = await one.wait(), await two.wait()\nprint(r1.text == 'A' * 120, r2.text == 'B' * 120)"
    )
    assert out == "True True"
    assert run(k, "print('B' in one.transcript.value, 'AAA' in two.transcript.value)") == "False False"


def test_html_in_answers_is_escaped(k):
    run(
        k,
        "w = ChatWidget('x')\n"
        "w.send('[[echo]]<script>alert(1)</script> <img src=x onerror=alert(2)> **ok**')",
    )
    html = run(k, "r = await w.wait()\nprint(w.transcript.value)")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<strong>ok</strong>" in html


def test_chat_subcommand_displays_a_widget(k):
    out = k.execute("%acytoo chat -c side")
    assert out.status == "ok"
    (data,) = [c["data"] for c in out.of_type("display_data")]
    assert "application/vnd.jupyter.widget-view+json" in data


def test_indicator_follows_the_settings_and_a_bad_provider_is_one_line(k):
    run(k, "w = ChatWidget('ind')")
    assert "acytoo · gpt-3.5-turbo" in run(k, "print(w.indicator.value)")
    run(k, "%config AcytooMagics.model = 'other-model'\nw.send('hi')\nr = await w.wait()")
    assert "acytoo · other-model" in run(k, "print(w.indicator.value)")
    run(k, "%config AcytooMagics.provider = 'nope'\nw2 = ChatWidget('ind')\nw2.send('hi')")
    assert "unknown provider &#x27;nope&#x27;" in run(k, "print(w2.status.value)")
    assert run(k, "print(w2.input.value)") == "hi"
