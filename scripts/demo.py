"""`make demo`: execute the quick-start notebook as a new user meets it, show what it answered and how fast.

Nothing is configured (a fresh IPython profile, no settings cell): the bundled model answers because
its runtime is installed, with the extension's own defaults. DEMO_BACKEND picks what answers:
  local     (default) nothing configured: SmolLM2 runs inside the notebook's kernel, no server
  model     the same model behind `python -m acytoo_magic.server` (its default backend; `llama` too)
  scripted  the server's deterministic scripted backend
DEMO_MODEL picks the model for local/llama: smollm2 (default), gemma3 or a .gguf path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = NOTEBOOKS / "executed"
PROFILE = OUT / "ipython-profile"
BACKEND = os.environ.get("DEMO_BACKEND", "local")
MODEL = os.environ.get("DEMO_MODEL", "smollm2")
# Run in the kernel after the notebook (and removed from the saved copy): the figures of each answer.
FIGURES_CELL = (
    "from acytoo_magic.providers import local_model\n"
    "for g in (local_model.loaded().generations if local_model.loaded() else []):\n"
    "    print('generation:', g.summary())"
)


def start_server(backend: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m acytoo_magic.server`` on a free port; its per-answer figures go to a log."""
    command = [sys.executable, "-m", "acytoo_magic.server", "--port", "0", "--backend", backend]
    command += ["--delay", "0.01"] if backend == "scripted" else ["--model", MODEL, "--max-tokens", "160"]
    OUT.mkdir(exist_ok=True)
    log = (OUT / "server.log").open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        print(line.rstrip())
        if "listening on" in line:
            return process, line.split()[-1]
    raise SystemExit(f"demo: the local server did not start; see {OUT / 'server.log'}")


def run(name: str, settings: dict[str, str]) -> tuple[Path, list[str]]:
    """Execute ``name`` with ``settings`` in its kernel's environment; returns it and the local figures."""
    OUT.mkdir(exist_ok=True)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    os.environ.update(
        settings,
        ACYTOO_HISTORY_DB=str(OUT / "demo-history.sqlite3"),
        JPY_SESSION_NAME=f"demo/{name}",
        IPYTHONDIR=str(PROFILE),  # a new user's: no choice kept from an earlier `%acytoo use`
    )
    notebook.cells.append(new_code_cell(FIGURES_CELL))
    placed: dict[int, str] = {}  # cell index -> the code `-f code` asked to put below it

    def keep_next_input(cell: Any, cell_index: int, execute_reply: dict[str, Any]) -> None:
        for payload in execute_reply.get("content", {}).get("payload", []):
            if payload.get("source") == "set_next_input":
                placed[cell_index] = payload["text"]

    started = time.monotonic()
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(OUT)}},
        on_cell_executed=keep_next_input,
    ).execute()
    figures_cell = notebook.cells.pop()
    # nbclient has no front end to add the cell `-f code` asks for; add it below, as JupyterLab does
    for index in sorted(placed, reverse=True):
        notebook.cells.insert(index + 1, new_code_cell(placed[index]))
    figures = "".join(o.get("text", "") for o in figures_cell.outputs if o.get("name") == "stdout")
    target = OUT / name
    nbformat.write(notebook, target)
    print(f"executed {name} in {time.monotonic() - started:.1f} s -> {target.relative_to(ROOT)}")
    return target, [line for line in figures.splitlines() if line.startswith("generation:")]


def show(target: Path) -> None:
    notebook = nbformat.read(target, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.source.startswith("%%acytoo"):
            shown = [o.get("data", {}).get("text/plain", "") for o in cell.outputs if o.get("data")]
            said = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
            print(f"\n>>> {cell.source.splitlines()[1]}\n{shown[-1] if shown else '(no output)'}")
            if said.strip():
                print(said.rstrip())


def main() -> None:
    (OUT / "demo-history.sqlite3").unlink(missing_ok=True)  # each demo starts a fresh conversation
    shutil.rmtree(PROFILE, ignore_errors=True)
    if BACKEND == "local":  # no server, no URL, nothing chosen: the model runs in the kernel
        for name in ("ACYTOO_URL", "ACYTOO_PROVIDER", "ACYTOO_MODEL"):  # a new user's environment
            os.environ.pop(name, None)
        if MODEL == "smollm2":
            print("nothing configured: the bundled model (smollm2) answers inside the notebook's kernel")
            target, figures = run("quickstart.ipynb", {})
        else:
            print(f"provider 'local': {MODEL} inside the notebook's kernel")
            target, figures = run("quickstart.ipynb", {"ACYTOO_PROVIDER": "local", "ACYTOO_MODEL": MODEL})
        show(target)
    else:
        process, url = start_server(BACKEND)
        print(f"local protocol server: {url}")
        try:
            settings = {"ACYTOO_PROVIDER": "acytoo", "ACYTOO_URL": url, "ACYTOO_MODEL": MODEL}
            target, _ = run("quickstart.ipynb", settings)
            show(target)
        finally:
            process.terminate()
            process.wait(timeout=10)
        log = (OUT / "server.log").read_text().splitlines()
        figures = [line for line in log if line.startswith("generation:")]
    if figures:
        print(f"\nper answer ({MODEL}, tokens, time to first token, tokens/s):\n  " + "\n  ".join(figures))
    print(f"\nexecuted notebook: {target}")


if __name__ == "__main__":
    main()
