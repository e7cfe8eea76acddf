"""Telling, while an answer streams, that a small model has begun repeating itself.

A 135M model at a low temperature sometimes falls into a loop: the same sentence again and again
("… is South, with 12 rows and 3 columns." 25 times) or a short piece without end ("'NZ', 'NZ',
…") until the token limit. Sampling penalties make that rare; this is the net under them, so a
loop costs seconds, not the whole limit, and the answer says why it stopped.

Two signs, both cheap enough to check at every token:
- the end of the text is periodic: the same piece three times in a row (at least ``MIN_RUN``
  characters of it repeated), found with the Z-function of the reversed tail (linear time);
- one line of 20 or more characters, with words in it, finished three times.
"""

from __future__ import annotations

import re
from collections import Counter

TAIL = 1_500  # characters of the end that are examined (a repeated piece up to a third of it)
MIN_RUN = 60  # characters that must repeat after the first copy: 'NZ', x11, or a sentence x3
MIN_LINE = 20
_WORDS = re.compile(r"[A-Za-z]{3}")


def _z_function(text: str) -> list[int]:
    """z[i]: the length of the longest common prefix of ``text`` and ``text[i:]``."""
    n = len(text)
    z = [0] * n
    left = right = 0
    for i in range(1, n):
        if i < right:
            z[i] = min(right - i, z[i - left])
        while i + z[i] < n and text[z[i]] == text[i + z[i]]:
            z[i] += 1
        if i + z[i] > right:
            left, right = i, i + z[i]
    return z


def repeating_tail(text: str) -> int:
    """The length of the piece the end of ``text`` repeats (0: none): a piece of p characters
    whose copies cover the last ``max(3p, p + MIN_RUN)`` characters, containing a word or digit."""
    tail = text[-TAIL:][::-1]
    z = _z_function(tail)
    for period in range(1, len(tail) // 3 + 1):
        run = z[period]  # characters matching ``period`` further back, from the end
        if run >= max(2 * period, MIN_RUN) and re.search(r"\w", tail[:period]):
            return period
    return 0


class RepetitionGuard:
    """Fed an answer piece by piece; ``looping`` turns True once its end repeats itself."""

    def __init__(self) -> None:
        self.text = ""
        self.looping = False
        self._lines: Counter[str] = Counter()
        self._checked = 0  # characters of text whose finished lines were counted

    def feed(self, piece: str) -> bool:
        """Add ``piece``; True once the answer repeats itself (and from then on)."""
        if self.looping or not piece:
            return self.looping
        self.text += piece
        self.looping = self._repeated_line() or repeating_tail(self.text) > 0
        return self.looping

    def _repeated_line(self) -> bool:
        end = self.text.rfind("\n") + 1
        if end <= self._checked:
            return False
        finished, self._checked = self.text[self._checked : end], end
        for line in finished.splitlines():
            line = " ".join(line.split())
            if len(line) >= MIN_LINE and len(_WORDS.findall(line)) >= 2:
                self._lines[line] += 1
                if self._lines[line] >= 3:
                    return True
        return False
