"""%%acytoo in real ipykernels against the local protocol server, as a notebook user runs it."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from kernels import is_waiting, kernel

pytestmark = pytest.mark.notebook



NOTEBOOK = "analysis.ipynb"  # the notebook the kernel belongs to (conftest's k fixture)


def text_of(execution) -> str:
    """The answer as shown, without the status line under it."""
    return execution.final_display["text/plain"].rsplit("\n— ", 1)[0]


def status_of(execution) -> str:
    return execution.final_display["text/plain"].rsplit("\n— ", 1)[1]


def test_second_cell_proves_the_first_exchange_was_sent(k, server):
    first = k.execute("%%acytoo\nWhat is a DataFrame?")
    assert first.status == "ok"
    assert 'You said: "What is a DataFrame?"' in text_of(first)
    assert "text/html" in first.final_display
    second = k.execute("%%acytoo\nAnd a Series?")
    assert 'Before that you said: "What is a DataFrame?"' in text_of(second)
    sent = server.requests[-1]["json"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[2]["content"] == text_of(first)


def test_thread_survives_a_kernel_restart(k):
    k.execute("%%acytoo\nremember the number 42")
    k.restart()
    assert k.execute("%load_ext acytoo_magic").status == "ok"
    after = k.execute("%%acytoo\nwhat number?")
    assert 'Before that you said: "remember the number 42"' in text_of(after)


def test_two_notebooks_have_separate_histories(server, history_db):
    base = {"ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(history_db)}
    with kernel(**base, JPY_SESSION_NAME="a.ipynb") as a, kernel(**base, JPY_SESSION_NAME="b.ipynb") as b:
        for running in (a, b):
            running.execute("%load_ext acytoo_magic")
        a.execute("%%acytoo\nsecret of notebook a")
        reply_b = b.execute("%%acytoo\nhello from b")
        assert "1 from you" in text_of(reply_b)
        assert all(
            "secret of notebook a" not in m["content"] for m in server.requests[-1]["json"]["messages"]
        )
        assert b.history()[0]["content"] == "hello from b"


def test_no_history_sends_only_the_prompt_and_records_nothing(k, server):
    k.execute("%%acytoo\nfirst")
    out = k.execute("%%acytoo --no-history -s 'be terse'\nalone")
    assert "1 from you" in text_of(out)
    assert server.requests[-1]["json"]["messages"] == [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "alone"},
    ]
    assert [m["content"] for m in k.history() if m["role"] == "user"] == ["first"]


def test_output_variable_and_options_reach_the_request(k, server):
    out = k.execute("%%acytoo -o answer -m my-model -t 0.1 -c side\n[[echo]]kept text")
    assert out.status == "ok"
    assert k.execute("print(repr(answer))").stdout.strip() == "'kept text'"
    body = server.requests[-1]["json"]
    assert (body["model"], body["temperature"]) == ("my-model", 0.1)
    assert [m["content"] for m in k.history("side")] == ["[[echo]]kept text", "kept text"]


def test_format_code_creates_the_next_cell(k):
    out = k.execute(
        "%%acytoo -f code\n[[echo]]Here:\n```python\nimport pandas as pd\nprint(pd.__name__)\n```\nDone."
    )
    (payload,) = [p for p in out.payload if p["source"] == "set_next_input"]
    assert payload["text"] == "import pandas as pd\nprint(pd.__name__)"
    none = k.execute("%%acytoo -f code\n[[echo]]no code here")
    assert none.status == "ok" and "no fenced code block" in none.stdout
    assert not [p for p in none.payload if p["source"] == "set_next_input"]


def test_http_500_is_one_line_and_records_nothing(k):
    out = k.execute("%%acytoo\n[[fault=500]] fails")
    assert out.status == "error"
    assert out.error["ename"] == "AcytooError"
    (line,) = out.error["traceback"]
    assert "HTTP 500" in line and "Traceback" not in line
    assert k.history() == []
    assert k.execute("%%acytoo\nworks again").status == "ok"


def test_dropped_stream_keeps_the_partial_text_marked(k):
    out = k.execute("%%acytoo\n[[fault=drop]] a message long enough to be cut in half")
    assert out.status == "error"
    shown = out.final_display
    assert shown["text/plain"].startswith('You said: "a message long')
    assert "partial: connection dropped" in shown["text/html"]
    (_user, assistant) = k.history()
    assert assistant["status"] == "partial" and shown["text/plain"].startswith(assistant["content"])


def test_interrupt_cancels_the_stream_and_the_next_cell_works(k):
    k.execute(
        "import logging, warnings\n"
        "caught = []\n"
        "class Catch(logging.Handler):\n"
        "    def emit(self, record): caught.append(record.getMessage())\n"
        "logging.getLogger('asyncio').addHandler(Catch())\n"
        "warnings.simplefilter('always', ResourceWarning)\n"
        "warnings.showwarning = lambda message, *a, **k: caught.append(str(message))\n"
    )
    out, interrupted = k.execute_interrupted("%%acytoo\n[[size=400000 chunk=64 delay=0.005]]")
    assert interrupted, "the stream never showed text"
    assert out.status == "error" and out.error["ename"] == "AcytooInterrupted"
    final = out.final_display
    assert out.error["traceback"] == ["Interrupted: the answer above stops here; what came so far is kept."]
    assert 0 < len(final["text/plain"]) < 400_000
    (_user, assistant) = k.history()
    assert assistant["status"] == "interrupted" and len(assistant["content"]) < 400_000
    after = k.execute("%%acytoo\nstill alive?")
    assert after.status == "ok" and 'You said: "still alive?"' in text_of(after)
    leftovers = k.execute("import gc; gc.collect(); print(caught)")
    assert leftovers.stdout.strip() == "[]"
    tasks = k.execute(
        "import asyncio\n"
        "print(sum('acytoo_magic' in t.get_coro().cr_code.co_filename for t in asyncio.all_tasks()))"
    )
    assert tasks.stdout.strip() == "0"


MANY_CHUNKS = """
import asyncio, json, time, acytoo_magic
from acytoo_magic.magic.output import DisplayRenderer

