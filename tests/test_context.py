"""Prompt expansion and summaries (unit level), and what reaches the server from a real kernel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kernels import kernel

from acytoo_magic.core.context import ContextError, ErrorLog, NotebookContext, summarize
from acytoo_magic.magic.codeblocks import extract_code, fenced_blocks


def raise_in_function():
    return {}["missing_key"]


def test_dataframe_summary_is_compact_and_complete():
    df = pd.DataFrame({"city": ["a", "b", None] * 400, "sales": np.arange(1200, dtype=float)})
    df.loc[3, "sales"] = np.nan
    text = summarize(df, limit=5_000)
    assert "pandas.DataFrame: 1,200 rows × 2 columns" in text
    assert "city: object, 400 null" in text or "city: str, 400 null" in text
    assert "sales: float64, 1 null" in text
    assert "head(5):" in text and "tail(5):" in text and "describe():" in text and "mean" in text
    assert any(f"city: {kind}, 400 null, 2 distinct: a 400, b 400" in text for kind in ("str", "object"))
    assert "1199.0" in text.split("tail(5):")[1]  # the last row, which head() never shows
    assert len(text) < 2_000


SALES = pd.DataFrame(
    {
        "region": ["North", "South", "South", "West", "North", "West", "South", "East"],
        "sales": [1200.0, 3400.0, 2900.0, None, 1800.0, 2500.0, 3100.0, 900.0],
    }
)


def test_a_small_frame_is_shown_whole_so_a_question_about_all_its_rows_can_be_answered():
    text = summarize(SALES)
    title, dtypes, nulls, *table = text.splitlines()
    assert title == "pandas.DataFrame: 8 rows × 2 columns"
    assert dtypes in ("dtypes: region str, sales float64", "dtypes: region object, sales float64")
    assert nulls == "nulls: sales 1"
    assert len(table) == 9 and table[-1].split() == ["7", "East", "900.0"]  # header + every row
    assert "describe()" not in text and "head(" not in text
    assert "nulls: none" in summarize(SALES.dropna())


def test_a_larger_frame_gets_head_tail_nulls_and_distinct_values_within_the_budget():
    rng = np.random.default_rng(0)
    big = pd.DataFrame(
        {
            "region": rng.choice(["North", "South", "West"], 5_000),
            "id": np.arange(5_000),  # every value distinct: no counts listed
            "note": [f"free text {i}" for i in range(5_000)],
            **{f"v{i}": rng.normal(size=5_000) for i in range(8)},
        }
    )
    big.loc[::10, "v0"] = np.nan
    for budget in (2_000, 1_200, 800):
        text = summarize(big, budget)
        assert len(text) <= budget + 60, (budget, len(text))
        assert "5,000 rows × 11 columns" in text and "v0: float64, 500 null" in text
        assert "region: " in text and "3 distinct: " in text
        assert "id: int64, 0 null\n" in text and "note: " in text
        assert "distinct" not in text.split("note: ")[1][:40]
        assert "head(" in text and "tail(" in text
    assert "describe():" in summarize(big, 5_000)


def test_large_frame_describe_uses_a_sample_and_says_so():
    df = pd.DataFrame({"x": np.arange(300_000)})
    assert "describe() (on 100,000 evenly spaced rows)" in summarize(df, 5_000)


def test_series_array_collections_and_budget():
    series = pd.Series([1.0, None, 3.0], name="v")
    assert "pandas.Series 'v': 3 values, dtype float64, 1 null" in summarize(series)
    assert "all 3 values:" in summarize(series)
    long = summarize(pd.Series(["a", "b"] * 50, name="kind"))
    assert "100 values" in long and "2 distinct: a 50, b 50" in long and "tail(5):" in long
    array = np.array([[1.0, np.nan], [3.0, 4.0]])
    text = summarize(array)
    assert "shape (2, 2), dtype float64" in text and "NaN 1" in text and "max 4" in text
    assert summarize(list(range(1000))).startswith("list of length 1000: [0, 1, 2")
    long = summarize("x" * 10_000, limit=100)
    assert len(long) <= 100 + 60 and "more characters not shown" in long

    class BadRepr:
        def __repr__(self):
            raise RuntimeError("nope")

    assert "repr failed: RuntimeError" in summarize(BadRepr())


def test_expand_names_history_escapes_and_literal_braces():
    context = NotebookContext({"n": 42, "In": ["", "x = 1", "y = x"], "Out": {2: [1, 2]}})
    text = "n={n} code={In[1]} out={Out[2]} {{n}} dict {'a': 1} set {1, 2}"
    assert context.expand(text) == "n=42 code=x = 1 out=list of length 2: [1, 2] {n} dict {'a': 1} set {1, 2}"


@pytest.mark.parametrize(
    "text,message",
    [
        ("{missing}", "no variable 'missing'"),
        ("{In[9]}", "cell 9 has no input"),
        ("{Out[1]}", "cell 1 has no output"),
        ("{Err}", "no error so far"),
        ("{Err[3]}", "no error in cell 3"),
        ("{n.nope}", "'n' has no attribute 'nope'"),
    ],
)
def test_expand_errors_are_one_line(text, message):
    context = NotebookContext({"n": 1, "In": ["", "a"], "Out": {}})
    with pytest.raises(ContextError, match=message) as info:
        context.expand(text)
    assert "\n" not in str(info.value)


def test_errors_by_cell_and_explain_prompt():
    log = ErrorLog()
    try:
        raise_in_function()
    except KeyError as exc:
        log.post_run_cell(type("R", (), {"error_in_exec": exc, "execution_count": 5})())
    context = NotebookContext({"In": ["", "", "", "", "", "d = {}\nd['missing_key']"]}, log)
    assert "KeyError: 'missing_key'" in context.expand("{Err}")
    assert context.expand("{Err[5]}") == context.expand("{Err}")
    prompt = context.explain_prompt()
    assert "Code (cell 5):\n```python\nd = {}" in prompt and "raise_in_function" in prompt


def test_fenced_code_extraction_edge_cases():
    assert extract_code("text\n```python\na = 1\n```\nmore\n```\nb = 2\n```") == "a = 1"
    assert extract_code("```\nno tag\n```") == "no tag"
    assert extract_code("~~~py\ntilde\n~~~") == "tilde"
    assert extract_code("````md\n```\ninner\n```\n````") == "```\ninner\n```"
    assert extract_code("  ```\n  indented\n    more\n  ```") == "indented\n  more"
    assert extract_code("```python\nunclosed = True") == "unclosed = True"
    assert extract_code("inline ``` not a fence ``` here") is None
    assert extract_code("no code at all") is None
    assert [lang for lang, _ in fenced_blocks("```r\nx\n```\n```sql\ny\n```")] == ["r", "sql"]
    # where a line-by-line scan misses them: in a list item, in a block quote
    assert extract_code("1. Run this:\n\n   ```python\n   df.dropna()\n   ```\n") == "df.dropna()"
    assert extract_code("> quoted:\n> ```sql\n> SELECT 1\n> ```") == "SELECT 1"


@pytest.mark.notebook
def test_expansions_reach_the_server_from_a_kernel(server, history_db):
    with kernel(ACYTOO_URL=server.url, ACYTOO_HISTORY_DB=str(history_db), JPY_SESSION_NAME="ctx.ipynb") as k:
        k.execute("%load_ext acytoo_magic")
        k.execute("import pandas as pd\ndf = pd.DataFrame({'g': ['a', 'b', None], 'v': [1.0, 2.0, None]})")
        k.execute("3 * 7")
        failing = k.execute("{}['nokey']")
        assert failing.status == "error"
        count = k.execute("print(len(In) - 2)").stdout.strip()

        def sent() -> str:
            return server.requests[-1]["json"]["messages"][-1]["content"]

        assert k.execute("%%acytoo --no-history\nWhy NaN in {df}? {{literal}}").status == "ok"
        assert "pandas.DataFrame: 3 rows × 2 columns" in sent() and "{literal}" in sent()
        k.execute("%%acytoo --no-history\nout {Out[3]} in {In[3]}")
        assert sent() == "out 21 in 3 * 7"
        k.execute("%%acytoo --no-history\nerr {Err}")
        assert "KeyError: 'nokey'" in sent()
        k.execute(f"%%acytoo --no-history\nerr {{Err[{count}]}}")
        assert "KeyError: 'nokey'" in sent()
        before = len(server.requests)
        assert k.execute("%%acytoo --no-history --context df,v2\nexplain these").status == "error"
        assert len(server.requests) == before  # v2 does not exist yet: nothing sent
        missing = k.execute("%%acytoo\ntell me about {nothing_here}")
        assert missing.status == "error" and len(server.requests) == before
        assert missing.stderr.strip() == (
            "UsageError: %%acytoo: {nothing_here}: no variable 'nothing_here' in the notebook "
            "(write {{ for a literal brace)"
        )
        k.execute("v2 = [1, 2, 3]")
        k.execute("%%acytoo --no-history --context df,v2\nexplain these")
        assert "### df\npandas.DataFrame" in sent() and "### v2\nlist of length 3" in sent()
        explained = k.execute("%acytoo explain")
        assert explained.status == "ok"
        body = sent()
        assert body.startswith("This code in my notebook raised an error")
        assert "{}['nokey']" in body and "KeyError: 'nokey'" in body
        assert "raised an error. Explain the cause" in k.execute("%acytoo history --full").shown  # one thread
