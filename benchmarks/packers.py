"""Every bench row with each of jupyter_client's message packers, in one run (issue 30).

A kernel's ``Session`` packs every message it sends (display updates, a widget's comm messages)
with orjson when orjson is installed, else with the standard json. This runs the bench's sections
once per packer, ``json`` (as kernels packed before orjson was a dependency) and ``orjson``,
section by section (which goes first alternates), so both see the same machine at about the same
time; the kernel rows run in one kernel with the packers in turns, round by round. It prints each
row beside its twin, and how far the rows that pack nothing moved (the machine's noise). Not the
peers: they run in venvs of their own, with their own packer.
`--smoke` runs tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402
from browser import browser  # noqa: E402
from table import Table, start_server  # noqa: E402

PACKERS = ("json", "orjson")


def compared(tables: dict[str, Table]) -> list[dict[str, Any]]:
    """Each row of the first packer's table with its value under every packer (matched by name)."""
    values = {packer: {(r["section"], r["name"]): r for r in table.rows} for packer, table in tables.items()}
    first = tables[PACKERS[0]].rows
    rows = []
    for row in first:
        key = (row["section"], row["name"])
        twins = {packer: values[packer].get(key) or {} for packer in PACKERS}
        entry = {name: row[name] for name in ("section", "name", "unit", "target")}
        for packer, twin in twins.items():
            entry[packer] = twin.get("value")
            entry[f"{packer} meets target"] = twin.get("meets_target")
        rows.append(entry)
    return rows


def show(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'benchmark':<70} {'json':>12} {'orjson':>12} {'orjson/json':>11}")
    section = ""
    for row in rows:
        if row["section"] != section:
            section = row["section"]
            print(f"-- {section}")
        before, after = row["json"], row["orjson"]
        change = f"{after / before:.2f}" if before and after is not None else ""
        cells = [f"{v:.3f} {row['unit']}" if v is not None else "-" for v in (before, after)]
        print(f"   {row['name'][:67]:<67} {cells[0]:>12} {cells[1]:>12} {change:>11}")


# Sections that pack no message at all (and the provider rows, read in this process): how far their
# rows move from one packer's pass to the other's is the machine's noise, not the packer's doing.
UNPACKED = {"linear time", "connection reuse", "history store", "context"}


def noise(rows: list[dict[str, Any]]) -> str:
    moved = [
        abs(row["orjson"] / row["json"] - 1)
        for row in rows
        if (row["section"] in UNPACKED or ": provider / floor" in row["name"] or "(floor)" in row["name"])
        and row["json"]
        and row["orjson"]
    ]
    if not moved:
        return ""
    moved.sort()
    return (
        f"rows that pack nothing ({len(moved)}), moved between the two passes by the machine alone:"
        f" median {moved[len(moved) // 2]:.0%}, largest {moved[-1]:.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "packers.json"))
    parser.add_argument("--no-browser", action="store_true", help="leave the browser section out")
    args = parser.parse_args()
    started = time.perf_counter()
    tables = {packer: Table() for packer in PACKERS}
    load = [os.getloadavg()]
    process, url = start_server()
    try:
        for index, (name, section) in enumerate(run.sections(url, args.smoke)):
            order = PACKERS[index % 2 :] + PACKERS[: index % 2]  # neither packer always goes first
            if name == "streaming overhead":  # the kernel rows: both packers in one kernel, in turns
                for packer in order:
                    run.use_packer(packer)
                    run.provider_overhead(tables[packer], url, args.smoke)
                run.kernel_overhead(dict(tables), url, args.smoke)
            else:
                for packer in order:
                    run.use_packer(packer)
                    section(tables[packer])
            load.append(os.getloadavg())
    finally:
        process.terminate()
        process.wait(timeout=10)
        run.use_packer(None)
    if not args.no_browser:
        for packer in PACKERS:
            try:
                browser(tables[packer], args.smoke, packer)
            except Exception as exc:  # the rest is still worth keeping
                note = f"failed: {type(exc).__name__}: {exc}"[:200]
                tables[packer].add("browser", "runs", 0.0, "", note=note)
            load.append(os.getloadavg())
    rows = compared(tables)
    show(rows)
    print(noise(rows))
    elapsed = time.perf_counter() - started
    print(f"\n{len(rows)} rows in {elapsed:.0f} s -> {args.output}")
    Path(args.output).write_text(
        json.dumps(
            {
                "smoke": args.smoke,
                "seconds": elapsed,
                "machine": run.machine(),
                "load_average_after_each_section": load,
                "rows": rows,
                "tables": {packer: table.rows for packer, table in tables.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
