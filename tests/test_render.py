"""Throttling: the first chunk at once, then at most one draw per interval, the final text always."""

from __future__ import annotations

import asyncio

from acytoo_magic.render import Frame, ThrottledRenderer, markdown_bundle


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_draws_are_bounded_by_time_not_chunks():
    clock, frames = FakeClock(), []
    renderer = ThrottledRenderer(frames.append, interval=0.1, clock=clock)
    text = ""
    for i in range(20_000):  # 20,000 chunks over 2 simulated seconds
        clock.now = i * 0.0001
        text += "x"
        renderer.feed("x")
    renderer.close(text)
    assert frames[0].text == "x"  # the first chunk is drawn at once
    assert frames[-1] == Frame(text, final=True)
    assert len(frames) <= 2.0 / 0.1 + 2


def test_waiting_frame_then_first_chunk_and_note():
    clock, frames = FakeClock(), []
    renderer = ThrottledRenderer(frames.append, interval=0.1, clock=clock)
    renderer.start("contacting Acytoo")  # no loop here: the waiting ticker has no timer to run on
    clock.now = 1.5
    renderer.notify("rate limited, retrying in 2 s")
    renderer.feed("a")
    renderer.close("ab", "interrupted")
    assert frames[0].waiting
    assert frames[0].note == "contacting Acytoo 1.5 s · rate limited, retrying in 2 s"
    assert frames[1] == Frame("a")
    assert frames[-1] == Frame("ab", note="interrupted", final=True)


async def test_timer_flushes_text_that_arrived_after_the_last_draw():
    frames = []
    renderer = ThrottledRenderer(frames.append, interval=0.05)
    renderer.feed("a")
    renderer.feed("b")  # too soon: coalesced, drawn by the timer
    assert [f.text for f in frames] == ["a"]
    flushed = asyncio.get_running_loop().create_future()
    renderer._draw = lambda frame: (frames.append(frame), flushed.done() or flushed.set_result(None))
    await asyncio.wait_for(flushed, 5)
    assert frames[-1].text == "ab"


def test_markdown_bundle_has_plain_fallback_and_marks():
    bundle = markdown_bundle(Frame("# T", note="interrupted", final=True))
    assert bundle["text/markdown"].startswith("# T") and "interrupted" in bundle["text/markdown"]
    assert bundle["text/plain"] == "# T\n[interrupted]"
    assert markdown_bundle(Frame("x", final=True), "text") == {"text/plain": "x"}


def test_gap_grows_with_the_cost_of_drawing_so_total_cost_stays_linear():
    clock = FakeClock()

    def draw(frame):  # drawing costs 1 µs per character, as re-sending the whole text does
        clock.now += len(frame.text) * 1e-6

    costs = {}
    for size in (100_000, 1_000_000):
        clock.now = 0.0
        renderer = ThrottledRenderer(draw, interval=0.08, clock=clock)
        text = ""
        spent = 0.0
        for _ in range(size // 64):
            clock.now += 0.001  # a 64-byte chunk every millisecond
            text += "x" * 64
            before = clock.now
            renderer.feed("x" * 64)
            spent += clock.now - before
        before = clock.now
        renderer.close(text)
        costs[size] = (spent + clock.now - before, renderer.draws)
    ratio = costs[1_000_000][0] / costs[100_000][0]
    assert ratio <= 12, costs  # with a fixed 0.08 s interval this simulation gives ~91x
    assert costs[100_000][1] < 40
    assert costs[1_000_000][1] < 200


async def test_waiting_line_ticks_on_the_loop_until_the_first_chunk():
    frames = []
    ticked = asyncio.get_running_loop().create_future()

    def draw(frame):
        frames.append(frame)
        if len(frames) == 2 and not ticked.done():
            ticked.set_result(None)

    renderer = ThrottledRenderer(draw, interval=0.01)
    renderer.start("contacting X")
    assert frames == []  # nothing before one interval: a fast answer never flashes the line
    await asyncio.wait_for(ticked, 5)
    assert all(f.waiting and f.note.startswith("contacting X ") for f in frames)
    renderer.feed("text")
    count = len(frames)
    renderer.close("text")
    assert frames[count - 1] == Frame("text") and frames[-1].final
    assert not any(f.waiting for f in frames[count - 1 :])
