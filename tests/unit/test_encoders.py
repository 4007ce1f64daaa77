"""Audio encoders (``voice_inference.encoders``): float32 chunks in, response bytes out.

Every format must round-trip: decoded with soundfile (WAV, FLAC) or PyAV (every compressed
format) it has the right sample rate, one channel and the duration we put in. Streaming has
its own promises: a WAV stream starts with a header that says "unknown length", compressed
streams send decodable audio before ``finish()`` (Opus: audio pages, not only its header
pages), and a whole (non-streamed) WAV has exact sizes.
"""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile
from voice_inference import encoders

from tests import audio_checks

RATE = 44_100
CHUNK = 4096  # not a multiple of any codec's frame size, on purpose
COMPRESSED = ["mp3", "opus", "flac", "aac"]
ALL_FORMATS = ["wav", "pcm", *COMPRESSED]
# Codecs add priming/padding samples (mp3, aac) and Opus resamples to 48 kHz.
DURATION_TOLERANCE_S = 0.08
OUTPUT_RATE = {"opus": 48_000}


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def chunks_of(samples: np.ndarray, size: int = CHUNK) -> list[np.ndarray]:
    return [samples[i : i + size] for i in range(0, len(samples), size)]


def encode_all(fmt: str, samples: np.ndarray, *, streaming: bool) -> tuple[list[bytes], bytes]:
    encoder = encoders.create(fmt, RATE, streaming=streaming)  # type: ignore[arg-type]
    parts = [encoder.encode(chunk) for chunk in chunks_of(samples)]
    return parts, encoder.finish()


