"""Record = screen, and nothing lost: what the history holds after every way an answer can end.

Each test drives the real core (a real local server, a real SQLite file) and injects a failure
where a front end or the file could fail: the renderer, an ``on_chunk`` callback, closing the
output, a history read, a lock at closing time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from acytoo_magic import Assistant, Reply
from acytoo_magic.core import errors
from acytoo_magic.core import stream as runner
from acytoo_magic.core.frames import Frame
from acytoo_magic.core.history.migrations import SCHEMA_VERSION
from acytoo_magic.core.history.store import HistoryStore
from acytoo_magic.core.history.thread import Conversation
from acytoo_magic.present.throttle import ThrottledRenderer

# The statements the history code ran before the schema had a version (commit 73dffba and earlier):
# a file they made has the ``cell`` column and ``user_version`` 0.
UNVERSIONED_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    notebook TEXT NOT NULL,
    thread   TEXT NOT NULL,
    role     TEXT NOT NULL,
    content  TEXT NOT NULL,
    status   TEXT NOT NULL DEFAULT 'complete',
    created  REAL NOT NULL,
    meta     TEXT NOT NULL DEFAULT '{}',
    cell     TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages (notebook, thread, id);
CREATE INDEX IF NOT EXISTS messages_by_cell ON messages (notebook, thread, cell);
INSERT INTO messages (notebook, thread, role, content, status, created, meta, cell) VALUES
    ('nb', 'default', 'user', 'old q', 'complete', 1, '{}', 'id:c1#0'),
    ('nb', 'default', 'assistant', 'old a', 'partial', 1, '{}', 'id:c1#0');
"""


def _version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_file_records_its_schema_version(history_db):
    HistoryStore(history_db).threads("nb")
    assert _version(history_db) == SCHEMA_VERSION


def test_a_file_made_by_the_unversioned_code_is_adopted_and_keeps_working(history_db):
    old = sqlite3.connect(history_db, isolation_level=None)
    old.execute("PRAGMA journal_mode = WAL")
    old.executescript(UNVERSIONED_SCHEMA)
    old.close()
    assert _version(history_db) == 0
    conversation = Conversation(HistoryStore(history_db), "nb")
    conversation.record("new q", "new a", cell="id:c1#0")  # the same cell: replaced in place
    conversation.record("other q", "other a", cell="id:c2#0")
    assert [(m.content, m.outcome) for m in conversation.messages()] == [
        ("new q", "complete"),
        ("new a", "complete"),
        ("other q", "complete"),
        ("other a", "complete"),
    ]
    assert _version(history_db) == SCHEMA_VERSION
    conversation.store.close()
    assert Conversation(HistoryStore(history_db), "nb").messages()[0].content == "new q"


def test_a_file_at_version_2_gets_the_spend_ledger_and_keeps_its_exchanges(history_db):
    from acytoo_magic.core.history.migrations import MIGRATIONS

    old = sqlite3.connect(history_db, isolation_level=None)
    for step in MIGRATIONS[:2]:  # the file as the release before the ledger made it
        step(old)
    old.execute("PRAGMA user_version = 2")
    old.execute(
        "INSERT INTO messages (notebook, thread, role, content, created, cell) VALUES"
        " ('nb', 'default', 'user', 'old q', 1, 'id:c1#0'),"
        " ('nb', 'default', 'assistant', 'old a', 1, 'id:c1#0')"
    )
    old.close()
    store = HistoryStore(history_db)
    assert store.spent("nb", 0) == (0, 0.0)  # the table exists now: nothing spent yet
    store.add_spend("nb", 12, 0.5)
    assert store.spent("nb", 0) == (12, 0.5)
    assert [m.content for m in Conversation(store, "nb").messages()] == ["old q", "old a"]
    store.close()
    assert _version(history_db) == SCHEMA_VERSION == 4
    with sqlite3.connect(history_db) as db:
        indexes = {row[1] for row in db.execute("PRAGMA index_list(spend)")}
    assert {"spend_by_day", "spend_by_time"} <= indexes  # step 4: the user's day, by time alone


def test_a_file_from_a_newer_version_is_refused_with_one_line(history_db):
    HistoryStore(history_db).threads("nb")
    with sqlite3.connect(history_db) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(errors.HistoryError, match="newer than this acytoo-magic knows"):
        HistoryStore(history_db).threads("nb")


def test_every_error_lives_in_errors_under_one_base():
    from acytoo_magic import providers
    from acytoo_magic.providers import base, local_model

    kinds = [
        errors.ProviderError,
        errors.ProviderHTTPError,
        errors.ProviderConnectionError,
        errors.ProviderTimeout,
        errors.ProviderProtocolError,
        errors.ResponseTooLarge,
        errors.ModelNotFound,
        errors.AnswerError,
        errors.BudgetExceeded,
        errors.ToolsUnsupported,
    ]
    assert all(issubclass(kind, errors.AcytooError) and kind.__module__ == errors.__name__ for kind in kinds)
    assert providers.ProviderError is errors.ProviderError
    assert base.ProviderHTTPError is errors.ProviderHTTPError
    assert local_model.ModelNotFound is errors.ModelNotFound
    assert issubclass(errors.ModelNotFound, ValueError)  # what callers caught before


