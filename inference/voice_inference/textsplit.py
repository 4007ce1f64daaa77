"""Text preparation shared by engines: whitespace normalization and segmenting long text.

Engines call ``split_text`` so that long input is synthesized (and streamed) segment by
segment; segments end on sentence punctuation where possible, never mid-word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SENTENCE_END = re.compile(r"(?<=[.!?;:。！？；])\s+|(?<=[。！？；])")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Collapse runs of whitespace and trim; the text a model should see."""
    return _SPACES.sub(" ", text).strip()


def split_text(text: str, max_chars: int) -> list[str]:
    """Split into segments of at most ``max_chars`` characters, preferring sentence ends."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    sentences = (s for s in _SENTENCE_END.split(text.strip()) if s)
    return _pack((piece for sentence in sentences for piece in _split_long(sentence, max_chars)), max_chars)


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Break one over-long sentence on whitespace (or hard, for text without spaces)."""
    if len(sentence) <= max_chars:
        return [sentence]
    # Any whitespace: un-normalized text keeps newlines and tabs. Longer words are cut hard.
    words = (word[i : i + max_chars] for word in sentence.split() for i in range(0, len(word), max_chars))
    return _pack(words, max_chars)


def _pack(pieces: Iterable[str], max_chars: int) -> list[str]:
    """Join consecutive pieces with single spaces into runs of at most ``max_chars`` characters."""
    runs: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > max_chars:
            runs.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        runs.append(current)
    return runs
