"""Requests batched together in the S1 Mini engine (tiny checkpoint, CPU float32): each row keeps
its own result. The same seeded request gives the same codes and audio alone, beside one other
request and inside a batch of 8 different ones; a row released mid-batch leaves the others
untouched; a reused slot starts clean; per-row budgets, latency, speed, references and segments
hold inside a batch; the compiled step never recompiles under load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests import s1_support

s1_support.require_engine()

import torch  # noqa: E402
from voice_inference.engines import base, create_engine, s1_checkpoint, s1_kvcache, s1_mini, s1_sampling, stepped  # noqa: E402
from voice_inference.settings import Settings  # noqa: E402


pytestmark = pytest.mark.s1

HOP = 2048
A = base.SynthesisRequest(text="Hello there. This is the tiny model speaking.", seed=1, max_new_tokens=40)
VOICE = base.Reference(key="voice-b", audio=s1_support.tone(1.0, 330.0), sample_rate=44_100, text="a higher tone")


def others(count: int) -> list[base.SynthesisRequest]:
    """Requests unlike A and unlike each other: texts, seeds, parameters, budgets, voices."""
    return [
        base.SynthesisRequest(
            text=f"Request number {index} says something else, at its own pace.",
            seed=100 + index,
            max_new_tokens=12 + 7 * index,
            temperature=0.5 + 0.1 * index,
            top_p=0.6 + 0.05 * index,
            repetition_penalty=1.0 + 0.1 * index,
            latency="balanced" if index % 2 else "normal",
            references=(VOICE,) if index % 3 == 0 else (),
            chunk_length=30 if index == 4 else 200,
        )
        for index in range(count)
    ]


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> s1_mini.S1MiniEngine:
    loaded = s1_mini.S1MiniEngine(tiny_checkpoint, device="cpu", max_batch_size=8, cpu_threads=1)
    loaded.load()
    yield loaded
    loaded.close()


class Recorder:
    """Drives rows as the scheduler does (step all, collect chunks, release the finished) and
    records each row's frames and audio."""

    def __init__(self, engine: s1_mini.S1MiniEngine) -> None:
        self.engine = engine
        self.frames: dict[int, list[torch.Tensor]] = {}
        original = engine._take_frame

        def recording(row: stepped.Row, frame: torch.Tensor, end: bool) -> None:
            if not end:
                self.frames.setdefault(id(row), []).append(frame.clone())
            original(row, frame, end)

        engine._take_frame = recording  # type: ignore[method-assign]

    def close(self) -> None:
        del self.engine._take_frame

    def run(
        self, requests: Sequence[base.SynthesisRequest], *, slots: Sequence[int] | None = None, cancel_after: dict[int, int] | None = None
    ) -> list[tuple[torch.Tensor, np.ndarray]]:
        """(codes (frames, num_codebooks + 1), audio) of each request, all admitted at once;
        ``cancel_after`` releases request i after that many steps."""
        slots = list(slots or range(len(requests)))
        self.frames = {}  # keyed by id(row): only rows alive in this run
        rows = [self.engine.admit(request, slot) for request, slot in zip(requests, slots, strict=True)]
        audio: dict[int, list[np.ndarray]] = {id(row): [] for row in rows}
        live, steps = list(rows), 0
        while live:
            self.engine.step(live)
            steps += 1
            for index, row in enumerate(rows):
                audio[id(row)] += row.chunks
                row.chunks = []
                if row in live and (row.done or (cancel_after or {}).get(index) == steps):
                    assert row.error is None, row.error
                    self.engine.release(row)
                    live.remove(row)
        return [
            (
                torch.stack(self.frames.get(id(row), [])) if self.frames.get(id(row)) else torch.zeros(0),
                np.concatenate(audio[id(row)]) if audio[id(row)] else np.zeros(0, dtype=np.float32),
            )
            for row in rows
        ]


@pytest.fixture
def recorder(engine: s1_mini.S1MiniEngine) -> Recorder:
    recorder = Recorder(engine)
    yield recorder
    recorder.close()


