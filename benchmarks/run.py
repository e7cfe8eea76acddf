"""`make bench`: what a user feels while an answer streams, as ratios measured side by side in one run.

Every figure is compared with a baseline measured in the same run against the same local
protocol server (a separate process on 127.0.0.1), so the table survives a slower machine.
`--smoke` runs tiny sizes (CI) and checks that the benchmarks still run, not their figures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
# Kernels and JupyterLab started from here import this tree too, whichever venv runs the benchmarks.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from browser import browser  # noqa: E402
from peers import peers  # noqa: E402
from record import rows as record_rows  # noqa: E402
from table import Table, start_server  # noqa: E402

from acytoo_magic.core.history.store import HistoryStore  # noqa: E402
from acytoo_magic.core.history.thread import Conversation  # noqa: E402
from acytoo_magic.core.request import Request  # noqa: E402
from acytoo_magic.core.stream import answer  # noqa: E402
from acytoo_magic.magic.output import markdown_bundle  # noqa: E402
from acytoo_magic.present.throttle import SIZE_STEP, ThrottledRenderer  # noqa: E402
from acytoo_magic.providers import Acytoo  # noqa: E402
from acytoo_magic.providers.acytoo import create_header, create_payload  # noqa: E402

# -- the kernel's message packer -----------------------------------------------------------------
# jupyter_client's Session serialises every message a kernel sends with orjson when it is installed,
# else the standard json (``Session.packer``). ``use_packer`` picks one for what this run measures:
# the kernels it starts and the publishing it simulates in this process (``packed``). None: the
# one jupyter_client picks here. benchmarks/packers.py measures both in one run.
PACKER: str | None = None


def use_packer(name: str | None) -> None:
    global PACKER, _SESSION
    PACKER, _SESSION = name, None


def packer_name() -> str:
    return session().packer


_SESSION: Any = None


def session() -> Any:
    """A Session packing as the kernels of this run do."""
    global _SESSION
    if _SESSION is None:
        from jupyter_client.session import Session

        _SESSION = Session(packer=PACKER) if PACKER else Session()
    return _SESSION


def packed(content: dict[str, Any]) -> bytes:
    """``content`` serialised as a kernel publishes it (the message's content part)."""
    return session().pack(content)


def use_kernel_packer(k: Any) -> None:
    """The kernel ``k`` sends its messages with this run's packer (the wire format is JSON either way)."""
    if PACKER:
        done = k.execute(f"get_ipython().kernel.session.packer = {PACKER!r}")
        assert done.status == "ok", done.error


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def median_time(repeats: int, run: Callable[[], Awaitable[Any]]) -> float:
    async def timed() -> list[float]:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            await run()
            times.append(time.perf_counter() - started)
        return times

    return statistics.median(asyncio.run(timed()))


# -- 1. streaming overhead ---------------------------------------------------------------------
async def raw_aiohttp(url: str, prompt: str, session: aiohttp.ClientSession) -> int:
    """The floor: the provider's own request (same body and headers, same kept session), read with
    ``iter_any()`` and nothing else: no decoding, no error mapping, no size cap."""
    body = create_payload(user(prompt), "m", 0.5)
    received = 0
    async with session.post(f"{url}/api/completions", json=body, headers=create_header()) as response:
        async for chunk in response.content.iter_any():
            received += len(chunk)
    return received


async def original_provider(url: str, prompt: str) -> str:
    """gpt4free's Acytoo as it was: a new session per request and a per-chunk ``.decode()``."""
    text = ""
    async with aiohttp.ClientSession(
        headers={"accept": "*/*", "content-type": "application/json"}
    ) as session:
        payload = {
            "key": "",
            "model": "gpt-3.5-turbo",
            "messages": user(prompt),
            "temperature": 0.5,
            "password": "",
        }
        async with session.post(f"{url}/api/completions", json=payload) as response:
            response.raise_for_status()
            async for stream in response.content.iter_any():
                if stream:
                    text += stream.decode()
    return text


def interleaved(
    repeats: int, runs: dict[str, Callable[[aiohttp.ClientSession], Awaitable[Any]]]
) -> dict[str, float]:
    """Median time of each run, measured in turns (a, b, c, b, c, a, ...) on one shared session after a
    warm-up round, so neither warm-up nor drift favours the one measured first."""

    async def measure() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        async with aiohttp.ClientSession() as session:
            for name in names:
                await runs[name](session)
            for index in range(repeats):
                for name in names[index % len(names) :] + names[: index % len(names)]:
                    started = time.perf_counter()
                    await runs[name](session)
                    times[name].append(time.perf_counter() - started)
        return times

    return {name: statistics.median(samples) for name, samples in asyncio.run(measure()).items()}


# What each case is called in the table, and the directive that asks the scripted server for it.
CASES = {"1 MB": "[[size=1048576 chunk=4096]]", "20,000 tiny chunks": "[[size=40000 chunk=2]]"}
SMOKE_CASES = {"64 KB": "[[size=65536 chunk=4096]]", "500 tiny chunks": "[[size=1000 chunk=2]]"}
CHUNKING = {"1 MB": " in 4 KB chunks", "64 KB": " in 4 KB chunks"}
# Which baseline carries each kernel row's target (see ``kernel_rows``).
GOALS = {"1 MB": "floor", "64 KB": "floor", "20,000 tiny chunks": "raw", "500 tiny chunks": "raw"}


def streaming(table: Table, url: str, smoke: bool) -> None:
    provider_overhead(table, url, smoke)
    kernel_overhead({PACKER: table}, url, smoke)


def provider_overhead(table: Table, url: str, smoke: bool) -> None:
    """The provider against the raw read, in this process (no kernel, nothing published)."""
    cases = SMOKE_CASES if smoke else CASES
    repeats = 3 if smoke else 9
    for label, prompt in cases.items():

        async def floor(session: aiohttp.ClientSession, prompt: str = prompt) -> None:
            await raw_aiohttp(url, prompt, session)

        async def ours(session: aiohttp.ClientSession, prompt: str = prompt) -> None:
            async for _ in Acytoo.create_async_generator("m", user(prompt), url=url, session=session):
                pass

        async def original(session: aiohttp.ClientSession, prompt: str = prompt) -> None:
            await original_provider(url, prompt)  # its own new session, as it always did

        times = interleaved(repeats, {"floor": floor, "ours": ours, "original": original})
        base = times["floor"]
        name = label + CHUNKING.get(label, "")
        table.add("streaming overhead", f"{name}: raw aiohttp (floor)", base * 1000, "ms")
        ratio = times["ours"] / base
        table.add("streaming overhead", f"{name}: provider / floor", ratio, "x", "<= 1.05", ratio <= 1.05)
        table.add("streaming overhead", f"{name}: original provider / floor", times["original"] / base, "x")


def kernel_overhead(tables: dict[str | None, Table], url: str, smoke: bool) -> None:
    """The kernel rows (``kernel_rows``) for each packer in ``tables``, measured in one kernel with
    the packers in turns, round by round."""
    cases = SMOKE_CASES if smoke else CASES
    times = kernel_stream_times(url, list(cases.values()), 3 if smoke else 21, list(tables))
    for packer, table in tables.items():
        for label, prompt in cases.items():
            kernel_rows(table, label, times[packer][prompt], GOALS[label], packer or packer_name())


def kernel_rows(table: Table, label: str, samples: dict[str, list[float]], goal: str, packer: str) -> None:
    """The whole %%acytoo path in the kernel against the least any design pays there (issue 30):
    the raw read plus one render and one publish of the final output; and against the raw read
    alone. ``goal``: which of the two carries the target (the 1 MB answer: the floor, <= 1.2; many
    tiny chunks, whose render and publish are small: the raw read, <= 1.5, as before). A ratio is
    the median of the rounds' own ratios: the three runs of a round follow one another, so a burst
    of load elsewhere on the machine weighs on both sides of it."""
    add = functools.partial(table.add, "streaming overhead")
    median = {kind: statistics.median(values) for kind, values in samples.items()}

    def ratio(kind: str, base: str) -> float:
        return statistics.median(a / b for a, b in zip(samples[kind], samples[base], strict=True))

    add(f"{label} kernel path: raw aiohttp in the kernel", median["raw"] * 1000, "ms")
    add(f"{label} kernel path: floor (raw + one render + one publish)", median["floor"] * 1000, "ms")
    add(f"{label} kernel path: full %%acytoo", median["full"] * 1000, "ms", note="the whole cell")
    add(f"{label} kernel path: full %%acytoo to its final display update", median["shown"] * 1000, "ms")
    note = f"the whole cell: request, stream, final update, record; {len(samples['full'])} rounds"
    note += f", packer {packer}"
    over_floor, over_raw = ratio("full", "floor"), ratio("full", "raw")
    floor_name = f"{label} kernel path: full %%acytoo / floor (raw + one render + one publish)"
    if goal == "floor":
        add(floor_name, over_floor, "x", "<= 1.2", over_floor <= 1.2, note)
        add(f"{label} kernel path: full %%acytoo / raw (for information)", over_raw, "x")
    else:
        add(floor_name, over_floor, "x")
        add(f"{label} kernel path: full %%acytoo / raw", over_raw, "x", "<= 1.5", over_raw <= 1.5, note)
    shown = ratio("shown", "floor")
    add(f"{label} kernel path: to the final display update / floor (for information)", shown, "x")


RAW_IN_KERNEL = """
import aiohttp, time
from IPython.display import display as _display
from acytoo_magic.magic.output import final_bundle as _final_bundle
from acytoo_magic.providers.acytoo import create_header, create_payload
from acytoo_magic.present.untrusted import render_markdown as _render_markdown
async def _raw_stream(session, prompt, floor=False):
    # floor: then what any design must pay to show the answer: one render of it through the
    # rendering policy and one publish of the final output (the answer's HTML and text with the
    # status line, built as the magic builds it). The scripted answer has no control characters,
    # so its text is already the clean text a design keeps from that one render.
    body = create_payload([{"role": "user", "content": prompt}], "m", 0.5)
    started = time.perf_counter()
    chunks = []
    async with session.post(URL + "/api/completions", json=body, headers=create_header()) as response:
        async for chunk in response.content.iter_any():
            chunks.append(chunk)
    if floor:
        text = b"".join(chunks).decode()
        status = f"Acytoo · m · {len(text):,} characters in 0.0 s · ≈7 tokens in, ≈{len(text) // 4:,} out"
        _display(_final_bundle(_render_markdown(text), text, small_print=status), raw=True, display_id=True)
    return time.perf_counter() - started
_raw_session = aiohttp.ClientSession()

# The extension warms its outbound boundary's detectors in a thread as it loads (about half a
# second, beside a user's first cells): finished before anything here is timed.
import threading
for _thread in threading.enumerate():
    if _thread.name == "acytoo-warm":
        _thread.join()

# The whole %%acytoo path, timed in the kernel: the cell's _ask_async, from building the request to the
# final display update (_shown_time) and on to the record after it (_cell_time).
from acytoo_magic.magic import magics as _magics
_cell_time, _shown_time, _started = [0.0], [0.0], [0.0]
_ask_async = _magics.AcytooMagics._ask_async
async def _timed_ask(self, *args):
    _started[0] = time.perf_counter()
    try:
        await _ask_async(self, *args)
    finally:
        _cell_time[0] = time.perf_counter() - _started[0]
_magics.AcytooMagics._ask_async = _timed_ask
_close = _magics.CellOutput.close
def _timed_close(self, *args, **kwargs):
    try:
        _close(self, *args, **kwargs)
    finally:
        _shown_time[0] = time.perf_counter() - _started[0]
_magics.CellOutput.close = _timed_close
"""


def kernel_stream_times(
    url: str, prompts: list[str], repeats: int, packers: list[str | None]
) -> dict[str | None, dict[str, dict[str, list[float]]]]:
    """In a real kernel, timed inside it, in rounds (the order turning each round): the whole
    %%acytoo path (the cell's ``_ask_async``: request to the final display update and the record
    after it); raw aiohttp on the same loop with a kept session; and that raw read plus one render
    and one publish of the final output (the floor of any design). Each round runs them with each
    of ``packers`` in turn (None: jupyter_client's choice), so the packers see the same machine.
    Per packer and prompt, each kind's times, round by round."""
    from kernels import kernel

    times: dict[str | None, dict[str, dict[str, list[float]]]] = {packer: {} for packer in packers}
    with tempfile.TemporaryDirectory() as tmp, kernel(ACYTOO_URL=url, ACYTOO_HISTORY_DB=f"{tmp}/h.db") as k:
        k.execute(f"%load_ext acytoo_magic\nimport acytoo_magic\nURL = {url!r}\n{RAW_IN_KERNEL}")
        default = k.execute("print(get_ipython().kernel.session.packer)").stdout.strip()
        kinds = ["full", "raw", "floor"]
        for prompt in prompts:
            samples = {packer: {kind: [] for kind in [*kinds, "shown"]} for packer in packers}

            def run(kind: str, prompt: str = prompt) -> list[float]:
                if kind == "full":
                    assert k.execute(f"%%acytoo --no-history\n{prompt}").status == "ok"
                    code = "print(_cell_time[0], _shown_time[0])"
                else:
                    code = f"print(await _raw_stream(_raw_session, {prompt!r}, {kind == 'floor'}))"
                return [float(t) for t in k.execute(code).stdout.split()]

            for kind in kinds:  # warm-up: imports, the first connection
                run(kind)
            for index in range(repeats):
                for packer in packers[index % len(packers) :] + packers[: index % len(packers)]:
                    done = k.execute(f"get_ipython().kernel.session.packer = {packer or default!r}")
                    assert done.status == "ok", done.error
                    for kind in kinds[index % 3 :] + kinds[: index % 3]:
                        took = run(kind)
                        samples[packer][kind].append(took[0])
                        if kind == "full":
                            samples[packer]["shown"].append(took[1])
            for packer in packers:
                times[packer][prompt] = samples[packer]
        k.execute("await _raw_session.close()")
    return times


# -- 2. render cost growth, 3. first visible chunk ---------------------------------------------
class _Handle:
    """A display handle that serialises what it is given, as publishing a display update does
    (with this run's packer)."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes

    def update(self, bundle: dict[str, Any], raw: bool = True) -> None:
        self.sizes.append(len(packed({"data": bundle, "metadata": {}, "transient": {}})))


def render_cost(
    size: int, interval: float, adaptive: bool, whole: bool = False
) -> tuple[float, int, int, float]:
    """Kernel-side cost of the magic drawing a Markdown reply (``long_markdown``: headings, prose,
    lists, code, tables) arriving as 64-byte chunks every millisecond, through its own
    ``DisplayRenderer`` with display updates serialised. The clock is simulated arrival time plus
    the real time spent drawing. Returns (time drawing, draws, chunks, largest draw's time)."""
    from browser import long_markdown

    from acytoo_magic.magic.output import DisplayRenderer

    simulated = [0.0]
    spent = [0.0]
    largest = [0.0]
    sizes: list[int] = []

    def clock() -> float:
        return simulated[0] + spent[0]

    def display(bundle: dict[str, Any], raw: bool = True, display_id: bool = True) -> _Handle:
        handle = _Handle(sizes)
        handle.update(bundle)
        return handle

    throttle: dict[str, Any] = {} if adaptive else {"cost_factor": 0.0, "size_step": None}
    renderer: ThrottledRenderer
    if whole:  # before issue 21: every draw rendered and sent the whole answer, spaced by its size
        throttle["size_step"] = SIZE_STEP if adaptive else None  # as it was
        handle = _Handle(sizes)
        draw_whole = lambda frame: handle.update(markdown_bundle(frame))  # noqa: E731
        renderer = ThrottledRenderer(draw_whole, interval, clock, **throttle)
    else:
        renderer = DisplayRenderer("markdown", interval, **throttle)
        renderer._display = display  # type: ignore[attr-defined]
        renderer._clock = clock
    draw = renderer._draw

    def timed(frame: Any) -> None:
        started = time.perf_counter()
        draw(frame)
        took = time.perf_counter() - started
        spent[0] += took
        largest[0] = max(largest[0], took)

    renderer._draw = timed  # type: ignore[assignment]
    text = long_markdown(size)
    chunks = 0
    for start in range(0, len(text), 64):
        simulated[0] += 0.001
        renderer.feed(text[start : start + 64])
        chunks += 1
    renderer.close(text)
    return spent[0], renderer.draws, chunks, largest[0]


def rendering(table: Table, smoke: bool) -> None:
    render_cost(10_000, 0.08, adaptive=True)  # warm-up: imports, Pygments' lexer, regex compilation
    sizes = [10_000, 100_000] if smoke else [10_000, 100_000, 1_000_000]
    costs, every = {}, {}
    for size in sizes:
        runs = [render_cost(size, 0.08, adaptive=True) for _ in range(3)]
        cost, draws, chunks, _ = sorted(runs)[1]  # the median run
        costs[size] = cost
        table.add(
            "render cost",
            f"{size // 1000} KB reply: throttled drawing",
            cost * 1000,
            "ms",
            note=f"{draws} draws for {chunks} chunks",
        )
        if size <= 100_000:  # every chunk of 1 MB is 15,600 draws: minutes on a loaded machine
            every[size], every_draws, _, _ = render_cost(size, 0.0, adaptive=False)
            table.add(
                "render cost",
                f"{size // 1000} KB reply: drawing every chunk / throttled",
                every[size] / cost,
                "x",
                note=f"{every_draws} draws",
            )
        if size <= 100_000:  # the design before, in the same run: the whole answer at every draw
            whole = sorted(render_cost(size, 0.08, adaptive=True, whole=True) for _ in range(3))[1]
            table.add(
                "render cost",
                f"{size // 1000} KB reply: throttled drawing, whole answer per draw (before) / blocks",
                whole[0] / cost,
                "x",
                note=f"{whole[1]} draws",
            )
    big, small = sizes[-1], sizes[-2]
    ratio = costs[big] / costs[small]
    name = f"growth {big // 1000} KB / {small // 1000} KB"
    table.add("render cost", name, ratio, "x", "<= 12", ratio <= 12)
    # Drawing every chunk: 10x the chunks, each update's work the tail's, so ~10x (it was ~100x when
    # every update rendered the whole answer).
    ratio = every[100_000] / every[10_000]
    table.add(
        "render cost",
        "drawing every chunk: growth 100 KB / 10 KB (work per update follows the tail)",
        ratio,
        "x",
        "<= 15",
        ratio <= 15,
    )


# -- render cost: what the chat widget sends its page ------------------------------------------
def widget_sends(size: int, blocks: bool) -> tuple[list[int], float]:
    """The chat widget drawing a ``long_markdown`` reply of ``size`` arriving in 100-character chunks
    6 ms apart (simulated clock, as the browser benchmark paces them) into its own transcript, every
    message serialised: each message's size, the last being the finished answer's entry, and the
    kernel's time. ``blocks=False``: the design before, the whole answer rendered and sent per
    frame, then sent whole again as the entry."""
    from browser import long_markdown

    from acytoo_magic.widget.entries import live_html, message_html
    from acytoo_magic.widget.transcript import LiveAnswer, Transcript

    transcript, sizes = Transcript(), []
    transcript.send = lambda content, buffers=None: sizes.append(len(packed(content)))  # type: ignore
    answer, now = LiveAnswer(), [0.0]

    def draw(frame: Any) -> None:
        if blocks:
            transcript.draw_answer(answer, frame)
        else:
            transcript.draw_live(live_html(frame))

    renderer = ThrottledRenderer(draw, 0.08, clock=lambda: now[0])
    text = long_markdown(size)
    started = time.perf_counter()
    for start in range(0, len(text), 100):
        now[0] += 0.006
        renderer.feed(text[start : start + 100])
    renderer.close(text)
    # The finished answer becomes its entry: moved in the page (blocks), or sent whole (before).
    transcript.show([answer.settle("") if blocks else message_html("assistant", text)], "")
    return sizes, time.perf_counter() - started


def widget_frames(table: Table, smoke: bool) -> None:
    size = 10_000 if smoke else 100_000
    label = f"ChatWidget, {size // 1000} KB reply"
    sizes, spent = widget_sends(size, blocks=True)
    old_sizes, old_spent = widget_sends(size, blocks=False)
    once = old_sizes[-1]  # the answer's entry as one message: what showing it once sends
    ratio, old_ratio = sum(sizes) / once, sum(old_sizes) / once
    note = f"{len(sizes) - 1} frames; the answer once is {once / 1000:.0f} KB"
    add = functools.partial(table.add, "render cost")
    add(f"{label}: sent to the page / the answer once", ratio, "x", "<= 1.5", ratio <= 1.5, note)
    add(f"{label}: whole answer per frame (before), sent / the answer once", old_ratio, "x")
    add(f"{label}: largest frame", max(sizes[:-1]) / 1000, "KB")
    add(f"{label}: largest frame, whole answer per frame (before)", max(old_sizes[:-1]) / 1000, "KB")
    add(f"{label}: kernel drawing, whole answer per frame (before) / blocks", old_spent / spent, "x")


# -- linear time: the cursor, the headless paths ------------------------------------------------
class Chunks:
    """A provider in this process: ``count`` chunks of 10 characters, as fast as they can be read."""

    count = 0

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: Any, proxy: Any = None, temperature: Any = None, timeout: Any = None
    ):
        for _ in range(cls.count):
            yield "0123456789"


def linear(table: Table, smoke: bool) -> None:
    """Each path at two sizes ten times apart: linear is 10x, the old quadratic paths were ~100x."""
    import io

    from acytoo_magic import Assistant
    from acytoo_magic.magic.output import TerminalRenderer
    from acytoo_magic.present.untrusted import render_markdown, with_cursor

    section = "linear time"
    spaces = [1_600, 16_000] if smoke else [16_000, 160_000]
    took = []
    for count in spaces:
        body = render_markdown("```\n" + " " * count + "x\n```")
        started = time.perf_counter()
        for _ in range(10):
            with_cursor(body)
        took.append((time.perf_counter() - started) / 10)
        table.add(section, f"with_cursor, {count:,} spaces then text", took[-1] * 1000, "ms")
    ratio = took[1] / took[0]
    table.add(section, "with_cursor growth (10x the spaces)", ratio, "x", "<= 15", ratio <= 15)

    counts = [10_000, 100_000] if smoke else [100_000, 1_000_000]
    assistant = Assistant(history_path=str(Path(tempfile.mkdtemp()) / "h.db"), show_status=False)

    async def stream(count: int) -> None:
        async for _ in assistant.stream("q", provider=Chunks, history=False):
            pass

    def terminal(count: int) -> None:
        assistant.ask_sync("q", provider=Chunks, history=False, renderer=TerminalRenderer(io.StringIO()))

    paths = {
        "ask_sync": lambda count: assistant.ask_sync("q", provider=Chunks, history=False),
        "stream": lambda count: assistant.runner.run(stream(count)),
        "terminal drawing": terminal,
    }
    try:
        for name, run in paths.items():
            took = []
            for count in counts:
                Chunks.count = count
                started = time.perf_counter()
                run(count)
                took.append(time.perf_counter() - started)
                table.add(section, f"{name}, {count:,} chunks of 10 characters (interval 0)", took[-1], "s")
            ratio = took[1] / took[0]
            table.add(section, f"{name} growth (10x the chunks)", ratio, "x", "<= 15", ratio <= 15)
    finally:
        assistant.close()


async def first_visible(url: str, repeats: int) -> tuple[float, float]:
    """Median delay from the provider's first chunk to its first draw, and the raw first-chunk time."""
    seen: dict[str, float] = {}

    class Timed(Acytoo):
        @classmethod
        async def create_async_generator(cls, *args: Any, **kwargs: Any):  # type: ignore[override]
            async for chunk in super().create_async_generator(*args, **kwargs):
                seen.setdefault("first", time.perf_counter())
                yield chunk

    def draw(frame: Any) -> None:
        if frame.text and "drawn" not in seen:
            packed({"data": markdown_bundle(frame), "metadata": {}, "transient": {}})
            seen["drawn"] = time.perf_counter()

    delays, firsts = [], []
    async with aiohttp.ClientSession() as session:
        for _ in range(repeats):
            seen.clear()
            started = time.perf_counter()
            request = Request("[[stall=0.05 size=2000 chunk=100]]", Timed, "m", options={"url": url})
            await answer(request, ThrottledRenderer(draw, 0.08), session)
            delays.append(seen["drawn"] - seen["first"])
            firsts.append(seen["first"] - started)
    return statistics.median(delays), statistics.median(firsts)


# -- 4. connection reuse, 5. history store ------------------------------------------------------
def reuse(table: Table, url: str, smoke: bool) -> None:
    count = 20 if smoke else 100
    prompt = "[[echo]]short"

    async def shared() -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(count):
                await Acytoo.create_async("m", user(prompt), url=url, session=session)

    async def fresh() -> None:
        for _ in range(count):
            await Acytoo.create_async("m", user(prompt), url=url)

    with_shared, with_fresh = median_time(3, shared), median_time(3, fresh)
    table.add("connection reuse", f"{count} requests, shared session", with_shared * 1000, "ms")
    ratio = with_fresh / with_shared
    table.add("connection reuse", "new session per request / shared", ratio, "x", ">= 1.5", ratio >= 1.5)


def history(table: Table, smoke: bool) -> None:
    count = 1_000 if smoke else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "h.sqlite3")
        conversation = Conversation(store, "bench.ipynb")
        for start in range(0, count, 500):
            store.append(
                "bench.ipynb",
                "default",
                [
                    *(conversation_message(i) for i in range(start, min(start + 500, count))),
                ],
            )
        samples = []
        for i in range(50):
            started = time.perf_counter()
            conversation.to_send(f"question {i}", "system", history_chars=12_000)
            conversation.record(f"question {i}", "an answer " * 40)
            samples.append(time.perf_counter() - started)
        per_cell = statistics.median(samples) * 1000
        table.add(
            "history store",
            f"load + trim + append, {count:,}-message thread",
            per_cell,
            "ms",
            "< 5",
            per_cell < 5,
        )


