"""The S1 Mini engine on the tiny checkpoint, on CPU, one request at a time: seeds, streaming,
cancellation, segments, voice cloning and its cache, and the compiled decode step. Random weights
rarely emit the end token, so every request bounds ``max_new_tokens``. (Requests batched together:
test_s1_batching.py.)"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from tests import s1_support

s1_support.require_engine()

import torch  # noqa: E402
from voice_inference.engines import base, s1_codec, s1_load, s1_mini, s1_prompt, stepped  # noqa: E402


pytestmark = pytest.mark.s1


HOP = 2048
TEXT = "Hello there. This is the tiny model speaking."


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> s1_mini.S1MiniEngine:
    loaded = s1_mini.S1MiniEngine(tiny_checkpoint, device="cpu", stream_frames=8, reference_cache_size=2, cpu_threads=1)
    loaded.load()
    return loaded


def run(engine: s1_mini.S1MiniEngine, **fields: object) -> list[np.ndarray]:
    request = base.SynthesisRequest(**{"text": TEXT, "seed": 3, "max_new_tokens": 40, **fields})  # seed 3 runs past 80 frames
    return list(stepped.OneAtATime(engine).generate(request, threading.Event()))


def joined(chunks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def test_audio_is_float32_frames_at_44k(engine: s1_mini.S1MiniEngine) -> None:
    chunks = run(engine)
    audio = joined(chunks)
    assert engine.sample_rate == 44_100
    assert all(chunk.dtype == np.float32 and chunk.ndim == 1 for chunk in chunks)
    assert 0 < audio.size <= 40 * HOP and audio.size % HOP == 0
    assert np.isfinite(audio).all() and 0 < np.abs(audio).max() <= 1.0


def test_same_seed_same_audio_other_seed_other_audio(engine: s1_mini.S1MiniEngine) -> None:
    first = joined(run(engine, seed=1))
    again = joined(run(engine, seed=1))
    other = joined(run(engine, seed=2))
    assert np.array_equal(first, again)
    assert not (first.shape == other.shape and np.array_equal(first, other))


def test_a_seed_affects_only_its_own_request(engine: s1_mini.S1MiniEngine) -> None:
    """Unseeded requests in between change nothing, and the global RNG is never touched."""
    first = joined(run(engine, seed=5))
    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    run(engine, seed=None)
    run(engine, seed=None, text="Something else entirely.")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(joined(run(engine, seed=5)), first)


def test_unseeded_requests_differ(engine: s1_mini.S1MiniEngine) -> None:
    one, two = joined(run(engine, seed=None)), joined(run(engine, seed=None))
    assert not (one.shape == two.shape and np.array_equal(one, two))


def test_sampling_parameters_change_the_result(engine: s1_mini.S1MiniEngine) -> None:
    plain = joined(run(engine))
    for change in ({"temperature": 0.3}, {"top_p": 0.3}, {"repetition_penalty": 1.9}):
        varied = joined(run(engine, **change))
        assert not (varied.shape == plain.shape and np.array_equal(varied, plain)), change


def test_streaming_yields_small_chunks_that_match_one_shot_decoding(engine: s1_mini.S1MiniEngine) -> None:
    """The first chunk comes after 8 frames, later ones double; the causal codec decoded in pieces
    (with left context) gives the audio that decoding all frames at once gives."""
    frames: list[torch.Tensor] = []
    original = engine._take_frame

    def recording(row: stepped.Row, frame: torch.Tensor, end: bool) -> None:
        if not end:
            frames.append(frame[1:])
        original(row, frame, end)

    engine._take_frame = recording  # type: ignore[method-assign]
    try:
        chunks = run(engine, max_new_tokens=40)
    finally:
        del engine._take_frame
    sizes = [len(chunk) // HOP for chunk in chunks]
    assert len(sizes) >= 3 and sum(sizes) == len(frames)
    assert sizes[:-1] == [min(8 * 2**i, s1_mini.MAX_CHUNK_FRAMES) for i in range(len(sizes) - 1)]  # 8, 16, 32, ...

    whole = s1_codec.decode(engine.codec, torch.stack(frames, dim=1))
    np.testing.assert_allclose(joined(chunks), whole, atol=1e-4)


def test_balanced_latency_sends_a_smaller_first_chunk(engine: s1_mini.S1MiniEngine) -> None:
    normal = run(engine, latency="normal")
    balanced = run(engine, latency="balanced")
    assert len(balanced[0]) == 2 * HOP < len(normal[0]) == 8 * HOP
    # The same frames, cut differently (the windows' context differs, so float rounding may too).
    np.testing.assert_allclose(joined(balanced), joined(normal), atol=1e-4)


def test_max_new_tokens_bounds_the_whole_request(engine: s1_mini.S1MiniEngine) -> None:
    long_text = " ".join(["A sentence that goes on."] * 6)
    for budget in (1, 7, 20):
        assert 0 < joined(run(engine, text=long_text, chunk_length=30, max_new_tokens=budget)).size <= budget * HOP


@pytest.mark.parametrize("condition", [True, False])
def test_long_text_is_generated_segment_by_segment(
    engine: s1_mini.S1MiniEngine, monkeypatch: pytest.MonkeyPatch, condition: bool
) -> None:
    """Each segment gets its own prompt, conditioned on the segment before (so the voice holds),
    unless the request says not to (``condition_on_previous_chunks: false``)."""
    prompts: list[tuple[str, str | None]] = []
    original = s1_prompt.fit

    def three_frames_each(model, references, previous, segment, context):
        prompts.append((segment, previous[0] if previous else None))
        prompt, _ = original(model, references, previous, segment, context)
        return prompt, 3  # random weights rarely end a segment by themselves

    monkeypatch.setattr(s1_prompt, "fit", three_frames_each)
    text = "First sentence here. Second one follows. And a third to finish."
    audio = joined(run(engine, text=text, chunk_length=25, max_new_tokens=60, condition_on_previous=condition))
    assert prompts == [
        ("First sentence here.", None),
        ("Second one follows.", "First sentence here." if condition else None),
        ("And a third to finish.", "Second one follows." if condition else None),
    ]
    assert audio.size == 9 * HOP


def test_speed_stretches_time(engine: s1_mini.S1MiniEngine) -> None:
    normal = joined(run(engine, max_new_tokens=40))
    for speed in (2.0, 0.5):
        stretched = joined(run(engine, max_new_tokens=40, speed=speed))
        assert stretched.dtype == np.float32
        assert stretched.size == pytest.approx(normal.size / speed, rel=0.02)


def test_empty_text_yields_nothing(engine: s1_mini.S1MiniEngine) -> None:
    assert run(engine, text="   ") == []


def test_cancellation_stops_generation(engine: s1_mini.S1MiniEngine) -> None:
    cancelled = threading.Event()
    request = base.SynthesisRequest(text=TEXT, seed=3, max_new_tokens=200)
    before = engine.steps
    stream = stepped.OneAtATime(engine).generate(request, cancelled)
    first = next(stream)
    steps = engine.steps - before
    cancelled.set()
    rest = list(stream)
    assert len(first) == 8 * HOP
    assert rest == []
    assert engine.steps - before == steps  # stopped at once: no step after the cancel, not 200


def test_cancelled_before_start_generates_nothing(engine: s1_mini.S1MiniEngine) -> None:
    cancelled = threading.Event()
    cancelled.set()
    generate = stepped.OneAtATime(engine).generate
    assert list(generate(base.SynthesisRequest(text=TEXT, max_new_tokens=40), cancelled)) == []


def test_reference_voice_changes_the_audio_and_is_cached(engine: s1_mini.S1MiniEngine) -> None:
    voice = base.Reference(key="voice-a", audio=s1_support.tone(1.0, 220.0), sample_rate=44_100, text="a low tone")
    plain = joined(run(engine))
    hits, misses = engine.reference_cache_hits, engine.reference_cache_misses

    cloned = joined(run(engine, references=(voice,)))
    assert engine.reference_cache_misses == misses + 1
    again = joined(run(engine, references=(voice,)))
    assert engine.reference_cache_hits == hits + 1 and engine.reference_cache_misses == misses + 1

    assert np.array_equal(cloned, again)
    assert not (cloned.shape == plain.shape and np.array_equal(cloned, plain))


def test_reference_codes_have_the_codec_shape_at_any_sample_rate(engine: s1_mini.S1MiniEngine) -> None:
    at_16k = engine.reference_codes(
        base.Reference(key="k16", audio=s1_support.tone(2.0, 300.0, 16_000), sample_rate=16_000, text="t")
    )
    at_44k = engine.reference_codes(
        base.Reference(key="k44", audio=s1_support.tone(2.0, 300.0), sample_rate=44_100, text="t")
    )
    assert at_16k.shape[0] == at_44k.shape[0] == engine.model.config.num_codebooks
    assert abs(at_16k.shape[1] - 2.0 * 44_100 / HOP) <= 1 and at_16k.shape[1] == at_44k.shape[1]
    assert int(at_44k[0].max()) < engine.model.config.codebook_size


def test_reference_cache_is_bounded_lru_keyed_by_voice_and_content(engine: s1_mini.S1MiniEngine) -> None:
    def ref(key: str, hz: float) -> base.Reference:
        return base.Reference(key=key, audio=s1_support.tone(0.5, hz), sample_rate=44_100, text="t")

    engine._references.clear()
    engine.reference_codes(ref("a", 200.0))
    engine.reference_codes(ref("b", 300.0))
    misses = engine.reference_cache_misses
    engine.reference_codes(ref("a", 200.0))  # hit; "a" is now the most recent
    engine.reference_codes(ref("c", 400.0))  # evicts "b" (capacity 2)
    assert engine.reference_cache_misses == misses + 1
    assert [key for key, _ in engine._references] == ["a", "c"]
    engine.reference_codes(ref("b", 300.0))
    assert engine.reference_cache_misses == misses + 2
    engine.reference_codes(ref("c", 999.0))  # same id, new audio: encoded again, not served stale
    assert engine.reference_cache_misses == misses + 3


def test_a_prompt_that_fills_the_context_is_the_clients_to_fix(engine: s1_mini.S1MiniEngine) -> None:
    voice = base.Reference(key="chatty", audio=s1_support.tone(0.5, 220.0), sample_rate=44_100, text="word " * 600)
    with pytest.raises(base.RequestTooLarge, match="leaves no room"):
        run(engine, references=(voice,))


def test_empty_reference_audio_is_an_error(engine: s1_mini.S1MiniEngine) -> None:
    empty = base.Reference(key="empty", audio=np.zeros(0, dtype=np.float32), sample_rate=44_100, text="t")
    with pytest.raises(ValueError, match="empty"):
        engine.reference_codes(empty)


def test_compiled_step_traces_whole_and_gives_the_same_audio(
    tiny_checkpoint: Path, engine: s1_mini.S1MiniEngine
) -> None:
    """torch.compile(fullgraph=True) must trace the decode step without graph breaks, at every
    attention span; the eager backend checks that on CPU in seconds (GPUs use inductor with
    CUDA graphs, tests/unit/test_s1_gpu.py)."""
    torch._dynamo.reset()
    compiled = s1_mini.S1MiniEngine(tiny_checkpoint, device="cpu", compile=True, compile_backend="eager")
    compiled.load()
    compiled._layers.never_end()  # random weights may end early: this must reach the 2048 span
    engine._layers.never_end()
    try:
        compiled.warm_up()  # every (batch, span) bucket: a graph break anywhere raises here
        for budget, span in ((12, 1024), (1500, 2048)):
            same = joined(run(compiled, max_new_tokens=budget)), joined(run(engine, max_new_tokens=budget))
            assert np.array_equal(*same) and same[0].size == budget * HOP
            assert compiled._decode.last_bucket == (1, span)
    finally:
        engine._layers.never_end(False)
    compiled.close()


def test_cuda_requested_without_cuda_is_a_clear_error(tiny_checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(base.EngineError, match="VOICE_S1_DEVICE=cuda"):
        s1_mini.S1MiniEngine(tiny_checkpoint, device="cuda").load()


def test_auto_device_and_precision() -> None:
    device = s1_load.select_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert s1_load.select_precision("auto", torch.device("cpu")) == torch.float32
    assert s1_load.select_precision("float16", torch.device("cpu")) == torch.float16


def test_admit_before_load_is_an_engine_error(tiny_checkpoint: Path) -> None:
    with pytest.raises(base.EngineError, match="before load"):
        s1_mini.S1MiniEngine(tiny_checkpoint).admit(base.SynthesisRequest(text="hi"), slot=0)


def test_warm_up_synthesizes_audio(engine: s1_mini.S1MiniEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    admitted: list[base.SynthesisRequest] = []
    chunks = 0
    original_admit, original_step = engine.admit, engine.step

    def admit(request: base.SynthesisRequest, slot: int) -> stepped.Row:
        admitted.append(request)
        return original_admit(request, slot)

    def step(rows) -> None:  # noqa: ANN001
        nonlocal chunks
        original_step(rows)
        chunks += sum(len(row.chunks) for row in rows)

    monkeypatch.setattr(engine, "admit", admit)
    monkeypatch.setattr(engine, "step", step)
    engine.warm_up()
    assert len(admitted) >= 1 and chunks > 0, "a synthesis whose audio was really made"


def test_cache_spans_grow_with_the_request(engine: s1_mini.S1MiniEngine) -> None:
    """Short requests attend over a short span of the KV cache; long ones over more (eager, spans
    start at 128; compiled, at 1024: test_compiled_step_traces_whole_and_gives_the_same_audio)."""
    engine._layers.never_end()  # random weights may end early
    try:
        run(engine, max_new_tokens=10)
        assert engine._decode.last_bucket == (1, 128)
        run(engine, max_new_tokens=300)
        assert engine._decode.last_bucket == (1, 512)
        run(engine, max_new_tokens=1500)
        assert engine._decode.last_bucket == (1, 2048)
        run(engine, max_new_tokens=0)  # no limit: the whole context
        assert engine._decode.last_bucket == (1, engine.model.config.max_seq_len)
    finally:
        engine._layers.never_end(False)


def test_settings_build_the_engine(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError
    from voice_inference import engines
    from voice_inference.engines import stepped
    from voice_inference.settings import Settings

    for name, value in {
        "VOICE_TTS_PROVIDER": "s1_mini",
        "VOICE_S1_CHECKPOINT_PATH": str(tiny_checkpoint),
        "VOICE_S1_DEVICE": "cpu",
        "VOICE_S1_STREAM_FRAMES": "4",
        "VOICE_S1_REFERENCE_CACHE_SIZE": "5",
        "VOICE_MAX_BATCH_SIZE": "4",
    }.items():
        monkeypatch.setenv(name, value)
    built = engines.create_engine(Settings())
    assert isinstance(built, s1_mini.S1MiniEngine), "S1 Mini is a stepped engine of its own: it batches"
    assert (built.checkpoint_path, built.device_setting) == (tiny_checkpoint, "cpu")
    assert (built.stream_frames, built.reference_cache_size) == (4, 5)
    assert built.max_batch_size == 4

    monkeypatch.setenv("VOICE_S1_STREAM_FRAMES", "0")
    with pytest.raises(ValidationError, match="s1_stream_frames"):
        Settings()
