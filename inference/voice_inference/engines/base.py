"""The engine interface: what the scheduler needs from a text-to-speech model.

Engines are plain synchronous code. The scheduler (``voice_inference.scheduler``) is their only
caller and runs every method on its single worker thread, so engines never touch the event loop
and never see two requests at once. The async face of synthesis is the scheduler's.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Reference:
    """A voice to clone: decoded mono audio and its transcript.

    ``key`` identifies the voice for caches: the stored voice id, or a hash of the audio and
    text for inline references.
    """

    key: str
    audio: np.ndarray  # float32, mono, in [-1, 1]
    sample_rate: int
    text: str


@dataclass(frozen=True)
class SynthesisRequest:
    """One request, in engine terms (independent of the HTTP dialect it arrived in)."""

    text: str
    references: tuple[Reference, ...] = ()
    seed: int | None = None
    max_new_tokens: int = 1024  # 0 means no limit beyond the model's context
    top_p: float = 0.8
    temperature: float = 0.8
    repetition_penalty: float = 1.1
    chunk_length: int = 200  # characters per text segment
    normalize: bool = True
    latency: Literal["normal", "balanced"] = "normal"
    speed: float = 1.0
    condition_on_previous: bool = True  # long text: each segment continues from the previous one's audio


class EngineError(RuntimeError):
    """A failure inside the engine; the server answers 500 and keeps serving."""


class RequestTooLarge(EngineError):
    """The request does not fit the model (its prompt leaves no room to generate): the client's to fix.

    The scheduler hands it to the job as it is, and the server answers 413 with its message.
    """


class Engine(abc.ABC):
    """A model that turns text into audio chunks at ``sample_rate`` Hz."""

    name: str
    sample_rate: int

    @abc.abstractmethod
    def load(self) -> None:
        """Load weights; raise with a clear message when something is missing."""

    def warm_up(self) -> None:
        """Run one short synthesis so the first real request pays no compile or cache cost."""
        for _ in self.generate(SynthesisRequest(text="Warm up.", max_new_tokens=32), threading.Event()):
            pass

    @abc.abstractmethod
    def generate(self, request: SynthesisRequest, cancelled: threading.Event) -> Iterator[np.ndarray]:
        """Yield float32 mono chunks as they are made; stop early once ``cancelled`` is set."""

    def close(self) -> None:
        """Release resources held by the model."""
