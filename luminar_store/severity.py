"""Severity, defined once: the 1..5 scale of ``crime_events.severity_level`` and the words the miners send.

The network's miners describe an event's severity with a word (``"low"``, ``"medium"``, ``"high"``); the reference
schema, the hotspots and the risk figures use an integer from 1 (least) to 5 (most). The mapping:

=========  ==================  ======================
word       stored as           read back from levels
=========  ==================  ======================
``low``    2                   1, 2
``medium`` 3                   3
``high``   4                   4, 5
=========  ==================  ======================

A word is coarse, so it lands in the middle of its band; 1 and 5 stay for writers that give a number. Every level
reads back as one word, and every word stored reads back as itself. Words are matched without regard to case or
surrounding spaces; any other word is refused (``ValidationError`` naming the field and the words accepted).

Example::

    >>> level_of("Medium"), word_of(5)
    (3, 'high')
"""

from __future__ import annotations

from types import MappingProxyType

from luminar_store.errors import ValidationError

__all__ = ["MIN_LEVEL", "MAX_LEVEL", "LEVEL_OF_WORD", "level_of", "word_of"]

MIN_LEVEL = 1
MAX_LEVEL = 5
#: The level stored for each word.
LEVEL_OF_WORD = MappingProxyType({"low": 2, "medium": 3, "high": 4})
_WORD_OF_LEVEL = ("low", "low", "medium", "high", "high")


def level_of(word: str, field: str = "severity") -> int:
    """The level (2, 3 or 4) stored for a severity word. Raises ``ValidationError`` naming ``field``."""
    level = LEVEL_OF_WORD.get(word.strip().lower()) if isinstance(word, str) else None
    if level is None:
        shown = word if isinstance(word, str) and len(word) <= 40 else f"{str(word)[:40]}..."
        raise ValidationError(field, f"must be one of {', '.join(LEVEL_OF_WORD)} or a level 1..5, got {shown!r}")
    return level


def word_of(level: int | None) -> str | None:
    """The word of a level 1..5 (``None`` for ``None``). Raises ``ValueError`` for a level outside 1..5."""
    if level is None:
        return None
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"severity level must be 1..5, got {level}")
    return _WORD_OF_LEVEL[level - 1]
