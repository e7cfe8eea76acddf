"""What people do in notebooks every day, in real kernels: nested magics, re-runs, long threads, locks.

Each test asserts what reached the server or what the user sees, not internal state.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import nbformat
import pytest
from kernels import is_waiting, kernel
from nbclient import NotebookClient

from acytoo_magic.server.scripted import filler

pytestmark = pytest.mark.notebook

STREAM = "[[size=3000 chunk=30 delay=0.005]]"  # about 100 chunks over half a second
# On the stand-in server (conftest's ``standin``): held after its first chunk until the test has
# seen that chunk on screen, so "still streaming" is a state the test controls, not a race.
HELD = "[[size=3000 chunk=30 hold]]"
HELD_LONG = "[[size=400000 chunk=64 delay=0.005 hold]]"


NOTEBOOK = "habits.ipynb"  # the notebook the kernel belongs to (conftest's k fixture)


def frames(execution) -> list[str]:
    """Every state of the output area, in order, without the waiting line."""
    shown = [c["data"]["text/plain"] for c in execution.of_type("display_data", "update_display_data")]
    return [text for text in shown if not is_waiting(text)]


def sent_prompts(server, start: int = 0) -> list[list[str]]:
    """For each request since ``start``: the contents of the messages sent, system prompt left out."""
    requests = server.requests[start:]
    return [[m["content"] for m in r["json"]["messages"] if m["role"] != "system"] for r in requests]


def ask_in(context: str, tmp_path: Path, prompt: str) -> str:
    """The cell that asks ``prompt`` from inside ``context``, writing the files it needs."""
    if context == "run_ipy":
        script = tmp_path / "ask.ipy"
        script.write_text(f"%%acytoo\n{prompt}\n")
        return f"%run {script}"
    if context == "run_ipynb":
        other = tmp_path / "other.ipynb"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"%%acytoo\n{prompt}")])
        nbformat.write(nb, other)
        return f"%run {other}"
    return {
        "time": f"%%time\n%%acytoo\n{prompt}",
        "timeit": f"%%timeit -n1 -r1\n%%acytoo\n{prompt}",
        "function": f"def ask(q):\n    get_ipython().run_cell_magic('acytoo', '', q)\nask({prompt!r})",
        "loop": f"for q in [{prompt!r}]:\n    get_ipython().run_cell_magic('acytoo', '', q)",
        "autoawait_off": f"%%acytoo\n{prompt}",
        "top_level": f"%%acytoo\n{prompt}",
    }[context]


CONTEXTS = ["top_level", "time", "timeit", "function", "loop", "autoawait_off", "run_ipy", "run_ipynb"]


def release_on_first_text(standin):
    """An ``on_message`` callback: releases the held stream once its first text is on screen."""
    seen = []

    def on_message(msg) -> None:
        text = msg["content"].get("data", {}).get("text/plain", "")
        if msg["msg_type"].endswith("display_data") and text and not is_waiting(text) and not seen:
            seen.append(text)
            standin.release()

    return on_message


@pytest.mark.parametrize("context", CONTEXTS)
def test_every_execution_context_streams_into_its_cell_and_records(k, standin, tmp_path, context):
    k.execute(f"%config Assistant.url = {standin.url!r}")
    if context == "autoawait_off":
        assert k.execute("%autoawait False").status == "ok"
    prompt = f"{HELD} from {context}"
    out = k.execute(ask_in(context, tmp_path, prompt), on_message=release_on_first_text(standin))
    assert out.status == "ok", out.error
    answer = filler(3000).decode()
    shown = frames(out)
    assert shown[0] == answer[:30]  # the first chunk, on screen while the rest was held back
    assert shown[-1].startswith(answer + "\n— ") and "3,000 characters" in shown[-1]
    drawn = out.of_type("display_data", "update_display_data")
    assert len({d["transient"]["display_id"] for d in drawn}) == 1  # one output area, updated in place
    assert [m["content"] for m in k.history()] == [prompt, answer]
    assert k.execute("%%acytoo\n[[echo]]next cell works").status == "ok"


def test_capture_keeps_the_streamed_answer_and_line_magics_work(k):
    out = k.execute(f"%%capture captured\n%%acytoo\n{STREAM} captured")
    assert out.status == "ok", out.error
    assert not frames(out)  # captured, as %%capture promises
    texts = k.execute("import json\nprint(json.dumps([o.data['text/plain'] for o in captured.outputs]))")
    captured = json.loads(texts.stdout)
    assert len(captured) >= 2 and captured[-1].startswith("All work") and "3,000 characters" in captured[-1]
    listed = k.execute("%%capture listed\n%acytoo threads")
    assert listed.status == "ok"
    assert "default: 2 messages" in k.execute("print(listed.stdout)").stdout


@pytest.mark.parametrize("context", [c for c in CONTEXTS if c != "top_level"])
def test_interrupt_on_the_worker_loop_keeps_the_partial_answer(k, standin, tmp_path, context):
    k.execute(f"%config Assistant.url = {standin.url!r}")
    if context == "autoawait_off":
        k.execute("%autoawait False")
    out, interrupted = k.execute_interrupted(ask_in(context, tmp_path, HELD_LONG))
    assert interrupted == filler(64).decode() and out.status == "error"  # the stream was held there
    assert out.error["ename"] == "AcytooInterrupted"
    (_user, assistant) = k.history()
    assert assistant["status"] == "interrupted" and assistant["content"] == interrupted
    assert k.execute("%%acytoo\n[[echo]]still answering").status == "ok"


def test_a_re_run_cell_replaces_its_exchange_in_place(k, server):
    """JupyterLab sends the cell's id: editing and re-running one cell leaves one exchange."""
    k.execute("%%acytoo\n[[echo]]first question", cell_id="cell-a")
    for attempt in ("draft 1", "draft 2", "final wording"):
        assert k.execute(f"%%acytoo\n[[echo]]{attempt}", cell_id="cell-b").status == "ok"
    k.execute("%%acytoo\n[[echo]]third question", cell_id="cell-c")
    assert [m["content"] for m in k.history()] == [
        "[[echo]]first question",
        "first question",
        "[[echo]]final wording",
        "final wording",
        "[[echo]]third question",
        "third question",
    ]
    # Re-running cell b sends only what stands above it, as the notebook reads.
    start = len(server.requests)
    k.execute("%%acytoo\n[[echo]]final wording", cell_id="cell-b")
    assert sent_prompts(server, start) == [
        ["[[echo]]first question", "first question", "[[echo]]final wording"]
    ]
    shown = k.execute("%acytoo history --full").shown
    assert shown.count("--- user · cell In [") == 3
    # The widget's messages have no cell: they append, as a chat does.
    k.execute("from acytoo_magic import ChatWidget\nw = ChatWidget()\nawait w.send('[[echo]]from the chat')")
    k.execute("await w.send('[[echo]]from the chat')")
    assert [m["content"] for m in k.history()].count("from the chat") == 2
    assert "--- user · chat" in k.execute("%acytoo history --full").shown


