"""Streaming audio of the batched S1 Mini engine, made off the stepping thread.

Where it sits: ``s1_mini.S1MiniEngine`` keeps one ``SegmentAudio`` per row and segment (which
frames complete the next chunk, and the codec window to decode for it) and one ``AudioWorker``
for the engine: a thread beside the stepping thread that encodes reference voices, decodes
code windows with the codec and time-stretches segments (``speed``). The stepping thread only
queues work and collects finished chunks, in order, so none of that stalls the rows' steps.

When several rows have a window due at once, the worker decodes those of one padded length
in one codec call (``take_decodes``, ``decode_batch``: the codec is causal, so padding after a
window never changes its samples). ``scripts/bench_batch_engine.py`` measures what that pays.
On CPU every call is padded to a multiple of 8 frames and runs on oneDNN, whose kernels for
each of those shapes are built at warm-up (``warm_up_decode``), and by default the call runs in a
process of its own (``s1_codec_process``), out of the stepping thread's GIL.

Order: a request's first window (its listener has nothing yet) and, once the request has made
its last frame, all its windows still queued (its stream and its slot end with them) are
urgent and decoded before the rest, whose listeners have audio in hand. With at most 2
windows a call (a long call would hold an urgent window back), that took the steps a finished
row waits for its audio from 11.6 to 7.8 on 8 streams (CPU, tiny checkpoint, bench-batch's load).

Chunks of a segment: the first is small (time to first audio), later ones double up to a
limit (``s1_slots.ChunkSchedule``). Each window is decoded together with up to
``context_frames`` frames before it and only the new frames' samples are kept, so consecutive
chunks join up without clicks.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from voice_inference.engines import s1_codec, s1_slots

DECODE_BATCH = 2  # windows per codec call at most: on CPU 2 together save 10-20% (bench-batch-engine), and a short call keeps an urgent window from waiting long behind it
WINDOW_BUCKET_FRAMES = 8  # CPU decode calls are padded to a multiple of this: few shapes for oneDNN


class SegmentAudio:
    """The frames of one segment and the windows of codes their chunks are decoded from."""

    def __init__(self, schedule: s1_slots.ChunkSchedule, *, context_frames: int) -> None:
        self.frames: list[torch.Tensor] = []
        self.context_frames = context_frames
        self._sizes: Iterator[int] = schedule.sizes()
        self._due = next(self._sizes)
        self.emitted = 0  # frames whose window has been handed out

    def push(self, frame: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        """Add one frame (num_codebooks,); when it completes a chunk, the window to decode:
        (codes (num_codebooks, n), frames of left context to drop)."""
        self.frames.append(frame)
        if len(self.frames) - self.emitted < self._due:
            return None
        self._due = next(self._sizes)
        return self._window()

    def flush(self) -> tuple[torch.Tensor, int] | None:
        """The window of the frames not yet handed out (end of segment)."""
        return self._window() if len(self.frames) > self.emitted else None

    def codes(self) -> torch.Tensor:
        """All frames so far, (num_codebooks, frames)."""
        return torch.stack(self.frames, dim=1)

    def _window(self) -> tuple[torch.Tensor, int]:
        start = max(0, self.emitted - self.context_frames)
        window = torch.stack(self.frames[start:], dim=1)
        skip = self.emitted - start
        self.emitted = len(self.frames)
        return window, skip


class _Decode:
    def __init__(self, codes: torch.Tensor, skip: int) -> None:
        self.codes, self.skip = codes, skip
        self.future: concurrent.futures.Future[np.ndarray] = concurrent.futures.Future()


class AudioWorker:
    """One thread for the slow per-row work: codec decode (batched), reference encoding, time-stretch.

    Jobs run in the order they were queued, so a job may wait on the futures of jobs queued
    before it (a segment's time-stretch on its decodes)."""

    def __init__(
        self,
        codec: torch.nn.Module,
        *,
        autocast_dtype: torch.dtype | None,
        decode: Callable[[list[torch.Tensor]], list[np.ndarray]] | None = None,
    ) -> None:
        self.codec = codec
        self.hop = int(codec.frame_length)
        self.autocast_dtype = autocast_dtype
        # ``decode_batch`` with this codec, or the same call in another process (s1_codec_process).
        self._decode_windows = decode or (lambda windows: decode_batch(codec, windows, autocast_dtype=autocast_dtype))
        self.decode_calls = 0  # codec calls made, and windows decoded (for tests and benchmarks)
        self.windows_decoded = 0
        self._jobs: collections.deque[Any] = collections.deque()
        self._urgent: collections.deque[_Decode] = collections.deque()  # decoded before ``_jobs``
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="s1-audio", daemon=True)
        self._thread.start()

    def decode(self, codes: torch.Tensor, skip: int, *, urgent: bool = False) -> concurrent.futures.Future[np.ndarray]:
        """Audio of a window (num_codebooks, n) without its first ``skip`` frames; ``urgent``
        windows are decoded before every other job, in their own order."""
        job = _Decode(codes, skip)
        self._queue(job, self._urgent if urgent else self._jobs)
        return job.future

    def hurry(self, futures: list[concurrent.futures.Future[np.ndarray]]) -> None:
        """Move the queued decodes of these futures to the urgent ones, in their order (a row
        that has ended waits on them). Nothing queued before a job ever waits on a decode moved
        ahead of it, so the order of the other jobs still holds."""
        wanted = set(futures)
        with self._ready:
            moved = [job for job in self._jobs if isinstance(job, _Decode) and job.future in wanted]
            if not moved:
                return
            kept = [job for job in self._jobs if not (isinstance(job, _Decode) and job.future in wanted)]
            self._jobs.clear()
            self._jobs.extend(kept)
            self._urgent.extend(moved)

    def call(self, function: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``function`` on the worker, after everything queued before it."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue((function, future), self._jobs)
        return future

    def close(self) -> None:
        """Stop after the job in progress; queued jobs are cancelled."""
        with self._ready:
            self._closed = True
            jobs = [*self._urgent, *self._jobs]
            self._urgent.clear()
            self._jobs.clear()
            self._ready.notify()
        for job in jobs:
            (job.future if isinstance(job, _Decode) else job[1]).cancel()
        self._thread.join()

    def _queue(self, job: Any, jobs: collections.deque[Any]) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the audio worker is closed")
            jobs.append(job)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._urgent and not self._closed:
                    self._ready.wait()
                if not self._jobs and not self._urgent:
                    return
                batch = take_decodes(self._urgent, DECODE_BATCH) or take_decodes(self._jobs, DECODE_BATCH)
                call = None if batch else self._jobs.popleft()
            if call is None:
                self._decode(batch)
            else:
                function, future = call
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(function())
                    except BaseException as exc:  # the row's failure; the worker goes on
                        future.set_exception(exc)

    def _decode(self, batch: list[_Decode]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            audio = self._decode_windows([job.codes for job in live])
        except BaseException as exc:
            for job in live:
                job.future.set_exception(exc)
            return
        self.decode_calls += 1
        self.windows_decoded += len(live)
        for job, samples in zip(live, audio, strict=True):
            job.future.set_result(samples[job.skip * self.hop :])


def take_decodes(jobs: collections.deque[Any], limit: int) -> list[_Decode]:
    """The next codec call's windows, taken out of ``jobs``: the first job when it is a decode,
    with up to ``limit - 1`` more of the decodes queued right behind it that pad to the same
    length; the others stay queued, in order, for the next call. Padded to the longest, a
    40-frame window beside three of 8 would decode 160 frames for 64 (bench-batch, CPU, 8
    streams: 17.2-17.6 audio s/s, from 15.2-16.0). Never past a job that is not a decode: a
    time-stretch queued later waits on the decodes before it, and they are all taken first."""
    if not jobs or not isinstance(jobs[0], _Decode):
        return []
    first = jobs.popleft()
    length = bucket_frames(first.codes.shape[1])
    batch, kept = [first], []
    while jobs and isinstance(jobs[0], _Decode) and len(batch) < limit:
        job = jobs.popleft()
        (batch if bucket_frames(job.codes.shape[1]) == length else kept).append(job)
    jobs.extendleft(reversed(kept))
    return batch


def decode_batch(
    codec: torch.nn.Module, windows: list[torch.Tensor], *, autocast_dtype: torch.dtype | None
) -> list[np.ndarray]:
    """Audio of several windows (num_codebooks, n_i) in one codec call.

    On CPU the call is padded to a multiple of ``WINDOW_BUCKET_FRAMES`` and runs on oneDNN's
    kernels, built for each (windows, length) shape by ``warm_up_decode``; elsewhere one window
    alone is ``s1_codec.decode``."""
    device = next(codec.parameters()).device
    cpu = device.type == "cpu"
    if len(windows) == 1 and not cpu:
        return [s1_codec.decode(codec, windows[0], autocast_dtype=autocast_dtype)]
    longest = max(window.shape[1] for window in windows)
    length = bucket_frames(longest) if cpu else longest
    indices = torch.zeros((len(windows), windows[0].shape[0], length), dtype=torch.long, device=device)
    for row, window in enumerate(windows):
        indices[row, :, : window.shape[1]] = window.to(device)
    audio = s1_codec.decode_indices(codec, indices, autocast_dtype=autocast_dtype, onednn=cpu)
    hop = int(codec.frame_length)
    return [audio[row, : window.shape[1] * hop] for row, window in enumerate(windows)]


def bucket_frames(frames: int) -> int:
    """The padded length of a CPU decode call: the next multiple of ``WINDOW_BUCKET_FRAMES``."""
    return -(-frames // WINDOW_BUCKET_FRAMES) * WINDOW_BUCKET_FRAMES


def warm_up_decode(codec: torch.nn.Module, num_codebooks: int, longest: int) -> int:
    """On CPU, one decode call at every shape the streamed decode makes with windows up to
    ``longest`` frames (1 to ``DECODE_BATCH`` windows, each bucket), so oneDNN builds its
    kernels before the server is ready, not under a stream. Returns the shapes warmed."""
    if next(codec.parameters()).device.type != "cpu":
        return 0
    shapes = 0
    for rows in range(1, DECODE_BATCH + 1):
        for length in range(WINDOW_BUCKET_FRAMES, bucket_frames(longest) + 1, WINDOW_BUCKET_FRAMES):
            decode_batch(codec, [torch.zeros((num_codebooks, length), dtype=torch.long)] * rows, autocast_dtype=None)
            shapes += 1
    return shapes


def time_stretch(audio: np.ndarray, speed: float) -> np.ndarray:
    """``speed`` times faster at the same pitch (librosa's phase vocoder; librosa comes with the codec)."""
    import librosa

    return librosa.effects.time_stretch(audio, rate=speed).astype(np.float32)
