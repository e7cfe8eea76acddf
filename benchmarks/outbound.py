"""What the outbound boundary costs: masking a request's messages before they are sent.

A 100 KB prompt (a pasted log, a long traceback, a data summary) with secrets planted in it, and
the same without any, masked by a fresh ``Outbound`` as a request does (configured values, the
environment, detect-secrets' formats and keywords), then masked again (the history's messages are
masked at every request: the second time is a cache hit). Baselines from the same run: one
``render_markdown`` of the same text through the rendering policy, and ``json.dumps`` of the
messages (what sending them costs at least). Ratios against those, not milliseconds, are the figures
to compare across machines.

Writes benchmarks/outbound.json; ``make bench`` runs it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acytoo_magic.core.outbound import Outbound, Secret, environment_secrets
from acytoo_magic.present.untrusted import render_markdown

ROOT = Path(__file__).resolve().parent
SIZE = 100_000
ROUNDS = 7


def prompt(size: int, planted: bool) -> str:
    """Prose-like lines of words, numbers and code; with ``planted``, a token, a key and a password."""
    rng = random.Random(7)
    lines = []
    while sum(map(len, lines)) < size:
        count = rng.randint(4, 12)
        words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(count)]
        if rng.random() < 0.1:
            words.append(f"= {rng.randint(0, 10**6)}")
        lines.append(" ".join(words))
    if planted:
        lines[len(lines) // 3] += " ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
        lines[len(lines) // 2] = 'password = "correct-horse-battery-9"'
        lines[2 * len(lines) // 3] += " sk-local-abcdef1234567890"
    return "\n".join(lines)[:size]


def best(run: Callable[[], Any], rounds: int = ROUNDS) -> float:
    """The median of ``rounds`` timings, in seconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(size: int = SIZE, rounds: int = ROUNDS) -> dict[str, Any]:
    Outbound().mask("warm up: import detect-secrets once")
    secrets = [Secret("api_key", "sk-local-abcdef1234567890"), *environment_secrets()]
    rows: dict[str, Any] = {}
    for planted in (False, True):
        text = prompt(size, planted)
        messages = [{"role": "system", "content": "You are concise."}, {"role": "user", "content": text}]
        first = best(lambda text=text: Outbound(secrets).mask(text), rounds)
        boundary = Outbound(secrets)
        boundary.mask(text)
        again = best(lambda boundary=boundary, text=text: boundary.mask(text), rounds)
        render = best(lambda text=text: render_markdown(text), rounds)
        dumps = best(lambda messages=messages: json.dumps(messages), rounds)
        masked = Outbound(secrets)
        masked.mask(text)
        name = "with 3 secrets" if planted else "no secrets"
        rows[name] = {
            "mask_ms": round(first * 1000, 2),
            "again_ms": round(again * 1000, 3),
            "render_ms": round(render * 1000, 2),
            "json_ms": round(dumps * 1000, 3),
            "mask_per_render": round(first / render, 2),
            "found": list(masked.found),
        }
    return {"prompt_chars": size, "rounds": rounds, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a 2 KB prompt, one round (CI: it still runs)")
    parser.add_argument("--output", type=Path, default=ROOT / "outbound.json")
    args = parser.parse_args()
    result = measure(2_000, 1) if args.smoke else measure()
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"Masking a {result['prompt_chars']:,}-character prompt (median of {result['rounds']} rounds):")
    for name, row in result["rows"].items():
        print(
            f"  {name:<15} mask {row['mask_ms']:>7.2f} ms ({row['mask_per_render']:.2f}x one render of it, "
            f"{row['render_ms']:.2f} ms) · again (cached) {row['again_ms']:.3f} ms · json.dumps "
            f"{row['json_ms']:.3f} ms · masked: {', '.join(row['found']) or 'nothing'}"
        )


if __name__ == "__main__":
    main()
