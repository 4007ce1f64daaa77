"""The mock engine: deterministic, fast audio for tests, benchmarks and the local demo.

It behaves like the real model where the rest of the server can tell: audio comes in small
groups of frames at S1 Mini's frame rate, its length follows the text (and ``speed``),
``max_new_tokens`` bounds it, the seed and the reference voice change it, and an optional
per-chunk cost (slept on the scheduler's worker thread, as a GPU step would block it) makes
timing realistic. The same request always gives the same samples.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

import numpy as np

from voice_inference import textsplit
from voice_inference.engines import base

SAMPLE_RATE = 44_100
HOP = 2048  # samples per codec frame, as S1 Mini's codec: 44100 / 2048 = 21.5 frames/s
FRAMES_PER_CHUNK = 8
FRAMES_PER_CHAR = 1.5  # about 14 characters of speech per second


class MockEngine(base.Engine):
    name = "mock"
    sample_rate = SAMPLE_RATE

    def __init__(self, chunk_cost_s: float = 0.0) -> None:
        self.chunk_cost_s = chunk_cost_s
        self.loaded = False

    def load(self) -> None:
        self.loaded = True

    def generate(self, request: base.SynthesisRequest, cancelled: threading.Event) -> Iterator[np.ndarray]:
        if not self.loaded:
            raise base.EngineError("mock engine used before load()")
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
                if cancelled.is_set():
                    return
                if self.chunk_cost_s:
                    time.sleep(self.chunk_cost_s)
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