def conversation_message(i: int) -> Any:
    from acytoo_magic.core.history.store import Message

    return Message("user" if i % 2 == 0 else "assistant", f"message {i} " + "words " * 30)


# -- 6. kernel responsiveness while a widget streams ----------------------------------------------
def responsiveness(table: Table, url: str, smoke: bool) -> None:
    from kernels import kernel

    repeats = 5 if smoke else 20

    def latency(k: Any) -> float:
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            k.execute("pass")
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    with tempfile.TemporaryDirectory() as tmp, kernel(ACYTOO_URL=url, ACYTOO_HISTORY_DB=f"{tmp}/h.db") as k:
        k.execute("%load_ext acytoo_magic\nfrom acytoo_magic import ChatWidget\nw = ChatWidget('bench')")
        use_kernel_packer(k)
        idle = latency(k)
        k.execute("w.send('[[size=50000000 chunk=64 delay=0.0005]]')")
        busy = latency(k)
        still = k.execute("print(w.streaming)\nw.stop()").stdout.strip()
    table.add("kernel responsiveness", "trivial cell, idle kernel", idle * 1000, "ms")
    table.add(
        "kernel responsiveness",
        "trivial cell while a widget streams / idle",
        busy / idle,
        "x",
        note="" if still == "True" else "(stream ended early)",
    )


