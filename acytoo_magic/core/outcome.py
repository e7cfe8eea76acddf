"""How an answer ended: one vocabulary for the runner, the history store and every front end."""

from __future__ import annotations

from enum import Enum


class Outcome(str, Enum):
    """Stored as its value in the history file; compares equal to that string."""

    COMPLETE = "complete"  # the provider finished the reply
    PARTIAL = "partial"  # the stream broke after some text (kept, marked)
    INTERRUPTED = "interrupted"  # a kernel interrupt or Stop ended it (kept, marked)
    FAILED = "failed"  # nothing arrived: nothing is recorded

    def __str__(self) -> str:
        return self.value


COMPLETE, PARTIAL, INTERRUPTED, FAILED = Outcome


def label(outcome: str, reason: str = "") -> str:
    """What a user reads beside an answer that is not complete ("" for a complete one)."""
    if outcome == COMPLETE:
        return ""
    if outcome == PARTIAL and reason:
        return f"partial: {reason}"
    return str(Outcome(outcome))
