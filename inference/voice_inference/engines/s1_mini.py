"""The S1 Mini engine: OpenAudio S1 Mini through fish-speech's model classes, batched over slots.

Where it sits: ``engines.create_engine`` builds it for ``VOICE_TTS_PROVIDER=s1_mini``; the
scheduler drives it as a ``stepped.SteppedEngine`` on its one engine thread (``load``,
``warm_up``, then ``admit`` / ``step`` / ``release``). This module is orchestration; the parts:

- ``s1_slots``: each row's phase (references, prompt, chunked prefill, decode, drain), pure Python;
- ``s1_prompt``: one prompt per text segment (reference voices, the previous segment as context);
- ``s1_kvcache`` + ``s1_layers``: a slot-major KV cache and forward passes with per-row positions;
- ``s1_batch`` + ``s1_sampling``: the batched decode step with per-row parameters and noise;
- ``s1_stream``: chunk schedule, and a worker thread for codec decode, references and time-stretch;
- ``s1_codec_process``: on CPU, the streamed decode in a process of its own, out of our GIL;
- ``s1_load``, ``s1_codec``, ``s1_checkpoint``: loading the model and the codec, the checkpoint layout.

Each step: rows whose references are encoded get their next segment's prompt (built on a
thread of its own, as reference encoding, codec decode and time-stretch are); at most
``prefill_chunk`` prompt tokens are prefilled (chunked prefill: a joining row delays the
running ones by one chunk per step at most, ``scripts/bench_batch_engine.py`` measures it); then
every decoding row advances one frame in one batched step; finished audio is handed to each
row in order. A row leaves at once on ``release``, and its slot's cache is cleared.

S1 Mini has no speaking-rate control, so ``speed`` other than 1 time-stretches each segment's
audio (a phase vocoder: pitch is kept); such requests stream per segment, not per frame group.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from fish_speech.models.text2semantic import llama

from voice_inference import textsplit
from voice_inference.engines import (
    base,
    s1_batch,
    s1_checkpoint,
    s1_codec,
    s1_codec_process,
    s1_kvcache,
    s1_layers,
    s1_load,
    s1_prompt,
    s1_slots,
    s1_stream,
    stepped,
)

log = logging.getLogger(__name__)

CODEC_CONTEXT_FRAMES = 8  # earlier frames decoded with each streamed group, so chunks join up
MAX_CHUNK_FRAMES = 64  # streamed groups grow to this (about 3 s of audio)
MIN_CACHE_BUCKET = 1024  # smallest attention span when compiled; spans double up to the slot's context
EAGER_MIN_CACHE_BUCKET = 128  # uncompiled, a span costs no graph: short rows read 128 positions, not 1024
PREFILL_CHUNK = 256  # prompt tokens prefilled per step, over all joining rows
IDLE_WAIT_S = 0.05  # a step with only audio to wait for blocks at most this long
GPU_MEMORY_HEADROOM = 0.85  # share of free GPU memory the slots' KV cache may take


@dataclasses.dataclass(eq=False)
class _RowState:
    """The engine's state of one row (``stepped.Row.state``)."""

    progress: s1_slots.RowProgress
    schedule: s1_slots.ChunkSchedule
    speed: float
    references: list[s1_prompt.Turn] | None = None
    pending_check: concurrent.futures.Future[None] | None = None  # the prompt's size, before the references
    pending_references: concurrent.futures.Future[list[s1_prompt.Turn]] | None = None
    pending_prompt: concurrent.futures.Future[tuple[torch.Tensor, int]] | None = None
    previous: s1_prompt.Turn | None = None
    prompt: torch.Tensor | None = None  # the current segment's prompt, on the device
    audio: s1_stream.SegmentAudio | None = None
    held: list[concurrent.futures.Future[np.ndarray]] = dataclasses.field(default_factory=list)  # speed != 1
    outputs: collections.deque[concurrent.futures.Future[np.ndarray]] = dataclasses.field(
        default_factory=collections.deque
    )
    used: int = 0  # cache positions this row has written
    queued: bool = False  # a window of this row has gone to the audio worker