class Many:  # 2,000 chunks, as many as were sent: no TCP coalescing decides the count
    @staticmethod
    async def create_async_generator(model, messages, proxy=None, **kwargs):
        for _ in range(2000):
            yield "word " * 4
            await asyncio.sleep(0.001)

class Timed(DisplayRenderer):  # when each draw began, on the clock the throttle reads
    def __init__(self, *args, **kwargs):
        self.drawn = []
        super().__init__(*args, **kwargs)

    def _update(self, frame):
        self.drawn.append((time.monotonic(), frame.waiting, frame.final))
        super()._update(frame)

a = acytoo_magic._magics.assistant
r = Timed("markdown", a.render_interval)
reply = await a.ask("q", provider=Many, renderer=r, history=False)
print(json.dumps([reply.chunks, r.interval, r.draws, len(r.segments), r.drawn]))
"""


def test_display_updates_are_bounded_by_time_not_chunks(k):
    """Draws are spaced by the throttle's interval on its own clock, however many chunks arrive:
    after the first text draw and the quick second one (``FIRST_GAP``), no two draws of text are
    closer than the interval; only the final draw (always made) may come sooner."""
    out = k.execute(MANY_CHUNKS)
    assert out.status == "ok", out.error
    chunks, interval, draws, segments, drawn = json.loads(out.stdout)
    assert chunks == 2_000 and draws == len(drawn)
    text = [at for at, waiting, final in drawn if not waiting and not final]
    gaps = [later - earlier for earlier, later in itertools.pairwise(text[1:])]
    assert gaps and min(gaps) >= interval - 1e-3, (interval, gaps)
    assert drawn[-1][2] and sum(final for _, _, final in drawn) == 1  # one final draw, the last
    # each draw sends one display message; a draw that closes a segment sends one more
    assert len(out.of_type("display_data", "update_display_data")) <= draws + segments


def test_bad_options_and_subcommands_are_one_line(k):
    for code in ("%%acytoo --bogus\nx", "%acytoo frobnicate", "%acytoo reset --nope", "%%acytoo -p nope\nx"):
        out = k.execute(code)
        assert out.status == "error"
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("UsageError"), out.stderr


def test_line_subcommands(k, tmp_path):
    k.execute("%%acytoo\nq1")
    k.execute("%%acytoo -c other\n[[fault=drop]] q2 is a long one to cut")
    assert "default: 2 messages" in k.execute("%acytoo threads").stdout
    assert "[partial]" in k.execute("%acytoo history -c other").shown
    assert "acytoo" in k.execute("%acytoo providers").stdout
    md, js = tmp_path / "t.md", tmp_path / "t.json"
    assert "wrote 2 messages" in k.execute(f"%acytoo export {md}").stdout
    k.execute(f"%acytoo export -c other {js}")
    assert "## user\n\nq1" in md.read_text()
    assert json.loads(js.read_text())[1]["status"] == "partial"
    assert "removed 2 messages" in k.execute("%acytoo reset -c other").stdout
    assert "removed 2 messages from all threads" in k.execute("%acytoo reset --all").stdout


def test_config_masks_secrets(k):
    k.execute("%config Assistant.api_key = 'sk-live-abcdef'\n")
    k.execute("%config Assistant.proxy = 'http://bob:hunter22@proxy.local:3128'")
    shown = k.execute("%acytoo config").stdout
    assert "sk-live-abcdef" not in shown and "hunter22" not in shown
    assert "*** (set)" in shown and "http://***@proxy.local:3128" in shown
    assert "render_interval" in shown and "analysis.ipynb" in shown


def test_requests_queued_during_a_stream_are_all_answered(k):
    """Run All sends every cell at once; none may be lost while an answer streams.

    (Nesting the kernel's loop with nest_asyncio lost the second request under ipykernel 7.)
    """
    first = k.kc.execute("%%acytoo --no-history\n[[size=2000 chunk=20 delay=0.01]]")
    second = k.kc.execute("print('second ran')")
    replies = {}
    while len(replies) < 2:
        reply = k.kc.get_shell_msg(timeout=30)
        replies[reply["parent_header"]["msg_id"]] = reply["content"]["status"]
    assert replies == {first: "ok", second: "ok"}


def test_magic_called_from_code_streams_into_its_cell(k):
    """Not a top-level call, so it cannot be awaited: it runs on the runner's worker loop."""
    out = k.execute(
        "def ask():\n    get_ipython().run_cell_magic('acytoo', '-o got', 'from a function')\nask()"
    )
    assert out.status == "ok"
    assert 'You said: "from a function"' in out.final_display["text/plain"]
    assert 'You said: "from a function"' in k.execute("print(got)").stdout


def test_status_line_figures_match_what_the_server_sent(k, server):
    out = k.execute("%%acytoo -m tiny-model\n[[size=5000 chunk=50 delay=0.001]]")
    status = status_of(out)
    expected = r"acytoo · tiny-model · 5,000 characters in \d+\.\d s · ≈[\d,]+ tokens in, ≈1,250 out"
    assert re.fullmatch(expected, status), status
    # the Acytoo protocol reports no usage: an estimate of 4 characters a token, marked as one
    assert "<sub>acytoo · tiny-model" in out.final_display["text/html"]
    k.execute("%config Assistant.show_status = False")
    quiet = k.execute("%%acytoo\n[[echo]]no status")
    assert quiet.final_display["text/plain"] == "no status"
    assert "<sub>" not in quiet.final_display["text/html"]


def test_waiting_indicator_shows_until_the_first_chunk(k, standin):
    """The stand-in sends nothing until the waiting line has counted past half a second."""

    def release_after_half_a_second(msg) -> None:
        text = msg["content"].get("data", {}).get("text/plain", "")
        if is_waiting(text) and float(text.split()[-2]) >= 0.5:
            standin.release()

    k.execute(f"%config Assistant.url = {standin.url!r}")
    out = k.execute("%%acytoo --no-history\n[[hold=0]] slow server", on_message=release_after_half_a_second)
    assert out.status == "ok"  # released by the waiting line, not ended by the read timeout
    shown = [
        m["content"]["data"]["text/plain"] for m in out.messages if m["msg_type"].endswith("display_data")
    ]
    waiting = [text for text in shown if is_waiting(text)]
    assert waiting and waiting[0].startswith("… contacting acytoo (127.0.0.1:")
    seconds = [float(text.split()[-2]) for text in waiting]
    assert seconds == sorted(seconds) and seconds[-1] >= 0.5  # elapsed seconds, updated while waiting
    first_text = next(i for i, text in enumerate(shown) if not is_waiting(text))
    assert all(is_waiting(text) for text in shown[:first_text])
    assert not any(is_waiting(text) for text in shown[first_text:])  # gone once text arrives


def test_retry_is_announced_while_waiting(k):
    out = k.execute("%%acytoo --no-history\n[[fault=429 times=1 retry_after=1]] retried")
    shown = [
        m["content"]["data"]["text/plain"] for m in out.messages if m["msg_type"].endswith("display_data")
    ]
    assert any("rate limited, retrying in 1 s" in text for text in shown)
    assert 'You said: "retried"' in text_of(out)


def test_help_lists_every_subcommand_and_option(k):
    table = k.execute(
        "import acytoo_magic\nprint(' '.join(acytoo_magic._magics.subcommands()))\n"
        "print(' '.join(a.option_strings[-1] for a in acytoo_magic._magics.acytoo.parser._actions"
        " if a.option_strings and a.dest != 'help'))"
    ).stdout.split("\n")
    subcommands, options = table[0].split(), table[1].split()
    assert {"history", "reset", "threads", "providers", "config", "export", "explain", "chat"} <= set(
        subcommands
    )
    for code in ("%acytoo", "%acytoo help"):
        shown = k.execute(code).stdout
        for name in subcommands:
            assert f"%acytoo {name}" in shown, name
        for option in options:
            assert option in shown, option
        assert "%%acytoo -p local" in shown  # an offline example
    doc = k.execute("%%acytoo?")
    assert any("--no-history" in p.get("data", {}).get("text/plain", "") for p in doc.payload)
