"""What a new user reads on screen from the magic, read from a real kernel's iopub messages."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from kernels import is_waiting

from acytoo_magic.core.errors import AcytooError
from acytoo_magic.core.outbound import unlinkable

pytestmark = pytest.mark.notebook

NOTEBOOK = "first_hour.ipynb"  # the notebook the kernel belongs to (conftest's k fixture)

# JupyterLab's text autolinker (packages/rendermime/src/renderers.ts, ILinker.webLinkRegex): what it
# turns into a live <a href> inside text/plain and stream output.
LAB_WEB_LINK = re.compile(
    r"(?:[a-zA-Z][a-zA-Z0-9+.-]{2,40}://|data:|www\.)"
    r"[^\s\x00-\x20\x7f-\x9f\"]{2,}[^\s\x00-\x20\x7f-\x9f\"'(){}\[\],:;.!?]"
)
UNSAFE_REPLY = (
    "links-check: data:text/html,<b>x</b> and DATA:image/svg+xml,<svg/onload=alert(1)> and"
    " javascript://%0Aalert(2) and [js](javascript:alert(3)) and <vbscript:msgbox(4)> and"
    " vbscript://%0Amsgbox(5) and [ok](https://example.org/ok)"
)
SAFE_LINK = re.compile(r"(?i)(https?://|www\.)")


def hrefs(html: str) -> list[str]:
    """Every href in ``html``, as a browser's parser reads it."""
    found: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(value or "" for name, value in attrs if name == "href")

    Links().feed(html)
    return found


def displayed(execution) -> list[dict[str, str]]:
    return [c["data"] for c in execution.of_type("display_data")]


# -- 5: the status line, the waiting line, an interrupt ----------------------------------------


def test_the_status_line_labels_tokens_and_counts_no_chunks(k, server):
    out = k.execute(f"%%acytoo -p openai --url {server.url}/v1 -m tiny\n[[echo]]one two three")
    status = out.final_display["text/plain"].rsplit("\n— ", 1)[1]
    # the scripted server reports usage (its tokens are words): exact counts, no "≈"
    assert re.fullmatch(r"openai · tiny · 13 characters in \d+\.\d s · \d+ tokens in, 3 out", status), status
    assert "chunk" not in out.final_display["text/html"]


def test_the_waiting_line_is_text_not_an_emoji(k):
    out = k.execute("%%acytoo --no-history\n[[stall=1]] slow server")
    frames = out.of_type("display_data", "update_display_data")
    waiting = [f["data"] for f in frames if is_waiting(f["data"]["text/plain"])]
    assert waiting and waiting[0]["text/plain"].startswith("… contacting acytoo (127.0.0.1:")
    assert "<em>… contacting acytoo (127.0.0.1:" in waiting[0]["text/html"]
    assert not any("⏳" in text for f in frames for text in f["data"].values())


def test_an_interrupt_is_said_once_calmly_and_run_all_stops_there(k):
    queued: list[str] = []

    def interrupt_with_a_cell_queued(msg):
        text = msg["content"].get("data", {}).get("text/plain", "")
        if msg["msg_type"] == "update_display_data" and text and not is_waiting(text) and not queued:
            queued.append(k.kc.execute("print('the next cell ran')"))  # Run All: queued behind
            k.km.interrupt_kernel()

    out = k.execute("%%acytoo\n[[size=400000 chunk=64 delay=0.005]]", on_message=interrupt_with_a_cell_queued)
    assert queued, "the stream never showed text"
    final = out.final_display
    said = [final["text/plain"], final["text/html"], *out.error["traceback"]]
    assert sum(part.count("nterrupted") for part in said) == 1  # the error's one line, nothing else
    assert out.error["traceback"] == ["Interrupted: the answer above stops here; what came so far is kept."]
    assert out.status == "error" and out.error["ename"] == "AcytooInterrupted"  # so Run All stops
    while (reply := k.kc.get_shell_msg(timeout=60))["parent_header"].get("msg_id") != queued[0]:
        pass
    assert reply["content"]["status"] == "aborted"
    (_user, assistant) = k.history()
    assert assistant["status"] == "interrupted" and final["text/plain"].startswith(assistant["content"])


# -- 6: -f code ----------------------------------------------------------------------------------


def next_inputs(execution) -> list[str]:
    return [p["text"] for p in execution.payload if p["source"] == "set_next_input"]


