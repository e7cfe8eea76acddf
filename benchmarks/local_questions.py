"""The bundled model as a notebook meets it first: 20 fixed data questions over a small DataFrame.

Each question is asked the way a first `%%acytoo` cell asks it: `{df}` expanded by the notebook's
own summary, the default system prompt, a thread of its own (no earlier history), and whatever the
extension's defaults are for the bundled model (sampling, token limit, stopping on repetition).
Nothing is tuned here: what this measures is what a user gets.

Recorded per run: how many answers looped (stopped by the extension for repeating itself, or found
repeating afterwards by this script's own check, which shares no code with the extension's), how
many ended at the token limit, and the median and p90 time from asking to the end of the answer.
Correctness is not judged: a 135M model's answers are often wrong, and this does not claim otherwise.

Writes benchmarks/local_questions.json (every answer, for reading) and .md; `make bench` runs it.
`--label` names the run; `--before FILE` adds an earlier run's row to the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from backends import run_cell  # noqa: E402  (a fresh kernel, the JSON it printed last)

FRAME = """
import pandas as pd
df = pd.DataFrame({
    "region": ["North", "South", "South", "West", "North", "West", "South", "East"],
    "country": ["NZ", "AU", "AU", "US", "NZ", "US", "AU", "JP"],
    "month": ["2025-01", "2025-01", "2025-02", "2025-02", "2025-03", "2025-03", "2025-04", "2025-04"],
    "sales": [1200.0, 3400.0, 2900.0, None, 1800.0, 2500.0, 3100.0, 900.0],
    "units": [12, 30, 27, 15, 16, 22, 29, 8],
})
"""

QUESTIONS = (
    "Which region has the highest total sales in {df}?",
    "How many rows of {df} have a missing value, and in which column?",
    "Write pandas code to fill the missing sales in {df} with the column mean.",
    "What is the average number of units per region in {df}?",
    "Write code to plot sales per month from {df}.",
    "Which country appears most often in {df}?",
    "How do I left-join {df} with a table of region managers?",
    "What is the dtype of each column in {df}, and which should I convert?",
    "Write code to compute the sales per unit for each row of {df}.",
    "How do I sort {df} by sales, largest first?",
    "What does df.groupby('region')['sales'].sum() return for {df}?",
    "Are there duplicate rows in {df}? How would I check?",
    "Write code to keep only the rows of {df} from 2025-03 on.",
    "How do I turn the month column of {df} into dates?",
    "Which month had the most units sold in {df}?",
    "Suggest two checks to run on {df} before analysing it.",
    "Write code to pivot {df} with regions as rows and months as columns.",
    "How do I count the distinct countries per region in {df}?",
    "What is the correlation between sales and units in {df}?",
    "Write code to save {df} to a CSV file without the index.",
)

# In a fresh kernel, as after `%load_ext acytoo_magic`: the notebook's shared Assistant, its
# defaults. A warm-up question loads the model first (a user pays that once per kernel).
ASK = """
%load_ext acytoo_magic
import json, time
from acytoo_magic.core.assistant import shared_assistant
{frame}
{settings}
assistant = shared_assistant(get_ipython())
started = time.monotonic()
warm = await assistant.ask("Say hello.", history=False, provider="local")
load_s = time.monotonic() - started
rows = []
for number, question in enumerate({questions!r}):
    prompt = assistant.expand(question)
    reply = await assistant.ask(prompt, thread=f"question-{{number}}", provider="local")
    prompt_tokens, completion_tokens, _ = reply.tokens()
    rows.append({{
        "question": question, "answer": reply.answer, "status": str(reply.outcome),
        "error": str(reply.error) if reply.error else "", "finish_reason": reply.finish_reason,
        "finish_note": reply.finish_note, "seconds": reply.elapsed,
        "first_token_s": (reply.first_chunk or reply.finished) - reply.started,
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
    }})
    print("#", number, round(reply.elapsed, 1), reply.finish_reason, completion_tokens, flush=True)
config = {{k: v for k, v in assistant.effective_config().items() if k.startswith("Local.")}}
config["system_prompt"] = assistant.system_prompt
config["temperature"] = assistant.temperature
print(json.dumps({{"answers": rows, "load_s": load_s, "config": config}}))
"""


def looped(text: str) -> bool:
    """This script's own check that an answer repeats itself: a sentence or line of 20+ characters
    three times, or a short piece with a letter or digit in it six times in a row ('NZ', 'NZ', ...)."""
    units = [u.strip().lower() for u in re.split(r"\n|(?<=[.!?])\s+", text)]
    counts = Counter(u for u in units if len(u) >= 20)
    if counts and max(counts.values()) >= 3:
        return True
    return any(
        re.search(r"\w", m.group(1)) for m in re.finditer(r"(.{2,60}?)\1{5,}", text, flags=re.DOTALL)
    )


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def summary(result: dict[str, Any]) -> dict[str, Any]:
    answers = result["answers"]
    seconds = [a["seconds"] for a in answers]
    repeating = [a for a in answers if a["finish_reason"] == "repetition"]
    found = [a for a in answers if a["finish_reason"] != "repetition" and looped(a["answer"])]
    return {
        "questions": len(answers),
        "loops": len(repeating) + len(found),
        "stopped_repeating": len(repeating),
        "loops_not_stopped": len(found),
        "at_limit": sum(a["finish_reason"] == "length" for a in answers),
        "failed": sum(bool(a["error"]) for a in answers),
        "median_s": statistics.median(seconds),
        "p90_s": p90(seconds),
        "median_tokens": statistics.median(a["completion_tokens"] for a in answers),
        "load_s": result["load_s"],
    }


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| run | loops (stopped / not) | at the token limit | median time to the end | p90 | median tokens |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        s = run["summary"]
        lines.append(
            f"| {run['label']} | {s['loops']} of {s['questions']} ({s['stopped_repeating']} / "
            f"{s['loops_not_stopped']}) | {s['at_limit']} of {s['questions']} | {s['median_s']:.1f} s "
            f"| {s['p90_s']:.1f} s | {s['median_tokens']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "local_questions.json"))
    parser.add_argument("--label", default="this run")
    parser.add_argument("--before", help="an earlier run's JSON, shown first in the table")
    parser.add_argument("--set", action="append", default=[], metavar="CODE",
                        help="a line run in the kernel before asking (to try a setting; not for make bench)")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    args = parser.parse_args()
    settings = "\n".join(["from acytoo_magic.providers.local import Local", *args.set]) if args.set else ""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"ACYTOO_HISTORY_DB": str(Path(tmp) / "history.sqlite3"), "JPY_SESSION_NAME": "bench.ipynb"}
        code = ASK.format(frame=textwrap.dedent(FRAME), settings=settings,
                          questions=QUESTIONS[: args.questions])
        print(f"the bundled model, {args.questions} data questions at the notebook's defaults:", flush=True)
        started = time.monotonic()
        result = run_cell(code, env, timeout=3600, progress="#")
    run = {"label": args.label, "settings": args.set, "config": result["config"],
           "summary": summary(result), "answers": result["answers"],
           "wall_s": time.monotonic() - started, "load": os.getloadavg()}
    Path(args.output).write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n")
    runs = [run]
    if args.before:
        runs.insert(0, json.loads(Path(args.before).read_text()))
    markdown = table(runs)
    if not args.set:
        Path(args.output).with_suffix(".md").write_text(markdown + "\n")
    print("\n" + markdown)


if __name__ == "__main__":
    main()
