"""Streaming sample-rate conversion (soxr), for responses asked at another rate than the engine's.

``encoders.create`` wraps an encoder in ``encoders.ResampledEncoder`` when a request names a
``sample_rate``; that wrapper pushes every chunk through one ``StreamResampler``, so the
filter state carries across chunks and a streamed response has no seams. ``api_models`` uses
``whole`` to join uploaded clips of different rates.
"""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    """float32 mono chunks at ``in_rate`` in, the same audio at ``out_rate`` out."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self._stream.resample_chunk(np.ascontiguousarray(samples, dtype=np.float32), last=False)

    def finish(self) -> np.ndarray:
        """The filter's tail; call once at the end."""
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def whole(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """One whole clip at another rate (the same array when the rates match)."""
    if in_rate == out_rate:
        return samples
    return soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), in_rate, out_rate, quality="HQ")
