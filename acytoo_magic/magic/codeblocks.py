"""Finding the code in an answer, for ``-f code``: fenced blocks as markdown-it's CommonMark parser sees them.

The parser's tokens find a fence wherever CommonMark allows one (inside list items and block
quotes too) and apply its rules for fence length, indentation and unclosed blocks. Whether the
code itself stops mid-statement (an open bracket, string or block, as an answer cut at the token
limit does) is IPython's own judgement: ``check_complete``, what the console asks before it runs
what you typed, magics included.
"""

from __future__ import annotations

from dataclasses import dataclass

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark")
PYTHON = frozenset({"", "python", "py", "python3", "ipython", "ipython3"})


@dataclass(frozen=True)
class CodeBlock:
    """A fenced block: its language, its code, and whether its closing fence was there."""

    language: str
    code: str
    closed: bool

    def incomplete(self) -> str:
        """Why this code looks cut off ("" when it does not): an unclosed fence, or Python that
        ends inside a bracket, a string or a block."""
        if not self.closed:
            return "its code block is not closed"
        if self.language.lower() in PYTHON and self.code.strip():
            from IPython.core.inputtransformer2 import TransformerManager

            if TransformerManager().check_complete(self.code + "\n")[0] == "incomplete":
                return "its code stops inside an open bracket, string or block"
        return ""


def code_blocks(text: str) -> list[CodeBlock]:
    """Every fenced code block, in order; an unclosed block runs to the end (``closed`` False)."""
    lines = text.splitlines()
    blocks = []
    for token in _PARSER.parse(text):
        if token.type != "fence":
            continue
        start, end = token.map or (0, len(lines))
        last = lines[end - 1].lstrip(" >\t") if end - 1 > start and end - 1 < len(lines) else ""
        fence = token.markup
        closed = last.startswith(fence) and not last.strip().strip(fence[0])
        blocks.append(CodeBlock(token.info.strip().split(" ")[0], token.content.removesuffix("\n"), closed))
    return blocks


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced code block as (language, code), in order; an unclosed block runs to the end."""
    return [(block.language, block.code) for block in code_blocks(text)]


def first_block(text: str) -> CodeBlock | None:
    """The answer's first fenced block, or None when it has none."""
    blocks = code_blocks(text)
    return blocks[0] if blocks else None


def extract_code(text: str) -> str | None:
    """The first fenced block's code, or None when the answer has no fenced block."""
    block = first_block(text)
    return block.code if block is not None else None