def decode_with_av(data: bytes) -> tuple[int, int, float, np.ndarray]:
    """(sample rate, channels, seconds, samples) of the first audio stream."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [frame for frame in container.decode(stream)]
    rate = frames[0].sample_rate
    channels = frames[0].layout.nb_channels
    samples = np.concatenate([frame.to_ndarray().reshape(channels, -1)[0].astype(np.float32) for frame in frames])
    return rate, channels, len(samples) / rate, samples


@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("fmt", COMPRESSED)
def test_compressed_formats_round_trip(fmt: str, streaming: bool) -> None:
    seconds = 1.5
    parts, tail = encode_all(fmt, tone(seconds), streaming=streaming)
    rate, channels, duration, samples = decode_with_av(b"".join(parts) + tail)
    assert rate == OUTPUT_RATE.get(fmt, RATE)
    assert channels == 1
    assert duration == pytest.approx(seconds, abs=DURATION_TOLERANCE_S)
    assert float(np.sqrt(np.mean(samples**2))) > 0.1, "the tone survived encoding (not silence)"


@pytest.mark.parametrize(
    ("fmt", "streaming"),
    [("wav", False), ("wav", True), ("flac", False)],
    ids=["wav-whole", "wav-streamed", "flac-whole"],
)
def test_lossless_formats_decode_with_soundfile(fmt: str, streaming: bool) -> None:
    # (A streamed FLAC cannot state its length up front and libsndfile cannot read it from a
    # non-seekable start; PyAV reads it in test_compressed_formats_round_trip.)
    samples = tone(0.75)
    parts, tail = encode_all(fmt, samples, streaming=streaming)
    decoded, rate = soundfile.read(io.BytesIO(b"".join(parts) + tail), dtype="float32", always_2d=True)
    assert rate == RATE
    assert decoded.shape == (len(samples), 1)
    np.testing.assert_allclose(decoded[:, 0], samples, atol=3 / 32768)  # 16-bit quantization


def test_pcm_is_raw_s16le_of_the_samples() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0], dtype=np.float32)
    encoder = encoders.create("pcm", RATE, streaming=True)
    data = encoder.encode(samples) + encoder.finish()
    assert encoder.content_type == "audio/pcm"
    decoded = np.frombuffer(data, dtype="<i2")
    assert decoded.tolist() == [0, 16383, -16383, 32767, -32767, 32767, -32767]  # out-of-range clips


def test_pcm_round_trips_the_duration() -> None:
    samples = tone(1.25)
    parts, tail = encode_all("pcm", samples, streaming=True)
    assert len(b"".join(parts) + tail) == 2 * len(samples)


def test_streamed_wav_starts_with_a_header_of_unknown_length() -> None:
    encoder = encoders.create("wav", RATE, streaming=True)
    first = encoder.encode(tone(0.1))
    assert len(first) > 44, "the header leaves with the first chunk, not at the end"
    riff, riff_size, wave, fmt_id, fmt_size, pcm, channels, rate, byte_rate, align, bits, data_id, data_size = (
        struct.unpack("<4sI4s4sIHHIIHH4sI", first[:44])
    )
    assert (riff, wave, fmt_id, data_id) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert (fmt_size, pcm, channels, rate, bits) == (16, 1, 1, RATE, 16)
    assert (byte_rate, align) == (RATE * 2, 2)
    assert riff_size == 0xFFFFFFFF and data_size == 0xFFFFFFFF
    second = encoder.encode(tone(0.1))
    assert not second.startswith(b"RIFF"), "the header is sent once"
    assert len(second) == 2 * int(0.1 * RATE)
    assert encoder.finish() == b""


def test_streamed_wav_with_no_audio_still_sends_a_header() -> None:
    encoder = encoders.create("wav", RATE, streaming=True)
    assert encoder.finish()[:4] == b"RIFF"


@pytest.mark.parametrize("seconds", [0.0, 0.01, 1.0])
def test_whole_wav_has_exact_sizes(seconds: float) -> None:
    samples = tone(seconds)
    parts, tail = encode_all("wav", samples, streaming=False)
    assert all(part == b"" for part in parts), "a whole WAV is held until finish()"
    data_bytes = 2 * len(samples)
    assert len(tail) == 44 + data_bytes
    riff_size, data_size = struct.unpack_from("<I", tail, 4)[0], struct.unpack_from("<I", tail, 40)[0]
    assert riff_size == 36 + data_bytes
    assert data_size == data_bytes


def test_wav_header_function() -> None:
    assert len(encoders.wav_header(RATE, None)) == 44
    assert struct.unpack_from("<I", encoders.wav_header(22_050, 100), 24)[0] == 22_050


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_streamed_compressed_formats_emit_audio_before_finish(fmt: str) -> None:
    seconds = 1.0
    with contextlib.closing(encoders.create(fmt, RATE, streaming=True)) as encoder:  # type: ignore[arg-type]
        early = b"".join(encoder.encode(chunk) for chunk in chunks_of(tone(seconds)))
        assert early[:4] in (b"OggS", b"fLaC") or early[:3] == b"ID3" or early[0] == 0xFF, "starts at its start"
        # Headers alone would not do: most of the audio must decode from what left before finish().
        rate, channels, early_seconds, _ = decode_with_av(early)
        assert (rate, channels) == (OUTPUT_RATE.get(fmt, RATE), 1)
        assert early_seconds > seconds / 2
        rest = encoder.finish()
    assert decode_with_av(early + rest)[2] == pytest.approx(seconds, abs=DURATION_TOLERANCE_S)


def test_streamed_opus_sends_audio_pages_as_it_goes() -> None:
    reached = []  # the furthest granule (48 kHz samples) sent after each 100 ms chunk
    sent = b""
    with contextlib.closing(encoders.create("opus", RATE, streaming=True)) as encoder:
        for chunk in chunks_of(tone(1.0), RATE // 10):
            sent += encoder.encode(chunk)
            reached.append(max(audio_checks.ogg_granules(sent), default=0))
    assert audio_checks.ogg_granules(sent)[:2] == [0, 0], "OpusHead and OpusTags come first"
    assert reached[4] > 0, "audio pages leave within the first half second, not only the headers"
    assert reached[-1] > 0.7 * 48_000, "most of the second is out before finish()"
    assert reached == sorted(reached)


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_whole_compressed_formats_emit_everything_at_finish(fmt: str) -> None:
    parts, tail = encode_all(fmt, tone(0.5), streaming=False)
    assert all(part == b"" for part in parts)
    assert len(tail) > 0


@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_empty_chunks_are_harmless(fmt: str, streaming: bool) -> None:
    # An engine may yield a zero-length chunk (end of a segment); FFmpeg rejects empty frames.
    encoder = encoders.create(fmt, RATE, streaming=streaming)  # type: ignore[arg-type]
    data = encoder.encode(np.zeros(0, dtype=np.float32))
    data += encoder.encode(tone(0.5))
    data += encoder.encode(np.zeros(0, dtype=np.float32))
    data += encoder.finish()
    if fmt == "pcm":
        assert len(data) == 2 * len(tone(0.5))
    else:
        _, channels, duration, _ = decode_with_av(data)
        assert channels == 1
        assert duration == pytest.approx(0.5, abs=DURATION_TOLERANCE_S)


def test_finish_twice_is_safe_for_compressed_streams() -> None:
    encoder = encoders.create("mp3", RATE, streaming=True)
    encoder.encode(tone(0.2))
    encoder.finish()
    assert encoder.finish() == b""


# Run in a child process: collecting an FFmpeg muxer that has written data and was never
# closed crashes the interpreter (SIGSEGV), which would take the test run down with it.
ABANDON_MID_STREAM = """
import gc, sys
import numpy as np
from voice_inference import encoders
for streaming in (True, False):
    encoder = encoders.create(sys.argv[1], 44_100, streaming=streaming)
    encoder.encode(np.full(44_100, 0.1, dtype=np.float32))
    encoder.close()  # what a response that ends early calls instead of finish()
    assert encoder.encode(np.full(4_410, 0.1, dtype=np.float32)) == b""
    del encoder
    gc.collect()
