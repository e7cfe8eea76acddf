"""The bundled model's 20-question bench (`make bench`): its own loop check, and a short real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from local_questions import QUESTIONS, looped  # noqa: E402


def test_the_bench_asks_twenty_fixed_questions_each_about_the_frame():
    assert len(QUESTIONS) == 20 and len(set(QUESTIONS)) == 20 and all("{df}" in q for q in QUESTIONS)


@pytest.mark.parametrize(
    "text,loops",
    [
        ("The region is South, with 12 rows. " * 3, True),  # the same sentence again and again
        ("Countries: " + "'NZ', " * 6, True),  # a short piece, six times in a row
        ("```python\nfor row in df.itertuples():\n    print(row)\n```\nThat prints every row.", False),
        ("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n" + " " * 40 + "-" * 60, False),  # no words repeated
        ("One sentence here, long enough. Another one, also long enough. A third, different.", False),
    ],
)
def test_the_benchs_own_loop_check(text, loops):
    assert looped(text) is loops


@pytest.mark.local_model
def test_a_short_run_at_the_defaults_records_every_figure(tmp_path):
    output = tmp_path / "questions.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "local_questions.py"),
            "--questions",
            "2",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(output.read_text())
    summary = run["summary"]
    assert summary["questions"] == 2 and summary["failed"] == 0
    assert {"loops", "at_limit", "median_s", "p90_s", "median_tokens"} <= set(summary)
    assert [a["question"] for a in run["answers"]] == list(QUESTIONS[:2])
    assert all(a["answer"].strip() and a["prompt_tokens"] > 100 for a in run["answers"])  # {df} was in it
    assert run["config"]["Local.max_tokens"] > 0 and "Local.sampling" in run["config"]
    assert output.with_suffix(".md").read_text().startswith("| run | loops")
