"""The S1 Mini engine: OpenAudio S1 Mini through fish-speech's model classes, with our own serving loop.

Where it sits: ``engines.create_engine`` builds it for ``VOICE_TTS_PROVIDER=s1_mini``; the
scheduler (``voice_inference.scheduler``) calls ``load``, ``warm_up`` and ``generate`` on its one
engine thread. From fish-speech we import only model code: ``DualARTransformer`` (text ->
semantic tokens), the modded DAC codec (tokens <-> audio), ``FishTokenizer`` and
``ContentSequence`` (the prompt format). The loop around them is ours:

- text is split into segments (``textsplit``); each segment is one prompt (reference voices,
  then the previous segment as context so the voice stays the same, then the segment's text);
- frames are sampled one at a time (``s1_sampling.FrameSampler``, optionally compiled) with the
  request's own ``torch.Generator``, and decoded by the codec in small groups
  (``s1_codec.StreamingDecoder``), so audio leaves after a few frames, not after the segment;
- ``cancelled`` is checked before every frame;
- reference voices are encoded by the codec once and kept in a bounded LRU cache keyed by the
  voice key (stored voice id or inline content hash) and a hash of the audio.

S1 Mini has no speaking-rate control, so ``speed`` other than 1 time-stretches each segment's
audio (a phase vocoder: pitch is kept); such requests stream per segment, not per frame group.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from fish_speech import content_sequence
from fish_speech.models.text2semantic import llama
from fish_speech.tokenizer import FishTokenizer

from voice_inference import textsplit
from voice_inference.engines import base, s1_checkpoint, s1_codec, s1_sampling

log = logging.getLogger(__name__)

CODEC_CONTEXT_FRAMES = 8  # earlier frames decoded with each streamed group, so chunks join up
MAX_CHUNK_FRAMES = 64  # streamed groups grow to this (about 3 s of audio)
MIN_CACHE_BUCKET = 1024  # smallest attention span; spans double up to the model's max_seq_len
COMPILE_MODES = {"cuda": "reduce-overhead", "cpu": None}  # reduce-overhead = CUDA graphs

PRECISIONS = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def select_device(setting: str) -> torch.device:
    """``auto`` is CUDA when present; asking for CUDA without it is an error, not a fallback."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise base.EngineError("VOICE_S1_DEVICE=cuda, but CUDA is not available (torch sees no GPU)")
    if setting not in ("cuda", "cpu"):
        raise base.EngineError(f"unknown VOICE_S1_DEVICE {setting!r}")
    return torch.device(setting)


