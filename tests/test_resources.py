"""Resource hygiene: after 200 requests (answered, failed, dropped, cancelled, timed out) nothing leaks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import tracemalloc
import warnings

from acytoo_magic.core.loops import Runner
from acytoo_magic.core.request import Reply, Request
from acytoo_magic.core.stream import answer
from acytoo_magic.present.throttle import ThrottledRenderer
from acytoo_magic.providers import Acytoo

PROMPTS = [
    "[[echo]]fine",
    "[[fault=500]] fails",
    "[[fault=drop]] a message long enough to be dropped half way",
    "[[size=20000 chunk=10 delay=0.002]]",  # cancelled after its first chunk
    "[[stall=5]] times out",
]


def open_sockets() -> int:
    return sum(
        os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")
    )


class Caught(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_two_hundred_requests_leave_no_sockets_tasks_or_warnings(server):
    caught = Caught()
    logging.getLogger("asyncio").addHandler(caught)
    runner = Runner()
    statuses: dict[str, int] = {}

    async def one(prompt: str) -> None:
        session = await runner.session()
        # Only the stalled request may time out: a short timeout on all of them made an answer on a
        # loaded machine fail now and then (40 complete became 39).
        timeout = 0.2 if "stall" in prompt else 60
        request = Request(prompt, Acytoo, "m", options={"url": server.url, "timeout": timeout, "retries": 0})
        reply, streaming = Reply(), asyncio.Event()
        renderer = ThrottledRenderer(lambda frame: frame.text and streaming.set(), 0.05)
        task = asyncio.ensure_future(answer(request, renderer, session, reply))
        if "delay" in prompt:  # cancel once the answer is streaming, as Stop does
            started = asyncio.ensure_future(streaming.wait())
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        statuses[reply.outcome] = statuses.get(reply.outcome, 0) + 1

    async def batch(count: int) -> None:
        for i in range(count):
            await one(PROMPTS[i % len(PROMPTS)])

    before = open_sockets()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runner.run(batch(50))  # warm up: pools, caches, imports
        tracemalloc.start()
        first = tracemalloc.take_snapshot()
        runner.run(batch(150))
        growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(first, "filename"))
        tracemalloc.stop()
        during = open_sockets()
        runner.close()
        gc.collect()
    logging.getLogger("asyncio").removeHandler(caught)

    assert statuses == {"complete": 40, "failed": 80, "partial": 40, "interrupted": 40}
    assert during - before <= 2  # the one pooled keep-alive connection (and the server's end of it)
    assert open_sockets() <= before
    texts = [str(w.message) for w in seen] + caught.messages
    assert not [t for t in texts if "Unclosed" in t or "Task was destroyed" in t or "never awaited" in t], (
        texts
    )
    assert growth < 1_000_000, growth  # 150 more requests: no per-request leak
