"""The mock engine: deterministic, fast audio for tests, benchmarks and the local demo.

It behaves like the real model where the rest of the server can tell: audio comes in small
groups of frames at S1 Mini's frame rate, its length follows the text (and ``speed``),
``max_new_tokens`` bounds it, the seed and the reference voice change it. It is a stepped
engine (``engines.stepped``) that batches as a GPU does: one ``step`` gives every row its next
chunk for one per-step cost (slept on the scheduler's engine thread, as a GPU step would block
it) that does not grow with the number of rows. The same request always gives the same
samples, whatever shares its steps: each row's audio depends on its own request alone.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence

import numpy as np

from voice_inference import textsplit
from voice_inference.engines import base, stepped

SAMPLE_RATE = 44_100
HOP = 2048  # samples per codec frame, as S1 Mini's codec: 44100 / 2048 = 21.5 frames/s
FRAMES_PER_CHUNK = 8
FRAMES_PER_CHAR = 1.5  # about 14 characters of speech per second


class MockEngine(stepped.SteppedEngine):
    name = "mock"
    sample_rate = SAMPLE_RATE

    def __init__(self, chunk_cost_s: float = 0.0, *, max_batch_size: int = 1) -> None:
        self.chunk_cost_s = chunk_cost_s  # per step, whatever the number of rows in it
        self.max_batch_size = max_batch_size
        self.loaded = False

    def load(self) -> None:
        self.loaded = True

    def admit(self, request: base.SynthesisRequest, slot: int) -> stepped.Row:
        if not self.loaded:
            raise base.EngineError("mock engine used before load()")
        audio = chunks(request)
        return stepped.Row(request, slot, state=(audio, next(audio, None)))

    def step(self, rows: Sequence[stepped.Row]) -> None:
        if self.chunk_cost_s:
            time.sleep(self.chunk_cost_s)
        for row in rows:
            audio, chunk = row.state
            if chunk is not None:
                row.chunks.append(chunk)
            upcoming = next(audio, None)  # looked at now, so a row is done with its last chunk
            row.state = (audio, upcoming)
            row.done = upcoming is None

    def release(self, row: stepped.Row) -> None:
        row.state = None


def chunks(request: base.SynthesisRequest) -> Iterator[np.ndarray]:
    """A request's audio, chunk by chunk: a pure function of the request."""
    text = textsplit.normalize_text(request.text) if request.normalize else request.text
    base_hz = 110.0 + _voice_offset(request)
    frame_budget = request.max_new_tokens or None
    phase = 0.0
    for segment in textsplit.split_text(text, request.chunk_length):
        frames = _segment_frames(segment, request.speed)
        if frame_budget is not None:
            frames = frames[:frame_budget]
            frame_budget -= len(frames)
        for start in range(0, len(frames), FRAMES_PER_CHUNK):
            chunk, phase = _render(frames[start : start + FRAMES_PER_CHUNK], base_hz, phase)
            yield chunk
        if frame_budget == 0:
            return


def _voice_offset(request: base.SynthesisRequest) -> float:
    """A pitch offset from the seed and the reference voice, so both audibly matter."""
    key = f"{request.seed or 0}|{'|'.join(ref.key for ref in request.references)}"
    digest = hashlib.sha256(key.encode()).digest()
    return float(int.from_bytes(digest[:2], "big") % 120)


def _segment_frames(segment: str, speed: float) -> list[str]:
    """One character per frame, stretched to FRAMES_PER_CHAR and scaled by speed."""
    count = max(1, round(len(segment) * FRAMES_PER_CHAR / speed))
    return [segment[int(i * len(segment) / count)] for i in range(count)]


def _render(frames: list[str], base_hz: float, phase: float) -> tuple[np.ndarray, float]:
    """A phase-continuous tone per frame; spaces and punctuation are silence."""
    out = np.zeros(len(frames) * HOP, dtype=np.float32)
    t = np.arange(HOP, dtype=np.float64) / SAMPLE_RATE
    for i, char in enumerate(frames):
        hz = base_hz + (ord(char) % 32) * 9.0
        if char.isalnum():
            out[i * HOP : (i + 1) * HOP] = 0.3 * np.sin(phase + 2 * np.pi * hz * t)
        phase = (phase + 2 * np.pi * hz * HOP / SAMPLE_RATE) % (2 * np.pi)
    return out, phase
