"""Shared fixtures: real local protocol servers on 127.0.0.1 (scripted, or with holdable streams),
and real kernels."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

from kernels import Kernel, kernel
from standin import StandInServer

from acytoo_magic.server import LocalServer, ServerConfig

# CI (a fresh clone, CI=true) draws the same examples every run, so a push is judged on its code,
# not on which examples came up; a developer's run draws new ones and keeps what fails in
# .hypothesis/ (HYPOTHESIS_PROFILE=ci reproduces CI's).
settings.register_profile("ci", derandomize=True, database=None)
# Never the developer's own IPython profile or Jupyter config: `%acytoo use` writes the profile's
# ipython_config.json, and a choice kept there would change what every test kernel talks to.
# Every kernel, JupyterLab and IPython a test starts inherits these.
_HOME = Path(tempfile.mkdtemp(prefix="acytoo-tests-home-"))
os.environ["IPYTHONDIR"] = str(_HOME / "ipython")
os.environ["JUPYTER_CONFIG_DIR"] = str(_HOME / "jupyter-config")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(chunk_size=8, delay=0.0)) as running:
        yield running


@pytest.fixture
def standin() -> Iterator[StandInServer]:
    """A local server whose streams a test can hold open (``[[hold]]``) and ``release()``; point a
    kernel at it with ``%config Assistant.url = standin.url``."""
    with StandInServer() as running:
        yield running


@pytest.fixture
def history_db(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite3"


def notebook_env(request: pytest.FixtureRequest, url: str, history: Path) -> dict[str, str]:
    """What a notebook's kernel sees: the local server, a history file of its own, and the
    notebook's name (a test module's ``NOTEBOOK``)."""
    return {
        "ACYTOO_URL": url,
        "ACYTOO_HISTORY_DB": str(history),
        "JPY_SESSION_NAME": getattr(request.module, "NOTEBOOK", "notebook.ipynb"),
    }


@contextmanager
def notebook_kernel(env: dict[str, str]) -> Iterator[Kernel]:
    """A real kernel with the extension loaded, as after a notebook's first cell."""
    with kernel(**env) as running:
        assert running.execute("%load_ext acytoo_magic").status == "ok"
        yield running


@pytest.fixture
def kernel_env(request: pytest.FixtureRequest, server: LocalServer, history_db: Path) -> dict[str, str]:
    return notebook_env(request, server.url, history_db)


@pytest.fixture
def k(kernel_env: dict[str, str]) -> Iterator[Kernel]:
    """A real kernel with the extension loaded, as after a notebook's first cell."""
    with notebook_kernel(kernel_env) as running:
        yield running


@pytest.fixture(scope="module")
def module_server() -> Iterator[LocalServer]:
    """The scripted server of ``module_k``."""
    with LocalServer(ServerConfig(chunk_size=8, delay=0.0)) as running:
        yield running


@pytest.fixture(scope="module")
def module_k(
    request: pytest.FixtureRequest, module_server: LocalServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kernel]:
    """``k``, one for all of a module's tests: for a module of many short cases (a fault matrix)
    where a kernel per test would cost minutes. Tests keep apart by thread."""
    history = tmp_path_factory.mktemp("module") / "history.sqlite3"
    with pytest.MonkeyPatch.context() as monkeypatch:
        clear_ambient_settings(monkeypatch)
        env = notebook_env(request, module_server.url, history)
        with notebook_kernel(env) as running:
            yield running


def clear_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own keys, URLs, proxies and history file out of this process's environment."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    for name in list(os.environ):
        if name.startswith(("ACYTOO_", "OPENAI_")) or name == "JPY_SESSION_NAME" or name.lower() in proxies:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's own keys, URLs, proxies or history file."""
    clear_ambient_settings(monkeypatch)
