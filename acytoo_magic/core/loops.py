"""Which loop runs what: the one place for the extension's loop plumbing.

``Runner`` owns the extension's loop use: the shared HTTP session of each loop, and, for
synchronous callers, a loop to run on (a terminal's, or a worker's when a loop is busy running
us: ``%%time``, a function in a cell). ``LoopThread`` is an event loop in a daemon thread,
reached with ``asyncio.run_coroutine_threadsafe``
(the runner's worker for a magic called from inside running code, the local test server, a
synchronous iteration of a provider's stream). ``run_until_done`` is the terminal path: a loop of
our own, where Ctrl-C cancels the task and waits for its cleanup. ``signals_wake_loop`` lets a
kernel interrupt reach an answer awaited on the kernel's own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")
CLEANUP_SECONDS = 30.0  # how long an interrupted task may take to close its connection and record


class LoopThread:
    """An asyncio loop running in a daemon thread, for coroutines submitted from other threads."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return not self.loop.is_closed() and self._thread.is_alive()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the thread's loop and wait for its result.

        The task starts in a copy of the caller's context (``run_coroutine_threadsafe`` schedules it
        from this thread), so a kernel sends its output to the caller's cell. On Ctrl-C (a kernel
        interrupt) the task is cancelled on its loop and waited for, so its cleanup has happened
        when ``KeyboardInterrupt`` propagates.
        """
        started: list[asyncio.Task[Any]] = []

        async def tracked() -> T:
            started.append(asyncio.current_task())  # type: ignore[arg-type]
            return await coro

        future = asyncio.run_coroutine_threadsafe(tracked(), self.loop)
        try:
            return future.result(timeout)
        except KeyboardInterrupt:
            self.loop.call_soon_threadsafe(lambda: [task.cancel() for task in started])
            with contextlib.suppress(BaseException):  # the future resolves once the task has finished
                future.result(CLEANUP_SECONDS)
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and close it once its thread has ended."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


@contextlib.contextmanager
def signals_wake_loop() -> Iterator[None]:
    """While inside, a signal (a kernel interrupt) wakes the running loop at once: ipykernel 7's
    cancel on SIGINT is a ``call_soon`` that would otherwise wait for the next chunk or timeout
    (why and how: docs/internals.md, "Interrupts wake the loop"). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    reader, writer = socket.socketpair()
    previous: list[int] = []

    def drain() -> None:
        with contextlib.suppress(OSError):
            data = reader.recv(4096)
            if previous[0] != -1:  # an asyncio loop's own signal handlers read their numbers there
                os.write(previous[0], data)

    with reader, writer:
        reader.setblocking(False)
        writer.setblocking(False)
        try:
            loop.add_reader(reader.fileno(), drain)
            watched = True
        except NotImplementedError:  # a proactor loop (Windows) watches no sockets: as before
            watched = False
        if not watched:
            yield
            return
        previous.append(signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False))
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous[0])
            loop.remove_reader(reader.fileno())


def on_this_loop(handler: Callable[..., Any]) -> Callable[..., None]:
    """``handler``, called on the loop running now (the kernel's, where widgets are made) whichever
    thread calls it. JupyterLab 4.6 sends widget messages over kernel subshells (JEP 91), and
    ipykernel 7 runs a subshell's messages on a thread of its own with a loop of its own: a click's
    handler there that resolves a future of the kernel's loop, or cancels its task, would never wake
    it (seen: Run clicked, the cell waiting on). Called on the loop's own thread, it runs at once;
    made where no loop runs, ``handler`` is returned as it is."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # made outside any loop (a script, a benchmark): handlers run where called
        return handler

    def deliver(*args: Any) -> None:
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop or loop.is_closed():
            handler(*args)
        else:
            loop.call_soon_threadsafe(handler, *args)

    return deliver


def run_until_done(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` (not running) from this thread; Ctrl-C cancels it, waits for its cleanup."""
    task = loop.create_task(coro)
    try:
        return loop.run_until_complete(task)
    except KeyboardInterrupt:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            loop.run_until_complete(task)
        raise


