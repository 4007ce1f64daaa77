"""Slot bookkeeping of the batched S1 Mini engine: pure Python, testable without a model.

Where it sits: ``s1_mini.S1MiniEngine`` keeps one ``RowProgress`` per admitted row and asks it,
step by step, what the row needs next (its reference voices, a prompt, prefill, decode steps,
audio); ``s1_batch`` pads batches to ``batch_bucket`` and attention to ``span_bucket``.

A row moves through these phases, one segment of text after another:

    REFERENCES -> (PROMPT -> PREFILL -> DECODE) per segment -> DRAIN -> DONE

- REFERENCES: its reference voices are being encoded off the stepping thread.
- PROMPT: the next segment's prompt is to be built (it needs the previous segment's codes).
- PREFILL: the prompt is written into the slot's KV cache, at most ``prefill_chunk`` tokens a
  step (chunked prefill: a joining row never stalls the running ones for more than one chunk).
  The prompt's last token is not prefilled: the first decode step reads it, so that step both
  finishes the prompt and samples the segment's first frame.
- DECODE: one frame per step until the end token, the segment's room or the request's budget.
- DRAIN: no more frames; the row waits for its last audio to be decoded.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator


class Phase(enum.Enum):
    REFERENCES = "references"
    PROMPT = "prompt"
    PREFILL = "prefill"
    DECODE = "decode"
    DRAIN = "drain"
    DONE = "done"


def doubling(start: int, *, below: int) -> Iterator[int]:
    """start, 2 * start, ... while below ``below``."""
    size = start
    while size < below:
        yield size
        size *= 2


def bucket_sizes(smallest: int, largest: int) -> list[int]:
    """Powers-of-two multiples of ``smallest`` below ``largest``, then ``largest`` itself."""
    return [*doubling(smallest, below=largest), largest]


def bucket(value: int, sizes: list[int]) -> int:
    """The smallest size that holds ``value`` (sizes ascending; the largest when none does)."""
    return next((size for size in sizes if size >= value), sizes[-1])


class SlotTable:
    """Which slots hold a row. The scheduler picks the slot; the engine refuses a double booking."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._taken: set[int] = set()

    def take(self, slot: int) -> None:
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} out of range 0..{self.slots - 1}")
        if slot in self._taken:
            raise ValueError(f"slot {slot} already holds a row")
        self._taken.add(slot)

    def free(self, slot: int) -> None:
        self._taken.discard(slot)

    @property
    def in_use(self) -> int:
        return len(self._taken)


@dataclasses.dataclass
class ChunkSchedule:
    """How many frames complete each streamed audio chunk of a segment: a small first chunk
    (time to first audio), then groups that double up to ``largest`` (each decode call has a
    fixed cost, and generation outruns playback)."""

    first: int
    then: int
    largest: int

    @property
    def longest(self) -> int:
        """The largest chunk ``sizes`` yields (doubling from ``then`` reaches the limit)."""
        return max(self.first, self.then, self.largest)

    def sizes(self) -> Iterator[int]:
        yield self.first
        size = self.then
        while True:
            yield size
            size = min(size * 2, max(self.largest, self.then))


@dataclasses.dataclass
class RowProgress:
    """Where one request stands: its segments, its frame budget, its position in the current one."""

    segments: list[str]
    budget: int | None  # frames left for the whole request; None: no limit beyond the context
    prefill_chunk: int
    phase: Phase = Phase.PROMPT
    segment: int = -1  # index of the current segment
    prompt_length: int = 0
    prefilled: int = 0  # prompt tokens written to the cache
    room: int = 0  # frames the current segment may still make
    frames: int = 0  # frames made in the current segment
    draws: int = 0  # decode steps the request has taken: its noise counter (s1_sampling)

    def __post_init__(self) -> None:
        if not self.segments or self.budget == 0:
            self.phase = Phase.DRAIN

    @property
    def text(self) -> str:
        return self.segments[self.segment]

    @property
    def position(self) -> int:
        """The cache position the next decode step reads (the prompt's last token, then each frame)."""
        return self.prompt_length - 1 + self.frames

    def start_segment(self, prompt_length: int, room: int) -> None:
        """The next segment's prompt is built: ``room`` frames fit after it in the context."""
        assert self.phase == Phase.PROMPT and prompt_length >= 1
        self.segment += 1
        self.prompt_length, self.prefilled, self.frames = prompt_length, 0, 0
        self.room = room if self.budget is None else min(room, self.budget)
        self.phase = Phase.PREFILL if prompt_length > 1 else Phase.DECODE

    def next_prefill(self) -> tuple[int, int]:
        """The next chunk of the prompt to write: (start, end) token positions."""
        start = self.prefilled
        return start, min(start + self.prefill_chunk, self.prompt_length - 1)

    def prefilled_to(self, end: int) -> None:
        self.prefilled = end
        if end >= self.prompt_length - 1:
            self.phase = Phase.DECODE

    def frame(self, *, end: bool) -> bool:
        """One decode step's result; ``end``: it was the end token. True when the frame is kept."""
        assert self.phase == Phase.DECODE
        self.draws += 1
        if not end:
            self.frames += 1
            if self.budget is not None:
                self.budget -= 1
        if end or self.frames >= self.room:
            self.end_segment()
        return not end

    def end_segment(self) -> None:
        more = self.segment + 1 < len(self.segments) and self.budget != 0
        self.phase = Phase.PROMPT if more else Phase.DRAIN
