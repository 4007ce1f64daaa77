"""Cutting streamed text (an LLM's tokens, a word or less at a time) into segments to synthesize.

``api_live`` feeds every ``text`` event of a ``/v1/tts/live`` session to one ``Segmenter`` and
synthesizes each segment it returns, in order, while more text arrives. Pure logic, no I/O.

A segment ends:

* at a sentence end (``.!?;:`` followed by whitespace, or a CJK full stop at once), once the
  segment holds at least ``min_chars`` characters, so short sentences are spoken together;
  the first segment ends at the first sentence end whatever its length: it decides how soon
  the first audio comes;
* at ``max_chars``, on the last whitespace before it (hard, for text without spaces);
* on ``flush`` (and at the end of the session), whatever is buffered.

A Latin full stop only counts once the next character is known to be whitespace, so "3.5"
and "e.g." stay whole even when the pieces split them; the end of the session settles it.
"""

from __future__ import annotations

import re

from voice_inference import textsplit

# A sentence end: Latin punctuation followed by whitespace, or CJK punctuation (no spaces there).
_SENTENCE_END = re.compile(r"[.!?;:](?=\s)|[。！？；]")


class Segmenter:
    def __init__(self, *, max_chars: int, min_chars: int = 0) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self.max_chars = max_chars
        self.min_chars = min(max(min_chars, 0), max_chars)
        self._buffer = ""
        self._first = True

    @property
    def pending(self) -> str:
        """Text received but not yet cut into a segment."""
        return self._buffer

    def feed(self, text: str) -> list[str]:
        """Add a piece of text; return the segments it completes (maybe none)."""
        self._buffer += text
        segments: list[str] = []
        while (cut := self._next_cut()) is not None:
            segment, self._buffer = self._buffer[:cut], self._buffer[cut:]
            segments.extend(_clean(segment))
        self._first = self._first and not segments
        return segments

    def flush(self) -> list[str]:
        """Everything buffered, as segments of at most ``max_chars`` (an empty list if none)."""
        text, self._buffer = self._buffer, ""
        segments = textsplit.split_text(text, self.max_chars) if text.strip() else []
        self._first = self._first and not segments
        return segments

    def _next_cut(self) -> int | None:
        """Where the first complete segment of the buffer ends, or None if it is not complete."""
        lead = len(self._buffer) - len(self._buffer.lstrip())
        min_chars = 0 if self._first else self.min_chars
        for match in _SENTENCE_END.finditer(self._buffer):
            end = match.end()
            if end - lead > self.max_chars:
                break
            if len(self._buffer[lead:end].strip()) >= min_chars:
                return end
        if len(self._buffer) - lead <= self.max_chars:
            return None
        limit = lead + self.max_chars
        space = max(self._buffer.rfind(blank, lead, limit + 1) for blank in " \n\t")
        return space if space > lead else limit


def _clean(segment: str) -> list[str]:
    text = textsplit.normalize_text(segment)
    return [text] if text else []