def test_a_row_alone_and_beside_another_gives_the_same_codes_and_audio(recorder: Recorder) -> None:
    (codes, audio), = recorder.run([A])
    assert 0 < codes.shape[0] <= 40 and audio.size == codes.shape[0] * HOP
    (batched_codes, batched_audio), _ = recorder.run([A, others(1)[0]])
    assert torch.equal(batched_codes, codes)
    # The codec may decode A's windows together with B's: the same samples up to float rounding.
    np.testing.assert_allclose(batched_audio, audio, atol=1e-5)


def test_a_row_alone_and_inside_a_batch_of_8_gives_the_same_codes(recorder: Recorder) -> None:
    """Bit-identical codes on CPU float32; the audio too (each row's windows are decoded alone
    or batched with others, which may round the codec's float output differently)."""
    (codes, audio), = recorder.run([A])
    results = recorder.run([*others(3), A, *others(7)[3:]], slots=[7, 1, 5, 0, 2, 6, 3, 4])
    batched_codes, batched_audio = results[3]
    assert torch.equal(batched_codes, codes)
    np.testing.assert_allclose(batched_audio, audio, atol=1e-5)
    # and each other row matches itself alone
    for request, (row_codes, _) in zip(others(7), [*results[:3], *results[4:]], strict=True):
        (alone, _), = recorder.run([request])
        assert torch.equal(row_codes, alone), request.text


def test_a_row_released_mid_batch_leaves_the_others_untouched(recorder: Recorder, engine: s1_mini.S1MiniEngine) -> None:
    batch = [A, *others(3)]
    full = recorder.run(batch)
    cut = recorder.run(batch, cancel_after={1: 5})
    assert cut[1][0].shape[0] < full[1][0].shape[0]
    for index in (0, 2, 3):
        assert torch.equal(cut[index][0], full[index][0])
        np.testing.assert_allclose(cut[index][1], full[index][1], atol=1e-5)
    assert engine._slots.in_use == 0


def test_a_reused_slot_starts_with_a_clean_cache_and_window(recorder: Recorder, engine: s1_mini.S1MiniEngine) -> None:
    (fresh, _), = recorder.run([A], slots=[3])
    recorder.run([others(5)[4]], slots=[3])  # a long, multi-segment row leaves the slot dirty
    cache = engine._layers.cache.layers[0]
    assert not cache.keys[3].any() and not cache.values[3].any()  # cleared on release
    (again, _), = recorder.run([A], slots=[3])
    assert torch.equal(again, fresh)


def test_per_row_budget_latency_speed_and_segments_hold_in_a_batch(recorder: Recorder) -> None:
    long_text = "First sentence here. Second one follows. And a third to finish."
    requests = [
        base.SynthesisRequest(text=A.text, seed=1, max_new_tokens=7),
        base.SynthesisRequest(text=A.text, seed=1, max_new_tokens=16, latency="balanced"),
        base.SynthesisRequest(text=A.text, seed=1, max_new_tokens=16, speed=2.0),
        base.SynthesisRequest(text=long_text, seed=2, max_new_tokens=30, chunk_length=25),
        base.SynthesisRequest(text="   ", seed=3),
        base.SynthesisRequest(text=A.text, seed=1, max_new_tokens=16),
    ]  # (A's seed ends A by itself at frame 22: budgets stay below)
    results = recorder.run(requests)
    assert results[0][0].shape[0] == 7 and results[0][1].size == 7 * HOP
    assert results[1][1].size == 16 * HOP
    assert results[2][1].size == pytest.approx(8 * HOP, rel=0.02)  # twice as fast
    assert 0 < results[3][0].shape[0] <= 30 and results[3][1].size == results[3][0].shape[0] * HOP
    assert results[4][1].size == 0
    # same seed and text: the same codes whatever the chunking, stretching or budget
    assert torch.equal(results[1][0], results[5][0]) and torch.equal(results[2][0], results[5][0])
    assert torch.equal(results[0][0], results[5][0][:7])


