"""Text tables of the commands (``info`` and ``evaluate`` on a folder of clips): columns line up in a terminal
for clip names in any script. A Chinese or Japanese character takes two columns there and a combining accent
none, so ``str.ljust`` (which counts characters) pushed every later column of such a row out of line."""

from __future__ import annotations

import unicodedata


def text_width(text: str) -> int:
    """Terminal columns of ``text``: 2 for each East Asian wide or full-width character, 0 for each combining
    mark (and zero-width joiners and selectors), 1 for the others."""
    return sum(0 if unicodedata.category(c) in ("Mn", "Me", "Cf") else
               2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def pad(text: str, width: int) -> str:
    """``text`` followed by spaces up to ``width`` terminal columns (``text_width``)."""
    return text + " " * max(0, width - text_width(text))