# -- record = screen --------------------------------------------------------------------------
class Screen:
    """A front end's renderer that draws every chunk at once (no throttle: which chunk a draw
    shows is then not a matter of timing), keeps what it showed, and fails where a test says.

    ``last_frame`` is the last frame whose draw succeeded, as ``ThrottledRenderer`` keeps it.
    """

    def __init__(self, fail_on_draw: int = 0, fail_close: bool = False, fail_from: int = 0) -> None:
        self.shown: list[Frame] = []
        self.calls = 0
        self.fail_on_draw, self.fail_close, self.fail_from = fail_on_draw, fail_close, fail_from
        self._text = ""

    @property
    def last_frame(self) -> Frame | None:
        return self.shown[-1] if self.shown else None

    def start(self, label: str) -> None:
        self.shown.append(Frame("", note=label, waiting=True))

    def notify(self, note: str) -> None:
        pass

    def feed(self, chunk: str) -> None:
        self._text += chunk
        self.draw(Frame(self._text))

    def close(self, text: str, note: str = "", small_print: str = "") -> None:
        self.draw(Frame(text, note=note, final=True, small_print=small_print))

    def draw(self, frame: Frame) -> None:
        self.calls += 1
        broken = self.calls == self.fail_on_draw or 0 < self.fail_from <= self.calls
        if broken or (frame.final and self.fail_close):
            raise RuntimeError("the output area went away")
        self.shown.append(frame)

    @property
    def text(self) -> str:
        """The answer text on screen now: the last frame drawn ("" for none or a waiting line)."""
        last = self.shown[-1] if self.shown else None
        return "" if last is None or last.waiting else last.text


PROMPT = "count to six"
ANSWER = "one two three four five six"


class Words:
    """A provider that answers word by word, each word its own chunk: no timing decides chunking."""

    @classmethod
    async def create_async_generator(cls, model, messages, proxy=None):
        for word in ANSWER.split(" "):
            yield word if word == "one" else " " + word


def _stored(assistant: Assistant) -> list[tuple[str, str]]:
    return [(m.content, m.outcome) for m in assistant.conversation().messages() if m.role == "assistant"]


@pytest.fixture
async def assistant(server, history_db):
    found = Assistant(url=server.url, history_path=str(history_db), render_interval=0.0)
    yield found
    await found.aclose()
    found.close()


async def _ask(assistant: Assistant, screen: Screen, **options) -> Reply:
    return await assistant.ask(PROMPT, renderer=screen, provider=Words, **options)


async def test_a_draw_failing_mid_stream_is_partial_and_the_record_is_the_final_frame(assistant):
    screen = Screen(fail_on_draw=2)
    reply = await _ask(assistant, screen)
    assert reply.outcome == "partial" and isinstance(reply.error, errors.AnswerError)
    assert str(reply.error) == "drawing the answer failed: RuntimeError: the output area went away"
    assert screen.shown[-1].final and screen.text == reply.answer == "one two"
    assert _stored(assistant) == [(screen.text, "partial")]


async def test_an_on_chunk_callback_failing_is_partial_and_recorded_as_shown(assistant):
    seen: list[str] = []

    def on_chunk(chunk: str) -> None:
        seen.append(chunk)
        if len(seen) == 3:
            raise ValueError("caller's bug")

    screen = Screen()
    reply = await _ask(assistant, screen, on_chunk=on_chunk)
    assert reply.outcome == "partial"
    assert str(reply.error) == "the on_chunk callback failed: ValueError: caller's bug"
    assert screen.text == reply.answer == "".join(seen) == "one two three"
    assert _stored(assistant) == [(screen.text, "partial")]
    assert "partial: the on_chunk callback failed" in screen.shown[-1].note


async def test_a_final_draw_that_fails_records_the_frame_last_drawn(assistant):
    screen = Screen(fail_close=True)
    reply = await _ask(assistant, screen)
    assert not screen.shown[-1].final and screen.text == ANSWER  # the last draw had no status line
    assert reply.outcome == "partial"
    assert str(reply.error).startswith("showing the answer failed: RuntimeError")
    assert reply.answer == screen.text and _stored(assistant) == [(screen.text, "partial")]


async def test_nothing_drawn_records_nothing_and_says_one_line(assistant):
    reply = await _ask(assistant, Screen(fail_from=1))
    assert reply.outcome == "failed" and reply.answer == "" and "\n" not in str(reply.error)
    assert _stored(assistant) == []
    # The answer came back though nothing could show it: the provider billed it, so it is counted.
    assert reply.chunks >= 1 and assistant.daily_budget().today()[0] > 0


