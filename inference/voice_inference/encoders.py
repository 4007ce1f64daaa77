"""Incremental audio encoders: float32 chunks in, response bytes out, as they are made.

Handlers create one encoder per response. Streaming responses write whatever ``encode``
returns straight away, so compressed formats leave the server chunk by chunk; WAV streams
start with a header whose sizes say "unknown length" (what streaming players expect), while
a whole (non-streamed) WAV gets exact sizes. Compressed formats go through PyAV (FFmpeg),
writing into a non-seekable sink so muxers never wait for the end to emit data.

A response that ends early (the client left, a timeout, an engine failure) never calls
``finish``; ``synthesis`` calls ``close`` on every way out instead. An FFmpeg muxer that has
written data and is collected without being closed crashes the process.
"""

from __future__ import annotations

import io
import struct
import threading
from typing import Literal, Protocol

import av
import numpy as np

from voice_inference import audio, resample

AudioFormat = Literal["wav", "pcm", "mp3", "opus", "flac", "aac"]

CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}

# container, codec, default bit rate, output rate (None: the input's). Opus runs at 48 kHz
# unless the input is at one of its other rates; Ogg pages are flushed every 100 ms instead of
# every second, so Opus streams promptly.
_AV_FORMATS: dict[str, tuple[str, str, int | None, int | None]] = {
    "mp3": ("mp3", "libmp3lame", 128_000, None),
    "opus": ("ogg", "libopus", 64_000, 48_000),
    "flac": ("flac", "flac", None, None),
    "aac": ("adts", "aac", 128_000, None),
}
# Rates a response may be asked for: MP3's (the other formats take any), and Opus's own.
SAMPLE_RATES = frozenset({8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000})
OPUS_RATES = frozenset({8_000, 12_000, 16_000, 24_000, 48_000})

_UNKNOWN_SIZE = 0xFFFFFFFF


class Encoder(Protocol):
    content_type: str

    def encode(self, samples: np.ndarray) -> bytes: ...

    def finish(self) -> bytes: ...

    def close(self) -> None:
        """Release the encoder, dropping what ``finish`` would have added; safe at any time."""


