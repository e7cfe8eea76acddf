"""Remembering which backend a user chose (``%acytoo use``): one JSON config file of their IPython profile.

Every IPython process of the user reads it at start: a kernel (ipykernel's ``IPKernelApp`` loads
``ipython_config.{py,json}`` and then ``ipython_kernel_config.{py,json}`` from the profile
directory) and a terminal IPython alike, so the choice holds after a kernel restart, in every
notebook, with no extension code run to read it. JSON rather than ``ipython_config.py``: it can
be read, merged and written back without running or rewriting the user's own Python; traitlets
loads the ``.json`` after the ``.py`` of the same name, so the choice wins over a line there.

Only the choice is kept (provider, url, model), never a key. A setting made for the session
(``%config``, an environment variable) is not written anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..core.errors import AcytooError

SECTION = "Assistant"
KEPT = ("provider", "url", "model")
FILE_NAME = "ipython_config.json"


class ChoiceFileError(AcytooError):
    """The profile's config file cannot be read as JSON or written; said in one line."""


def config_file(shell: Any = None) -> Path:
    """The JSON config file of ``shell``'s IPython profile (the default profile without a shell);
    ``IPYTHONDIR`` moves it, as it moves everything of IPython's."""
    location = getattr(getattr(shell, "profile_dir", None), "location", None)
    if not location:
        from IPython.paths import get_ipython_dir

        location = os.path.join(get_ipython_dir(), "profile_default")
    return Path(location) / FILE_NAME


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ChoiceFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ChoiceFileError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict):
        raise ChoiceFileError(f"{path} does not hold a JSON object; fix or remove it")
    return data


def stored(path: Path) -> dict[str, str]:
    """The choice kept in ``path`` (provider, url, model: those present); {} when none."""
    section = _read(path).get(SECTION)
    if not isinstance(section, dict):
        return {}
    return {name: str(section[name]) for name in KEPT if isinstance(section.get(name), str)}


def remember(path: Path, choice: dict[str, str]) -> None:
    """Keep ``choice`` in ``path``: its provider, url and model replace the ones there; a part not
    given is kept as "" (so ``ACYTOO_URL`` in some later environment does not change where the
    chosen provider goes); an empty ``choice`` removes them all. Everything else in the file stays
    as it was. Written whole, then renamed."""
    data = _read(path)
    section = data.get(SECTION)
    section = dict(section) if isinstance(section, dict) else {}
    for name in KEPT:
        section.pop(name, None)
    if choice:
        section.update({name: str(choice.get(name) or "") for name in KEPT})
    if section:
        data[SECTION] = section
    else:
        data.pop(SECTION, None)
    _write(path, data)


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".ipython_config.", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2)
                out.write("\n")
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    except OSError as exc:
        raise ChoiceFileError(f"cannot write {path}: {exc.strerror or exc}") from None
