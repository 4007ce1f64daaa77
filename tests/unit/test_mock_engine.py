"""The mock engine (``voice_inference.engines.mock``), stepped directly as the scheduler steps it.

It must be deterministic (same request, identical samples, alone or batched with others), let
the seed and the reference voice change the audio, make audio whose length follows the text
and ``speed``, respect ``max_new_tokens`` (in codec frames), end a row with its last chunk, split
long text into ``chunk_length`` segments, and pay its per-step cost once per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from voice_inference import settings, textsplit
from voice_inference.engines import base, create_engine, mock, stepped

TEXT = "Hello world. This is the mock engine speaking, deterministically."


@pytest.fixture
def engine() -> mock.MockEngine:
    loaded = mock.MockEngine(max_batch_size=8)
    loaded.load()
    return loaded


def run_batch(engine: mock.MockEngine, requests: Sequence[base.SynthesisRequest]) -> list[list[np.ndarray]]:
    """Step the requests together until all are done, as the scheduler does: each row's chunks."""
    rows = [engine.admit(request, slot) for slot, request in enumerate(requests)]
    out: list[list[np.ndarray]] = [[] for _ in rows]
    while active := [row for row in rows if not row.done]:
        engine.step(active)
        for row in active:
            out[row.slot] += row.chunks
            row.chunks.clear()
            if row.done:
                engine.release(row)
    return out


def run(engine: mock.MockEngine, request: base.SynthesisRequest) -> list[np.ndarray]:
    return run_batch(engine, [request])[0]


def audio_of(engine: mock.MockEngine, request: base.SynthesisRequest) -> np.ndarray:
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


def test_a_request_gives_the_same_audio_alone_and_inside_a_batch(engine: mock.MockEngine) -> None:
    target = base.SynthesisRequest(text=TEXT, seed=3, references=(voice("voice:a:1"),))
    others = [
        base.SynthesisRequest(text=f"Another request, number {i}. " * (i + 1), seed=i, speed=0.5 + i / 4)
        for i in range(7)
    ]
    alone = audio_of(engine, target)
    for position in (0, 4, 7):  # its slot in the batch does not matter either
        batch = [*others[:position], target, *others[position:]]
        chunks = run_batch(engine, batch)
        assert np.concatenate(chunks[position]).tobytes() == alone.tobytes()
        assert len({len(c) for c in chunks}) > 1, "rows of different lengths finished at different steps"


def test_a_row_is_done_with_its_last_chunk(engine: mock.MockEngine) -> None:
    row = engine.admit(base.SynthesisRequest(text="Hi.", max_new_tokens=0), slot=0)
    engine.step([row])
    assert row.done and len(row.chunks) == 1, "no extra empty step at the end"


def test_the_step_cost_is_paid_once_per_step_whatever_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(mock.time, "sleep", slept.append)
    costly = mock.MockEngine(chunk_cost_s=0.05, max_batch_size=8)
    costly.load()
    run_batch(costly, [base.SynthesisRequest(text="x" * 24, max_new_tokens=0)] * 8)  # 36 frames: 5 steps
    assert slept == [0.05] * 5


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


def test_admit_before_load_is_an_engine_error() -> None:
    with pytest.raises(base.EngineError):
        run(mock.MockEngine(), base.SynthesisRequest(text=TEXT))


def test_warm_up_runs(engine: mock.MockEngine) -> None:
    engine.warm_up()  # the stepped base class's warm-up: admit, step until done, release


def test_create_engine_builds_the_batching_mock_from_settings() -> None:
    built = create_engine(settings.Settings(tts_provider="mock", mock_chunk_cost_ms=25, max_batch_size=12))
    assert isinstance(built, mock.MockEngine) and isinstance(built, stepped.SteppedEngine)
    assert built.chunk_cost_s == pytest.approx(0.025)
    assert built.max_batch_size == 12
