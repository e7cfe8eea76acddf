"""Shared fixtures: a real local protocol server on 127.0.0.1, and real kernels."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from acytoo_magic.server import LocalServer, ServerConfig


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(chunk_size=8, delay=0.0)) as running:
        yield running


@pytest.fixture
def history_db(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite3"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's own keys, URLs, proxies or history file."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    for name in list(os.environ):
        if name.startswith(("ACYTOO_", "OPENAI_")) or name == "JPY_SESSION_NAME" or name.lower() in proxies:
            monkeypatch.delenv(name)
