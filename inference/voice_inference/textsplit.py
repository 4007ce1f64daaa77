"""Text preparation shared by engines: whitespace normalization and segmenting long text.

Engines call ``split_text`` so that long input is synthesized (and streamed) segment by
segment; segments end on sentence punctuation where possible, never mid-word.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?;:。！？；])\s+|(?<=[。！？；])")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Collapse runs of whitespace and trim; the text a model should see."""
    return _SPACES.sub(" ", text).strip()


def split_text(text: str, max_chars: int) -> list[str]:
    """Split into segments of at most ``max_chars`` characters, preferring sentence ends."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    segments: list[str] = []
    current = ""
    for sentence in (s for s in _SENTENCE_END.split(text.strip()) if s):
        for piece in _split_long(sentence, max_chars):
            if current and len(current) + 1 + len(piece) > max_chars:
                segments.append(current)
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
    if current:
        segments.append(current)
    return segments


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Break one over-long sentence on whitespace (or hard, for text without spaces)."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for word in sentence.split():  # any whitespace: un-normalized text keeps newlines and tabs
        while len(word) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces
