"""The streamed codec decode on CPU (``s1_stream.decode_batch``): windows are padded to a few
lengths and run on oneDNN's kernels, which are built for each shape at warm-up, so no stream
pays for building them. Padding never changes a window's samples (the codec is causal). The
audio worker decodes a request's first and last windows before the others."""

from __future__ import annotations

import collections
import threading
from pathlib import Path

import numpy as np
import pytest

from tests import s1_support

s1_support.require_engine()

import torch  # noqa: E402
from voice_inference.engines import base, s1_codec, s1_mini, s1_stream  # noqa: E402

pytestmark = pytest.mark.s1


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> s1_mini.S1MiniEngine:
    loaded = s1_mini.S1MiniEngine(tiny_checkpoint, device="cpu", max_batch_size=4, cpu_threads=1)
    loaded.load()
    return loaded


def _record_decode_shapes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, bool]]:
    """(windows, frames, oneDNN) of every codec decode call from now on."""
    shapes: list[tuple[int, int, bool]] = []
    original = s1_codec.decode_indices

    def recording(codec: torch.nn.Module, indices: torch.Tensor, **options: object) -> np.ndarray:
        shapes.append((indices.shape[0], indices.shape[-1], bool(options.get("onednn"))))
        return original(codec, indices, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(s1_codec, "decode_indices", recording)
    return shapes


def test_a_padded_window_keeps_its_samples(engine: s1_mini.S1MiniEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    codebooks = engine.model.config.num_codebooks
    window = torch.randint(0, 100, (codebooks, 13), generator=torch.Generator().manual_seed(5))
    plain = s1_codec.decode(engine.codec, window)  # PyTorch's own kernels, no padding
    shapes = _record_decode_shapes(monkeypatch)
    [padded] = s1_stream.decode_batch(engine.codec, [window], autocast_dtype=None)
    assert shapes == [(1, 16, True)], "one call, padded to the next multiple of 8 frames, on oneDNN"
    assert padded.shape == plain.shape == (13 * int(engine.codec.frame_length),)
    # The same samples up to the two backends' float rounding.
    np.testing.assert_allclose(padded, plain, atol=1e-4 * max(1.0, float(np.abs(plain).max())))


def test_warm_up_builds_every_shape_a_streaming_load_decodes(
    engine: s1_mini.S1MiniEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes = _record_decode_shapes(monkeypatch)
    engine.warm_up()
    warmed = set(shapes)
    buckets = s1_stream.bucket_frames(s1_mini.CODEC_CONTEXT_FRAMES + s1_mini.MAX_CHUNK_FRAMES) // s1_stream.WINDOW_BUCKET_FRAMES
    assert warmed == {(rows, frames * s1_stream.WINDOW_BUCKET_FRAMES, True)
                      for rows in range(1, s1_stream.DECODE_BATCH + 1) for frames in range(1, buckets + 1)}  # fmt: skip
    shapes.clear()
    calls: list[list[int]] = []  # the windows' own lengths, each codec call of the audio worker
    batched = s1_stream.decode_batch

    def recording(codec: torch.nn.Module, windows: list[torch.Tensor], **options: object) -> list[np.ndarray]:
        calls.append([window.shape[1] for window in windows])
        return batched(codec, windows, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(s1_stream, "decode_batch", recording)

    # Four rows decoding together, at both latencies: windows of every size, alone and batched.
    rows = [
        engine.admit(base.SynthesisRequest(text="Warm shapes only, please.", seed=seed, max_new_tokens=90,
                                           latency="balanced" if seed % 2 else "normal"), slot=seed)  # fmt: skip
        for seed in range(4)
    ]
    # The audio worker is held for the first 12 steps, so the rows' first windows wait together.
    entered, gate = threading.Event(), threading.Event()
    engine._audio.call(lambda: (entered.set(), gate.wait(60)))
    assert entered.wait(60)
    start = engine.steps
    try:
        while not all(row.done for row in rows):
            engine.step([row for row in rows if not row.done])
            if engine.steps - start >= 12:
                gate.set()
    finally:
        gate.set()
        for row in rows:
            engine.release(row)
    assert all(row.error is None for row in rows), [row.error for row in rows]
    assert any(count > 1 for count, _, _ in shapes), "windows were decoded together"
    assert set(shapes) <= warmed, f"shapes built under load: {set(shapes) - warmed}"
    assert all(len({s1_stream.bucket_frames(n) for n in call}) == 1 for call in calls), f"windows padded to another's length: {calls}"


def _decode(frames: int) -> s1_stream._Decode:
    return s1_stream._Decode(torch.zeros((2, frames), dtype=torch.long), skip=0)


def test_a_codec_call_takes_the_queued_windows_of_one_padded_length() -> None:
    first, longer, same, later = _decode(16), _decode(40), _decode(13), _decode(16)
    call = (lambda: None, None)  # a time-stretch, say: it may wait on every decode before it
    jobs = collections.deque([first, longer, same, call, later])
    assert s1_stream.take_decodes(jobs, limit=4) == [first, same]  # 13 frames pad to 16 as well
    assert list(jobs) == [longer, call, later], "the others stay queued in order, none past the call"
    assert s1_stream.take_decodes(jobs, limit=4) == [longer]
    assert s1_stream.take_decodes(jobs, limit=4) == [] and list(jobs) == [call, later]


def test_a_codec_call_takes_at_most_its_limit_and_the_oldest_first() -> None:
    windows = [_decode(24) for _ in range(6)]
    jobs = collections.deque(windows)
    assert s1_stream.take_decodes(jobs, limit=4) == windows[:4]
    assert list(jobs) == windows[4:]


def test_a_requests_first_and_last_windows_are_decoded_before_the_others(engine: s1_mini.S1MiniEngine) -> None:
    """The first window (its listener has no audio yet) is urgent; ``hurry`` moves an ended
    request's queued windows up; a call still runs after the decodes queued before it."""
    calls: list[list[int]] = []

    def recording(windows: list[torch.Tensor]) -> list[np.ndarray]:
        calls.append([window.shape[1] for window in windows])
        return s1_stream.decode_batch(engine.codec, windows, autocast_dtype=None)

    worker = s1_stream.AudioWorker(engine.codec, autocast_dtype=None, decode=recording)
    entered, gate = threading.Event(), threading.Event()
    try:
        worker.call(lambda: (entered.set(), gate.wait(60)))  # holds the worker while its queue fills
        assert entered.wait(60)
        codes = engine.model.config.num_codebooks
        middle = worker.decode(torch.zeros((codes, 24), dtype=torch.long), 8)
        ending = worker.decode(torch.zeros((codes, 40), dtype=torch.long), 8)
        stretch = worker.call(lambda: middle.result().size)  # waits on a decode queued before it
        first = worker.decode(torch.zeros((codes, 8), dtype=torch.long), 0, urgent=True)
        worker.hurry([ending])
        gate.set()
        assert stretch.result(timeout=60) == 16 * int(engine.codec.frame_length)
        assert first.done() and ending.done()
        assert calls == [[8], [40], [24]]
    finally:
        gate.set()
        worker.close()
