"""Audio decoding and sample conversion, shared by request parsing and the voice stores.

Uploaded and inline reference audio arrives as file bytes in any common format; ``decode``
turns it into float32 mono samples, or raises ``AudioDecodeError`` with a readable reason.
Callers run it off the event loop (``asyncio.to_thread``): decoding is CPU work.
"""

from __future__ import annotations

import io

import av
import numpy as np
import soundfile


class AudioDecodeError(ValueError):
    """The bytes are not audio we can read."""


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode an audio file to (float32 mono samples, sample rate)."""
    if not data:
        raise AudioDecodeError("audio is empty")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        mono = samples.mean(axis=1, dtype=np.float32)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        # Formats libsndfile lacks (AAC, M4A, WebM) or streams of unknown length.
        mono, rate = _decode_with_av(data)
    if mono.size == 0:
        raise AudioDecodeError("audio has no samples")
    return mono, int(rate)


def _decode_with_av(data: bytes) -> tuple[np.ndarray, int]:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError("file has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
            parts = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(stream)
                for out in resampler.resample(frame)
            ]
            rate = stream.rate
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"not a readable audio file ({exc.__class__.__name__})") from exc
    if not parts:
        raise AudioDecodeError("audio has no samples")
    return np.concatenate(parts).astype(np.float32), int(rate)


def to_pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> little-endian signed 16-bit PCM bytes (clipping outliers)."""
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def duration_seconds(samples: np.ndarray, sample_rate: int) -> float:
    return samples.shape[0] / float(sample_rate)


def gain(samples: np.ndarray, db: float) -> np.ndarray:
    """Samples scaled by ``db`` decibels (the same array when 0)."""
    return samples * np.float32(10 ** (db / 20)) if db else samples