# -- the large DataFrame summary (issue 5) -------------------------------------------------------
def dataframe(table: Table, smoke: bool) -> None:
    import numpy as np
    import pandas as pd

    from acytoo_magic.core.context import summarize

    rows = 100_000 if smoke else 10_000_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 100, rows),
            "c": rng.choice(["x", "y", "z"], rows),
            "d": rng.normal(size=rows),
        }
    )
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        summarize(df, 4_000)
        samples.append(time.perf_counter() - started)
    ours = statistics.median(samples)
    started = time.perf_counter()
    df.describe(include="all")
    full = time.perf_counter() - started
    table.add("context", f"summary of a {rows:,}-row DataFrame", ours * 1000, "ms", "< 1000", ours < 1)
    table.add("context", "full df.describe(include='all') / our summary", full / ours, "x")


def first_visible_rows(table: Table, url: str, smoke: bool) -> None:
    delay, first = asyncio.run(first_visible(url, 5 if smoke else 20))
    table.add("first visible chunk", "server stall to first chunk (raw)", first * 1000, "ms")
    table.add("first visible chunk", "first chunk to first draw", delay * 1000, "ms", "< 10", delay < 0.010)


def sections(url: str, smoke: bool) -> list[tuple[str, Callable[[Table], Any]]]:
    """The bench's sections against the scripted server at ``url``, in order, each adding its rows
    to the table it is given (the peers and the browser apart: they start servers of their own)."""
    return [
        ("streaming overhead", lambda table: streaming(table, url, smoke)),
        ("render cost", lambda table: rendering(table, smoke)),
        ("widget frames", lambda table: widget_frames(table, smoke)),
        ("linear time", lambda table: linear(table, smoke)),
        ("first visible chunk", lambda table: first_visible_rows(table, url, smoke)),
        ("connection reuse", lambda table: reuse(table, url, smoke)),
        ("history store", lambda table: history(table, smoke)),
        ("notebook record", lambda table: record_rows(table, smoke)),
        ("kernel responsiveness", lambda table: responsiveness(table, url, smoke)),
        ("context", lambda table: dataframe(table, smoke)),
    ]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    packages = ("ipykernel", "ipython", "jupyterlab", "jupyter_client", "aiohttp", "markdown-it-py")
    packages += ("playwright",)
    try:
        orjson = version("orjson")
    except PackageNotFoundError:
        orjson = ""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
        "chromium": chromium_version(),
        **{name: version(name) for name in packages},
        "orjson": orjson,
        "packer": packer_name(),
    }


