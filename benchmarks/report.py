"""``python benchmarks/report.py [results.json] [--before earlier.json]``: the Performance tables
of docs/internals.md, in Markdown; with ``--before``, every row beside the earlier run's."""

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
            floor = seen.get("floor", floors["floors"][label]["total"])  # two-turn: its own request
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
        "| drawn by | rounds | scripting | tasks | scripting / one render | main-thread CPU"
        " | long tasks > 50 ms | longest | wall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, figures in seen.items():
        if not isinstance(figures, dict):
            continue
        lines.append(
            f"| {name} | {figures.get('rounds', 1)} | {figures['script_ms']:,.0f} ms"
            f" | {figures['task_ms']:,.0f} ms"
            f" | {figures.get('script_ratio', figures['script_ms'] / one):.2f}x"
            f" | {figures.get('cpu_ms', float('nan')):,.0f} ms"
            f" | {figures['long_tasks']}"
            f" | {figures['longest_task_ms']:,.0f} ms | {figures['seconds']:.1f} s |"
        )
    return "\n".join(lines)


def before_after(results: dict[str, Any], before: dict[str, Any]) -> str:
    """Every row of this run beside the same row of an earlier run ("-" where it had none)."""
    earlier = {(row["section"], row["name"]): row for row in before["rows"]}
    lines = ["| section | benchmark | before | after | target |", "|---|---|---:|---:|---|"]
    for row in results["rows"]:
        old = earlier.get((row["section"], row["name"]))
        was = f"{old['value']:.3g} {old['unit']}" if old else "-"
        mark = {True: "", False: " **missed**", None: ""}[row["meets_target"]]
        lines.append(
            f"| {row['section']} | {row['name']} | {was} | {row['value']:.3g} {row['unit']}"
            f" | {row['target']}{mark} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = sys.argv[1:]
    before = None
    if "--before" in args:
        at = args.index("--before")
        before = json.loads(Path(args[at + 1]).read_text())
        del args[at : at + 2]
    results = json.loads(Path(args[0] if args else RESULTS).read_text())
    print(json.dumps(results["machine"]))
    print()
    print(peers_table(results))
    print()
    print(browser_table(results))
    print()
    if before is not None:
        print(before_after(results, before))
        return
    for row in results["rows"]:
        if row["section"] not in ("peers", "browser"):
            value = f"{row['value']:.3g} {row['unit']}"
            print(f"| {row['section']} | {row['name']} | {value} | {row['target']} |")


if __name__ == "__main__":
    main()
