"""Shared fixtures: a real local protocol server on 127.0.0.1, and real kernels."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kernels import Kernel, kernel

from acytoo_magic.server import LocalServer, ServerConfig


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(chunk_size=8, delay=0.0)) as running:
        yield running


@pytest.fixture
def history_db(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite3"


@pytest.fixture
def kernel_env(request: pytest.FixtureRequest, server: LocalServer, history_db: Path) -> dict[str, str]:
    """What a notebook's kernel sees: the local server, a history file of the test's own, and the
    notebook's name (a test module's ``NOTEBOOK``)."""
    return {
        "ACYTOO_URL": server.url,
        "ACYTOO_HISTORY_DB": str(history_db),
        "JPY_SESSION_NAME": getattr(request.module, "NOTEBOOK", "notebook.ipynb"),
    }


@pytest.fixture
def k(kernel_env: dict[str, str]) -> Iterator[Kernel]:
    """A real kernel with the extension loaded, as after a notebook's first cell."""
    with kernel(**kernel_env) as running:
        assert running.execute("%load_ext acytoo_magic").status == "ok"
        yield running


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's own keys, URLs, proxies or history file."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    for name in list(os.environ):
        if name.startswith(("ACYTOO_", "OPENAI_")) or name == "JPY_SESSION_NAME" or name.lower() in proxies:
            monkeypatch.delenv(name)
