"""Which notebook document is asking: a history key that follows a rename and is never inherited.

The key is the notebook's current path. The kernel does not know it by itself: JupyterLab and
Notebook 7 start a kernel with ``JPY_SESSION_NAME`` (ipykernel copies it to ``__session__``) set to
the path the notebook had then, and a new notebook is ``Untitled.ipynb`` until its first rename,
which the kernel is never told about. So:

* **The path, live.** VS Code keeps ``__vsc_ipynb_file__`` in the namespace. Under a Jupyter
  server, the server's sessions API (``GET /api/sessions``, as ``ipynbname`` uses it) says which
  path the session of this kernel has now; the frontend moves the session on rename (``PATCH``).
  The server is found from the ``jpserver-*.json`` files beside the kernel's connection file,
  once; afterwards one local request per answer, made where the history is read (off the loop).
  Without a server (nbclient, papermill, a plain ``jupyter console``) the launch name or the
  kernel's id stands for the notebook, as before.
* **A rename moves the thread.** When the path this kernel saw last changes, the rows under the
  old path that belong to this document move to the new one (no ``%acytoo threads --adopt``).
* **A reused name is not inherited.** Every row records the kernel that wrote it and the cell
  that was running (``meta.kernel``, ``meta.anchor``; a cell's exchange also has its cell id).
  Cell ids are unique per notebook (nbformat 4.5), so rows whose cells the document at this path
  never had, written by another kernel, are another notebook's: they move to that notebook's
  current path when its kernel still runs, else to ``"<path> (earlier notebook ...)"``, where
  ``%acytoo threads`` lists them and ``--adopt`` takes them back. Nothing is deleted.
* **A notebook renamed while closed** finds its rows again by its saved cells' ids, unless the
  notebook at the old path still has those cells (a copy keeps the ids: the original keeps its
  thread).

The document's cell ids are read from the saved file (the key is its absolute path). When it
cannot be read (no file yet, not a notebook, cells without ids), nothing is judged and the name
alone decides, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HistoryError

# Seconds one request to the local Jupyter server may take before the last known path is used.
LOOKUP_TIMEOUT = 2.0
EARLIER = " (earlier notebook, kernel {kernel})"
# nbformat 4.5's cell id. Only such ids are evidence: they are saved in the file. A frontend that
# sends something else as ``cellId`` (VS Code sends its cell's URI) leaves the name to decide.
_CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def kernel_id(shell: Any) -> str | None:
    """The id of the kernel running ``shell`` (its connection file's name), None outside a kernel."""
    if getattr(shell, "kernel", None) is None:
        return None
    try:
        from ipykernel import get_connection_file

        return Path(get_connection_file()).stem.removeprefix("kernel-")
    except Exception:  # not a normal ipykernel launch
        return None


def is_cell_id(value: Any) -> bool:
    """An nbformat cell id, as saved in the notebook file."""
    return isinstance(value, str) and _CELL_ID.fullmatch(value) is not None


def cell_id_of(key: str | None) -> str | None:
    """The notebook cell id inside an exchange's cell key (``id:<cell id>#n``), None for others."""
    if not key or not key.startswith("id:"):
        return None
    found = key[3:].rpartition("#")[0] or key[3:]
    return found if is_cell_id(found) else None


def document_cells(path: str) -> set[str] | None:
    """The cell ids of the notebook saved at ``path``; None when that cannot be known."""
    if not path.endswith(".ipynb") or not os.path.isabs(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            cells = json.load(file).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return None
    ids = {cell["id"] for cell in cells if isinstance(cell, dict) and is_cell_id(cell.get("id"))}
    return ids if ids or not cells else None  # cells without ids (nbformat < 4.5): unknown


@dataclass(frozen=True)
class JupyterServer:
    """A running Jupyter server, as its ``jpserver-*.json`` in the runtime directory describes it."""

    url: str
    token: str
    root: str

    def sessions(self) -> list[dict[str, Any]]:
        """``GET /api/sessions`` (``OSError``/``ValueError`` when it cannot be had)."""
        request = urllib.request.Request(self.url.rstrip("/") + "/api/sessions")
        if self.token:
            request.add_header("Authorization", f"token {self.token}")
        # The server is on this machine: a proxy from the environment must not be used for it.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=LOOKUP_TIMEOUT) as response:
            found = json.load(response)
        return found if isinstance(found, list) else []

    def key(self, session: dict[str, Any]) -> str:
        """The history key of a session: its absolute path, the form ``JPY_SESSION_NAME`` has."""
        return os.path.join(self.root, session.get("path") or "")


def running_servers(runtime_dir: Path) -> Iterable[JupyterServer]:
    """The servers that wrote their info file into ``runtime_dir`` (stale files included)."""
    for info in sorted(runtime_dir.glob("jpserver-*.json")) + sorted(runtime_dir.glob("nbserver-*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(info.read_text(encoding="utf-8"))
            root = data.get("root_dir") or data.get("notebook_dir") or ""
            yield JupyterServer(str(data["url"]), str(data.get("token") or ""), str(root))


@dataclass
class _Group:
    """The rows one kernel wrote under one key, and the cells they point at."""

    ids: list[int] = field(default_factory=list)
    cells: set[str] = field(default_factory=set)


class NotebookIdentity:
    """The history key of the notebook a shell runs, kept in step with its document.

    ``key()`` is cheap after the first call (a local request when a server is known);
    ``resolve(store)`` also sorts the store's rows out when the key is new to this kernel.
    """

    def __init__(self, shell: Any = None) -> None:
        self.shell = shell
        self.kernel = kernel_id(shell)
        self.seen: set[str] = set()  # cell ids this kernel has run: cells of its document
        self.last_cell: str | None = None
        self._server: JupyterServer | None = None
        self._server_known = self.kernel is None  # looked for once; none outside a kernel
        self._known: str | None = None  # the key resolved last: a change is a rename
        self._checked: set[str] = set()  # keys whose rows were sorted out for this kernel
        self._live: dict[str | None, str] = {}  # kernel id -> its session's key, as last asked
        self._lock = threading.RLock()
        self._note_parent()

    # -- what the kernel learns as cells run ------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        """IPython's ``pre_run_cell`` event: remember the id of the cell (JupyterLab sends it)."""
        self._note_cell(getattr(info, "cell_id", None))

    def _note_parent(self) -> None:
        """The cell running now (the one loading the extension) has run before the hook existed."""
        kernel = getattr(self.shell, "kernel", None)
        with contextlib.suppress(Exception):
            self._note_cell((kernel.get_parent() or {}).get("metadata", {}).get("cellId"))

    def _note_cell(self, cell_id: Any) -> None:
        if is_cell_id(cell_id):
            self.seen.add(cell_id)
            self.last_cell = cell_id

    def stamp(self) -> dict[str, str]:
        """What a stored row records about its writer, so a reused name can be told apart."""
        marks = {"kernel": self.kernel, "anchor": self.last_cell}
        return {name: value for name, value in marks.items() if value}

    # -- the key ---------------------------------------------------------------------------
    def key(self) -> str:
        """The notebook's current path when known, else its launch name, the kernel's id, the cwd."""
        namespace = getattr(self.shell, "user_ns", None) or {}
        vscode = namespace.get("__vsc_ipynb_file__")
        if vscode:
            return str(vscode)
        live = self._live_key()
        if live:
            return live
        launch = namespace.get("__session__") or os.environ.get("JPY_SESSION_NAME")
        if launch:
            return str(launch)
        if self.kernel is not None:
            return "kernel:" + self.kernel
        return f"terminal:{os.getcwd()}"

    def _sessions(self) -> list[dict[str, Any]] | None:
        """The server's sessions, finding the server that runs this kernel on the first call."""
        if not self._server_known:
            self._server = self._find_server()
            self._server_known = True
        if self._server is None:
            return None
        try:
            return self._server.sessions()
        except (OSError, ValueError):
            return None  # busy or gone: the last known key holds

    def _find_server(self) -> JupyterServer | None:
        try:
            from ipykernel import get_connection_file

            runtime = Path(get_connection_file()).parent
        except Exception:
            return None
        for server in running_servers(runtime):
            with contextlib.suppress(OSError, ValueError):
                if any(_kernel_of(s) == self.kernel for s in server.sessions()):
                    return server
        return None

    def _live_key(self) -> str | None:
        sessions = self._sessions()
        if self._server is None:
            return None
        if sessions is None:
            return self._known  # the server did not answer: the last key holds
        self._live = {_kernel_of(s): self._server.key(s) for s in sessions if s.get("path")}
        return self._live.get(self.kernel)

    def resolve(self, store: Any = None) -> str:
        """The key, after moving this document's rows to it (a rename) and others' away (a reused name)."""
        with self._lock:
            key = self.key()
            previous, self._known = self._known, key
            if store is not None and self.kernel is not None:
                try:
                    self._sort_out(store, key, previous)
                except HistoryError:
                    self._checked.discard(key)  # the file is busy: sorted out next time
            return key

    # -- sorting the rows out -----------------------------------------------------------------
    def _sort_out(self, store: Any, key: str, previous: str | None) -> None:
        if previous is not None and previous != key:  # this kernel's notebook was renamed
            self._checked.discard(key)
            self._take(store, previous, key, document_cells(key) or set())
            store.move_spend(previous, key)  # its ledger too: a rename does not reset its budget
        if key in self._checked:
            return
        self._checked.add(key)
        cells = document_cells(key)
        if cells is None:
            return
        mine = cells | self.seen
        for (_where, writer), group in _groups(store.authors(key)).items():
            if writer == self.kernel or not group.cells or group.cells & mine:
                continue
            target = self._live.get(writer) if writer else None  # that notebook's path now
            if not target or target == key:
                target = key + EARLIER.format(kernel=(writer or "unknown")[:8])
            store.move_rows(group.ids, target)
        if cells:
            self._claim(store, key, cells)

    def _take(self, store: Any, source: str, target: str, cells: set[str]) -> None:
        """Move the rows under ``source`` that belong to this document (a rename) to ``target``."""
        mine = cells | self.seen
        ids = [
            row_id
            for (_where, writer), group in _groups(store.authors(source)).items()
            if writer == self.kernel or group.cells & mine
            for row_id in group.ids
        ]
        if ids:
            store.move_rows(ids, target)

    def _claim(self, store: Any, key: str, cells: set[str]) -> None:
        """Rows of this document's saved cells under a name whose notebook no longer has them."""
        for (where, _writer), group in _groups(store.authors()).items():
            if where == key or not group.cells & cells:
                continue
            there = document_cells(where)
            if there is None and os.path.exists(where):
                continue  # a file that cannot be read now: nothing is known about it
            if there is not None and group.cells & there:
                continue  # the notebook there has these cells too (a copy): its thread stays
            store.move_rows(group.ids, key)


def _kernel_of(session: dict[str, Any]) -> str | None:
    kernel = session.get("kernel") or {}
    return kernel.get("id") if isinstance(kernel, dict) else None


def _groups(rows: Iterable[tuple[int, str, str | None, Any, Any]]) -> dict[tuple[str, str], _Group]:
    """Rows ``(id, key, cell, kernel, anchor)`` grouped by (key, writing kernel), with their cell ids."""
    groups: dict[tuple[str, str], _Group] = defaultdict(_Group)
    for row_id, notebook, cell, kernel, anchor in rows:
        group = groups[(notebook, str(kernel or ""))]
        group.ids.append(row_id)
        group.cells.update(c for c in (cell_id_of(cell), anchor) if is_cell_id(c))
    return groups


_identities: dict[int, NotebookIdentity] = {}


def identity_for(shell: Any) -> NotebookIdentity:
    """The one identity of an IPython shell (watching the cells it runs); a fresh one without a shell."""
    if shell is None:
        return NotebookIdentity(None)
    found = _identities.get(id(shell))
    if found is None or found.shell is not shell:
        found = NotebookIdentity(shell)
        _identities[id(shell)] = found
        events = getattr(shell, "events", None)
        if events is not None:
            events.register("pre_run_cell", found.pre_run_cell)
    return found


def forget_identity(shell: Any) -> None:
    """Stop watching the shell's cells (on ``%unload_ext``)."""
    found = _identities.pop(id(shell), None)
    if found is not None:
        with contextlib.suppress(ValueError, AttributeError):
            shell.events.unregister("pre_run_cell", found.pre_run_cell)