def select_precision(setting: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on GPUs that support it (float16 on older ones), float32 on CPU."""
    if setting == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if setting not in PRECISIONS:
        raise base.EngineError(f"unknown VOICE_S1_PRECISION {setting!r}")
    return PRECISIONS[setting]


class S1MiniEngine(base.Engine):
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
    ) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.device_setting = device
        self.precision_setting = precision
        self.compile = compile
        self.compile_backend = compile_backend  # tests trace with "eager" to check for graph breaks
        self.stream_frames = stream_frames
        self.reference_cache_size = reference_cache_size
        self.cpu_threads = cpu_threads
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.model: llama.DualARTransformer | None = None
        self.codec: torch.nn.Module | None = None
        self._sampler: s1_sampling.FrameSampler | None = None
        self._step: Callable[..., torch.Tensor] | None = None  # the sampler, or its compiled form
        self._cache: _CacheBuckets | None = None
        self._references: collections.OrderedDict[tuple[str, str], torch.Tensor] = collections.OrderedDict()
        self.reference_cache_hits = 0
        self.reference_cache_misses = 0

    # Loading ------------------------------------------------------------------------------

    def load(self) -> None:
        path = self.checkpoint_path
        s1_checkpoint.require_files(path)
        self.device = select_device(self.device_setting)
        self.dtype = select_precision(self.precision_setting, self.device)
        if self.device.type == "cpu" and self.cpu_threads:
            # Process-wide, and the server process is ours. A small model's steps are tiny ops, where
            # more threads mostly add synchronisation (badly so on a busy machine).
            torch.set_num_threads(self.cpu_threads)
        started = time.perf_counter()

        model = self._load_model(path)
        codec = s1_codec.load_codec(path / "codec.pth", self.device)
        _check_agreement(model, codec, path)
        self.model, self.codec = model, codec
        self._cache = _CacheBuckets(model)
        self.sample_rate = int(codec.sample_rate)
        self._sampler = s1_sampling.FrameSampler(model, residual_codes=codec.quantizer.quantizer.codebook_size)
        self._step = self._sampler.__call__
        if self.compile:
            self._step = torch.compile(
                self._sampler.__call__,
                backend=self.compile_backend,
                mode=COMPILE_MODES[self.device.type] if self.compile_backend == "inductor" else None,
                fullgraph=True,
            )
        log.info(
            "loaded S1 Mini from %s on %s (%s%s) in %.1f s",
            path, self.device, str(self.dtype).removeprefix("torch."), ", compiled" if self.compile else "",
            time.perf_counter() - started,
        )  # fmt: skip

    def _load_model(self, path: Path) -> llama.DualARTransformer:
        try:
            args = llama.BaseModelArgs.from_pretrained(str(path / "config.json"))
            tokenizer = FishTokenizer.from_pretrained(str(path))
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            raise s1_checkpoint.CheckpointError(f"{path}: unreadable config.json or tokenizer: {exc}") from exc
        if not isinstance(args, llama.DualARModelArgs):
            raise s1_checkpoint.CheckpointError(
                f"{path}/config.json: model_type must be dual_ar, got {args.model_type}"
            )
        with torch.device(self.device):  # random init on the target device is fast; weights replace it
            model = llama.DualARTransformer(args, tokenizer=tokenizer)
        state = torch.load(path / "model.pth", map_location="cpu", mmap=True, weights_only=True)
        state = _normalize_model_state(state)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        except RuntimeError as exc:  # shape mismatches
            raise s1_checkpoint.CheckpointError(f"{path}/model.pth does not fit config.json: {exc}") from exc
        if missing:
            raise s1_checkpoint.CheckpointError(f"{path}/model.pth lacks weights: {s1_codec.describe_keys(missing)}")
        if unexpected:
            log.warning("model.pth has weights the model does not use: %s", s1_codec.describe_keys(unexpected))
        model = model.to(device=self.device, dtype=self.dtype).eval()
        with torch.device(self.device):
            model.setup_caches(max_batch_size=1, max_seq_len=args.max_seq_len, dtype=self.dtype)
        return model

    def warm_up(self) -> None:
        """One short synthesis; when compiled, also a few decode steps at every attention span, so
        each span's graph (and CUDA graph) exists before the server reports ready."""
        super().warm_up()
        if not self.compile:
            return
        assert self.model is not None and self._cache is not None
        prompt = _encode_prompt(self.model, [], "Warm up.").to(self.device)
        sampling = s1_sampling.SamplingTensors.create(
            temperature=0.8, top_p=0.8, repetition_penalty=1.1, device=self.device
        )
        for size in self._cache.views:
            generator = torch.Generator(device=self.device).manual_seed(0)
            frames = self._frames(prompt, size - prompt.shape[1] - 1, sampling, generator, threading.Event())
            for _ in zip(range(4), frames, strict=False):  # prefill, then compiled steps
                pass
        log.info("compiled decode steps for attention spans %s", list(self._cache.views))

    def close(self) -> None:
        self.model = self.codec = self._sampler = self._step = self._cache = None
        self._references.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # Generation ---------------------------------------------------------------------------

    def generate(self, request: base.SynthesisRequest, cancelled: threading.Event) -> Iterator[np.ndarray]:
        if self.model is None or self.codec is None:
            raise base.EngineError("s1_mini engine used before load()")
        text = textsplit.normalize_text(request.text) if request.normalize else request.text
        segments = textsplit.split_text(text, request.chunk_length) if text.strip() else []
        references = [(ref.text, self.reference_codes(ref)) for ref in request.references]
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        sampling = s1_sampling.SamplingTensors.create(
            temperature=request.temperature,
            top_p=request.top_p,
            repetition_penalty=request.repetition_penalty,
            device=self.device,
        )
        budget = request.max_new_tokens or None  # frames left for the whole request
        first_chunk = max(1, self.stream_frames // 4) if request.latency == "balanced" else self.stream_frames
        previous: tuple[str, torch.Tensor] | None = None

        for segment in segments:
            if cancelled.is_set() or budget == 0:
                return
            prompt, room = self._prompt(references, previous, segment, budget)
            decoder = s1_codec.StreamingDecoder(
                self.codec,
                first_chunk_frames=first_chunk,
                chunk_frames=self.stream_frames * 2,
                max_chunk_frames=MAX_CHUNK_FRAMES,
                context_frames=CODEC_CONTEXT_FRAMES,
                autocast_dtype=self.dtype if self.device.type == "cuda" and self.dtype != torch.float32 else None,
            )
            held: list[np.ndarray] = []  # at speed 1 only the tail; else the segment, stretched whole
            for frame in self._frames(prompt, room, sampling, generator, cancelled):
                audio = decoder.push(frame)
                if audio is not None:
                    if request.speed == 1.0:
                        yield audio
                    else:
                        held.append(audio)
            if cancelled.is_set():
                return
            tail = decoder.flush()
            if tail is not None:
                held.append(tail)
            if held:
                yield held[0] if request.speed == 1.0 else _time_stretch(np.concatenate(held), request.speed)
            if decoder.frames and request.condition_on_previous:
                previous = (segment, decoder.codes().cpu())
            if decoder.frames and budget is not None:
                budget -= len(decoder.frames)

    def _prompt(
        self,
        references: list[tuple[str, torch.Tensor]],
        previous: tuple[str, torch.Tensor] | None,
        segment: str,
        budget: int | None,
    ) -> tuple[torch.Tensor, int]:
        """The prompt (num_codebooks + 1, T) on the device, and how many frames fit after it."""
        assert self.model is not None
        max_seq_len = self.model.config.max_seq_len
        contexts = [previous, None] if previous else [None]  # drop the previous segment if it does not fit
        for context in contexts:
            prompt = _encode_prompt(self.model, references + ([context] if context else []), segment)
            room = max_seq_len - prompt.shape[1] - 1
            if room > 0:
                return prompt.to(self.device), room if budget is None else min(room, budget)
        raise base.RequestTooLarge(
            f"the prompt ({prompt.shape[1]} tokens with its reference voices) leaves no room in the "
            f"model's context of {max_seq_len} tokens; use shorter references or text"
        )

    def _frames(
        self,
        prompt: torch.Tensor,
        limit: int,
        sampling: s1_sampling.SamplingTensors,
        generator: torch.Generator,
        cancelled: threading.Event,
    ) -> Iterator[torch.Tensor]:
        """Codes (num_codebooks,) of each new frame until <|im_end|>, ``limit`` or cancellation."""
        assert self._sampler is not None and self._step is not None and self._cache is not None
        sampler = self._sampler
        self._cache.use(prompt.shape[1] + limit + 1)
        slow_size, fast_size = sampler.noise_sizes()
        rows = sampler.num_codebooks + 1
        window = torch.zeros((rows, s1_sampling.REPETITION_WINDOW), dtype=torch.int, device=self.device)
        filled = torch.zeros(s1_sampling.REPETITION_WINDOW, dtype=torch.bool, device=self.device)
        positions = torch.arange(prompt.shape[1], device=self.device)
        x = prompt[None]
        step = sampler.__call__  # the prompt has its own length: never through the compiled step
        for _ in range(limit):
            if cancelled.is_set():
                return
            noise = torch.empty(slow_size + fast_size, device=self.device).exponential_(generator=generator)
            with torch.inference_mode(), _math_attention(x.shape[-1] == 1):
                frame = step(
                    x, positions, sampling.temperature, sampling.top_p, sampling.repetition_penalty,
                    window, filled, noise[:slow_size], noise[slow_size:],
                ).clone()  # fmt: skip
            if int(frame[0]) == sampler.im_end:
                return
            yield frame[1:]
            window = torch.cat([window[:, 1:], frame[:, None]], dim=1)
            filled = torch.cat([filled[1:], filled.new_ones(1)])
            positions = positions[-1:] + 1
            x = frame.view(1, rows, 1)
            step = self._step

    # Reference voices ---------------------------------------------------------------------

    def reference_codes(self, reference: base.Reference) -> torch.Tensor:
        """The codec's codes for a reference voice, from the LRU cache when seen before."""
        assert self.codec is not None
        key = (reference.key, s1_codec.audio_digest(reference.audio, reference.sample_rate))
        codes = self._references.get(key)
        if codes is not None:
            self._references.move_to_end(key)
            self.reference_cache_hits += 1
            return codes
        self.reference_cache_misses += 1
        codes = s1_codec.encode_reference(self.codec, reference.audio, reference.sample_rate)
        if self.reference_cache_size > 0:
            self._references[key] = codes
            while len(self._references) > self.reference_cache_size:
                self._references.popitem(last=False)
        return codes


class _CacheBuckets:
    """Attention spans of a few fixed sizes over one KV cache of ``max_seq_len``.

    fish-speech's attention reads the whole static cache on every step (masked past the current
    position), which for S1 Mini is 8192 positions even when a request needs 600. Each segment
    instead picks the smallest span (1024, 2048, ... max_seq_len) that holds its prompt and frames,
    and the layers see views of that length of the one cache. The views are made once, so a
    compiled decode step has one graph per span and no recompiles after those.
    """

    def __init__(self, model: llama.DualARTransformer) -> None:
        self.model = model
        self.max_seq_len = model.max_seq_len  # as setup_caches rounded it
        sizes = [size for size in _doubling(MIN_CACHE_BUCKET, below=self.max_seq_len)] + [self.max_seq_len]
        caches = [layer.attention.kv_cache for layer in model.layers]
        self.views = {
            size: [(cache.k_cache[:, :, :size], cache.v_cache[:, :, :size]) for cache in caches] for size in sizes
        }
        self.full = self.views[self.max_seq_len]
        self.size = self.max_seq_len

    def use(self, length: int) -> None:
        size = next(size for size in self.views if size >= length) if length <= self.max_seq_len else self.max_seq_len
        if size == self.size:
            return
        for layer, (keys, values) in zip(self.model.layers, self.views[size], strict=True):
            layer.attention.kv_cache.k_cache = keys
            layer.attention.kv_cache.v_cache = values
        self.model.max_seq_len = size  # forward_generate masks the cache up to this length
        self.size = size


def _doubling(start: int, *, below: int) -> Iterator[int]:
    size = start
    while size < below:
        yield size
        size *= 2


def _encode_prompt(model: llama.DualARTransformer, turns: list[tuple[str, torch.Tensor]], text: str) -> torch.Tensor:
    """fish-speech's interleaved prompt: one speaker turn per (text, codes) pair, then the text."""
    sequence = content_sequence.ContentSequence(modality="interleave")
    for turn_text, codes in turns:
        sequence.append(
            [content_sequence.TextPart(text=turn_text), content_sequence.VQPart(codes=codes)], add_end=True, speaker=0
        )
    sequence.append([content_sequence.TextPart(text=text)], add_end=False, speaker=0)
    values, _, _ = sequence.encode_for_inference(model.tokenizer, num_codebooks=model.config.num_codebooks)
    return values


def _normalize_model_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The layouts fish-speech's loader accepts: a Lightning wrapper, a ``model.`` prefix, and
    audio-projector weights the text-to-semantic model does not use."""
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if next(iter(state), "").startswith("model."):
        state = {key.removeprefix("model."): value for key, value in state.items()}
    return {key: value for key, value in state.items() if "audio_" not in key}


def _check_agreement(model: llama.DualARTransformer, codec: torch.nn.Module, path: Path) -> None:
    """The model and codec of one checkpoint must agree on codes, or generation fails later."""
    config = model.config
    quantizer = codec.quantizer
    problems = []
    if config.num_codebooks != quantizer.quantizer.n_codebooks + 1:
        problems.append(
            f"num_codebooks {config.num_codebooks} != codec codebooks {quantizer.quantizer.n_codebooks} + 1"
        )
    if config.codebook_size != quantizer.semantic_quantizer.codebook_size:
        semantic_size = quantizer.semantic_quantizer.codebook_size
        problems.append(f"codebook_size {config.codebook_size} != codec semantic codebook {semantic_size}")
    semantic_tokens = len(model.tokenizer.semantic_id_to_token_id)
    if semantic_tokens > config.codebook_size:
        problems.append(f"{semantic_tokens} semantic tokens but codebook_size {config.codebook_size}")
    if model.tokenizer.semantic_end_id >= config.vocab_size:
        problems.append(
            f"semantic token ids reach {model.tokenizer.semantic_end_id}, beyond vocab_size {config.vocab_size}"
        )
    if problems:
        raise s1_checkpoint.CheckpointError(f"{path}: model and codec disagree: {'; '.join(problems)}")


def _time_stretch(audio: np.ndarray, speed: float) -> np.ndarray:
    """``speed`` times faster at the same pitch (librosa's phase vocoder; librosa comes with the codec)."""
    import librosa

    return librosa.effects.time_stretch(audio, rate=speed).astype(np.float32)


def _math_attention(enabled: bool) -> contextlib.AbstractContextManager[object]:
    """Decode steps use the math attention kernel, as fish-speech does: Inductor generates
    better code from it, and one-token attention gains nothing from fused kernels."""
    if not enabled:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)
