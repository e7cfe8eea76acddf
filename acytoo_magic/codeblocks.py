"""Finding the code in an answer, for ``-f code``: fenced blocks as markdown-it's CommonMark parser sees them.

The parser's tokens find a fence wherever CommonMark allows one (inside list items and block
quotes too) and apply its rules for fence length, indentation and unclosed blocks.
"""

from __future__ import annotations

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced code block as (language, code), in order; an unclosed block runs to the end."""
    return [
        (token.info.strip().split(" ")[0], token.content.removesuffix("\n"))
        for token in _PARSER.parse(text)
        if token.type == "fence"
    ]


def extract_code(text: str) -> str | None:
    """The first fenced block's code, or None when the answer has no fenced block."""
    blocks = fenced_blocks(text)
    return blocks[0][1] if blocks else None
