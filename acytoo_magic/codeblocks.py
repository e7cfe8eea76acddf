"""Finding the code in an answer, for ``-f code``: the first fenced block, by CommonMark's fence rules."""

from __future__ import annotations

import re

_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced code block as (language, code); an unclosed block runs to the end, as in CommonMark."""
    blocks: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if not match or (match["fence"][0] == "`" and "`" in match["info"]):
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        language = match["info"].strip().split(" ")[0] if match["info"].strip() else ""
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        i += 1
        while i < len(lines) and not close.match(lines[i]):
            line = lines[i]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            i += 1
        blocks.append((language, "\n".join(body)))
        i += 1
    return blocks


def extract_code(text: str) -> str | None:
    """The first fenced block's code, or None when the answer has no fenced block."""
    blocks = fenced_blocks(text)
    return blocks[0][1] if blocks else None