def default_cpu_threads() -> int:
    """Torch threads on CPU when ``VOICE_S1_CPU_THREADS`` is 0: half the CPUs this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) // 2)


class S1MiniEngine(stepped.SteppedEngine):
    name = "s1_mini"
    sample_rate = 44_100  # replaced by the codec's own rate on load

    def __init__(
        self,
        checkpoint_path: Path,
        *,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
        stream_frames: int = 8,
        reference_cache_size: int = 32,
        cpu_threads: int = 0,
        compile_backend: str = "inductor",
        max_batch_size: int = 8,
        prefill_chunk: int = PREFILL_CHUNK,
        slot_context: int = 0,
        codec_process: bool = False,
    ) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.device_setting = device
        self.precision_setting = precision
        self.compile = compile
        self.compile_backend = compile_backend  # tests trace with "eager" to check for graph breaks
        self.stream_frames = stream_frames
        self.reference_cache_size = reference_cache_size
        self.cpu_threads = cpu_threads
        self.max_batch_size = max_batch_size  # may shrink in load() to what GPU memory holds
        self.prefill_chunk = prefill_chunk
        self.slot_context = slot_context  # cache positions per slot; 0: the model's whole context
        self.codec_process = codec_process  # on CPU, the streamed decode in a process of its own
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.model: llama.DualARTransformer | None = None
        self.codec: torch.nn.Module | None = None
        self.context = 0  # positions per slot
        self.slot_bytes = 0  # KV cache bytes per slot
        self._layers: s1_layers.BatchedLayers | None = None
        self._state: s1_kvcache.SlotState | None = None
        self._decode: s1_batch.DecodeStep | None = None
        self._audio: s1_stream.AudioWorker | None = None
        self._codec_process: s1_codec_process.CodecProcess | None = None
        self._prompts: concurrent.futures.ThreadPoolExecutor | None = None  # prompts, off the stepping thread
        self._slots = s1_slots.SlotTable(max_batch_size)
        self._references: collections.OrderedDict[tuple[str, str], torch.Tensor] = collections.OrderedDict()
        self._references_lock = threading.Lock()  # the audio worker and direct callers share the cache
        self.reference_cache_hits = 0
        self.reference_cache_misses = 0
        self.steps = 0  # batched decode steps taken, and the rows of the last one (tests, benchmarks)
        self.last_step_rows = 0

    # Loading ------------------------------------------------------------------------------

    def load(self) -> None:
        path = self.checkpoint_path
        s1_checkpoint.require_files(path)
        self.device = s1_load.select_device(self.device_setting)
        self.dtype = s1_load.select_precision(self.precision_setting, self.device)
        if self.device.type == "cpu":
            # Process-wide, and the server process is ours. The stepping thread (the decoder) and the
            # audio thread (the codec) run torch ops at once, so by default each gets half the CPUs:
            # torch's own default, all of them each, oversubscribes (on 2 cores, 3.2x instead of
            # 3.8x the batch-1 throughput at 8 streams, bench-batch).
            torch.set_num_threads(self.cpu_threads or default_cpu_threads())
        started = time.perf_counter()
        if self.codec_process and self.device.type == "cpu":  # it loads the codec while we load the model
            self._codec_process = s1_codec_process.CodecProcess(path / "codec.pth", threads=torch.get_num_threads())
        try:
            self._load_parts(path, started)
        except BaseException:
            if self._codec_process is not None:
                self._codec_process.close()
                self._codec_process = None
            raise

    def _load_parts(self, path: Path, started: float) -> None:
        model = s1_load.load_model(path, self.device, self.dtype)
        codec = s1_codec.load_codec(path / "codec.pth", self.device)
        s1_load.check_agreement(model, codec, path)
        config = model.config
        # A slot holds the whole context unless told less: S1 Mini's 8192 positions take 896 MiB
        # per slot in bfloat16, so half the context fits twice the slots.
        self.context = min(self.slot_context or config.max_seq_len, config.max_seq_len)
        self.slot_bytes = s1_kvcache.bytes_per_slot(
            layers=config.n_layer, kv_heads=config.n_local_heads, max_seq_len=self.context,
            head_dim=config.head_dim, dtype=self.dtype,
        )  # fmt: skip
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            self.max_batch_size = s1_kvcache.slots_that_fit(
                self.max_batch_size, slot_bytes=self.slot_bytes, free_bytes=int(free * GPU_MEMORY_HEADROOM)
            )
        self._slots = s1_slots.SlotTable(self.max_batch_size)
        cache = s1_kvcache.SlotKVCache(
            layers=config.n_layer, slots=self.max_batch_size, kv_heads=config.n_local_heads,
            max_seq_len=self.context, head_dim=config.head_dim, dtype=self.dtype,
        ).to(self.device)  # fmt: skip
        self._state = s1_kvcache.SlotState(slots=self.max_batch_size, rows=config.num_codebooks + 1, device=self.device)
        self._layers = s1_layers.BatchedLayers(model, cache)
        # Each (batch, span) bucket is a graph when compiled, so spans start at 1024 there. Eager,
        # a shorter span reads less of the cache: 8 rows at 100 positions step in 11.9 ms at a
        # 128 span, 13.4 ms at 1024 (tiny checkpoint, CPU).
        shortest = MIN_CACHE_BUCKET if self.compile else EAGER_MIN_CACHE_BUCKET
        self._decode = s1_batch.DecodeStep(
            self._layers, self._state, residual_codes=codec.quantizer.quantizer.codebook_size,
            batch_sizes=s1_slots.bucket_sizes(1, self.max_batch_size),
            span_sizes=s1_slots.bucket_sizes(min(shortest, self.context), self.context),
        )  # fmt: skip
        if self.compile:
            self._decode.compile(backend=self.compile_backend)
        self.model, self.codec = model, codec
        self.sample_rate = int(codec.sample_rate)
        autocast = self.dtype if self.device.type == "cuda" and self.dtype != torch.float32 else None
        if self._codec_process is not None:
            self._codec_process.wait_ready()
        decode = self._codec_process.decode if self._codec_process is not None else None
        self._audio = s1_stream.AudioWorker(codec, autocast_dtype=autocast, decode=decode)
        self._prompts = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="s1-prompt")
        log.info(
            "loaded S1 Mini from %s on %s (%s%s) in %.1f s: %d slots, KV cache %.1f MiB per slot",
            path, self.device, str(self.dtype).removeprefix("torch."), ", compiled" if self.compile else "",
            time.perf_counter() - started, self.max_batch_size, self.slot_bytes / 2**20,
        )  # fmt: skip

    def warm_up(self) -> None:
        """One short synthesis; on CPU, the codec's decode at every padded window shape (on the
        audio thread, where it runs); when compiled, also one step at every (batch, span) bucket,
        so each kernel, graph (and CUDA graph) exists before the server reports ready."""
        super().warm_up()
        assert self._audio is not None and self.codec is not None and self.model is not None
        chunk = max(self._chunk_schedule(latency).longest for latency in ("normal", "balanced"))
        longest = CODEC_CONTEXT_FRAMES + chunk  # the longest window a stream decodes
        codec, codebooks = self.codec, self.model.config.num_codebooks
        if self._codec_process is not None:
            shapes = self._codec_process.warm_up(codebooks, longest)
        else:
            shapes = self._audio.call(lambda: s1_stream.warm_up_decode(codec, codebooks, longest)).result()
        if shapes:
            log.info("warmed the codec's decode at %d window shapes", shapes)
        if not self.compile:
            return
        assert self._decode is not None
        for size, span in self._decode.buckets():
            self._decode.capture(size, span)
        log.info("compiled decode steps for %d (batch, span) buckets", len(self._decode.buckets()))

    def _chunk_schedule(self, latency: str) -> s1_slots.ChunkSchedule:
        """A segment's streamed chunks: ``balanced`` starts with a quarter of the first chunk."""
        first = max(1, self.stream_frames // 4) if latency == "balanced" else self.stream_frames
        return s1_slots.ChunkSchedule(first=first, then=self.stream_frames * 2, largest=MAX_CHUNK_FRAMES)

    def close(self) -> None:
        if self._audio is not None:
            self._audio.close()
        if self._prompts is not None:
            self._prompts.shutdown(wait=True, cancel_futures=True)
        if self._codec_process is not None:
            self._codec_process.close()
        self.model = self.codec = self._layers = self._state = self._decode = self._audio = self._codec_process = None
        self._references.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # Rows -----------------------------------------------------------------------------------

    def admit(self, request: base.SynthesisRequest, slot: int) -> stepped.Row:
        if self.model is None or self._state is None or self._audio is None or self._prompts is None:
            raise base.EngineError("s1_mini engine used before load()")
        text = textsplit.normalize_text(request.text) if request.normalize else request.text
        segments = textsplit.split_text(text, request.chunk_length) if text.strip() else []
        self._slots.take(slot)
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        self._state.admit(
            slot, seed=seed, temperature=request.temperature, top_p=request.top_p,
            repetition_penalty=request.repetition_penalty,
        )  # fmt: skip
        state = _RowState(
            progress=s1_slots.RowProgress(segments, request.max_new_tokens or None, self.prefill_chunk),
            schedule=self._chunk_schedule(request.latency),
            speed=request.speed,
        )
        row = stepped.Row(request, slot, state=state)
        if segments and request.references:
            # Encoding the prompt to check its size takes 5-10 ms: on the prompt thread, not here,
            # and before the references are encoded, so a request that cannot fit costs no codec time.
            state.progress.phase = s1_slots.Phase.REFERENCES
            state.pending_check = self._prompts.submit(self._check_length, request.references, segments[0])
        else:
            state.references = []
            self._prepare(row)  # the first prompt is built while the row waits; it checks the size itself
        return row

    def _check_length(self, references: tuple[base.Reference, ...], segment: str) -> None:
        """Raise ``RequestTooLarge`` when the first segment's prompt with these references cannot fit."""
        assert self.model is not None and self.codec is not None
        length = s1_prompt.estimate_length(
            self.model, references, segment, hop=int(self.codec.frame_length), sample_rate=self.sample_rate
        )
        if length + 1 >= self.context:
            raise s1_prompt.too_large(length, self.context)

    def release(self, row: stepped.Row) -> None:
        state: _RowState = row.state
        for future in [*state.outputs, *state.held]:
            future.cancel()
        for pending in (state.pending_check, state.pending_references, state.pending_prompt):
            if pending is not None:
                pending.cancel()
        if self._layers is not None and state.used:
            self._layers.cache.clear(row.slot, state.used)
        self._slots.free(row.slot)

    def step(self, rows: Sequence[stepped.Row]) -> None:
        assert self._layers is not None and self._decode is not None
        for row in rows:
            self._guarded(row, self._prepare)
        worked = self._prefill([row for row in rows if _phase(row) == s1_slots.Phase.PREFILL])
        decoding = [row for row in rows if _phase(row) == s1_slots.Phase.DECODE]
        if decoding:
            self._decode_step(decoding)
        elif not worked:
            _wait_for_any(rows)
        for row in rows:
            self._guarded(row, self._collect)

    def _guarded(self, row: stepped.Row, work) -> None:  # noqa: ANN001
        """A failure of one row's own work (its references, its prompt, its audio) ends that row only."""
        if row.done:
            return
        try:
            work(row)
        except Exception as exc:
            row.fail(exc)

    def _prepare(self, row: stepped.Row) -> None:
        """Host-side phase changes: encoded references arrive; the next segment's prompt is built."""
        state: _RowState = row.state
        progress = state.progress
        if progress.phase == s1_slots.Phase.REFERENCES:
            if state.pending_check is not None:
                if not state.pending_check.done():
                    return
                state.pending_check.result()  # RequestTooLarge ends the row (``_guarded``)
                state.pending_check = None
                state.pending_references = self._encode_references(row.request.references)
            assert state.pending_references is not None
            if not state.pending_references.done():
                return
            state.references = state.pending_references.result()
            state.pending_references = None
            progress.phase = s1_slots.Phase.PROMPT
        if progress.phase != s1_slots.Phase.PROMPT:
            return
        assert self.model is not None and self._state is not None and self._prompts is not None
        if state.pending_prompt is None:  # built on its own thread: tokenizing would hold up the step
            segment = progress.segments[progress.segment + 1]
            state.pending_prompt = self._prompts.submit(
                s1_prompt.fit, self.model, state.references, state.previous, segment, self.context
            )
        if not state.pending_prompt.done():
            return
        prompt, room = state.pending_prompt.result()
        state.pending_prompt = None
        progress.start_segment(prompt.shape[1], room)
        state.prompt = prompt.to(self.device)
        state.audio = s1_stream.SegmentAudio(state.schedule, context_frames=CODEC_CONTEXT_FRAMES)
        self._state.start_segment(
            row.slot, last_column=state.prompt[:, -1], position=progress.position, draws=progress.draws
        )
        state.used = max(state.used, progress.prompt_length)

    def _prefill(self, rows: list[stepped.Row]) -> bool:
        """Write at most ``prefill_chunk`` prompt tokens into the cache, first come first served."""
        assert self._layers is not None
        budget = self.prefill_chunk
        for row in rows:
            progress = row.state.progress
            start, end = progress.next_prefill()
            end = min(end, start + budget)
            slot = torch.tensor([row.slot], device=self.device)
            positions = torch.arange(start, end, device=self.device)[None]
            with torch.inference_mode():
                self._layers.slow(row.state.prompt[None, :, start:end], positions, slot, end)
            progress.prefilled_to(end)
            budget -= end - start
            if budget <= 0:
                break
        return bool(rows)

    def _decode_step(self, rows: list[stepped.Row]) -> None:
        assert self._decode is not None and self._layers is not None
        span = max(row.state.progress.position for row in rows) + 1
        frames = self._decode.run([row.slot for row in rows], span)
        self.steps += 1
        self.last_step_rows = len(rows)
        im_end = self._layers.im_end
        for row, frame in zip(rows, frames, strict=True):
            self._guarded(row, lambda row, frame=frame: self._take_frame(row, frame, int(frame[0]) == im_end))

    def _take_frame(self, row: stepped.Row, frame: torch.Tensor, end: bool) -> None:
        state: _RowState = row.state
        progress = state.progress
        assert state.audio is not None and self._audio is not None
        state.used = max(state.used, progress.position + 1)
        if progress.frame(end=end):
            window = state.audio.push(frame[1:])
            if window is not None:
                self._queue_audio(state, window)
        if progress.phase == s1_slots.Phase.DECODE:
            return
        tail = state.audio.flush()  # the segment is over
        last = progress.phase == s1_slots.Phase.DRAIN
        if last:  # the stream (and the slot) now ends when its audio does: its windows go first
            self._audio.hurry([*state.outputs, *state.held])
        if tail is not None:
            self._queue_audio(state, tail, urgent=last)
        if state.held:
            held, speed = state.held, state.speed
            state.held = []
            state.outputs.append(
                self._audio.call(lambda: s1_stream.time_stretch(np.concatenate([f.result() for f in held]), speed))
            )
        if state.audio.frames and row.request.condition_on_previous:
            state.previous = (progress.text, state.audio.codes())

    def _queue_audio(self, state: _RowState, window: tuple[torch.Tensor, int], *, urgent: bool = False) -> None:
        """Queue a window's decode. The request's first window (its listener has no audio yet) and
        its last (the slot and the stream end with it) go before the others, whose listeners have
        audio in hand."""
        assert self._audio is not None
        future = self._audio.decode(*window, urgent=urgent or not state.queued)
        state.queued = True
        (state.outputs if state.speed == 1.0 else state.held).append(future)

    def _collect(self, row: stepped.Row) -> None:
        """Hand the row its finished audio, in order; it is done once nothing more can come."""
        state: _RowState = row.state
        while state.outputs and state.outputs[0].done():
            chunk = state.outputs.popleft().result()
            if chunk.size:
                row.chunks.append(chunk)
        if state.progress.phase == s1_slots.Phase.DRAIN and not state.outputs and not state.held:
            state.progress.phase = s1_slots.Phase.DONE
            row.done = True

    # Reference voices ---------------------------------------------------------------------

    def _encode_references(self, references: tuple[base.Reference, ...]) -> concurrent.futures.Future[list[s1_prompt.Turn]]:
        """The references' (transcript, codes) turns, encoded on the audio worker."""
        assert self._audio is not None
        return self._audio.call(lambda: [(ref.text, self.reference_codes(ref)) for ref in references])

    def reference_codes(self, reference: base.Reference) -> torch.Tensor:
        """The codec's codes for a reference voice, from the LRU cache when seen before."""
        assert self.codec is not None
        key = (reference.key, s1_codec.audio_digest(reference.audio, reference.sample_rate))
        with self._references_lock:
            codes = self._references.get(key)
            if codes is not None:
                self._references.move_to_end(key)
                self.reference_cache_hits += 1
                return codes
            self.reference_cache_misses += 1
        codes = s1_codec.encode_reference(self.codec, reference.audio, reference.sample_rate)
        if self.reference_cache_size > 0:
            with self._references_lock:
                self._references[key] = codes
                while len(self._references) > self.reference_cache_size:
                    self._references.popitem(last=False)
        return codes


def _phase(row: stepped.Row) -> s1_slots.Phase:
    return s1_slots.Phase.DONE if row.done else row.state.progress.phase


def _wait_for_any(rows: Sequence[stepped.Row]) -> None:
    """Nothing to compute this step: block until some row's references or audio are ready."""
    pending = [future for row in rows if not row.done for future in _awaited(row.state)]
    if pending:
        concurrent.futures.wait(pending, timeout=IDLE_WAIT_S, return_when=concurrent.futures.FIRST_COMPLETED)


def _awaited(state: _RowState) -> list[concurrent.futures.Future]:
    for pending in (state.pending_check, state.pending_references, state.pending_prompt):
        if pending is not None:
            return [pending]
    return list(state.outputs)[:1]