async def test_the_throttled_renderer_keeps_the_last_frame_it_drew_and_reports_a_timer_draw_failing():
    """``last_frame`` is what the user last saw: a draw that failed does not count. A draw the
    throttle's timer made that failed is raised by the next feed, into the answer (not the loop's log).

    The throttle's clock stands still, so whether a chunk is drawn now or by the timer is decided
    by the interval alone, never by how busy the machine is.
    """
    import asyncio

    timer_draw_failed = asyncio.Event()
    drawn: list[str] = []

    def draw(frame: Frame) -> None:
        if frame.text == "ab":
            timer_draw_failed.set()
            raise RuntimeError("the output area went away")
        drawn.append(frame.text)

    renderer = ThrottledRenderer(draw, interval=0.01, clock=lambda: 0.0)
    renderer.feed("a")  # the first chunk is drawn at once
    renderer.feed("b")  # within the interval: left to the timer
    await timer_draw_failed.wait()
    assert renderer.last_frame is not None and renderer.last_frame.text == "a" == drawn[-1]
    with pytest.raises(RuntimeError, match="went away"):
        renderer.feed("c")
    renderer.close("abc")
    assert renderer.last_frame.final and drawn[-1] == "abc"


async def test_a_failed_history_read_still_records_the_exchange(assistant, monkeypatch):
    await assistant.ask("[[echo]]first")  # through the real local server
    real_load = HistoryStore.load

    def broken_load(self, *args, **kwargs):
        monkeypatch.setattr(HistoryStore, "load", real_load)  # only this read fails
        raise errors.HistoryError("history database x: disk I/O error")

    monkeypatch.setattr(HistoryStore, "load", broken_load)
    reply = await assistant.ask("[[echo]]second")
    assert reply.outcome == "complete" and reply.history_warning == "history database x: disk I/O error"
    assert _stored(assistant) == [("first", "complete"), ("second", "complete")]


# -- the store: one per path, reached from threads; a replaced one closed with nothing lost ----
def test_threads_opening_the_store_at_once_share_one(history_db):
    import threading

    assistant = Assistant(history_path=str(history_db))
    start = threading.Barrier(12)
    got: list[HistoryStore] = []

    def first_use() -> None:
        start.wait()
        got.append(assistant.store)

    workers = [threading.Thread(target=first_use) for _ in range(12)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len({id(store) for store in got}) == 1
    assistant.close()


def test_a_history_path_change_closes_the_old_store_and_writes_what_it_held_back(history_db, tmp_path):
    assistant = Assistant(history_path=str(history_db))
    conversation = assistant.conversation()
    old = assistant.store
    old.busy_timeout = 0.05
    locker = sqlite3.connect(history_db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(errors.HistoryLocked):
        conversation.record("held", "back")
    locker.execute("ROLLBACK")
    assistant.history_path = str(tmp_path / "other.sqlite3")
    assert old.closed and old.pending == 0
    written = HistoryStore(history_db).load(assistant.notebook, "default")
    assert [m.content for m in written] == ["held", "back"]
    with pytest.raises(errors.HistoryError, match="closed"):  # a worker still holding it cannot reopen it
        old.load(assistant.notebook, "default")
    conversation.record("after", "the change")  # an earlier Conversation follows to the new file
    assert [m.content for m in assistant.conversation().messages()] == ["after", "the change"]
    assistant.close()


class PausingWords:
    """``Words`` with a suspension between words, where an interrupt can land mid-answer."""

    @classmethod
    async def create_async_generator(cls, model, messages, proxy=None):
        for word in ANSWER.split(" "):
            await asyncio.sleep(0)
            yield word if word == "one" else " " + word


async def test_a_second_interrupt_while_the_answer_is_settled_still_records_it(assistant, monkeypatch):
    """The user presses interrupt twice: the second lands while the budget is charged, before the
    record; what the screen shows is recorded all the same."""
    entered, release = threading.Event(), threading.Event()
    charge = runner.charge_spend

    def slow_charge(request, reply):
        entered.set()
        release.wait(30)
        charge(request, reply)

    monkeypatch.setattr(runner, "charge_spend", slow_charge)

    class Interrupting(Screen):
        def draw(self, frame: Frame) -> None:
            super().draw(frame)
            if len(self.shown) == 2 and not frame.final:
                task.cancel()  # the first interrupt, mid-answer

    screen = Interrupting()
    task = asyncio.ensure_future(assistant.ask(PROMPT, renderer=screen, provider=PausingWords))
    await asyncio.to_thread(entered.wait, 30)
    task.cancel()  # the second
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert screen.shown[-1].final and screen.text and ANSWER.startswith(screen.text) and screen.text != ANSWER
    assert _stored(assistant) == [(screen.text, "interrupted")]


async def test_waiting_for_a_record_outlasts_any_number_of_interrupts():
    entered, release, done = threading.Event(), threading.Event(), []

    def record() -> None:
        entered.set()
        release.wait(30)
        done.append("recorded")

    seen_when_ended: list[list[str]] = []

    async def cell() -> None:
        try:
            await runner.to_thread_to_the_end(record)
        finally:
            seen_when_ended.append(list(done))

    task = asyncio.ensure_future(cell())
    await asyncio.to_thread(entered.wait, 30)
    for _ in range(3):  # the user presses interrupt again and again
        task.cancel()
        await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen_when_ended == [["recorded"]]
