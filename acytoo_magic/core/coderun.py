"""Running code the user approved: in their namespace, as a cell would, and stoppable as a cell is.

The code runs on a thread of its own while the episode awaits it on the kernel's loop, so the loop
stays free: a chat's Stop (a comm message) arrives. A cancel of the awaiting task (the chat's Stop,
an interrupt of the cell) raises ``KeyboardInterrupt`` inside the running code
(``PyThreadState_SetAsyncExc``), at its next Python instruction: a loop of short calls stops at
once; one long call into C (a sleep, a big join) ends first. While code runs, SIGINT (Kernel >
Interrupt, Ctrl-C) interrupts it directly, each time, and cancels its episode; an idle ipykernel
would ignore it (a chat's episode runs outside any cell).

What differs from a cell: the code is not on the main thread, so ``signal.signal``, GUI event loops
(Tk, macOS backends) and ``input()`` do not work in it. Output is captured per thread: what this code
prints or displays is its result; what other cells print meanwhile still goes to them.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import contextvars
import ctypes
import io
import linecache
import signal
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .context import bounded_repr, clip, format_error

CLEANUP_SECONDS = 10.0  # how long an interrupted run may take to reach its next Python instruction


@dataclass
class CodeRun:
    """What running approved code gave: what the model is sent, and what it printed or displayed."""

    stdout: str = ""
    stderr: str = ""
    value: str | None = None  # repr of the last expression's value (None: there was none)
    error: str = ""  # the traceback as text
    rich: list[dict[str, Any]] = field(default_factory=list)  # display() bundles, shown, not sent
    interrupted: bool = False
    cancelled: bool = False  # the interrupt came as a cancel of the episode: it goes on after the record
    stuck: bool = False  # had not stopped when the episode had to go on (it runs on, alone)

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def for_model(self, limit: int) -> str:
        """The result as bounded text: stdout, stderr, value, traceback, a note for rich outputs."""
        parts = []
        if self.stdout:
            parts.append(f"stdout:\n{clip(self.stdout, limit // 2)}")
        if self.stderr:
            parts.append(f"stderr:\n{clip(self.stderr, limit // 4)}")
        if self.value is not None:
            parts.append(f"value:\n{clip(self.value, limit // 2)}")
        if self.error:
            parts.append(f"error:\n{self.error}")
        if self.rich:
            kinds = sorted({kind for bundle in self.rich for kind in bundle if kind != "text/plain"})
            parts.append(
                f"note: {len(self.rich)} rich output(s) ({', '.join(kinds) or 'text'}) shown to the user, "
                "not sent"
            )
        if self.interrupted:
            parts.append("interrupted by the user" + (" (it had not stopped yet)" if self.stuck else ""))
        return clip("\n\n".join(parts) or "ran; no output", limit)


_runs = 0


async def run_approved(
    code: str, namespace: MutableMapping[str, Any], shell: Any = None, limit: int = 2_000
) -> CodeRun:
    """Run ``code`` in ``namespace`` as a cell would (the last expression's value is kept).

    Call it only with code the user approved. A cancel while it runs interrupts the code and
    returns what it did, marked ``interrupted`` and ``cancelled`` (the caller records it, then
    lets the cancel go on).
    """
    global _runs
    still = [run for run in _live if run.thread.is_alive()]
    if still:  # an earlier run that an interrupt did not stop: nothing else runs beside it
        still[0].interrupt()
        return CodeRun(
            error="not run: code approved earlier is still running (it had not stopped "
            f"{CLEANUP_SECONDS:g} s after an interrupt, and was interrupted again now; wait for it, "
            "or restart the kernel)"
        )
    _runs += 1
    filename = f"<agent-run-{_runs}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)  # tracebacks
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    run = _Run(code, filename, namespace, limit, loop)
    _live.add(run)
    with _captured(shell, run), _sigint_interrupts(loop, task):
        run.start()
        try:
            await asyncio.shield(run.done)
        except asyncio.CancelledError:
            run.result.cancelled = True
            run.interrupt()
            await _settle(run)
    return run.result


async def _settle(run: _Run) -> None:
    """Wait for the interrupted code to stop, ``CLEANUP_SECONDS`` at most; each further cancel (a
    second Kernel > Interrupt) interrupts it again, as a second interrupt does a cell's code."""
    waiting = asyncio.ensure_future(asyncio.wait_for(asyncio.shield(run.done), CLEANUP_SECONDS))
    while not waiting.done():
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            run.interrupt()
    if waiting.cancelled() or isinstance(waiting.exception(), asyncio.TimeoutError):
        run.result.interrupted = run.result.stuck = True  # it goes on in its thread; said, not awaited
    run.result.stdout, run.result.stderr = run.out.getvalue(), run.err.getvalue()


class _Run:
    """One run on its own thread; ``interrupt`` raises ``KeyboardInterrupt`` in it while it runs."""

    def __init__(
        self, code: str, filename: str, namespace: Any, limit: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.code, self.filename, self.namespace, self.limit = code, filename, namespace, limit
        self.result = CodeRun()
        self.out, self.err = io.StringIO(), io.StringIO()
        self.done: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._lock = threading.Lock()
        self._running = False
        context = contextvars.copy_context()  # the kernel's output routing (the cell's parent) follows
        self.thread = threading.Thread(target=context.run, args=(self._main,), name="acytoo-run", daemon=True)

    def start(self) -> None:
        with self._lock:
            self._running = True
        self.thread.start()

    def interrupt(self) -> None:
        with self._lock:
            if self._running and self.thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.thread.ident), ctypes.py_object(KeyboardInterrupt)
                )

    def _main(self) -> None:
        result = self.result
        try:
            try:
                self._execute()
            finally:
                with self._lock:  # no interrupt is raised in this thread after this point
                    self._running = False
        except KeyboardInterrupt:
            result.interrupted = True
        except BaseException as exc:  # SystemExit too: the user's code, reported
            result.error = format_error(exc, self.limit)
        finally:
            _live.discard(self)
        result.stdout, result.stderr = self.out.getvalue(), self.err.getvalue()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (a kernel shutting down)
            self._loop.call_soon_threadsafe(_resolve, self.done)

    def _execute(self) -> None:
        tree = ast.parse(self.code, self.filename)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, self.filename, "exec"), self.namespace)  # approved by the user
        if last is not None:
            value = eval(compile(ast.Expression(last.value), self.filename, "eval"), self.namespace)
            if value is not None:
                self.result.value = bounded_repr(value, self.limit)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _ThreadStream:
    """``sys.stdout``/``stderr`` while code runs: the run's thread writes to ``mine``, others to
    ``theirs``. Everything else a stream has (``encoding``, ``fileno``, ``isatty``, ``buffer``…) is
    ``theirs``. Once the run is over it writes everything to ``theirs``: a capture that saved it
    (``%%capture`` started meanwhile) and put it back later puts back a stream that forwards."""

    def __init__(self, mine: io.StringIO, theirs: Any, thread: threading.Thread) -> None:
        self.mine, self.theirs = mine, theirs
        self.thread: threading.Thread | None = thread

    def _target(self) -> Any:
        mine = self.thread is not None and threading.current_thread() is self.thread
        return self.mine if mine else self.theirs

    def write(self, text: str) -> int:
        return self._target().write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.theirs, name)


