"""From a real kernel against the scripted server: `-f code` and a cut answer, what history and the
chat show of a `{df}` question, and what `%acytoo explain` sends."""

from __future__ import annotations

import pytest

from acytoo_magic.core.outcome import INTERRUPTED, PARTIAL
from acytoo_magic.core.request import Reply
from acytoo_magic.magic.codeblocks import code_blocks
from acytoo_magic.magic.magics import cut_short

pytestmark = pytest.mark.notebook

NOTEBOOK = "cut_and_typed.ipynb"


def placed(out) -> list[str]:
    return [p["text"] for p in out.payload if p["source"] == "set_next_input"]


@pytest.mark.parametrize(
    "reply,why",
    [
        (
            "Here:\n```python\nsales = {\n    'north': 1200,\n    'south': 3400,\n",
            "its code block is not closed",
        ),
        (
            "Here:\n```python\ndf = df.assign(total=(df.sales\n```\nDone.",
            "its code stops inside an open bracket",
        ),
        ('```python\ntext = """unfinished\n```', "its code stops inside an open bracket, string or block"),
    ],
)
def test_format_code_refuses_code_that_is_cut_and_says_why_in_one_line(k, reply, why):
    out = k.execute(f"%%acytoo -f code\n[[echo]]{reply}")
    assert out.status == "ok", out.error
    assert placed(out) == []
    (line,) = out.stdout.strip().splitlines()
    assert line.startswith("acytoo: no cell was added: the answer was cut (") and why in line
    assert line.endswith("-f code --cut-code places it anyway")


def test_cut_code_places_it_anyway_under_a_comment_that_says_so(k):
    out = k.execute("%%acytoo -f code --cut-code\n[[echo]]```python\nd = {'a': 1,\n")
    (code,) = placed(out)
    assert (
        code == "# acytoo: from a cut answer (its code block is not closed): may be incomplete\nd = {'a': 1,"
    )
    assert "is in a new cell below" in out.stdout


def test_an_answer_broken_off_places_no_code_even_if_its_block_looks_whole(k):
    # the server drops the connection halfway: what came is kept (partial), its code is not placed
    text = "```python\nprint('one')\n```\n" + "more words " * 40
    out = k.execute(f"%%acytoo -f code\n[[fault=drop echo]]{text}")
    assert out.status == "error" and "connection dropped" in out.error["evalue"]
    assert placed(out) == []
    assert "no cell was added: the answer was cut (partial: " in out.stdout


def test_whole_code_is_placed_as_before(k):
    out = k.execute(
        "%%acytoo -f code\n[[echo]]Here:\n```python\nfor x in range(3):\n    print(x)\n```\nDone."
    )
    assert placed(out) == ["for x in range(3):\n    print(x)"] and "cut" not in out.stdout


def test_how_an_answer_was_cut_is_said_from_its_ending():
    assert cut_short(Reply()) == ""
    assert cut_short(Reply(finish_reason="stop")) == ""
    length = Reply(
        finish_reason="length",
        finish_note="stopped at the 256-token limit (raise it: Local.max_tokens = 512)",
    )
    assert cut_short(length) == "stopped at the 256-token limit"
    assert cut_short(Reply(finish_reason="length")) == "stopped at the token limit"
    looping = Reply(finish_reason="repetition", finish_note="stopped: the model began repeating itself")
    assert cut_short(looping) == "stopped: the model began repeating itself"
    assert cut_short(Reply(outcome=INTERRUPTED)) == "interrupted"
    assert cut_short(Reply(outcome=PARTIAL)).startswith("partial")


def test_code_blocks_know_whether_their_fence_was_closed():
    blocks = code_blocks("> ```py\n> x = 1\n> ```\n\n- item\n\n  ~~~\n  y = (\n  ~~~\n\n```\nopen")
    assert [(b.language, b.closed) for b in blocks] == [("py", True), ("", True), ("", False)]
    assert [b.incomplete() for b in blocks] == [
        "",
        "its code stops inside an open bracket, string or block",
        "its code block is not closed",
    ]
    assert code_blocks("```bash\necho (\n```")[0].incomplete() == ""  # not Python: not judged


FRAME = "import pandas as pd\ndf = pd.DataFrame({'region': ['North', 'South'], 'sales': [1.0, None]})"


def test_history_and_the_chat_show_a_cell_question_as_typed(k):
    assert k.execute(FRAME).status == "ok"
    out = k.execute("%%acytoo -c typed\n[[echo]]Which region sells most in {df}?", cell_id="cell-7")
    assert out.status == "ok", out.error
    stored = k.history("typed")[0]
    assert stored["content"].startswith(
        "[[echo]]Which region sells most in pandas.DataFrame: 2 rows"
    )  # as sent
    assert stored["meta"]["typed"] == "[[echo]]Which region sells most in {df}?"
    assert stored["meta"]["context"] == ["df, 2 × 2"]
    (row,) = [line for line in k.execute("%acytoo history -c typed").shown.splitlines() if "→" in line]
    asked = row.split("→")[0]  # the echoed answer after the arrow carries the summary, as sent
    assert asked.strip().endswith("[[echo]]Which region sells most in {df}?") and "pandas" not in asked
    full = k.execute("%acytoo history -c typed --full")
    assert "(sent with its context expanded: " in full.stdout + full.shown
    html = k.execute(
        "from acytoo_magic import ChatWidget\nw = ChatWidget('typed')\nawait w.wait()\n"
        "print(w.transcript.entries[0])"
    ).stdout
    assert (
        "from cell [" in html
        and '<div class="acytoo-typed">[[echo]]Which region sells most in {df}?</div>' in html
    )
    assert "<summary>context: df, 2 × 2 · " in html and "<details " in html and " open" not in html


def test_explain_sends_the_error_its_cell_and_its_data_not_the_thread(k, server):
    assert k.execute(FRAME).status == "ok"
    k.execute("%%acytoo\n[[echo]]an earlier answer with fill_na_df in it")
    failed = k.execute("df.groupby('region')['revenue'].sum()")
    assert failed.status == "error"
    out = k.execute("%acytoo explain")
    assert out.status == "ok", out.error
    sent = server.requests[-1]["json"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]  # the question alone
    question = sent[-1]["content"]
    assert "df.groupby('region')['revenue'].sum()" in question and "KeyError" in question
    assert "`df` is:\n```\npandas.DataFrame: 2 rows × 2 columns" in question and "fill_na_df" not in question
    history = k.history()
    assert history[-2]["meta"]["typed"] == "%acytoo explain" and history[-2]["content"] == question
    # --thread sends the thread's earlier exchanges with it
    assert k.execute("%acytoo explain --thread").status == "ok"
    sent = server.requests[-1]["json"]["messages"]
    assert len(sent) > 2 and any("fill_na_df" in m["content"] for m in sent)
