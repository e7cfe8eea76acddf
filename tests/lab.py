"""A real JupyterLab on 127.0.0.1 and Debian's chromium driven by Playwright, for browser tests."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from acytoo_magic.server import LocalServer, ServerConfig, plan_reply

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def jupyter_lab(root: Path, env: dict[str, str]) -> Iterator[str]:
    """Start JupyterLab serving ``root``; yields its base URL with the token as a query string."""
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
            "-m",
            "jupyterlab",
            "--no-browser",
            *(["--allow-root"] if os.geteuid() == 0 else []),
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
            f"--LabServerApp.user_settings_dir={root / '.lab-settings'}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
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
                raise RuntimeError(f"JupyterLab exited: {(root / 'jupyterlab.log').read_text()[-2000:]}")
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


class CannedModel:
    """A stand-in for the server's local model: a realistic Markdown answer to a question in
    ``ANSWERS``, streamed at a reading pace; anything else exactly as the scripted backend would
    reply (``[[echo]]``, ``[[size=...]]``, chunking and delays). Faults are not simulated."""

    name = "canned"

    def __init__(self, chunk: int = 6, delay: float = 0.04) -> None:
        self.config = ServerConfig(chunk_size=chunk, delay=delay)
        self.generations: list[Any] = []

    async def stream(
        self,
        messages: Sequence[Mapping[str, str]],
        temperature: float = 0.7,
        max_tokens: int | None = None,
        gone: Callable[[], bool] = lambda: False,
    ) -> AsyncIterator[str]:
        question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if question.strip() in ANSWERS:
            text, chunk, delay = ANSWERS[question.strip()], 8, 0.05
        else:
            plan = plan_reply(messages, self.config)
            text, chunk, delay = plan.body.decode(), plan.chunk, plan.delay
        for start in range(0, len(text), chunk):
            if gone():
                return
            yield text[start : start + chunk]
            if delay:
                await asyncio.sleep(delay)


@contextmanager
def lab_and_browser(root: Path) -> Iterator[dict[str, Any]]:
    """JupyterLab serving ``root`` with the stand-in model behind it, and a headless chromium;
    yields ``{"browser", "base", "token", "root"}``. Known questions get a realistic Markdown
    answer; the rest behaves as the scripted backend, replies without directives streaming at a
    readable pace, as a real model's would. Skips the test when chromium is missing."""
    import pytest
    from playwright.sync_api import sync_playwright

    if reason := chromium_missing_reason():
        pytest.skip(reason)

    with LocalServer(ServerConfig(model=CannedModel(chunk=6, delay=0.04))) as server:
        env = {"ACYTOO_URL": server.url, "ACYTOO_HISTORY_DB": str(root / "history.sqlite3")}
        with jupyter_lab(root, env) as address, sync_playwright() as playwright:
            base, token = address.split("|")
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield {"browser": browser, "base": base, "token": token, "root": root}
            finally:
                browser.close()
