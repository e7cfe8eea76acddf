"""Whether code reads as it runs: what a person approves must be what Python executes.

Refused before anyone is asked, with the reason in one line:

- characters the screen does not show as they act: control characters the rendering policy
  drops (a lone ``\\r`` starts a line the screen hides), format characters (bidi overrides,
  zero-width: category Cf), and Unicode's default-ignorable code points (variation selectors,
  the combining grapheme joiner, Khmer and Hangul fillers), which identifiers may contain, so
  ``target︀`` and ``target`` are two names that look the same;
- identifiers that mix scripts (a Latin name with a Cyrillic or Greek letter in it), outside the
  combinations Unicode's "highly restrictive" profile allows (UTS #39: Latin with Han and kana, or
  with Han and Hangul, or with Han and Bopomofo);
- identifiers written wholly in Cyrillic or Greek letters that look Latin (``а`` for ``a``).

Identifiers are read with Python's own tokenizer; categories come from ``unicodedata``.
"""

from __future__ import annotations

import io
import tokenize
import unicodedata

from .untrusted import printable

# Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt): unicodedata has no such
# property, and the list changes seldom. Format characters (Cf) among them are refused by category.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip
# UTS #39 "highly restrictive": one script, or Latin with one of these sets.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# Cyrillic and Greek letters that read as Latin ones (entries of Unicode's confusables.txt whose
# skeleton is one Latin letter). An identifier made only of these reads as a Latin name it is not.
# Greek lower-case letters a statistician writes (α, ν, ρ...) are left out: ``α = 0.05`` is meant.
_LOOK_LATIN = frozenset("аеорсухіјѕԁԛԝһӏАВЕКМНОРСТХІЈЅԌԚԜΑΒΕΖΗΙΚΜΝΟΡΤΥΧο")


def _ignorable(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _IGNORABLE)


def _script(char: str) -> str:
    """The script of a letter, from its Unicode name ("LATIN SMALL LETTER A" is Latin); "" for the
    characters every script shares (digits, ``_``) and combining marks."""
    if unicodedata.category(char)[0] in "NPM":
        return ""
    name = unicodedata.name(char, "")
    if name.startswith("CJK"):
        return "HAN"
    first = name.split(" ", 1)[0]
    return "LATIN" if first in ("FULLWIDTH", "MATHEMATICAL", "MODIFIER") else first


def identifier_problem(name: str) -> str:
    """Why identifier ``name`` could be misread ("" when it cannot)."""
    scripts = {_script(c) for c in unicodedata.normalize("NFKC", name)} - {""}
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _ALLOWED_MIXES):
        return f"{name!r}, which mixes scripts ({', '.join(sorted(s.title() for s in scripts))})"
    if scripts & {"CYRILLIC", "GREEK"} and all(c in _LOOK_LATIN for c in name if c.isalpha()):
        return f"{name!r}, written in {next(iter(scripts)).title()} letters that look Latin"
    return ""


def unreadable(code: str) -> str:
    """Why ``code`` would not read as it runs, in a phrase; "" when it reads as it runs."""
    if printable(code) != code:
        return (
            "holds control or text-direction characters, which show differently from what runs "
            "(a lone carriage return starts a line the screen hides)"
        )
    for char in code:
        if unicodedata.category(char) == "Cf" or _ignorable(char):
            return (
                f"holds control or text-direction characters (U+{ord(char):04X}: invisible) that change "
                "what runs unseen"
            )
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.NAME and not token.string.isascii():
                problem = identifier_problem(token.string)
                if problem:
                    return f"names {problem}, so it can read as another name"
    except (tokenize.TokenError, SyntaxError):
        pass  # Python will not run it either: the run reports the error
    return ""
