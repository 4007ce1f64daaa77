"""Decoding what the server returns, for assertions: any format to (samples, rate, channels),
and the granule positions of an Ogg stream's pages (how far into the audio each page reaches)."""

from __future__ import annotations

import io
import struct

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


def ogg_granules(data: bytes) -> list[int]:
    """The granule position of each complete Ogg page in ``data`` (RFC 3533), in order.

    Header pages carry 0 (Opus: -1 would mean "no packet ends here"); an audio page carries the
    number of 48 kHz samples up to its end. A truncated last page is left out.
    """
    granules = []
    offset = 0
    while offset + 27 <= len(data):
        if data[offset : offset + 4] != b"OggS":
            raise ValueError(f"no Ogg page at byte {offset}")
        (granule,) = struct.unpack_from("<q", data, offset + 6)
        segments = data[offset + 26]
        table = data[offset + 27 : offset + 27 + segments]
        end = offset + 27 + segments + sum(table)
        if len(table) < segments or end > len(data):
            break
        granules.append(granule)
        offset = end
    return granules
