"""Spending limits per notebook per day: tokens, and cost where ``Assistant.prices`` knows the model.

Every request that reached a provider adds its tokens (reported, else estimated) and cost to a
ledger in the history file, whether or not the exchange is kept (``--no-history``, a re-run cell
replacing its answer). Before sending, a request whose estimated prompt would pass a budget is
refused with one line naming the budget and the setting that raises it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import BudgetExceeded, HistoryError
from .runner import CHARS_PER_TOKEN, Reply, Request
from .status import FAILED

__all__ = ["BudgetExceeded", "DailyBudget", "start_of_today"]


def start_of_today() -> float:
    """Local midnight as a Unix time: the day a daily budget counts."""
    return datetime.datetime.combine(datetime.date.today(), datetime.time()).timestamp()


@dataclass
class DailyBudget:
    """One notebook's daily limits (0: none) over a ledger: ``spent(since)`` and ``add(tokens, cost)``.

    ``key()`` is the notebook's key, asked only when a message names it (finding it may read the
    history file and ask the Jupyter server: never on the event loop).
    """

    key: Callable[[], str]
    max_tokens: int
    max_cost: float
    spent: Callable[[float], tuple[int, float]]
    add: Callable[[int, float], None]

    @property
    def active(self) -> bool:
        """Whether any daily limit is set (otherwise nothing is checked, only counted)."""
        return bool(self.max_tokens or self.max_cost)

    def today(self) -> tuple[int, float]:
        return self.spent(start_of_today())

    def check(self, prompt_chars: int, price: tuple[float, float] | None) -> None:
        """Refuse (``BudgetExceeded``) a request of ``prompt_chars`` that would pass a budget."""
        if not self.active:
            return
        estimate = -(-prompt_chars // CHARS_PER_TOKEN)
        tokens, cost = self.today()
        if self.max_tokens and tokens + estimate > self.max_tokens:
            raise BudgetExceeded(
                f"not sent: ≈{estimate:,} more tokens would pass the daily budget of {self.max_tokens:,} "
                f"tokens for {self.key()!r} ({tokens:,} used today); raise Assistant.daily_max_tokens"
            )
        more = estimate * price[0] / 1e6 if price is not None else 0.0
        if self.max_cost and cost + more > self.max_cost:
            raise BudgetExceeded(
                f"not sent: the daily cost budget of {self.max_cost:g} for {self.key()!r} is spent "
                f"({cost:.4f} used today, ≈{more:.4f} more); raise Assistant.daily_max_cost"
            )

    def shown(self) -> str:
        """Today's spend against the budget, for ``%acytoo threads``."""
        tokens, cost = self.today()
        parts = [f"today: {tokens:,} tokens" + (f" of {self.max_tokens:,}" if self.max_tokens else "")]
        if cost or self.max_cost:
            parts.append(f"{cost:.4f} cost" + (f" of {self.max_cost:g}" if self.max_cost else ""))
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

        A locked history file loses this one entry rather than delaying the answer.
        """
        if reply.status == FAILED and not reply.chunks and reply.usage is None and not reply.tool_calls:
            return
        prompt, completion, _estimated = reply.tokens()
        cost = (prompt * price[0] + completion * price[1]) / 1e6 if price is not None else 0.0
        with contextlib.suppress(HistoryError):
            self.add(prompt + completion, cost)
