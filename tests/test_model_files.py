"""Before a model runs: the CPU check, fetching a model file once, reading a GGUF header, the
history budget and settings the local provider brings.

No model is loaded here: the CPU check must stop before llama.cpp's library is imported, and the
fetch is served by a real aiohttp server on 127.0.0.1 (no hub is reachable in CI).
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiohttp import web

from acytoo_magic.core.loops import LoopThread
from acytoo_magic.providers import local_model, model_files

CPU_WITHOUT_AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx fma\n"

FIRST_USE_ON_AN_OLD_CPU = """
import asyncio, sys
from acytoo_magic.providers import local_model
from acytoo_magic.providers import ProviderError
from acytoo_magic.providers.local import Local
local_model.CPUINFO = local_model.Path(sys.argv[1])
async def ask():
    async for _ in Local.create_async_generator("smollm2", [{"role": "user", "content": "hi"}]):
        pass
try:
    asyncio.run(ask())
except ProviderError as exc:
    print(exc)
print("xllamacpp imported:", "xllamacpp" in sys.modules)
"""


def test_missing_cpu_flags_are_named():
    assert local_model.missing_cpu_flags(CPU_WITHOUT_AVX2) == ["avx2", "f16c"]
    assert local_model.missing_cpu_flags(CPU_WITHOUT_AVX2.replace("fma", "fma avx2 f16c")) == []
    assert local_model.missing_cpu_flags("") == []  # no flags line (not x86 Linux): nothing to say


def test_a_cpu_without_avx2_gets_one_line_before_anything_loads(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPU_WITHOUT_AVX2)
    out = subprocess.run(
        [sys.executable, "-c", FIRST_USE_ON_AN_OLD_CPU, str(cpuinfo)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"ACYTOO_SMOLLM2_URL": "", "ACYTOO_MODEL_DIR": str(tmp_path / "models"), "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    error, imported = out.stdout.strip().splitlines()
    assert error.startswith("local: this CPU lacks AVX2, F16C, which the bundled llama.cpp runtime")
    assert "-p openai" in error
    assert imported == "xllamacpp imported: False"
    assert not (tmp_path / "models").exists()  # nothing fetched either


@pytest.fixture
def file_server():
    """Serves ``files[name]`` at ``/name`` on 127.0.0.1; ``hits`` counts the requests."""
    files: dict[str, bytes] = {}
    hits: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        hits.append(name)
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], headers={"Content-Length": str(len(files[name]))})

    app = web.Application()
    app.router.add_get("/{name}", serve)
    worker = LoopThread("file-server")
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    port = worker.run(start(), timeout=10)
    yield f"http://127.0.0.1:{port}", files, hits
    worker.run(runner.cleanup(), timeout=10)
    worker.stop()


def download(url: str, body: bytes, name: str = "tiny.gguf") -> model_files.Download:
    digest = hashlib.sha256(body).hexdigest()
    return model_files.Download(name, f"{url}/{name}", digest, len(body), "ACYTOO_TEST_URL")


def test_a_model_is_fetched_once_with_progress_and_checked(file_server, tmp_path, monkeypatch):
    url, files, hits = file_server
    monkeypatch.setenv("ACYTOO_MODEL_DIR", str(tmp_path))
    files["tiny.gguf"] = body = b"GGUF" + bytes(range(256)) * 12_000  # ~3 MB: several 1 MB blocks
    seen: list[tuple[int, int]] = []
    calls = threading.get_ident()
    path = model_files.fetch(download(url, body), lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "tiny.gguf" and path.read_bytes() == body
    assert len(seen) >= 3 and seen[-1] == (len(body), len(body)) and seen == sorted(seen)
    assert model_files.fetch(download(url, body)) == path and hits == ["tiny.gguf"]  # once
    assert threading.get_ident() == calls
    assert model_files.progress_bar(len(body) // 2, len(body)).startswith("[###############")


def test_a_wrong_or_missing_file_is_a_one_line_error_and_leaves_nothing(file_server, tmp_path, monkeypatch):
    url, files, _ = file_server
    monkeypatch.setenv("ACYTOO_MODEL_DIR", str(tmp_path))
    files["tiny.gguf"] = b"not the model"
    with pytest.raises(
        model_files.FetchError, match=r"tiny.gguf from 127.0.0.1:\d+ is not the expected file"
    ):
        model_files.fetch(download(url, b"the model"))
    with pytest.raises(model_files.FetchError, match=r"cannot fetch gone.gguf from 127.0.0.1:\d+: Not Found"):
        model_files.fetch(download(url, b"x", name="gone.gguf"))
    monkeypatch.setenv("ACYTOO_TEST_URL", "")
    with pytest.raises(model_files.FetchError, match="fetching is off"):
        model_files.fetch(download(url, b"x"))
    assert list(tmp_path.iterdir()) == []


def gguf(path: Path, keys: dict[str, str]) -> Path:
    """A GGUF header with string keys and one array, as llama.cpp writes them."""
    parts = [struct.pack("<4sIQQ", b"GGUF", 3, 0, len(keys) + 1)]
    parts.append(struct.pack("<Q", 20) + b"tokenizer.ggml.token" + struct.pack("<IIQ", 9, 8, 2))
    parts += [struct.pack("<Q", 1) + b"a", struct.pack("<Q", 2) + b"bc"]
    for key, value in keys.items():
        parts.append(
            struct.pack("<Q", len(key)) + key.encode() + struct.pack("<IQ", 8, len(value)) + value.encode()
        )
    path.write_bytes(b"".join(parts))
    return path


def test_the_gguf_header_says_whether_a_model_has_a_chat_template(tmp_path):
    with_template = gguf(tmp_path / "a.gguf", {"general.name": "x", "tokenizer.chat_template": "{{ m }}"})
    without = gguf(tmp_path / "b.gguf", {"general.name": "x"})
    assert model_files.has_chat_template(with_template) and not model_files.has_chat_template(without)
    (tmp_path / "c.gguf").write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ValueError, match="not a GGUF file"):
        model_files.has_chat_template(tmp_path / "c.gguf")


def test_the_local_provider_gets_a_history_budget_a_small_model_can_read(tmp_path):
    from acytoo_magic import Assistant
    from acytoo_magic.providers.local import Local

    assistant = Assistant(provider="local", history_path=str(tmp_path / "h.sqlite3"))
    try:
        assert assistant.request("hi").history_chars == Local.max_history_chars < assistant.max_history_chars
        assert assistant.request("hi", provider="openai").history_chars == assistant.max_history_chars
        assistant.max_history_chars = 1_000  # the smaller of the two wins
        assert assistant.request("hi").history_chars == 1_000
        shown = assistant.effective_config()
        assert shown["Local.max_tokens"] == Local.max_tokens and shown["Local.n_ctx"] == Local.n_ctx
        other = Assistant(provider="openai", history_path=str(tmp_path / "o.sqlite3"))
        assert "Local.max_tokens" not in other.effective_config()
        other.close()
    finally:
        assistant.close()