def create(
    fmt: AudioFormat, sample_rate: int, *, streaming: bool, out_rate: int | None = None, bit_rate: int | None = None
) -> Encoder:
    """An encoder for one response in ``fmt`` of mono audio at ``sample_rate``.

    ``out_rate``: the response's rate when it differs (resampled with soxr first);
    ``bit_rate``: the codec's, for compressed formats (None: the format's default).
    """
    rate = out_rate or sample_rate
    encoder: Encoder
    if fmt == "pcm":
        encoder = PcmEncoder()
    elif fmt == "wav":
        encoder = WavEncoder(rate, streaming=streaming)
    else:
        encoder = AvEncoder(fmt, rate, streaming=streaming, bit_rate=bit_rate)
    return encoder if rate == sample_rate else ResampledEncoder(encoder, sample_rate, rate)


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte PCM16 mono WAV header; ``None`` marks a stream of unknown length."""
    data_size = _UNKNOWN_SIZE if data_bytes is None else data_bytes
    riff_size = _UNKNOWN_SIZE if data_bytes is None else 36 + data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff_size, b"WAVE", b"fmt ", 16, 1, 1,
        sample_rate, sample_rate * 2, 2, 16, b"data", data_size,
    )  # fmt: skip


class PcmEncoder:
    """Raw little-endian signed 16-bit samples, no header."""

    content_type = CONTENT_TYPES["pcm"]

    def encode(self, samples: np.ndarray) -> bytes:
        return audio.to_pcm16(samples)

    def finish(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


class WavEncoder:
    """PCM16 WAV: header first when streaming, or one exact file at ``finish``."""

    content_type = CONTENT_TYPES["wav"]

    def __init__(self, sample_rate: int, *, streaming: bool) -> None:
        self.sample_rate = sample_rate
        self.streaming = streaming
        self._header_sent = False
        self._buffer: list[bytes] = []

    def encode(self, samples: np.ndarray) -> bytes:
        pcm = audio.to_pcm16(samples)
        if not self.streaming:
            self._buffer.append(pcm)
            return b""
        if not self._header_sent:
            self._header_sent = True
            return wav_header(self.sample_rate, None) + pcm
        return pcm

    def finish(self) -> bytes:
        if self.streaming:
            return b"" if self._header_sent else wav_header(self.sample_rate, None)
        data = b"".join(self._buffer)
        return wav_header(self.sample_rate, len(data)) + data

    def close(self) -> None:
        self._buffer.clear()


class _Sink:
    """A write-only file for FFmpeg's muxer; exposes no seek, so output is never rewritten.

    Streamed responses need that: bytes already sent cannot be patched. Whole responses use
    a seekable buffer instead, so muxers can fill in lengths (FLAC's total sample count).
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class AvEncoder:
    """Compressed formats through PyAV; PyAV's codec context resizes frames for the codec.

    A lock serialises the calls: ``encode`` runs on a worker thread and may still be running
    when the handler, cancelled, calls ``close`` from the event loop.
    """

    def __init__(self, fmt: str, in_rate: int, *, streaming: bool, bit_rate: int | None = None) -> None:
        container, codec, default_bit_rate, out_rate = _AV_FORMATS[fmt]
        bit_rate = bit_rate or default_bit_rate
        out_rate = in_rate if out_rate is None or (fmt == "opus" and in_rate in OPUS_RATES) else out_rate
        self.content_type = CONTENT_TYPES[fmt]
        self.in_rate = in_rate
        self.streaming = streaming
        self._sink = _Sink()
        self._file: _Sink | io.BytesIO = self._sink if streaming else io.BytesIO()
        options = {"page_duration": "100000"} if container == "ogg" else {}
        self._container = av.open(self._file, mode="w", format=container, options=options)
        self._stream = self._container.add_stream(codec, rate=out_rate, layout="mono")
        if bit_rate:
            self._stream.bit_rate = bit_rate
        self._resampler = av.AudioResampler(format=self._stream.format, layout="mono", rate=out_rate)
        self._lock = threading.Lock()
        self._finished = False

    def encode(self, samples: np.ndarray) -> bytes:
        with self._lock:
            if self._finished:  # closed: a late call from a cancelled response adds nothing
                return b""
            return self._encode(samples)

    def _encode(self, samples: np.ndarray) -> bytes:
        if samples.size == 0:  # FFmpeg rejects empty frames; an empty chunk adds nothing
            return self._sink.drain()
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = self.in_rate
        for resampled in self._resampler.resample(frame):
            self._mux(resampled)
        return self._sink.drain()  # always empty for whole responses: they are in self._file

    def finish(self) -> bytes:
        with self._lock:
            if not self._finished:
                self._finished = True
                for resampled in self._resampler.resample(None):
                    self._mux(resampled)
                self._mux(None)  # flush the codec
                self._container.close()
            if isinstance(self._file, io.BytesIO):
                return self._file.getvalue()
            return self._sink.drain()

    def close(self) -> None:
        with self._lock:
            if not self._finished:
                self._finished = True
                self._container.close()
            self._sink.drain()

    def _mux(self, frame: av.AudioFrame | None) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


class ResampledEncoder:
    """Another encoder, fed audio converted from the engine's rate to the response's."""

    def __init__(self, inner: Encoder, in_rate: int, out_rate: int) -> None:
        self.inner = inner
        self.content_type = inner.content_type
        self._resampler = resample.StreamResampler(in_rate, out_rate)

    def encode(self, samples: np.ndarray) -> bytes:
        return self.inner.encode(self._resampler.push(samples))

    def finish(self) -> bytes:
        return self.inner.encode(self._resampler.finish()) + self.inner.finish()

    def close(self) -> None:
        self.inner.close()