def chromium_version() -> str:
    import shutil
    import subprocess

    if not shutil.which("chromium"):
        return ""
    done = subprocess.run(["chromium", "--version"], capture_output=True, text=True)
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmarks still run")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument(
        "--peers", default=str(ROOT / ".bench"), help="the peers' venvs (made by `make bench`)"
    )
    parser.add_argument(
        "--packer",
        choices=("json", "orjson"),
        help="the kernels' message packer (default: jupyter_client's choice, orjson when installed)",
    )
    args = parser.parse_args()
    use_packer(args.packer)
    started = time.perf_counter()
    table = Table()
    process, url = start_server()
    try:
        for _name, section in sections(url, args.smoke):
            section(table)
        compared = peers(table, url, args.smoke, Path(args.peers))
    finally:
        process.terminate()
        process.wait(timeout=10)
    try:
        in_browser = browser(table, args.smoke, args.packer)
    except Exception as exc:  # the rest of the table is still worth keeping
        in_browser = {"runs": False, "status": f"failed: {type(exc).__name__}: {str(exc)[:200]}"}
        table.add("browser", "runs", 0.0, "", note=in_browser["status"])
    table.print()
    elapsed = time.perf_counter() - started
    print(f"\n{len(table.rows)} figures in {elapsed:.0f} s -> {args.output}")
    Path(args.output).write_text(
        json.dumps(
            {
                "smoke": args.smoke,
                "seconds": elapsed,
                "machine": machine(),
                "rows": table.rows,
                "peers": compared,
                "browser": in_browser,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