def test_format_code_says_where_the_code_went_and_a_re_run_adds_no_copy(k):
    cell = "%%acytoo -f code\n[[echo]]Here:\n```python\nimport math\nprint(math.pi)\n```\nDone."
    first = k.execute(cell, cell_id="ask")
    assert next_inputs(first) == ["import math\nprint(math.pi)"]
    assert first.stdout == "acytoo: the answer's code (2 lines) is in a new cell below\n" and not first.stderr

    again = k.execute(cell, cell_id="ask")  # the same code again: no second identical cell
    assert next_inputs(again) == []
    assert (
        again.stdout
        == "acytoo: the answer's code (2 lines) is the same as last run's, already in the cell below\n"
    )

    changed = k.execute(cell.replace("math.pi", "math.e"), cell_id="ask")
    assert next_inputs(changed) == ["import math\nprint(math.e)"]
    assert "changed: a new cell below has it" in changed.stdout

    other = k.execute(cell, cell_id="another")  # another cell asking the same gets its own copy
    assert next_inputs(other) == ["import math\nprint(math.pi)"]


# -- 7: help, and the history listing ------------------------------------------------------------


def test_help_has_an_offline_example_and_names_each_command_once(k):
    shown = k.execute("%acytoo help").stdout
    assert "%%acytoo -p local" in shown and "offline" in shown
    assert "e.g." not in shown
    for line in shown.splitlines():
        assert line.count("%acytoo ") <= 1, line


def test_history_is_one_line_an_exchange_and_full_on_request(k):
    for ask in ("[[echo]]first question", "[[size=5000]]", "[[echo]]third\nwith a second line"):
        assert k.execute(f"%%acytoo\n{ask}").status == "ok"
    long_answer = k.history()[3]["content"]
    assert len(long_answer) == 5000

    compact = k.execute("%acytoo history")
    assert compact.stdout == ""  # one display, text and HTML
    (bundle,) = displayed(compact)
    head, *rows = bundle["text/plain"].splitlines()
    assert head.startswith("thread 'default': 3 exchanges, oldest first (%acytoo history --full")
    assert len(rows) == 3 and all(len(row) < 200 for row in rows), rows
    assert re.fullmatch(r"  cell In \[\d+\]  \[\[echo\]\]first question → first question", rows[0]), rows[0]
    assert rows[2].endswith("[[echo]]third … → third …")  # first lines, marked as cut
    assert bundle["text/html"].count("<tr>") == 1 + 3  # the header row and one row an exchange
    assert long_answer not in bundle["text/html"]

    (full,) = displayed(k.execute("%acytoo history --full"))
    assert long_answer in full["text/plain"] and full["text/plain"].count("--- assistant") == 3


def test_config_says_once_where_history_lives_and_how_to_move_or_clear_it(k, history_db):
    shown = k.execute("%acytoo config").stdout
    assert shown.count(str(history_db)) == 1
    assert "%config Assistant.history_path" in shown and "ACYTOO_HISTORY_DB" in shown
    assert "%acytoo reset" in shown


# -- 19.6: a listing goes through the rendering policy -------------------------------------------


def test_the_plain_form_leaves_lab_s_autolinker_nothing_unsafe_to_link():
    unsafe = [url for url in LAB_WEB_LINK.findall(UNSAFE_REPLY) if not SAFE_LINK.match(url)]
    assert len(unsafe) >= 3, unsafe  # the control: raw reply text would give live data:/javascript: links
    linked = LAB_WEB_LINK.findall(unlinkable(UNSAFE_REPLY))
    assert linked == ["https://example.org/ok"]
    assert "data[:]text/html,<b>x</b>" in unlinkable(UNSAFE_REPLY)  # still readable


def test_history_of_unsafe_links_links_only_http_in_every_form(k):
    assert k.execute(f"%%acytoo\n[[echo]]{UNSAFE_REPLY}").status == "ok"
    for command in ("%acytoo history", "%acytoo history --full"):
        (bundle,) = displayed(k.execute(command))
        links = hrefs(bundle["text/html"])
        assert all(SAFE_LINK.match(link) for link in links), (command, links)
        lab_links = LAB_WEB_LINK.findall(bundle["text/plain"])
        assert all(SAFE_LINK.match(link) for link in lab_links), (command, lab_links)
        if command.endswith("--full"):
            assert links == ["https://example.org/ok"]  # the control: a safe link stays a link
            assert "[js](javascript:alert(3))" in bundle["text/html"]  # the unsafe one shows as text


def test_other_text_showing_reply_text_links_only_http(k):
    """``-f text`` shows as text/plain, which JupyterLab autolinks; so does an error line quoting a server."""
    out = k.execute(f"%%acytoo -f text\n[[echo]]{UNSAFE_REPLY}")
    assert list(out.final_display) == ["text/plain"]
    assert LAB_WEB_LINK.findall(out.final_display["text/plain"]) == ["https://example.org/ok"]
    (line,) = AcytooError(f"HTTP 500: the server said {UNSAFE_REPLY}")._render_traceback_()
    assert LAB_WEB_LINK.findall(line) == ["https://example.org/ok"]
