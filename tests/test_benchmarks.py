"""The benchmarks run in CI at tiny sizes so they cannot rot; their figures are not asserted here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebook
ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_smoke_run_produces_every_section(tmp_path):
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text())
    sections = {row["section"] for row in results["rows"]}
    assert sections == {
        "streaming overhead",
        "render cost",
        "linear time",
        "first visible chunk",
        "connection reuse",
        "history store",
        "notebook record",
        "kernel responsiveness",
        "context",
        "peers",
        "browser",
    }
    # Every figure is a measurement (the figures themselves are not asserted: timing): NaN or infinity
    # means a section timed nothing or divided by nothing, a ratio of zero that its numerator did.
    for row in results["rows"]:
        value = row["value"]
        assert 0 <= value < math.inf, row  # (the longest of no long tasks is 0 ms)
        if row["unit"] == "x":  # ratios
            assert value > 0, row
        elif row["unit"] == "":  # counts: runs, output messages, long tasks, a conversation carried
            assert value.is_integer(), row
        else:
            assert row["unit"] in ("ms", "s", "KB"), row
    # The peer driver ran this project as the only peer (no peers' venvs in CI), on every kind of work.
    [ours] = [p for p in results["peers"][1:] if p["peer"] == "acytoo-magic"]
    assert ours["runs"] and len(ours["figures"]) == 3
    assert ours["figures"]["two-turn conversation"]["carried"] is True
    browser = results["browser"]
    assert browser["runs"] or "chromium" in browser["status"]
    assert "benchmark" in done.stdout and "figures in" in done.stdout


@pytest.mark.local_model
def test_agent_small_models_measures_each_way_of_asking_the_bundled_model(tmp_path):
    """One task through the real SmolLM2: a row per way of asking (native tools, a Hermes template,
    a text protocol with and without an example), counted from what the model did; the counts
    themselves are the model's and not asserted."""
    output = tmp_path / "agent.json"
    script = ROOT / "benchmarks" / "agent_small_models.py"
    done = subprocess.run(
        [sys.executable, str(script), "--tasks", "1", "--out", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert [(r["model"], r["condition"]) for r in report["rows"]] == [
        ("smollm2", "native"),
        ("smollm2", "native-hermes"),
        ("smollm2", "text"),
        ("smollm2", "text-example"),
    ]
    for row in report["rows"]:
        [outcome] = row["outcomes"]
        assert outcome["first_reply"], row  # the model answered something
        assert not (outcome["answered"] and outcome["guessed"])  # grounded or guessed, never both
        assert outcome["well_formed"] or not outcome["ran"]  # nothing runs without a well-formed call
    assert report["table"] in done.stdout


def test_the_outbound_benchmark_runs_and_finds_what_was_planted(tmp_path):
    output = tmp_path / "outbound.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "outbound.py"), "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(output.read_text())["rows"]
    assert rows["no secrets"]["found"] == []
    assert rows["with 3 secrets"]["found"] == ["api_key", "password", "GitHub Token"]


def test_the_bench_packs_with_the_packer_it_is_told_and_pairs_each_row_with_its_twin():
    """run.use_packer decides how the bench's own publishing is packed (issue 30 compares json with
    orjson); packers.compared puts each row beside the same row measured with the other packer."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import packers
    import run
    from table import Table

    content = {"data": {"text/plain": "— x", "text/html": "<p>— x</p>"}, "metadata": {}}
    try:
        run.use_packer("json")
        assert run.packer_name() == "json" and json.loads(run.packed(content)) == content
        assert b", " in run.packed(content)  # the standard json's separators
        run.use_packer("orjson")
        assert run.packer_name() == "orjson" and json.loads(run.packed(content)) == content
        assert b", " not in run.packed(content)  # orjson's are compact
    finally:
        run.use_packer(None)
    tables = {packer: Table() for packer in packers.PACKERS}
    tables["json"].add("s", "a row", 2.0, "ms", "< 3", True)
    tables["json"].add("s", "only here", 1.0, "x")
    tables["orjson"].add("s", "a row", 1.0, "ms", "< 3", True)
    pairs = [(r["name"], r["json"], r["orjson"]) for r in packers.compared(tables)]
    assert pairs == [("a row", 2.0, 1.0), ("only here", 1.0, None)]
