"""The benchmark table every section adds to, and the local server all of them measure against."""

from __future__ import annotations

import subprocess
import sys
from typing import Any


class Table:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        section: str,
        name: str,
        value: float,
        unit: str,
        target: str = "",
        ok: bool | None = None,
        note: str = "",
    ) -> None:
        self.rows.append(
            {
                "section": section,
                "name": name,
                "value": float(value),
                "unit": unit,
                "target": target,
                "meets_target": ok,
                "note": note,
            }
        )

    def print(self) -> None:
        print(f"\n{'benchmark':<58} {'value':>12}  {'target':<12} ")
        section = ""
        for row in self.rows:
            if row["section"] != section:
                section = row["section"]
                print(f"-- {section}")
            mark = {True: "ok", False: "MISSED", None: ""}[row["meets_target"]]
            value = "-" if row["value"] != row["value"] else f"{row['value']:.3f} {row['unit']}"
            print(f"   {row['name']:<55} {value:>12}  {row['target']:<12} {mark} {row['note']}")


SCRIPTED = ("--backend", "scripted", "--delay", "0")  # the test double, not a model


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    """The scripted local server in its own process (it keeps a request log at /_requests)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "acytoo_magic.server", "--port", "0", *SCRIPTED, *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().split()[-1]
