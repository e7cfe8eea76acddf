"""Chaos: hundreds of answers in a real kernel, each with a failure injected somewhere, or interrupted.

Stages: the provider (a dropped connection, HTTP 500), the UTF-8 decoder, the output area (creating
it, an update, the final update), a caller's ``on_chunk``, the history file (opening, reading,
writing locked or failing, closing with exchanges held back, closing while still locked), kernel
interrupts and the chat widget's Stop. The plan is drawn from a seeded random generator, so a
failure reproduces. Afterwards, for every run: the history holds exactly the text the user last saw
(the last display message of the cell, or the widget's transcript) with the status it ended with;
nothing shown means nothing recorded; and every failure was said in one line.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kernels import Execution, Kernel, is_waiting, kernel

from acytoo_magic.core.history.store import HistoryStore

pytestmark = pytest.mark.notebook
NOTEBOOK = "chaos.ipynb"
TESTS = Path(__file__).resolve().parent
SEED = 19
RUNS = 300
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]

# stage -> (weight, how it runs); the widget and on_chunk stages have their own front end
STAGES = {
    "": 3,
    "provider_drop": 2,
    "provider_500": 1,
    "decoder": 2,
    "draw": 3,
    "close": 2,
    "display": 1,
    "open": 1,
    "read": 1,
    "write_lock": 2,
    "write_io": 1,
    "store_close": 1,
    "store_close_fails": 1,
    "interrupt": 2,
    "on_chunk": 2,
    "widget": 1,
    "widget_stop": 2,
    "widget_drop": 1,
}


@dataclass
class Run:
    id: str
    stage: str
    prompt: str
    answer: str  # what the server sends back when nothing fails
    shown: str = ""  # the answer text the user last saw
    status: str = ""  # how it ended, as the user was told ("" when nothing was shown)
    stderr: str = ""
    thread: str = "default"
    notes: list[str] = field(default_factory=list)


def _plan(rng: random.Random) -> list[tuple[str, int]]:
    stages = list(STAGES)
    weights = list(STAGES.values())
    plan = [(stage, 0) for stage in stages]  # every stage at least once, then a seeded mix
    plan += [(rng.choices(stages, weights)[0], 0) for _ in range(RUNS - len(plan))]
    rng.shuffle(plan)
    return [(stage, rng.randint(1, 6)) for stage, _ in plan]


def _prompt(rng: random.Random, index: int, stage: str) -> tuple[str, str]:
    answer = f"run {index} " + " ".join(rng.choices(WORDS, k=rng.randint(8, 40)))
    directives = f"echo chunk={rng.randint(3, 12)} delay=0.001"
    if stage in ("interrupt", "widget_stop"):  # slow: the interrupt or Stop lands mid-stream; a
        directives = "echo chunk=2 delay=0.05"  # write to a closed connection ends the server's side
    elif stage in ("provider_drop", "widget_drop"):
        directives += " fault=drop"
    elif stage == "provider_500":
        directives += " fault=500"
    return f"[[{directives}]]{answer}", answer


def _screen(out: Execution) -> str:
    """The answer text the cell's output area shows last ("" for none, or the waiting line)."""
    shown = out.of_type("display_data", "update_display_data")
    if not shown:
        return ""
    plain = shown[-1]["data"]["text/plain"]
    return "" if is_waiting(plain) else plain.split("\n")[0]  # the note and status follow a newline


def _one_line_failures(run: Run, out: Execution) -> None:
    """Every failure is one line: the error's whole traceback, and each line on stderr."""
    if out.error is not None:
        assert len(out.error["traceback"]) == 1 and "\n" not in out.error["traceback"][0], (run, out.error)
    for line in out.stderr.splitlines():
        assert line.startswith("acytoo: "), (run, out.stderr)
    assert "Traceback" not in out.stdout + out.stderr, run


def _ended(out: Execution) -> str:
    if out.error is None:
        return "complete"
    return "interrupted" if out.error["ename"] == "AcytooInterrupted" else "partial"


def ok(k: Kernel, code: str) -> Execution:
    out = k.execute(code)
    assert out.status == "ok", out.error
    return out


