"""ChatWidget driven in a real kernel: send, stream, stop, errors, shared history, concurrency."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from kernels import Kernel

pytestmark = pytest.mark.notebook
NOTEBOOK = "chat.ipynb"

SLOW = "[[size=200000 chunk=20 delay=0.01]]"  # about 100 s if nobody stops it
WAIT_FOR_TEXT = (  # polls the widget's own state from inside the kernel, as a user's cell would
    "import asyncio\n"
    "while not (w.renderer and w.renderer.last_frame and w.renderer.last_frame.text):\n"
    "    await asyncio.sleep(0.02)\n"
)
# A provider (the documented module:Class plug-in) that sends the first half of the prompt back,
# then waits until the test releases it: "still streaming" is a state, not a race against a clock.
GATED = '''
import asyncio

_gate = None


def gate():
    global _gate
    if _gate is None:
        _gate = asyncio.Event()
    return _gate


def release():
    gate().set()


class Gated:
    @staticmethod
    async def create_async_generator(model, messages, proxy=None, **kwargs):
        text = messages[-1]["content"]
        yield text[: len(text) // 2]
        await gate().wait()
        yield text[len(text) // 2 :]
'''


@pytest.fixture
def k(k: Kernel) -> Kernel:
    """The conftest kernel, with the widget imported."""
    assert k.execute("from acytoo_magic import ChatWidget").status == "ok"
    return k


@pytest.fixture
def gated(k: Kernel, tmp_path: Path) -> Kernel:
    (tmp_path / "gated_provider.py").write_text(GATED)
    run(
        k,
        f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport gated_provider as gated\n"
        "%config Assistant.provider = 'gated_provider:Gated'",
    )
    return k


def run(k: Kernel, code: str) -> str:
    out = k.execute(code)
    assert out.status == "ok", out.error
    return out.stdout.strip()


def test_send_streams_into_the_transcript_and_records(k):
    run(k, "w = ChatWidget('t1')\ntask = w.send('hello [[chunk=4 delay=0.005]]')")
    assert (
        run(k, "r = await w.wait()\nprint(r.outcome, r.chunks > 5, w.renderer.draws > 1)")
        == "complete True True"
    )
    transcript = run(k, "print(w.transcript.html)")
    assert "hello [[chunk=4 delay=0.005]]" in transcript and "You said: &quot;hello&quot;" in transcript
    assert "characters in" in transcript  # the status line under the answer just given
    assert run(k, "print(w.transcript.live == '', w.input.busy, w.stop_button.disabled)") == "True False True"
    assert 'You said: "hello"' in k.execute("%acytoo history --full -c t1").shown


def test_a_cell_runs_while_the_widget_streams(gated):
    k = gated
    run(k, "w = ChatWidget('t1')\nw.send('one two three four')")
    run(k, WAIT_FOR_TEXT)  # the first half is drawn; the rest waits for the gate
    # this cell runs and finishes while the answer is still streaming
    assert run(k, "print(w.streaming, w.input.busy, 6 * 7)") == "True True 42"
    out = run(k, "gated.release()\nr = await w.wait()\nprint(r.outcome, repr(r.answer), w.streaming)")
    assert out == "complete 'one two three four' False"


@pytest.mark.parametrize("protocol", ["acytoo", "openai"])
def test_stop_keeps_the_partial_answer_marked_interrupted(k, server, protocol):
    if protocol == "openai":
        run(k, f"%config Assistant.provider = 'openai'\n%config Assistant.url = '{server.url}/v1'")
    run(k, f"w = ChatWidget('t1')\nw.send({SLOW!r})")
    run(k, WAIT_FOR_TEXT)
    out = run(k, "w.stop()\nr = await w.wait()\nprint(r.outcome, 0 < len(r.answer) < 200000, w.input.busy)")
    assert out == "interrupted True False"
    assert "interrupted</div>" in run(k, "print(w.transcript.html)")
    assert "--- assistant [interrupted]" in k.execute("%acytoo history --full -c t1").shown
    # the widget (and the kernel's session) keep working
    assert run(k, "w.send('after stop')\nr = await w.wait()\nprint(r.outcome)") == "complete"


def test_stop_leaves_in_the_transcript_exactly_what_the_page_showed(k):
    from test_widget_stream import page_after

    run(k, f"w = ChatWidget('shown')\nsent = []\nw.transcript.send = lambda c, buffers=None: sent.append(c)\n"
           f"w.send({SLOW!r})")
    run(k, WAIT_FOR_TEXT)
    run(k, "w.stop()\nr = await w.wait()")
    sent = json.loads(run(k, "import json\nprint(json.dumps(sent))"))
    [stored] = [m for m in k.history("shown") if m["role"] == "assistant"]
    assert stored["status"] == "interrupted" and 0 < len(stored["content"]) < 200_000
    from acytoo_magic.widget.entries import message_html

    page = page_after(sent)  # the page's messages, applied as its script applies them
    assert page.entries[-1] == message_html("assistant", stored["content"], "interrupted")
    assert json.loads(run(k, "print(json.dumps(w.transcript.entries))"))[-1] == page.entries[-1]
    assert [m["entries"] for m in sent if m["op"] == "splice"][-1] == [None]  # moved, not re-sent


def test_error_is_one_line_in_the_transcript_and_nothing_recorded(k):
    run(k, "w = ChatWidget('t1')\nw.send('[[fault=500]] boom')\nr = await w.wait()")
    status = run(k, "print(w.error_area.value)")
    assert "HTTP 500" in status and "acytoo-error" in status and status.count("\n") == 0
    assert run(k, "print(w.input.busy, r.outcome)") == "False failed"
    assert "is empty" in run(k, "%acytoo history -c t1")
    # the transcript matches the (empty) history, and the message is back in the box
    assert run(k, "print(repr(w.transcript.html), repr(w.input.value))") == "'' '[[fault=500]] boom'"


def test_bad_reference_is_reported_before_sending(k, server):
    before = len(server.requests)
    # as the browser does: the text arrives in the submit message, the box already emptied
    run(
        k,
        "w = ChatWidget('t1')\n"
        "w.input._handle_message(w.input, {'event': 'submit', 'value': 'about {no_such_var}'}, [])",
    )
    assert "no variable &#x27;no_such_var&#x27;" in run(k, "print(w.error_area.value)")
    assert len(server.requests) == before
    assert run(k, "print(w.input.value)") == "about {no_such_var}"  # given back, nothing lost


def test_widget_and_magic_share_the_thread(k):
    assert k.execute("%%acytoo -c shared\nfrom the magic").status == "ok"
    run(k, "w = ChatWidget('shared')\nawait w.wait()")
    assert "from the magic" in run(k, "print(w.transcript.html)")
    run(k, "w.send('from the widget')\nr = await w.wait()")
    assert "Before that you said: &quot;from the magic&quot;" in run(k, "print(w.transcript.html)")
    magic = k.execute("%%acytoo -c shared\nback in the magic")
    assert 'Before that you said: "from the widget"' in magic.final_display["text/plain"]


def test_a_cell_answering_on_the_thread_shows_in_the_open_widget_marked(k):
    run(k, "w = ChatWidget('shared')\nw.send('[[echo]]typed in the chat')\nr = await w.wait()")
    assert k.execute("%%acytoo -c shared\n[[echo]]asked in a cell", cell_id="c-1").status == "ok"
    assert k.execute("%%acytoo -c other\n[[echo]]another thread", cell_id="c-2").status == "ok"
    html = run(k, "await w.wait()\nprint(w.transcript.html)")  # the cell's run refreshed it
    assert "asked in a cell" in html and "another thread" not in html
    assert html.index("typed in the chat") < html.index("asked in a cell")
    assert html.count("acytoo-cell") == 2 and "from cell [" in html  # its prompt and answer, marked
    # re-running the cell replaces its exchange in the open widget too, in place
    assert k.execute("%%acytoo -c shared\n[[echo]]asked again", cell_id="c-1").status == "ok"
    html = run(k, "await w.wait()\nprint(w.transcript.html)")
    assert "asked again" in html and "asked in a cell" not in html and html.count("acytoo-cell") == 2


def test_the_bubble_shows_what_was_typed_with_the_context_collapsed(k):
    run(
        k,
        "import pandas as pd\ndf = pd.DataFrame({c: range(6) for c in 'abcd'})\n"
        "w = ChatWidget('ctx')\nw.send('[[echo]]why {df}?')\nr = await w.wait()",
    )
    html = run(k, "print(w.transcript.entries[0])")
    assert '<div class="acytoo-typed">[[echo]]why {df}?</div>' in html
    assert "<summary>context: df, 6 × 4 · " in html  # collapsed: <details> is closed by default
    assert "<details " in html and "open" not in html and "pandas.DataFrame: 6 rows × 4 columns" in html
    # sent and stored as expanded, so the model and %acytoo history see the summary
    assert "pandas.DataFrame: 6 rows" in k.execute("%acytoo history --full -c ctx").shown
    # a reopened widget shows it the same way: it comes from the store
    same = (
        "w2 = ChatWidget('ctx')\nawait w2.wait()\n"
        "print(w2.transcript.entries[0] == w.transcript.entries[0])"
    )
    assert run(k, same) == "True"


def test_a_long_thread_loads_its_newest_messages_and_more_on_request(k):
    run(
        k,
        "c = ChatWidget('t').assistant.conversation('long')\n"
        "for i in range(30):\n    c.record(f'question {i}', f'answer {i}')\n"
        "w = ChatWidget('long', window=10)\nawait w.wait()",
    )
    assert run(k, "print(len(w.transcript.entries), w.transcript.more)") == "10 True"
    assert "answer 29" in run(k, "print(w.transcript.entries[-1])")
    assert "question 25" in run(k, "print(w.transcript.entries[0])")
    earlier = "w.transcript._handle_message(w.transcript, {'event': 'earlier'}, [])\nawait w.wait()\n"
    assert run(k, earlier + "print(len(w.transcript.entries), w.transcript.more)") == "20 True"
    assert run(k, earlier * 4 + "print(len(w.transcript.entries), w.transcript.more)") == "60 False"


def test_an_answer_sends_the_page_only_the_new_messages(k):
    run(
        k,
        "c = ChatWidget('t').assistant.conversation('sent')\n"
        "for i in range(30):\n    c.record(f'old question {i}', f'old answer {i}')\n"
        "w = ChatWidget('sent', window=10)\nawait w.wait()\n"
        "sent = []\nw.transcript.send = lambda content, buffers=None: sent.append(content)\n"
        "w.send('[[echo chunk=3 delay=0.01]]second answer')\nr = await w.wait()\n"
        "c.record('from elsewhere', 'a cell, say')\nw.refresh()\nawait w.wait()",
    )
    sent = json.loads(run(k, "import json\nprint(json.dumps(sent))"))
    splices = [m for m in sent if m["op"] == "splice"]
    frames = [m for m in sent if m["op"] in ("live", "grow")]
    assert splices and len(frames) >= 2
    # the question, the answer, then the other exchange: appended, nothing shown before re-sent
    appended = [(m["start"], m["remove"], len(m["entries"])) for m in splices]
    assert appended == [(10, 0, 1), (11, 0, 1), (12, 0, 2)]
    assert splices[1]["entries"] == [None]  # the answer: the page moves what it streamed, parses nothing
    assert not any("old" in entry for m in splices for entry in m["entries"] if entry is not None)
    assert all("old" not in json.dumps(m) for m in frames)
    assert run(k, "print(len(w.transcript.entries), w.transcript.more)") == "14 True"


def test_history_reads_never_hold_up_the_kernel(k, history_db):
    """The file is locked by another process while the widget opens: the cell returns at once
    (it used to wait on the loop for the lock, 30 s while the file is set up); the transcript
    shows once the lock is gone."""
    run(k, "%acytoo history")  # creates the file and its table
    run(k, "from acytoo_magic.core.assistant import Assistant\nlocal = Assistant()")  # a store not yet opened
    other = sqlite3.connect(history_db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO messages (notebook, thread, role, content, created)"
                      " VALUES ('chat.ipynb', 'locked', 'user', 'written meanwhile', 0)")
        out = run(k, "w = ChatWidget('locked', assistant=local)\nprint(repr(w.transcript.html), 6 * 7)")
        assert out == "'' 42"  # returned while the lock is still held
    finally:
        other.execute("COMMIT")
        other.close()
    assert "written meanwhile" in run(k, "await w.wait()\nprint(w.transcript.html)")


def test_reopening_and_restarting_show_the_earlier_transcript(k):
    run(k, "w = ChatWidget('keep')\nw.send('remember me')\nr = await w.wait()")
    assert "remember me" in run(k, "w2 = ChatWidget('keep')\nawait w2.wait()\nprint(w2.transcript.html)")
    k.restart()
    run(k, "from acytoo_magic import ChatWidget")  # loads the extension itself
    assert "remember me" in run(k, "w = ChatWidget('keep')\nawait w.wait()\nprint(w.transcript.html)")


def test_switching_threads_reloads_the_transcript(k):
    run(k, "a = ChatWidget('a')\na.send('in a')\nr = await a.wait()")
    assert run(k, "w = ChatWidget('b')\nawait w.wait()\nprint('in a' in w.transcript.html)") == "False"
    out = run(k, "w.thread_picker.value = 'a'\nawait w.wait()\nprint('in a' in w.transcript.html, w.thread)")
    assert out == "True a"


def test_two_widgets_stream_concurrently_without_mixing(gated):
    k = gated
    run(
        k,
        "import asyncio\none, two = ChatWidget('one'), ChatWidget('two')\n"
        "one.send('A' * 120)\ntwo.send('B' * 120)\n"
        "while not all(x.renderer.last_frame and x.renderer.last_frame.text for x in (one, two)):\n"
        "    await asyncio.sleep(0.02)",
    )
    assert run(k, "print(one.streaming and two.streaming)") == "True"  # both hold at the gate
    out = run(
        k,
        "gated.release()\nr1, r2 = await one.wait(), await two.wait()\n"
        "print(r1.answer == 'A' * 120, r2.answer == 'B' * 120)",
    )
    assert out == "True True"
    assert run(k, "print('B' in one.transcript.html, 'AAA' in two.transcript.html)") == "False False"


def test_html_in_answers_is_escaped(k):
    run(
        k,
        "w = ChatWidget('x')\n"
        "w.send('[[echo]]<script>alert(1)</script> <img src=x onerror=alert(2)> **ok**')",
    )
    html = run(k, "r = await w.wait()\nprint(w.transcript.html)")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<strong>ok</strong>" in html


def test_chat_subcommand_displays_a_widget_and_a_saved_copy(k):
    out = k.execute("%acytoo chat -c side")
    assert out.status == "ok"
    static, live = [c for c in out.of_type("display_data")]
    assert "application/vnd.jupyter.widget-view+json" in live["data"]
    assert live["data"]["text/plain"] == ""  # the copy says it: where the widget cannot show, once
    assert "acytoo-chat-static" in static["data"]["text/html"]
    # the hint works in a new kernel: the extension first, then the chat, in a new cell
    hint = "<code>%load_ext acytoo_magic</code> then <code>%acytoo chat -c side</code>"
    assert hint in static["data"]["text/html"]
    assert static["data"]["text/plain"] == (
        "chat on thread side, saved with the notebook; to continue it, run"
        " `%load_ext acytoo_magic` then `%acytoo chat -c side` in a new cell"
    )


def test_the_saved_copy_follows_the_transcript(k):
    out = k.execute(
        "chat = ChatWidget('copy')\ndisplay(chat)\n"
        "chat.send('[[echo]]<img src=x onerror=alert(1)> *kept*')\nr = await chat.wait()"
    )
    assert out.status == "ok", out.error
    first = out.of_type("display_data")[0]
    display_id = first["transient"]["display_id"]
    updates = [u for u in out.display_updates if u["transient"]["display_id"] == display_id]
    html = updates[-1]["data"]["text/html"]
    assert "<em>kept</em>" in html and "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
    assert updates[-1]["data"]["text/plain"].startswith("chat on thread copy,")
    # The copy is re-sent whole and re-rendered by the page: once per exchange, when it has ended
    # (it was twice: the question, then the answer).
    assert len(updates) == 1


def test_indicator_follows_the_settings_and_a_bad_provider_is_one_line(k):
    run(k, "w = ChatWidget('ind')")
    assert "acytoo · gpt-3.5-turbo" in run(k, "print(w.indicator.value)")
    run(k, "%config AcytooMagics.model = 'other-model'\nw.send('hi')\nr = await w.wait()")
    assert "acytoo · other-model" in run(k, "print(w.indicator.value)")
    run(k, "%config AcytooMagics.provider = 'nope'\nw2 = ChatWidget('ind')\nw2.send('hi')")
    assert "unknown provider &#x27;nope&#x27;" in run(k, "print(w2.error_area.value)")
    assert run(k, "print(w2.input.value)") == "hi"