def test_a_reference_voice_is_the_rows_own(recorder: Recorder) -> None:
    cloned = base.SynthesisRequest(text=A.text, seed=1, max_new_tokens=20, references=(VOICE,))
    plain = base.SynthesisRequest(text=A.text, seed=1, max_new_tokens=20)
    (cloned_alone, _), = recorder.run([cloned])
    (plain_alone, _), = recorder.run([plain])
    batched = recorder.run([plain, cloned])
    assert torch.equal(batched[0][0], plain_alone) and torch.equal(batched[1][0], cloned_alone)
    assert not torch.equal(cloned_alone, plain_alone)


def test_the_end_token_ends_only_its_row(recorder: Recorder, engine: s1_mini.S1MiniEngine) -> None:
    """Random weights rarely sample <|im_end|>, so one row's fifth frame is taken as the end token."""
    (alone, _), = recorder.run([A])
    ender = base.SynthesisRequest(text="End soon.", seed=9, max_new_tokens=40)
    original = engine._take_frame

    def ending(row: stepped.Row, frame: torch.Tensor, end: bool) -> None:
        original(row, frame, end or (row.request is ender and row.state.progress.frames == 4))

    engine._take_frame = ending  # type: ignore[method-assign]
    try:
        results = recorder.run([A, ender])
    finally:
        engine._take_frame = original
    assert results[1][0].shape[0] == 4 and results[1][1].size == 4 * HOP
    assert torch.equal(results[0][0], alone)


def test_noise_depends_only_on_seed_frame_and_draw() -> None:
    counters = s1_sampling.draw_counters(4096, torch.device("cpu"))
    seeds = torch.tensor([s1_sampling.split_seed(seed) for seed in (1, 2, 1, 2**62 + 5)])
    frames = torch.tensor([0, 0, 1, 0])
    noise = s1_sampling.exponential_noise(seeds, frames, counters)
    alone = s1_sampling.exponential_noise(seeds[:1], frames[:1], counters)
    assert torch.equal(noise[:1], alone)  # the same whatever the other rows
    assert not torch.equal(noise[0], noise[1]) and not torch.equal(noise[0], noise[2])
    assert (noise > 0).all() and torch.isfinite(noise).all()
    assert noise.mean().item() == pytest.approx(1.0, abs=0.02)  # Exp(1): mean 1, variance 1
    assert noise.var().item() == pytest.approx(1.0, abs=0.05)


