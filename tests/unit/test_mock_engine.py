"""The mock engine (``voice_inference.engines.mock``), called directly as the scheduler calls it.

It must be deterministic (same request, identical samples), let the seed and the reference
voice change the audio, make audio whose length follows the text and ``speed``, respect
``max_new_tokens`` (in codec frames) and a set ``cancelled`` event, and split long text into
``chunk_length`` segments.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from voice_inference import settings, textsplit
from voice_inference.engines import base, create_engine, mock

TEXT = "Hello world. This is the mock engine speaking, deterministically."


@pytest.fixture
def engine() -> mock.MockEngine:
    loaded = mock.MockEngine()
    loaded.load()
    return loaded


def run(
    engine: base.Engine, request: base.SynthesisRequest, cancelled: threading.Event | None = None
) -> list[np.ndarray]:
    return list(engine.generate(request, cancelled or threading.Event()))


def audio_of(engine: base.Engine, request: base.SynthesisRequest) -> np.ndarray:
    return np.concatenate(run(engine, request))


def voice(key: str) -> base.Reference:
    return base.Reference(key=key, audio=np.zeros(100, dtype=np.float32), sample_rate=16_000, text="ref")


def test_chunks_are_float32_mono_in_range(engine: mock.MockEngine) -> None:
    chunks = run(engine, base.SynthesisRequest(text=TEXT))
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.dtype == np.float32
        assert chunk.ndim == 1
        assert 0 < chunk.size <= mock.FRAMES_PER_CHUNK * mock.HOP
        assert chunk.size % mock.HOP == 0
        assert float(np.abs(chunk).max()) <= 1.0
    assert float(np.abs(np.concatenate(chunks)).max()) > 0.1, "not silence"
    assert engine.sample_rate == mock.SAMPLE_RATE == 44_100


def test_same_request_gives_identical_samples() -> None:
    request = base.SynthesisRequest(text=TEXT, seed=7, references=(voice("voice:a:1"),))
    first, second = mock.MockEngine(), mock.MockEngine()  # separate instances: no hidden state
    first.load()
    second.load()
    a, b = audio_of(first, request), audio_of(second, request)
    assert a.tobytes() == b.tobytes()
    assert audio_of(first, request).tobytes() == a.tobytes()


def test_a_different_seed_changes_the_audio(engine: mock.MockEngine) -> None:
    one = audio_of(engine, base.SynthesisRequest(text=TEXT, seed=1))
    two = audio_of(engine, base.SynthesisRequest(text=TEXT, seed=2))
    assert one.shape == two.shape
    assert not np.array_equal(one, two)


def test_a_different_reference_voice_changes_the_audio(engine: mock.MockEngine) -> None:
    request = base.SynthesisRequest(text=TEXT, references=(voice("voice:alice:1"),))
    alice = audio_of(engine, request)
    bob = audio_of(engine, replace(request, references=(voice("voice:bob:1"),)))
    plain = audio_of(engine, replace(request, references=()))
    assert not np.array_equal(alice, bob)
    assert not np.array_equal(alice, plain)


def test_audio_length_grows_with_the_text(engine: mock.MockEngine) -> None:
    lengths = [audio_of(engine, base.SynthesisRequest(text="word " * n, max_new_tokens=0)).size for n in (1, 5, 25)]
    assert lengths[0] < lengths[1] < lengths[2]


def test_audio_length_follows_the_characters(engine: mock.MockEngine) -> None:
    text = "abcdefghij" * 4  # 40 characters, one segment
    samples = audio_of(engine, base.SynthesisRequest(text=text, max_new_tokens=0))
    assert samples.size == round(len(text) * mock.FRAMES_PER_CHAR) * mock.HOP


def test_higher_speed_makes_shorter_audio(engine: mock.MockEngine) -> None:
    request = base.SynthesisRequest(text=TEXT, max_new_tokens=0)
    slow = audio_of(engine, replace(request, speed=0.5)).size
    normal = audio_of(engine, request).size
    fast = audio_of(engine, replace(request, speed=2.0)).size
    assert slow > normal > fast
    assert slow == pytest.approx(4 * fast, rel=0.05)


@pytest.mark.parametrize("max_new_tokens", [1, 5, 8, 9, 20])
def test_max_new_tokens_bounds_the_frames(engine: mock.MockEngine, max_new_tokens: int) -> None:
    long_text = "Some long text that would make many frames. " * 10
    samples = audio_of(engine, base.SynthesisRequest(text=long_text, max_new_tokens=max_new_tokens))
    assert samples.size == max_new_tokens * mock.HOP


def test_max_new_tokens_bounds_the_frames_across_segments(engine: mock.MockEngine) -> None:
    text = "First sentence is here. " * 30  # several 100-character segments
    request = base.SynthesisRequest(text=text, chunk_length=100, max_new_tokens=200)
    assert len(textsplit.split_text(text, 100)) > 2
    assert audio_of(engine, request).size == 200 * mock.HOP


def test_zero_max_new_tokens_means_no_limit(engine: mock.MockEngine) -> None:
    text = "x" * 100
    unlimited = audio_of(engine, base.SynthesisRequest(text=text, max_new_tokens=0))
    assert unlimited.size == round(100 * mock.FRAMES_PER_CHAR) * mock.HOP


def test_a_set_cancelled_event_yields_nothing(engine: mock.MockEngine) -> None:
    cancelled = threading.Event()
    cancelled.set()
    assert run(engine, base.SynthesisRequest(text=TEXT), cancelled) == []


def test_cancelling_mid_way_stops_at_the_next_chunk(engine: mock.MockEngine) -> None:
    cancelled = threading.Event()
    produced = []
    for chunk in engine.generate(base.SynthesisRequest(text=TEXT * 5, max_new_tokens=0), cancelled):
        produced.append(chunk)
        if len(produced) == 2:
            cancelled.set()
    assert len(produced) == 2
    assert len(run(engine, base.SynthesisRequest(text=TEXT * 5, max_new_tokens=0))) > 2


def test_chunk_length_splits_long_text_into_segments(engine: mock.MockEngine) -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(20))  # ~540 characters
    request = base.SynthesisRequest(text=text, chunk_length=100, max_new_tokens=0)
    segments = textsplit.split_text(text, 100)
    assert len(segments) >= 5
    expected_frames = sum(round(len(segment) * mock.FRAMES_PER_CHAR) for segment in segments)
    chunks = run(engine, request)
    assert sum(chunk.size for chunk in chunks) == expected_frames * mock.HOP
    # Each segment ends its own last chunk: chunks never straddle two segments.
    expected_chunks = sum(-(-round(len(s) * mock.FRAMES_PER_CHAR) // mock.FRAMES_PER_CHUNK) for s in segments)
    assert len(chunks) == expected_chunks


def test_normalize_collapses_whitespace_before_synthesis(engine: mock.MockEngine) -> None:
    spaced = base.SynthesisRequest(text="hello    world\n\n", max_new_tokens=0)
    plain = base.SynthesisRequest(text="hello world", max_new_tokens=0)
    assert audio_of(engine, spaced).tobytes() == audio_of(engine, plain).tobytes()
    raw = audio_of(engine, replace(spaced, normalize=False))
    assert raw.size > audio_of(engine, plain).size


def test_generate_before_load_is_an_engine_error() -> None:
    with pytest.raises(base.EngineError):
        run(mock.MockEngine(), base.SynthesisRequest(text=TEXT))


def test_warm_up_synthesizes_once_through_generate(engine: mock.MockEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []  # chunks of each generate() call, counted as the warm-up consumes them
    original = engine.generate

    def counting(request: base.SynthesisRequest, cancelled: threading.Event) -> Iterator[np.ndarray]:
        made.append(0)
        for chunk in original(request, cancelled):
            made[-1] += 1
            yield chunk

    monkeypatch.setattr(engine, "generate", counting)
    engine.warm_up()  # the base class's warm-up
    assert len(made) == 1 and made[0] > 0, "one synthesis, whose audio was really made"


def test_create_engine_builds_the_mock_with_its_chunk_cost() -> None:
    built = create_engine(settings.Settings(tts_provider="mock", mock_chunk_cost_ms=25))
    assert isinstance(built, mock.MockEngine)
    assert built.chunk_cost_s == pytest.approx(0.025)
