"""A kernel interrupt reaching an answer awaited on the kernel's loop (``loops.signals_wake_loop``).

ipykernel's own SIGINT handling (``IPythonKernel._cancel_on_sigint``, its code, not a copy) runs on
a real tornado loop with a real SIGINT. The signal is sent only once the loop sleeps in
``epoll_wait`` (read from /proc), the state in which the cancel used to wait for the loop's next
event: the test cannot pass by the signal arriving before the loop waits. The end-to-end cases
are in real kernels: test_faults (a held stream) and test_agent_kernel (waiting for a click).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from ipykernel.ipkernel import IPythonKernel
from tornado.ioloop import IOLoop

from acytoo_magic.core.loops import signals_wake_loop

HANG = 60.0  # a cancel that never comes fails the test instead of hanging the suite


def wait_until_asleep_in_epoll(native_id: int) -> None:
    """Block until the thread sleeps in ``epoll_wait`` (the loop has nothing to do but wait)."""
    wchan = Path(f"/proc/self/task/{native_id}/wchan")
    while wchan.read_text() not in ("do_epoll_wait", "ep_poll"):
        time.sleep(0.001)


async def interrupt_awaited_cell(to_main_thread: bool) -> str:
    """Await a future as ipykernel awaits a cell's task, and send SIGINT once the loop sleeps."""
    loop = asyncio.get_running_loop()
    cell: asyncio.Future[str] = loop.create_future()
    kernel = SimpleNamespace(io_loop=IOLoop.current())  # all _cancel_on_sigint uses of the kernel
    sleeper = threading.get_native_id()

    def interrupt() -> None:
        wait_until_asleep_in_epoll(sleeper)
        # The process's SIGINT goes to one thread: the main one, or any other not blocking it.
        target = threading.main_thread().ident if to_main_thread else threading.get_ident()
        signal.pthread_kill(target, signal.SIGINT)  # type: ignore[arg-type]

    hang = threading.Timer(HANG, loop.call_soon_threadsafe, (cell.set_result, "never interrupted"))
    with IPythonKernel._cancel_on_sigint(kernel, cell), signals_wake_loop():  # as in a kernel
        threading.Thread(target=interrupt, daemon=True).start()
        hang.start()
        try:
            return await cell
        except asyncio.CancelledError:
            return "interrupted"
        finally:
            hang.cancel()


@pytest.fixture
def wakeup_fd_unset() -> Iterator[None]:
    """No wakeup fd before the test, none after it."""
    previous = signal.set_wakeup_fd(-1)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)


@pytest.mark.parametrize("to_main_thread", [True, False], ids=["main thread", "another thread"])
def test_an_interrupt_cancels_an_awaited_cell_while_the_loop_sleeps(wakeup_fd_unset, to_main_thread):
    assert asyncio.run(interrupt_awaited_cell(to_main_thread)) == "interrupted"
    assert signal.set_wakeup_fd(-1) == -1  # put back as it was


def test_a_wakeup_fd_set_before_still_gets_the_signal_and_is_put_back(wakeup_fd_unset):
    """An asyncio loop's ``add_signal_handler`` reads the signal numbers from its wakeup fd."""
    theirs, ours = socket.socketpair()
    with theirs, ours:
        ours.setblocking(False)
        theirs.setblocking(False)
        signal.set_wakeup_fd(ours.fileno())
        assert asyncio.run(interrupt_awaited_cell(to_main_thread=True)) == "interrupted"
        assert theirs.recv(16) == bytes([signal.SIGINT])
        assert signal.set_wakeup_fd(-1) == ours.fileno()


def test_off_the_main_thread_it_changes_nothing(wakeup_fd_unset):
    """Only the main thread can set a wakeup fd; a loop in a worker thread keeps its own ways."""

    async def inside() -> None:
        with signals_wake_loop():
            await asyncio.sleep(0)

    worker = threading.Thread(target=asyncio.run, args=(inside(),))
    worker.start()
    worker.join()
    assert signal.set_wakeup_fd(-1) == -1
