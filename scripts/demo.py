"""`make demo`: start the local protocol server, execute the quick-start notebook, show where it went."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = NOTEBOOKS / "executed"
MODEL_NAME = "gemma-3-270m" if os.environ.get("DEMO_BACKEND", "llama") == "llama" else "scripted"


def start_server(backend: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m acytoo_magic.server`` on a free port; its per-answer figures go to a log."""
    command = [sys.executable, "-m", "acytoo_magic.server", "--port", "0", "--backend", backend]
    command += ["--max-tokens", "160"] if backend == "llama" else ["--delay", "0.01"]
    OUT.mkdir(exist_ok=True)
    log = (OUT / "server.log").open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        print(line.rstrip())
        if "listening on" in line:
            return process, line.split()[-1]
    raise SystemExit(f"demo: the local server did not start; see {OUT / 'server.log'}")


def run(name: str, url: str) -> Path:
    OUT.mkdir(exist_ok=True)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    os.environ.update(
        ACYTOO_URL=url,
        ACYTOO_MODEL=MODEL_NAME,
        ACYTOO_HISTORY_DB=str(OUT / "demo-history.sqlite3"),
        JPY_SESSION_NAME=f"demo/{name}",
    )
    started = time.monotonic()
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(OUT)}}
    ).execute()
    target = OUT / name
    nbformat.write(notebook, target)
    print(f"executed {name} in {time.monotonic() - started:.1f} s -> {target.relative_to(ROOT)}")
    return target


def main() -> None:
    (OUT / "demo-history.sqlite3").unlink(missing_ok=True)  # each demo starts a fresh conversation
    # A real offline model (the 'local' extra) unless DEMO_BACKEND=scripted asks for canned replies.
    process, url = start_server(os.environ.get("DEMO_BACKEND", "llama"))
    print(f"local protocol server: {url}")
    try:
        target = run("quickstart.ipynb", url)
        notebook = nbformat.read(target, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code" and cell.source.startswith("%%acytoo"):
                shown = [o.get("data", {}).get("text/plain", "") for o in cell.outputs if o.get("data")]
                print(f"\n>>> {cell.source.splitlines()[1]}\n{shown[-1] if shown else '(no output)'}")
    finally:
        process.terminate()
        process.wait(timeout=10)
    figures = [
        line for line in (OUT / "server.log").read_text().splitlines() if line.startswith("generation:")
    ]
    if figures:
        print("\nper answer (local model):\n  " + "\n  ".join(figures))
    print(f"\nexecuted notebook: {target}")


if __name__ == "__main__":
    main()
