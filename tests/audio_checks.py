"""Decoding what the server returns, for assertions: any format to (samples, rate, channels)."""

from __future__ import annotations

import io

import av
import numpy as np


def decode(data: bytes, fmt: str, *, pcm_rate: int = 44_100) -> tuple[np.ndarray, int, int]:
    """Decode response bytes with FFmpeg (PyAV), independent of the server's own decoder."""
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0, pcm_rate, 1
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        rate = stream.rate
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
    samples = np.concatenate([f.reshape(channels, -1) if f.ndim == 2 else f.reshape(1, -1) for f in frames], axis=1)
    return samples[0].astype(np.float32), rate, channels


def duration(data: bytes, fmt: str) -> float:
    samples, rate, _ = decode(data, fmt)
    return samples.shape[0] / rate