def iterate(stream: AsyncIterator[T], name: str = "acytoo-iterate") -> Iterator[T]:
    """Iterate an async iterator from synchronous code, with or without a running loop in this thread.

    Its steps run on a ``LoopThread`` of their own, so a running loop here (a notebook cell) is
    never blocked re-entrantly; leaving the loop early closes the stream there.
    """
    worker = LoopThread(name)

    async def step() -> T:
        return await stream.__anext__()

    try:
        while True:
            try:
                yield worker.run(step())
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                worker.run(aclose(), timeout=CLEANUP_SECONDS)
        worker.stop()


class Runner:
    """Owns the extension's event-loop use: which loop, one shared HTTP session per loop, cancellation.

    In a kernel the magic awaits on the kernel's own loop (see ``magics.await_acytoo_calls``) and
    never comes here. ``run`` is for synchronous callers: a terminal shell (no loop runs: the
    runner's own loop, kept between cells), or a magic called from code inside a running loop (a
    worker thread with its own loop; the caller blocks as any cell does). Nesting the running loop
    with nest_asyncio is not used: under ipykernel 7 it loses shell messages (see docs/internals.md).
    """

    def __init__(self) -> None:
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._worker: LoopThread | None = None
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )
        self._closing: set[asyncio.Task[None]] = set()

    async def session(self) -> aiohttp.ClientSession:
        """The shared session of the running loop, so consecutive cells reuse connections."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = aiohttp.ClientSession()
            self._sessions[loop] = session
        return session

    def _owns(self, loop: asyncio.AbstractEventLoop) -> bool:
        return loop is self._own_loop or (self._worker is not None and loop is self._worker.loop)

    @contextlib.asynccontextmanager
    async def lease(self, keep: bool = True) -> AsyncIterator[aiohttp.ClientSession]:
        """The HTTP session for one request.

        The running loop's shared one where someone will close it: a loop the runner owns (closed
        with it), or ``keep`` (a kernel's loop, closed on unload; an ``async with Assistant()``
        block). Otherwise (``asyncio.run(assistant.ask(...))`` in a script, whose loop ends without
        a word to us) a session of its own, closed when the request ends: no "Unclosed client
        session" is left behind.
        """
        if keep or self._owns(asyncio.get_running_loop()):
            yield await self.session()
            return
        async with aiohttp.ClientSession() as session:
            yield session

    async def aclose(self) -> None:
        """Close the running loop's shared session now (``async with Assistant()`` ends here)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to the end from synchronous code; on interrupt, cancel it, wait for its cleanup."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a terminal: our own loop, kept between cells
            if self._own_loop is None or self._own_loop.is_closed():
                self._own_loop = asyncio.new_event_loop()
            return run_until_done(self._own_loop, coro)
        # Inside running code (%%time, a function in a cell): the loop here is busy running us.
        if self._worker is None or not self._worker.alive:
            self._worker = LoopThread("acytoo-runner")
        return self._worker.run(coro)

    def _close_soon(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
        task = loop.create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def close(self) -> None:
        """Close every session this runner opened (on unload), and the loops it owns."""
        for loop, session in list(self._sessions.items()):
            if session.closed or loop.is_closed():
                continue
            if self._worker is not None and loop is self._worker.loop:
                with contextlib.suppress(Exception):
                    self._worker.run(session.close(), timeout=10)
            elif loop is self._own_loop and not loop.is_running():
                _run_to_end(loop, session.close())
            elif loop.is_running():  # the kernel's loop: close as soon as this cell yields
                loop.call_soon_threadsafe(self._close_soon, loop, session)
        self._sessions.clear()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._own_loop is not None and not self._own_loop.is_running():
            self._own_loop.close()
            self._own_loop = None


def _run_to_end(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """``loop.run_until_complete(coro)``; in a thread of its own if another loop runs in this one
    (``aclose`` inside ``asyncio.run`` closing what ``ask_sync`` opened on the runner's loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return loop.run_until_complete(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="acytoo-close") as pool:
        return pool.submit(loop.run_until_complete, coro).result()