def test_several_answers_from_one_cell_are_kept_apart(k):
    loop = "for q in ['one', 'two', 'three']:\n    get_ipython().run_cell_magic('acytoo', '', '[[echo]]' + q)"
    k.execute(loop, cell_id="loop-cell")
    k.execute(loop, cell_id="loop-cell")
    assert [m["content"] for m in k.history() if m["role"] == "assistant"] == ["one", "two", "three"]


def write_notebook(path: Path, prompts: list[str]) -> None:
    cells = [nbformat.v4.new_code_cell("%load_ext acytoo_magic")]
    cells += [nbformat.v4.new_code_cell(f"%%acytoo\n{prompt}") for prompt in prompts]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def run_all(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    return notebook


def test_run_all_twice_under_nbclient_sends_what_the_first_run_sent(
    server, history_db, monkeypatch, tmp_path
):
    """nbclient and papermill send no cell id: the text typed stands for the cell."""
    monkeypatch.setenv("ACYTOO_URL", server.url)
    monkeypatch.setenv("ACYTOO_HISTORY_DB", str(history_db))
    monkeypatch.setenv("JPY_SESSION_NAME", "report.ipynb")
    path = tmp_path / "report.ipynb"
    write_notebook(path, ["What is in the data?", "And the outliers?"])
    run_all(path)
    first = sent_prompts(server)
    run_all(path)
    second = sent_prompts(server, len(first))
    assert first == second
    assert first[0] == ["What is in the data?"]
    assert first[1][0] == "What is in the data?" and first[1][2] == "And the outliers?" and len(first[1]) == 3
    store = sqlite3.connect(history_db)
    assert store.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 4


def test_papermill_runs_twice_with_the_same_requests(server, history_db, monkeypatch, tmp_path):
    """papermill (nbclient underneath, no cell ids) parameterises and runs a report notebook twice."""
    import papermill

    monkeypatch.setenv("ACYTOO_URL", server.url)
    monkeypatch.setenv("ACYTOO_HISTORY_DB", str(history_db))
    monkeypatch.setenv("JPY_SESSION_NAME", "weekly.ipynb")
    source = tmp_path / "weekly.ipynb"
    write_notebook(source, ["Summarise week {week}", "What changed since last week?"])
    notebook = nbformat.read(source, as_version=4)
    parameters = nbformat.v4.new_code_cell("week = 12")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells.insert(1, parameters)
    nbformat.write(notebook, source)
    runs = []
    for attempt in range(2):
        start = len(server.requests)
        target = str(tmp_path / f"out{attempt}.ipynb")
        papermill.execute_notebook(
            str(source), target, parameters={"week": 13}, kernel_name="python3", language="python"
        )
        runs.append(sent_prompts(server, start))
    assert runs[0] == runs[1] and runs[0][0] == ["Summarise week 13"]
    assert len(runs[0][1]) == 3  # the second question carries the first exchange, once
    answered = nbformat.read(tmp_path / "out1.ipynb", as_version=4)
    assert any("You said" in o.get("data", {}).get("text/plain", "") for o in answered.cells[-1].outputs)


def test_after_a_huge_answer_the_next_question_still_carries_the_exchange_before_it(k, server):
    k.execute("%%acytoo\n[[echo]]the exchange before")
    k.execute("%%acytoo\n[[size=1000000 chunk=65536]]")
    start = len(server.requests)
    assert k.execute("%%acytoo\n[[echo]]and now?").status == "ok"
    (sent,) = [r["json"]["messages"] for r in server.requests[start:]]
    roles = [m["role"] for m in sent]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert sent[1]["content"] == "[[echo]]the exchange before"
    huge = sent[4]["content"]
    assert len(huge) <= 12_000 // 4 and "1,000,000 characters, cut to 3,000" in huge
    assert sum(len(m["content"]) for m in sent) <= 12_000


def test_in_and_explain_send_what_the_user_typed(k, server):
    k.execute("%time x = 1")
    count = int(k.execute("print(len(In) - 2)").stdout)
    k.execute(f"%%acytoo --no-history\nwhat does {{In[{count}]}} do?")
    assert server.requests[-1]["json"]["messages"][-1]["content"] == "what does %time x = 1 do?"
    assert k.execute("%%time\n{}['missing']").status == "error"
    assert k.execute("%acytoo explain").status == "ok"
    prompt = server.requests[-1]["json"]["messages"][-1]["content"]
    code, error = prompt.split("Error:\n", 1)
    assert "```python\n%%time\n{}['missing']\n```" in code and "run_cell_magic" not in code
    assert "KeyError: 'missing'" in error and "interactiveshell.py" not in error


def test_the_widget_recovers_from_any_failure(k):
    k.execute(
        "from acytoo_magic import ChatWidget\nw = ChatWidget('w')\n"
        "async def broken():\n    raise RuntimeError('session exploded')\n"
        "real = w.assistant.runner.session\nw.assistant.runner.session = broken\n"
        "before = w.transcript.value\ntask = w.send('keep this text')\nr = await task"
    )
    state = k.execute(
        "print(r.outcome, w.input.busy, w.stop_button.disabled, repr(w.input.value),"
        " w.transcript.value == before)"
    )
    assert state.stdout.strip() == "failed False True 'keep this text' True"
    assert "RuntimeError: session exploded" in k.execute("print(w.error_area.value)").stdout
    k.execute("w.assistant.runner.session = real")
    assert k.execute("r = await w.send('[[echo]]works again')\nprint(r.outcome)").stdout.strip() == "complete"


def test_a_locked_database_delays_nothing_else_and_loses_nothing(k, standin, history_db):
    """Another process holds the write lock while the widget streams: the stream and other cells
    go on; the exchange is kept in memory and written with the next one."""
    k.execute(f"%config Assistant.url = {standin.url!r}")
    k.execute("%%acytoo\n[[echo]]opens the file")
    locker = sqlite3.connect(history_db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        k.execute(f"from acytoo_magic import ChatWidget\nw = ChatWidget()\nw.send('{HELD} while locked')")
        standin.wait_held()  # the answer is streaming (its first chunk sent, the rest held back)
        assert k.execute("print(w.streaming, 6 * 7)").stdout.split() == ["True", "42"]
        standin.release()
        done = k.execute("r = await w.wait()\nprint(r.outcome, len(r.answer))")
        assert done.stdout.split() == ["complete", "3000"]
        assert "is locked by another process" in k.execute("print(w.error_area.value)").stdout
        quick = k.execute("print('not blocked')")
        assert quick.stdout.strip() == "not blocked"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    k.execute("await w.send('[[echo]]after the lock')")
    contents = [m["content"] for m in k.history()]
    assert f"{HELD} while locked" in contents and "after the lock" in contents


def test_vs_code_notebook_path_keeps_the_thread_across_a_restart(server, history_db):
    base = {"ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(history_db)}
    setup = "__vsc_ipynb_file__ = '/home/me/project/analysis.ipynb'\n%load_ext acytoo_magic"
    with kernel(**base) as k:
        k.execute(setup)
        k.execute("%%acytoo\n[[echo]]remember me")
        k.restart()
        k.execute(setup)
        assert "analysis.ipynb" in k.execute("%acytoo config").stdout
        assert [m["content"] for m in k.history()] == ["[[echo]]remember me", "remember me"]


def test_a_renamed_notebook_is_told_how_to_carry_its_threads_over(server, history_db):
    base = {"ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(history_db)}
    with kernel(**base, JPY_SESSION_NAME="old name.ipynb") as old:
        old.execute("%load_ext acytoo_magic")
        old.execute("%%acytoo -c plots\n[[echo]]kept")
    with kernel(**base, JPY_SESSION_NAME="new name.ipynb") as new:
        new.execute("%load_ext acytoo_magic")
        hint = new.execute("%acytoo threads").stdout
        assert "'old name.ipynb' (2 messages)" in hint and "%acytoo threads --adopt old name.ipynb" in hint
        moved = new.execute("%acytoo threads --adopt 'old name.ipynb'").stdout
        assert "moved 2 messages" in moved and "plots: 2 messages" in moved
        assert [m["content"] for m in new.history("plots")] == ["[[echo]]kept", "kept"]


def test_a_failed_cell_s_locals_are_freed(k):
    """Errors kept for {Err} and explain are text: a large local in a failed cell is not kept alive."""
    k.execute(
        "import gc, weakref\nclass Big: pass\nref = None\n"
        "def fail():\n    global ref\n    big = Big()\n    ref = weakref.ref(big)\n"
        "    raise ValueError('boom')"
    )
    assert k.execute("fail()").status == "error"
    assert k.execute("1 / 0").status == "error"  # IPython's own sys.last_traceback moves on
    assert k.execute("gc.collect()\nprint(ref() is None)").stdout.strip() == "True"
    count = int(k.execute("print(len(In) - 4)").stdout)
    assert k.execute(f"%acytoo explain {count}").status == "ok"  # the text is still there to explain
    assert "ValueError: boom" in k.history()[0]["content"]
