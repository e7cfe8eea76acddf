"""A real JupyterLab (or Jupyter Notebook 7) on 127.0.0.1 and Debian's chromium driven by Playwright,
for browser tests."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from standin import StandInModel

from acytoo_magic.server import LocalServer, ServerConfig

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


def chromium_missing_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (make test installs it with apt-get when run as root)"
    return None


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here (None: they can); in CI that is a failure, not a skip."""
    reason = chromium_missing_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {reason}", pytrace=False)
    return reason


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The front ends a notebook user opens, as their servers start: JupyterLab and Notebook 7 (its own
# app and page on the same server and settings; it reads keys in another phase, see docs/usage.md).
FRONTS = {
    "lab": ["-m", "jupyterlab", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
    "notebook": ["-m", "notebook"],
}


@contextmanager
def jupyter_lab(root: Path, env: dict[str, str], front: str = "lab") -> Iterator[str]:
    """Start JupyterLab (``front="notebook"``: Notebook 7) serving ``root``; yields its base URL
    with the token as a query string."""
    port, token = free_port(), secrets.token_hex(16)
    config = root / ".jupyter-config"
    config.mkdir(exist_ok=True)
    settings = root / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)  # no "news" toast over the page: nothing to fetch here
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    # Start the notebook's kernel without asking: under load Lab otherwise shows "Select Kernel".
    notebook = root / ".lab-settings" / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True, exist_ok=True)
    # Every cell stays in the DOM (no windowing): tests look for elements in cells off screen too.
    (notebook / "tracker.jupyterlab-settings").write_text(
        '{"autoStartDefaultKernel": true, "windowingMode": "none"}'
    )
    process = subprocess.Popen(
        [
            sys.executable,
            *FRONTS[front],
            "--no-browser",
            *(["--allow-root"] if os.geteuid() == 0 else []),
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabServerApp.user_settings_dir={root / '.lab-settings'}",
        ],
        env={
            **os.environ,
            **env,
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        },
        stdout=subprocess.DEVNULL,
        stderr=open(root / "jupyterlab.log", "wb"),  # noqa: SIM115 (closed with the process)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # poll readiness: the server answers /api/status once it is up
            if process.poll() is not None:
                raise RuntimeError(f"{front} exited: {(root / 'jupyterlab.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"{base}|{token}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def copy_notebook(source: Path, root: Path) -> Path:
    target = root / source.name
    shutil.copy(source, target)
    return target


# Realistic answers for the pictures in the README and the Markdown checks: what a model would say.
ANSWERS = {
    "What should I check first in a DataFrame with missing values?": """\
# Missing values: what to check first

1. **How many**, per column: `df.isna().sum()`
2. **Where** they cluster: some rows, some dates, one source?
3. **Why**: missing at random, or a join that matched nothing?

## Then decide

| situation | what to do |
|:---|:---|
| a few rows, at random | `df.dropna()` |
| numeric and skewed | fill with the median |
| a category | a separate `"unknown"` level |
| most of a column | consider dropping the column |

## A quick look

```python
share = df.isna().mean().sort_values(ascending=False)
print(share[share > 0])          # share of NaN per column
if share.max() < 0.05:
    df = df.dropna()             # few and scattered: dropping is fine
```

Check the dtypes too: numbers read as `object` often hide `"n/a"` strings.
""",
    "How do I find duplicated rows in a DataFrame?": """\
## Finding duplicated rows

- `df.duplicated()` marks each repeat of an earlier row
- `keep=False` marks *every* copy, the first one too
- `subset=["id", "date"]` compares only those columns

```python
dupes = df[df.duplicated(keep=False)]
print(len(dupes), "rows have a twin")
df = df.drop_duplicates()        # keeps the first copy
```

| call | gives |
|---|---|
| `df.duplicated().sum()` | how many repeats |
| `df.drop_duplicates()` | the unique rows |
""",
}


class CannedModel(StandInModel):
    """A stand-in for the server's local model: a realistic Markdown answer to a question in
    ``ANSWERS``, streamed at a reading pace; anything else exactly as the scripted backend would
    reply (``[[echo]]``, ``[[size=...]]``, chunking and delays). Faults are not simulated. Every
    stream ends as a real server's does (finish_reason, usage, ``[DONE]``, end of body)."""

    name = "canned"

    def __init__(self, chunk: int = 6, delay: float = 0.04) -> None:
        super().__init__(chunk=chunk, delay=delay)

    def answer(self, messages: Sequence[Mapping[str, str]]) -> tuple[str, int, float]:
        question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if question.strip() in ANSWERS:
            return ANSWERS[question.strip()], 8, 0.05
        return super().answer(messages)


# -- JupyterLab pages (Playwright): opening a notebook, running a cell, pictures --------------

# Elements that run, load or submit something, and links that would run: none may ever appear in
# an answer's output, not even for one frame while it streams.
DANGEROUS = (
    "script, img, iframe, frame, object, embed, svg, math, style, link, meta, base, form, button, input,"
    " textarea, video, audio, a[href^='javascript' i], a[href^='data' i], a[href^='vbscript' i]"
)
# Installed before the page's own scripts, so it sees every frame of every answer, on reload too.
# %(scope)s: where answers are drawn (the widget's own textarea, buttons and style are not answers).
WATCH_ANSWERS = """
window.__seen = [];
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType !== 1) continue;
      for (const el of [node, ...node.querySelectorAll('*')]) {
        if (!el.closest(%(scope)s) || el.outerHTML.includes('__canary')) continue;
        const handler = [...el.attributes].some((a) => a.name.toLowerCase().startsWith('on'));
        if (handler || el.matches(%(dangerous)s)) window.__seen.push(el.outerHTML.slice(0, 300));
      }
    }
  }
}).observe(document, {subtree: true, childList: true});
"""


# The notebook as its user sees it: each cell's kind, prompt ("[3]:", "[*]:") and text. Equal before
# and after typing into the chat: no cell ran, none was added, changed or removed.
CELLS = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map((c) => [
  [...c.classList].filter((k) => /^jp-(Code|Markdown|Raw)Cell$/.test(k)).join(),
  (c.querySelector('.jp-InputPrompt') || {}).innerText || '',
  (c.querySelector('.jp-InputArea-editor') || {}).innerText || '',
])"""
# Nothing runs: no cell waits or runs ("[*]") and the kernel is idle (Run All may still be finishing).
CELLS_SETTLED = (
    "![...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].some((p) => p.innerText.includes('*'))"
    " && document.querySelector(\".jp-Notebook-ExecutionIndicator[data-status='idle']\") !== null"
)


def open_notebook(lab, name: str, ready: str, answers: str):
    """A page with the notebook open (in a workspace of its own), its cells run until ``ready`` holds;
    elements that could run anything are recorded in ``window.__seen`` whenever one is drawn inside
    ``answers`` (a CSS selector)."""
    page = lab["browser"].new_page(viewport={"width": 1280, "height": 1000})
    page.dialogs = []  # any alert/confirm/prompt an answer managed to open

    def on_dialog(dialog) -> None:
        if dialog.type == "beforeunload":  # Lab's own "unsaved changes" on a reload: leave
            dialog.accept()
        else:
            page.dialogs.append(dialog.message)
            dialog.dismiss()

    page.on("dialog", on_dialog)
    page.add_init_script(WATCH_ANSWERS % {"scope": json.dumps(answers), "dangerous": json.dumps(DANGEROUS)})
    workspace = Path(name).stem
    page.front = lab.get("front", "lab")
    if page.front == "notebook":  # Notebook 7: one notebook a page, no workspaces
        page.goto(f"{lab['base']}/notebooks/{name}?token={lab['token']}")
    else:
        page.goto(f"{lab['base']}/lab/workspaces/{workspace}/tree/{name}?token={lab['token']}")
    try:
        page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        run_all_until(page, ready)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"lab_setup_failure_{workspace}.png"))
        raise
    return page


def run_all_until(page, ready: str, attempts: int = 4) -> None:
    """Run All, and run it again only if JupyterLab dropped it. Seen under load: clicked just as
    the kernel connects, the cells stay unexecuted ('[ ]') with an idle kernel; or Lab replaces
    the kernel it just started, and the cells after the first come back unexecuted; or the
    widget is not displayed. A slow but running run is waited for, not restarted."""
    started = (
        "[...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
        ".some(p => /\\[[0-9*]+\\]/.test(p.innerText))"
    )
    dropped = (
        "(() => { const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
        ".map(p => p.innerText);"
        " return document.querySelector(\".jp-Notebook-ExecutionIndicator[data-status='idle']\") !== null"
        " && !prompts.some(p => p.includes('[*]')) && prompts.some(p => /\\[ \\]/.test(p)); })()"
    )
    # Seen under load, when Lab replaced the kernel connection as the page opened: the run ends but
    # the widget says "Error displaying widget: model not found", and so does every widget made
    # after it (the page's widget manager is tied to the connection it first saw; cf.
    # jupyterlab/jupyterlab#10533). A reloaded page has a new manager: reload, run again. Outputs of
    # an earlier attempt are marked stale (a re-run replaces them with new elements).
    # Also seen: the page ends up with "No Kernel" (the session lost its kernel); a reload starts one.
    lost = (
        "((document.querySelector(\".jp-Notebook-ExecutionIndicator[data-status='idle']\") !== null"
        " && [...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some(o => !o.dataset.stale && o.innerText.includes('Error displaying widget')))"
        " || [...document.querySelectorAll('.jp-Toolbar-kernelName')]"
        ".some(k => k.innerText.includes('No Kernel')))"
    )
    # The same race seen another way: the run ends, the kernel is idle, and a widget's output stays
    # at "Loading widget..." (its model never reaches the page). A view may still be on its way, so
    # it gets a while to appear before the page counts as lost.
    stuck = (
        "(document.querySelector(\".jp-Notebook-ExecutionIndicator[data-status='idle']\") !== null"
        " && ![...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
        ".some(p => p.innerText.includes('[*]'))"
        " && [...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some(o => !o.dataset.stale && o.innerText.includes('Loading widget')))"
    )
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    reload = False
    for attempt in range(attempts):
        if attempt and (reload or page.evaluate(lost)):
            reload = False
            page.reload()
            page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        page.evaluate("document.querySelectorAll('.jp-OutputArea-output').forEach(o => o.dataset.stale = 1)")
        select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
        if select.is_visible():  # "Select Kernel", in case the settings did not take
            select.click()
        try:
            page.get_by_role("menuitem", name="Run", exact=True).click(timeout=5_000)
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=5_000)
            page.wait_for_function(started, timeout=15_000)
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            continue
        page.wait_for_function(f"({ready}) || {dropped} || {lost} || {stuck}", timeout=180_000)
        if page.evaluate(ready):
            return
        if page.evaluate(stuck):
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_function(ready, timeout=30_000)
            if page.evaluate(ready):
                return
            reload = True
    raise AssertionError(f"Run All was dropped {attempts} times")


def save_shot(target, name: str) -> None:
    """Into tests/artifacts/ always; also into $DOCS_SCREENSHOTS (``make screenshots`` sets docs/)."""
    ARTIFACTS.mkdir(exist_ok=True)
    target.screenshot(path=str(ARTIFACTS / name))
    if os.environ.get("DOCS_SCREENSHOTS"):
        target.screenshot(path=str(Path(os.environ["DOCS_SCREENSHOTS"]) / name))


def run_in_a_new_cell(page, source: str, marker: str):
    """Type ``source`` into a new cell below the last and run it, as a user does; returns the cell
    (found by ``marker``, a text in its input) and its first output area."""
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below
    page.keyboard.press("Enter")
    page.keyboard.type(source)
    page.keyboard.press("Shift+Enter")
    # found by its input: an open chat on the same thread shows the cell's exchange too
    cell = page.locator(".jp-CodeCell", has=page.locator(".jp-InputArea", has_text=marker))
    return cell, cell.locator(".jp-OutputArea-output").first


@contextmanager
def lab_and_browser(root: Path, front: str = "lab") -> Iterator[dict[str, Any]]:
    """JupyterLab (or Notebook 7) serving ``root`` with the stand-in model behind it, and a headless
    chromium; yields ``{"browser", "base", "token", "root", "url", "front"}``. Known questions get a
    realistic Markdown answer; the rest behaves as the scripted backend, replies without directives
    streaming at a readable pace, as a real model's would. Skips the test when chromium is missing
    (fails in CI)."""
    from playwright.sync_api import sync_playwright

    if reason := browser_unavailable():
        pytest.skip(reason)

    with LocalServer(ServerConfig(model=CannedModel(chunk=6, delay=0.04))) as server:
        # "scripted": what the status lines and the chat header show in the README pictures, whose
        # answers this server writes (not a model)
        env = {
            "ACYTOO_URL": server.url,
            "ACYTOO_MODEL": "scripted",
            "ACYTOO_HISTORY_DB": str(root / "history.sqlite3"),
        }
        with jupyter_lab(root, env, front) as address, sync_playwright() as playwright:
            base, token = address.split("|")
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield {
                    "browser": browser, "base": base, "token": token, "root": root, "url": server.url,
                    "front": front,
                }
            finally:
                browser.close()


def save_notebook(page, path: Path):
    """Save the open notebook as a user does (Ctrl+S in command mode), wait until it is saved, and
    return the file as read back from disk. JupyterLab marks its tab dirty until then; Notebook 7
    has no tab, so there the file itself is watched until it is written."""
    import nbformat

    before = path.stat().st_mtime_ns if path.exists() else 0
    page.locator(".jp-Notebook .jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    if getattr(page, "front", "lab") == "notebook":
        deadline = time.monotonic() + 30
        while not path.exists() or path.stat().st_mtime_ns == before:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path.name} was not saved")
            time.sleep(0.05)  # polling the file for the save, not waiting a fixed time
        while True:  # written in place: read it once it parses
            try:
                return nbformat.read(path, as_version=4)
            except (ValueError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    page.wait_for_function(
        "document.querySelector('.lm-DockPanel-tabBar .jp-mod-dirty') === null", timeout=30_000
    )
    return nbformat.read(path, as_version=4)