def test_compiled_step_does_not_recompile_under_load(tiny_checkpoint: Path) -> None:
    """Every (batch, span) graph is captured in warm_up; a mixed load afterwards adds none
    (dynamo's error_on_recompile turns a recompile into an error, its counters show no new graph)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    compiled = s1_mini.S1MiniEngine(
        tiny_checkpoint, device="cpu", compile=True, compile_backend="eager", max_batch_size=4, cpu_threads=1
    )
    compiled.load()
    compiled.warm_up()
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= len(compiled._decode.buckets())
    recorder = Recorder(compiled)
    try:
        with torch._dynamo.config.patch(error_on_recompile=True):
            recorder.run([A, *others(3)])  # batches of 4, 3, 2, 1 as rows finish
            recorder.run([base.SynthesisRequest(text=A.text, seed=4, max_new_tokens=1200)])  # a longer span
    finally:
        recorder.close()
    assert counters["stats"]["unique_graphs"] == graphs
    compiled.close()


def test_slot_memory_is_reported_and_checked_against_free_memory(
    engine: s1_mini.S1MiniEngine, caplog: pytest.LogCaptureFixture
) -> None:
    assert engine.slot_bytes == 2 * 2 * 2 * 2560 * 16 * 4  # keys + values, 2 layers, 2 kv heads, float32
    config = s1_checkpoint.S1_MINI_CONFIG
    s1_mini_slot = s1_kvcache.bytes_per_slot(
        layers=config["n_layer"], kv_heads=config["n_local_heads"], max_seq_len=config["max_seq_len"],
        head_dim=config["head_dim"], dtype=torch.bfloat16,
    )  # fmt: skip
    assert s1_mini_slot == 896 * 2**20
    assert s1_kvcache.slots_that_fit(8, slot_bytes=100, free_bytes=1000) == 8
    with caplog.at_level("WARNING"):
        assert s1_kvcache.slots_that_fit(8, slot_bytes=100, free_bytes=450) == 4
    assert "using 4 slots" in caplog.text
    with pytest.raises(base.EngineError, match="needs 0 MiB, but only"):
        s1_kvcache.slots_that_fit(8, slot_bytes=100, free_bytes=50)


def test_slow_per_row_work_runs_off_the_stepping_thread(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Codec decode, reference encoding, time-stretch, prompt building and the size check of a
    request with references would stall every row of a step."""
    import threading

    from voice_inference.engines import s1_codec, s1_prompt, s1_stream

    threads: list[tuple[str, str]] = []

    def spying(name: str, function):  # noqa: ANN001, ANN202
        def spy(*args: object, **kwargs: object):  # noqa: ANN202
            threads.append((name, threading.current_thread().name))
            return function(*args, **kwargs)

        return spy

    monkeypatch.setattr(s1_codec, "decode", spying("decode", s1_codec.decode))
    monkeypatch.setattr(s1_codec, "decode_indices", spying("decode", s1_codec.decode_indices))
    monkeypatch.setattr(s1_codec, "encode_reference", spying("encode", s1_codec.encode_reference))
    monkeypatch.setattr(s1_stream, "time_stretch", spying("stretch", s1_stream.time_stretch))
    monkeypatch.setattr(s1_prompt, "fit", spying("prompt", s1_prompt.fit))
    monkeypatch.setattr(s1_prompt, "estimate_length", spying("size check", s1_prompt.estimate_length))
    voice = base.Reference(key="fresh-voice", audio=s1_support.tone(0.5, 180.0), sample_rate=44_100, text="a new voice")
    recorder.run([
        base.SynthesisRequest(text=A.text, seed=1, max_new_tokens=12, references=(voice,)),
        base.SynthesisRequest(text=A.text, seed=2, max_new_tokens=12, speed=1.5),
    ])  # fmt: skip
    assert {name for name, _ in threads} == {"decode", "encode", "stretch", "prompt", "size check"}
    assert {thread for name, thread in threads if name in ("decode", "encode", "stretch")} == {"s1-audio"}
    assert {thread.split("_")[0] for name, thread in threads if name in ("prompt", "size check")} == {"s1-prompt"}


def test_a_shorter_slot_context_takes_less_memory_and_bounds_prompts(tiny_checkpoint: Path) -> None:
    settings = Settings(
        tts_provider="s1_mini", s1_checkpoint_path=tiny_checkpoint, s1_device="cpu", max_batch_size=2,
        s1_slot_context=1024, s1_cpu_threads=1,
    )  # fmt: skip
    small = create_engine(settings)  # VOICE_S1_SLOT_CONTEXT reaches the engine
    assert isinstance(small, s1_mini.S1MiniEngine)
    small.load()
    try:
        assert small.context == 1024 and small._decode.span_sizes == [128, 256, 512, 1024]
        assert small.slot_bytes == 2 * 2 * 2 * 1024 * 16 * 4
        chatty = base.Reference(key="chatty", audio=s1_support.tone(0.5, 220.0), sample_rate=44_100, text="word " * 250)
        misses = small.reference_cache_misses
        row = small.admit(base.SynthesisRequest(text=A.text, references=(chatty,)), slot=0)
        while not row.done:  # the size is checked on the prompt thread
            small.step([row])
        assert isinstance(row.error, base.RequestTooLarge) and "context of 1024 tokens" in str(row.error)
        assert small.reference_cache_misses == misses  # refused before its voice was encoded
        small.release(row)
        assert small._slots.in_use == 0
    finally:
        small.close()
