"""Spending limits per day: tokens, and cost where ``Assistant.prices`` knows the model.

Every request that reached a provider adds its tokens (reported, else estimated) and cost to a
ledger in the history file, whether or not the exchange is kept (``--no-history``, a re-run cell
replacing its answer). The daily budget is the user's: every notebook and kernel writing to that
file counts toward it, so neither a rename nor a new notebook starts it again. A per-notebook
budget may be set as well (it follows a rename with the notebook's threads). Before sending, a
request whose estimated prompt would pass a budget is refused with one line naming the budget and
the setting that raises it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import BudgetExceeded, HistoryError
from .outcome import FAILED
from .request import CHARS_PER_TOKEN, Reply, Request, cost

__all__ = ["BudgetExceeded", "DailyBudget", "start_of_today"]


def start_of_today() -> float:
    """Local midnight as a Unix time: the day a daily budget counts."""
    return datetime.datetime.combine(datetime.date.today(), datetime.time()).timestamp()


class Ledger:
    """Where a finished request's spend is written: one thread of its own, in order, so an answer
    does not wait for the write (a millisecond of SQLite after its final draw) and a later read
    (``settled``) waits for every write queued before it."""

    def __init__(self) -> None:
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._last: concurrent.futures.Future[None] | None = None
        self._lock = threading.Lock()

    def write(self, add: Callable[[int, float], None], tokens: int, cost: float) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="acytoo-ledger")
            self._last = self._writer.submit(_write, add, tokens, cost)

    def settled(self) -> None:
        """Wait until every write queued so far is in the ledger (or has failed, which loses it)."""
        last = self._last
        if last is not None:
            concurrent.futures.wait([last])


def _write(add: Callable[[int, float], None], tokens: int, cost: float) -> None:
    with contextlib.suppress(HistoryError):  # a locked file loses this entry rather than delaying anything
        add(tokens, cost)


@dataclass
class DailyBudget:
    """The daily limits (0: none) over a ledger: ``spent(since, notebook)`` (every notebook's with
    ``None``) and ``add(tokens, cost)`` (this notebook's request).

    ``key()`` is the notebook's key, asked only when the per-notebook budget is read or a message
    names it (finding it may read the history file and ask the Jupyter server: never on the loop).
    """

    key: Callable[[], str]
    max_tokens: int
    max_cost: float
    spent: Callable[[float, str | None], tuple[int, float]]
    add: Callable[[int, float], None]
    notebook_max_tokens: int = 0
    notebook_max_cost: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)

    @property
    def active(self) -> bool:
        """Whether any daily limit is set (otherwise nothing is checked, only counted)."""
        return bool(self.max_tokens or self.max_cost or self.notebook_max_tokens or self.notebook_max_cost)

    def today(self) -> tuple[int, float]:
        """What every notebook spent today (the user's budget counts this)."""
        self.ledger.settled()
        return self.spent(start_of_today(), None)

    def notebook_today(self) -> tuple[int, float]:
        """What this notebook spent today."""
        self.ledger.settled()
        return self.spent(start_of_today(), self.key())

    def check(self, prompt_chars: int, price: tuple[float, float] | None) -> None:
        """Refuse (``BudgetExceeded``) a request of ``prompt_chars`` that would pass a budget."""
        if not self.active:
            return
        estimate = -(-prompt_chars // CHARS_PER_TOKEN)
        more = cost(estimate, 0, price)
        if self.max_tokens or self.max_cost:
            limits = (self.max_tokens, self.max_cost)
            _check(estimate, more, self.today(), limits, "daily", "in every notebook")
        if self.notebook_max_tokens or self.notebook_max_cost:
            limits = (self.notebook_max_tokens, self.notebook_max_cost)
            _check(estimate, more, self.notebook_today(), limits, "notebook_daily", f"for {self.key()!r}")

    def shown(self) -> str:
        """Today's spend against the budgets, for ``%acytoo threads``."""
        tokens, cost = self.today()
        parts = [f"today: {tokens:,} tokens" + (f" of {self.max_tokens:,}" if self.max_tokens else "")]
        if cost or self.max_cost:
            parts.append(f"{cost:.4f} cost" + (f" of {self.max_cost:g}" if self.max_cost else ""))
        if self.notebook_max_tokens or self.notebook_max_cost:
            mine, mine_cost = self.notebook_today()
            limit = f" of {self.notebook_max_tokens:,}" if self.notebook_max_tokens else ""
            parts.append(f"this notebook: {mine:,} tokens{limit}")
            if self.notebook_max_cost:
                parts.append(f"{mine_cost:.4f} cost of {self.notebook_max_cost:g}")
        unset = "" if self.active else " (no daily budget set)"
        return " · ".join(parts) + unset

    def check_messages(self, messages: list[dict[str, Any]], price: tuple[float, float] | None) -> None:
        """``check`` for these messages (what a request would send)."""
        if self.active:
            self.check(sum(len(json.dumps(m, ensure_ascii=False)) for m in messages), price)

    def check_request(self, request: Request) -> None:
        """``check_messages`` for what ``request`` would send; without the history when it cannot be
        read, as ``runner.answer`` then sends it."""
        if not self.active:
            return
        try:
            messages = request.messages()
        except Exception:
            messages = request.messages(history=False)
        self.check_messages(messages, request.price)

    def charge(self, reply: Reply, price: tuple[float, float] | None) -> None:
        """Add a finished request's tokens and cost; one that got nothing back costs nothing (a reply
        whose text came back but could not be shown is failed too, and was billed).

        Queued for the ledger's writer: nothing waits for it but a later reading of the ledger. A
        locked history file loses this one entry rather than delaying anything.
        """
        if reply.outcome == FAILED and not reply.chunks and reply.usage is None and not reply.tool_calls:
            return
        prompt, completion, _estimated = reply.tokens()
        self.ledger.write(self.add, prompt + completion, cost(prompt, completion, price))


def _check(
    estimate: int, more: float, spent: tuple[int, float], limits: tuple[int, float], setting: str, whose: str
) -> None:
    """Refuse when ``estimate`` tokens (``more`` cost) would pass ``limits`` given ``spent`` today."""
    tokens, cost = spent
    max_tokens, max_cost = limits
    if max_tokens and tokens + estimate > max_tokens:
        raise BudgetExceeded(
            f"not sent: ≈{estimate:,} more tokens would pass the daily budget of {max_tokens:,} tokens "
            f"{whose} ({tokens:,} used today); raise Assistant.{setting}_max_tokens"
        )
    if max_cost and cost + more > max_cost:
        raise BudgetExceeded(
            f"not sent: the daily cost budget of {max_cost:g} {whose} is spent ({cost:.4f} used today, "
            f"≈{more:.4f} more); raise Assistant.{setting}_max_cost"
        )