def test_every_recorded_answer_is_what_the_user_last_saw(k: Kernel, history_db: Path):
    rng = random.Random(SEED)
    ok(k, f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport chaos_faults\nchaos_faults.install()")
    ok(k, "%config Assistant.render_interval = 0.0")  # draw as often as the renderer may: more stages hit
    ok(k, "from acytoo_magic import ChatWidget\nchat = ChatWidget('chat')")
    aliases = [str(history_db), f"{history_db.parent}/./{history_db.name}"]  # one file, two spellings
    runs: list[Run] = []
    pending: list[Run] = []  # exchanges a lock held back: written with the next write or on closing
    may_be_missing: set[str] = set()

    def written(run: Run) -> None:
        """The run's write went through: it took every exchange held back with it."""
        if run.shown and "kept in memory" not in run.stderr and "disk I/O error" not in run.stderr:
            pending.clear()
        elif "kept in memory" in run.stderr:
            pending.append(run)
        elif "disk I/O error" in run.stderr:
            may_be_missing.add(run.id)  # said on stderr: this exchange could not be written

    for index, (stage, nth) in enumerate(_plan(rng)):
        prompt, answer = _prompt(rng, index, stage)
        run = Run(f"run {index} ", stage, prompt, answer)
        runs.append(run)
        if stage.startswith("widget"):
            run.thread = "chat"
            stop = stage == "widget_stop"
            out = ok(k, f"print(await chaos_faults.widget_run(chat, {run.id!r}, {prompt!r}, {stop}))")
            seen = json.loads(out.stdout)
            assert seen["text"] == "" or seen["transcript_has_it"], (run, seen)
            assert "\n" not in seen["error_line"] and "Traceback" not in seen["error_line"], seen
            run.shown, run.status = seen["text"], seen["status"] if seen["text"] else ""
            ended = {"widget": "complete", "widget_stop": "interrupted", "widget_drop": "partial"}
            assert run.status == ended[stage], (run, seen)
            if run.shown and "locked" not in seen["error_line"]:
                pending.clear()
            continue
        armed = {"provider_drop": "", "provider_500": "", "interrupt": "", "store_close": "write_lock",
                 "store_close_fails": "write_lock"}.get(stage, stage)
        which = nth if stage in ("draw", "decoder") else 0 if stage == "display" else 1
        setup = f"chaos_faults.arm({run.id!r}, {armed!r}, {which})"
        if stage == "open":  # the next use of the history opens the file again, and that fails
            setup += "\nimport acytoo_magic\nacytoo_magic._magics.assistant.close()"
        assert ok(k, setup).stderr == ""
        if stage == "open":
            pending.clear()  # closing wrote them
        if stage == "on_chunk":
            out = k.execute(f"await chaos_faults.ask_with_callback({prompt!r}, {nth})")
        elif stage == "interrupt":
            out, _first = k.execute_interrupted(f"%%acytoo\n{prompt}")
        else:
            out = k.execute(f"%%acytoo\n{prompt}")
        _one_line_failures(run, out)
        run.stderr = out.stderr
        run.shown = _screen(out)
        run.status = _ended(out) if run.shown else ""
        if run.status == "complete":
            assert run.shown == answer, run  # a complete answer is the whole answer
        written(run)
        if stage in ("store_close", "store_close_fails"):
            aliases.reverse()
            lock = "chaos_faults.arm('', 'flush_lock', 0)\n" if stage == "store_close_fails" else ""
            closed = k.execute(f"{lock}%config Assistant.history_path = {aliases[0]!r}")
            assert closed.status == "ok", closed.error
            _one_line_failures(run, closed)
            if stage == "store_close_fails" and pending:  # still locked: said, with how many
                said = re.fullmatch(r"acytoo: .* (\d+) exchange\(s\) held back by a lock could not be saved "
                                    r"on closing \(.*\)\n", closed.stderr)
                assert said and int(said[1]) == len(pending), (closed.stderr, pending)
                may_be_missing.update(r.id for r in pending)
            else:
                assert closed.stderr == "", (run, pending, closed.stderr)
            pending.clear()

    drawn = json.loads(ok(k, "import json\nprint(json.dumps(chaos_faults.SHOWN))").stdout)
    unloaded = ok(k, "chaos_faults.arm('')\n%unload_ext acytoo_magic")
    assert unloaded.stderr == ""  # whatever a lock still held back was written on closing

    db = sqlite3.connect(history_db)
    rows = db.execute(
        "SELECT thread, role, content, status FROM messages WHERE notebook = ? ORDER BY id", (NOTEBOOK,)
    ).fetchall()
    stored: dict[str, tuple[str, str, str]] = {}
    for (thread, role, content, _status), (_t, next_role, answer, answer_status) in itertools.pairwise(rows):
        if role == "user" and next_role == "assistant":
            run_id = re.search(r"run \d+ ", content)[0]
            assert run_id not in stored, run_id  # one exchange per run
            stored[run_id] = (thread, answer, answer_status)
    for run in runs:
        if run.stage.startswith("widget") is False and run.id in drawn:
            assert drawn[run.id] == run.shown, run  # the kernel's own log of draws agrees with iopub
        if not run.shown:
            assert run.id not in stored, (run, stored.get(run.id))  # nothing shown, nothing recorded
        elif run.id in stored:
            assert stored[run.id] == (run.thread, run.shown, run.status), (run, stored[run.id])
        else:
            assert run.id in may_be_missing, run  # lost only where the user was told so
    assert set(stored) <= {run.id for run in runs}

    outcomes = Counter(run.status or "nothing shown" for run in runs)
    print(f"chaos: {len(runs)} runs, seed {SEED}: {dict(outcomes)}; stored {len(stored)}, "
          f"said lost {len(may_be_missing)}")
    assert set(outcomes) == {"complete", "partial", "interrupted", "nothing shown"}, outcomes


def test_dash_o_holds_a_partial_or_interrupted_answer_as_the_history_does(k: Kernel):
    dropped = k.execute("%%acytoo -o dropped\n[[echo chunk=4 fault=drop]]one two three four five six")
    assert dropped.error is not None and dropped.error["ename"] == "AcytooError"
    _out, first = k.execute_interrupted("%%acytoo -o stopped\n[[echo chunk=2 delay=0.05]]" + "word " * 100)
    assert first
    values = json.loads(ok(k, "import json\nprint(json.dumps([dropped, stopped]))").stdout)
    stored = [(m["content"], m["status"]) for m in k.history() if m["role"] == "assistant"]
    assert stored == [(values[0], "partial"), (values[1], "interrupted")]
    assert values[0] and values[1]


def test_exchanges_a_lock_held_back_are_written_when_the_kernel_shuts_down(kernel_env, history_db):
    with kernel(**kernel_env) as running:
        ok(running, "%load_ext acytoo_magic\n%acytoo threads")  # the file exists
        locker = sqlite3.connect(history_db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the file while the answer is recorded
        held = running.execute("%%acytoo\n[[echo]]kept until the end")
        assert "kept in memory" in held.stderr
        locker.execute("ROLLBACK")
        running.km.shutdown_kernel(now=False)  # as JupyterLab's "Shut Down Kernel" asks it to
    stored = HistoryStore(history_db).load(NOTEBOOK, "default")
    assert [m.content for m in stored] == ["[[echo]]kept until the end", "kept until the end"]
