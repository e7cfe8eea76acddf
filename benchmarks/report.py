"""``python benchmarks/report.py [results.json]``: the Performance tables of docs/internals.md as Markdown."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


def peers_table(results: dict[str, Any]) -> str:
    floors, *peers = results["peers"]
    work = list(floors["floors"])
    lines = [
        "| peer | work | first visible text | total / server floor | output messages | output bytes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for peer in peers:
        if not peer["runs"]:
            lines.append(f"| {peer['peer']} | {peer['status']} | | | | |")
            continue
        for label in work:
            seen = peer["figures"][label]
            floor = floors["floors"][label]["total"]
            carried = ""
            if "carried" in seen:
                carried = " (turn two carried turn one: " + ("yes" if seen["carried"] else "**no**") + ")"
            lines.append(
                f"| {peer['peer']} | {label}{carried} | {seen['first'] * 1000:,.0f} ms"
                f" | {seen['total'] / floor:.2f}x | {seen['messages']:,.0f} | {fmt_bytes(seen['bytes'])} |"
            )
    return "\n".join(lines)


def fmt_bytes(count: float) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 1e6 else f"{count / 1e3:,.1f} KB"


def browser_table(results: dict[str, Any]) -> str:
    seen = results["browser"]
    if not seen.get("runs"):
        return f"(not run: {seen.get('status')})"
    one = seen["one render of the final answer"]["script_ms"]
    lines = [
        "| drawn by | scripting | tasks | scripting / one render | long tasks > 50 ms | longest | wall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, figures in seen.items():
        if not isinstance(figures, dict):
            continue
        lines.append(
            f"| {name} | {figures['script_ms']:,.0f} ms | {figures['task_ms']:,.0f} ms"
            f" | {figures['script_ms'] / one:.1f}x | {figures['long_tasks']}"
            f" | {figures['longest_task_ms']:,.0f} ms | {figures['seconds']:.1f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    results = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else RESULTS).read_text())
    print(json.dumps(results["machine"]))
    print()
    print(peers_table(results))
    print()
    print(browser_table(results))
    print()
    for row in results["rows"]:
        if row["section"] not in ("peers", "browser"):
            value = f"{row['value']:.3g} {row['unit']}"
            print(f"| {row['section']} | {row['name']} | {value} | {row['target']} |")


if __name__ == "__main__":
    main()