class _ThreadDisplay:
    """``shell.display_pub`` while code runs: the run's displays are kept, others published; once
    the run is over, everything is published (as for ``_ThreadStream``)."""

    def __init__(self, theirs: Any, thread: threading.Thread, into: list[dict[str, Any]]) -> None:
        self.theirs, self.into = theirs, into
        self.thread: threading.Thread | None = thread

    def _mine(self) -> bool:
        return self.thread is not None and threading.current_thread() is self.thread

    def publish(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if self._mine():
            self.into.append(data)
        else:
            self.theirs.publish(data, *args, **kwargs)

    def clear_output(self, *args: Any, **kwargs: Any) -> None:
        if not self._mine():
            self.theirs.clear_output(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.theirs, name)


@contextlib.contextmanager
def _captured(shell: Any, run: _Run) -> Iterator[None]:
    """Route the run's prints and displays to its result while it runs (and only its own)."""
    import sys

    stdout = _ThreadStream(run.out, sys.stdout, run.thread)
    stderr = _ThreadStream(run.err, sys.stderr, run.thread)
    sys.stdout, sys.stderr = stdout, stderr
    display = getattr(shell, "display_pub", None)
    routed = _ThreadDisplay(display, run.thread, run.result.rich) if display is not None else None
    if routed is not None:
        shell.display_pub = routed
    try:
        yield
    finally:  # put back only what is still ours; one a later capture holds forwards from now on
        stdout.thread = stderr.thread = None
        if sys.stdout is stdout:
            sys.stdout = stdout.theirs
        if sys.stderr is stderr:
            sys.stderr = stderr.theirs
        if routed is not None:
            routed.thread = None
            if shell.display_pub is routed:
                shell.display_pub = display


_running: set[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = set()  # episodes whose code runs
_live: set[_Run] = set()  # runs whose thread has not ended (one an interrupt did not stop, too)
_previous: Any = signal.SIG_IGN  # what SIGINT did when ``_on_sigint`` was last put in its place


def _on_sigint(signum: int, frame: Any) -> None:
    """SIGINT while approved code runs: interrupt the code at once (every time: a second interrupt
    reaches code that caught the first, as in a cell), and cancel its episode, then do what was done
    before (a cell's own handler cancels the cell; an idle kernel's ignores it)."""
    for run in list(_live):
        run.interrupt()
    for loop, task in list(_running):
        loop.call_soon_threadsafe(task.cancel)
    if callable(_previous) and _previous is not _on_sigint:
        _previous(signum, frame)


@contextlib.contextmanager
def _sigint_interrupts(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> Iterator[None]:
    """While code runs, SIGINT interrupts it and cancels ``task`` (``_on_sigint``).

    The handler is one module function acting on whatever runs now, because ipykernel saves and
    restores the handler around every message it handles: one it puts back late acts on nothing
    but what was there before, never on an episode that is over.
    """
    global _previous
    if task is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    current = signal.getsignal(signal.SIGINT)
    if current is not _on_sigint:
        _previous = current
        signal.signal(signal.SIGINT, _on_sigint)
    _running.add((loop, task))
    try:
        yield
    finally:
        _running.discard((loop, task))
        if not _running and signal.getsignal(signal.SIGINT) is _on_sigint:
            signal.signal(signal.SIGINT, _previous if _previous is not None else signal.SIG_IGN)