print("collected")
"""


@pytest.mark.parametrize("fmt", COMPRESSED)
def test_an_encoder_closed_before_finish_is_released_safely(fmt: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", ABANDON_MID_STREAM, fmt], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout.strip()) == (0, "collected"), result.stderr[-2000:]


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("wav", "audio/wav"), ("pcm", "audio/pcm"), ("mp3", "audio/mpeg"), ("opus", "audio/ogg"),
     ("flac", "audio/flac"), ("aac", "audio/aac")],
)  # fmt: skip
def test_content_types(fmt: str, content_type: str) -> None:
    assert encoders.create(fmt, RATE, streaming=False).content_type == content_type  # type: ignore[arg-type]


def test_other_sample_rates_are_kept() -> None:
    rate = 24_000
    t = np.arange(rate) / rate
    samples = (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    for fmt in ("mp3", "flac"):
        encoder = encoders.create(fmt, rate, streaming=True)  # type: ignore[arg-type]
        data = encoder.encode(samples) + encoder.finish()
        decoded_rate, channels, duration, _ = decode_with_av(data)
        assert (decoded_rate, channels) == (rate, 1)
        assert duration == pytest.approx(1.0, abs=DURATION_TOLERANCE_S)


@pytest.mark.parametrize(("fmt", "rate"), [("wav", 24_000), ("pcm", 16_000), ("mp3", 22_050), ("flac", 48_000),
                                           ("opus", 24_000)])  # fmt: skip
def test_out_rate_resamples_in_the_stream_without_changing_duration_or_pitch(fmt: str, rate: int) -> None:
    signal = tone(1.5, hz=440.0)
    encoder = encoders.create(fmt, RATE, streaming=True, out_rate=rate)  # type: ignore[arg-type]
    data = b"".join(encoder.encode(chunk) for chunk in chunks_of(signal)) + encoder.finish()
    samples, got_rate, _ = audio_checks.decode(data, fmt, pcm_rate=rate)
    if fmt != "opus":  # FFmpeg's Opus decoder always hands out 48 kHz; the codec ran at `rate`
        assert got_rate == rate
    assert samples.shape[0] / got_rate == pytest.approx(1.5, abs=DURATION_TOLERANCE_S)
    # Still a 440 Hz tone: the spectrum's peak did not move with the rate.
    spectrum = np.abs(np.fft.rfft(samples[: got_rate]))
    assert np.fft.rfftfreq(got_rate, 1 / got_rate)[spectrum.argmax()] == pytest.approx(440, abs=3)


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_bit_rate_sets_the_codec_rate(fmt: str) -> None:
    signal = tone(4.0) + np.random.default_rng(0).normal(0, 0.05, int(4.0 * RATE)).astype(np.float32)

    def size(bit_rate: int) -> int:
        encoder = encoders.create(fmt, RATE, streaming=False, bit_rate=bit_rate)  # type: ignore[arg-type]
        return len(b"".join(encoder.encode(chunk) for chunk in chunks_of(signal)) + encoder.finish())

    low, high = size(24_000 if fmt == "opus" else 64_000), size(64_000 if fmt == "opus" else 192_000)
    assert high > 2 * low
