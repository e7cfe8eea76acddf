"""Whether code reads as it runs: what a person approves must be what Python executes.

Refused before anyone is asked, with the reason in one line:

- characters the screen does not show as they act: control characters the rendering policy drops
  (a lone ``\\r`` starts a line the screen hides), line and paragraph separators, format characters
  (bidi overrides, zero-width: category Cf) and Unicode's default-ignorable code points (variation
  selectors, the combining grapheme joiner, Khmer and Hangul fillers), which identifiers may
  contain, so ``target︀`` and ``target`` are two names that look the same. An emoji's own
  variation selector and a zero-width joiner between emoji are what they look like, and pass;
- names (every identifier in the syntax tree, f-strings' included) and the words of string literals
  (a dict key, a path, ``globals()['…']``) that mix scripts: a Latin name with a Cyrillic, Greek or
  Devanagari character in it (digits count: ``target०`` is not ``target0``), outside the mixes
  Unicode's "highly restrictive" profile allows (UTS #39: Latin with Han and kana, with Han and
  Hangul, or with Han and Bopomofo);
- names and words written wholly in letters that look Latin (``а`` for ``a``, Lisu ``ꓓꓮꓔꓮ`` for
  ``DATA``), by Unicode's confusables data, but for the Greek letters a statistician writes alone
  (``α``, ``σ2``); and two names in the code that look the same (``α`` beside ``a``);
- a letter with a combining mark that does not compose with it.

Scripts and look-alikes come from Unicode's data as the ``confusable_homoglyphs`` package ships it
(Scripts.txt, confusables.txt); names from Python's own parser (``ast``).
"""

from __future__ import annotations

import ast
import functools
import re
import unicodedata
from collections import defaultdict

from confusable_homoglyphs import categories, confusables

from .outbound import printable

# Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt): unicodedata has no such
# property, and the list changes seldom. Format characters (Cf) among them are refused by category.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip
_EMOJI_SELECTORS = "\ufe0e\ufe0f"
_JOINER = "\u200d"
# UTS #39 "highly restrictive": one script, or Latin with one of these sets.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_SHARED = frozenset({"COMMON", "INHERITED"})
# Greek letters written as a name of their own in statistics (``α = 0.05``, ``σ2``, ``μ_hat`` is
# mixed and refused): each reads as itself, not as a Latin name.
_GREEK_NAMES = frozenset("αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΦΨΩ")
_WORDS = re.compile(r"[^\W_]+", re.UNICODE)


def _ignorable(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _IGNORABLE)


@functools.lru_cache(maxsize=1)
def _latin_looks() -> dict[str, str]:
    """Non-ASCII characters that look like ASCII ones (confusables.txt), to what they look like."""
    looks: dict[str, str] = {}
    for char, homoglyphs in confusables.confusables_data.items():
        if len(char) == 1 and not char.isascii():
            alike = [c for h in homoglyphs if (c := h["c"]).isascii() and c.strip() and c.isprintable()]
            if alike:
                looks[char] = min(alike, key=len)
    return looks


def skeleton(word: str) -> str:
    """What ``word`` looks like in ASCII where it can: two words with one skeleton look alike."""
    looks = _latin_looks()
    return "".join(looks.get(char, char) for char in unicodedata.normalize("NFKC", word))


def _script(char: str) -> str:
    return "COMMON" if char.isascii() and not char.isalpha() else categories.alias(char) or "COMMON"


def word_problem(word: str) -> str:
    """Why a name or a word of a string could be read as another ("" when it cannot)."""
    if word.isascii():
        return ""
    shown = unicodedata.normalize("NFKC", word)
    scripts = {_script(char) for char in shown} - _SHARED
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _ALLOWED_MIXES):
        return f"{word!r}, which mixes scripts ({', '.join(sorted(s.title() for s in scripts))})"
    for index, char in enumerate(shown):
        if unicodedata.category(char) == "Mn" and index and shown[index - 1].isascii():
            return f"{word!r}, whose mark (U+{ord(char):04X}) does not combine with the letter before it"
    looks_latin = bool(scripts - {"LATIN"}) and skeleton(shown).isascii()
    if looks_latin and not set(shown) - _GREEK_NAMES - set("0123456789_"):
        return ""  # Greek letters of statistics: they read as themselves
    if looks_latin:
        script = next(iter(scripts - {"LATIN"})).title()
        return f"{word!r}, written in {script} letters that look like the Latin {skeleton(shown)!r}"
    return ""


def _names_and_words(code: str) -> tuple[list[str], list[str]]:
    """The identifiers in ``code``'s syntax tree (f-strings' too) and the words of its string
    literals; every word, when the code does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return _WORDS.findall(code), []
    names: list[str] = []
    words: list[str] = []
    for node in ast.walk(tree):
        for field in ("id", "attr", "arg", "name", "asname", "rest", "module"):
            value = getattr(node, field, None)
            if isinstance(value, str):
                names.append(value)
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            names += node.names
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            words += _WORDS.findall(node.value)
    return names, words


def _hidden(code: str) -> str:
    """The first character that changes what runs without showing ("" for none)."""
    for index, char in enumerate(code):
        if not (unicodedata.category(char) in ("Cf", "Zl", "Zp") or _ignorable(char)):
            continue
        before = code[index - 1] if index else ""
        after = code[index + 1] if index + 1 < len(code) else ""
        if char in _EMOJI_SELECTORS and before and unicodedata.category(before) == "So":
            continue  # an emoji's presentation: ❤️, ⚠️
        joins = before and after and unicodedata.category(after) == "So"
        if char == _JOINER and joins and (unicodedata.category(before) == "So" or before in _EMOJI_SELECTORS):
            continue  # a joined emoji: 👨‍💻
        return char
    return ""


def unreadable(code: str) -> str:
    """Why ``code`` would not read as it runs, in a phrase; "" when it reads as it runs."""
    if printable(code) != code:
        return (
            "holds control or text-direction characters, which show differently from what runs "
            "(a lone carriage return starts a line the screen hides)"
        )
    hidden = _hidden(code)
    if hidden:
        return (
            f"holds control or text-direction characters (U+{ord(hidden):04X}: invisible) that change "
            "what runs unseen"
        )
    names, words = _names_and_words(code)
    for kind, items, noun in (("names", names, "name"), ("has the word", words, "word")):
        for item in dict.fromkeys(items):
            problem = word_problem(item)
            if problem:
                return f"{kind} {problem}, so it can read as another {noun}"
    alike: dict[str, set[str]] = defaultdict(set)
    for name in names:
        alike[skeleton(name)].add(name)
    for group in alike.values():
        if len(group) > 1 and any(not name.isascii() for name in group):
            first, second = sorted(group)[:2]
            return f"names {first!r} and {second!r}, which look the same, so one can read as the other"
    return ""
