"""Benchmark: our S1 Mini engine against fish-speech's own generation path, in one run.

`make bench-engine` runs it on CPU with the tiny checkpoint; on a GPU machine, run it with
``--size s1-mini`` (a random-weight model of the real shape: the real model's speed) with and
without ``--compile``. Both sides use the same checkpoint, text, sampling parameters, seeds,
device, precision and thread count, and the same codec weights:

- ours: ``S1MiniEngine`` stepped one request at a time (``stepped.OneAtATime``; streamed, time to
  first audio is the first chunk);
- fish-speech: ``fish_speech.models.text2semantic.inference.init_model`` + ``generate_long``
  (0.1.0's path: all of a segment's tokens, then one codec decode, as its TTSInferenceEngine
  does), with the codec built as fish-speech's hydra config builds it (weight norm kept).

Per run: tokens/s = frames / wall time from text to the last audio sample; real-time factor =
wall time / audio duration; time to first audio = until the first samples exist. Medians over
``--runs`` runs after one warm-up run each. Random weights would end a segment at a random
step (and the two sides sample differently), so on both sides the end token is kept from
stopping generation: every run makes ``--max-new-tokens`` frames (fish-speech drops its last).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # fish-speech's decode loop draws a progress bar

import torch  # noqa: E402
from loguru import logger  # noqa: E402
from voice_inference.engines import base, s1_checkpoint, s1_codec, s1_load, s1_mini, s1_random_checkpoint, stepped  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, and then it takes a well deserved nap in the sun."
HOP = 2048


@dataclass
class Run:
    frames: int
    seconds: float  # wall time, text to last sample
    first_audio: float  # wall time to the first samples

    @property
    def tokens_per_second(self) -> float:
        return self.frames / self.seconds

    @property
    def real_time_factor(self) -> float:
        return self.seconds / (self.frames * HOP / 44_100)


def bench_ours(engine: s1_mini.S1MiniEngine, args: argparse.Namespace, seed: int) -> Run:
    request = base.SynthesisRequest(
        text=args.text, seed=seed, max_new_tokens=args.max_new_tokens, chunk_length=len(args.text) + 1,
        top_p=0.8, temperature=0.8, repetition_penalty=1.1,
    )  # fmt: skip
    started = time.perf_counter()
    first, samples = 0.0, 0
    for chunk in stepped.OneAtATime(engine).generate(request, threading.Event()):
        _sync(engine.device)
        if samples == 0:
            first = time.perf_counter() - started
        samples += chunk.size
    return Run(frames=samples // HOP, seconds=time.perf_counter() - started, first_audio=first)


class FishPath:
    """fish-speech 0.1.0's generation as its TTSInferenceEngine drives it, minus HTTP."""

    def __init__(self, checkpoint: Path, device: torch.device, dtype: torch.dtype, compile: bool) -> None:
        from fish_speech.models.text2semantic import inference

        self.inference = inference
        self.device = device
        self.dtype = dtype
        self.compile = compile
        self.model, self.decode_one_token = inference.init_model(str(checkpoint), device, dtype, compile=compile)
        # Benchmark only: decode_n_tokens stops when a token equals get_token_id("<|im_end|>");
        # an id no token has keeps it going to max_new_tokens, as on our side.
        get_token_id = self.model.tokenizer.get_token_id
        self.model.tokenizer.get_token_id = lambda token: -1 if token == "<|im_end|>" else get_token_id(token)
        state = s1_codec.normalize_state_dict(
            torch.load(checkpoint / "codec.pth", map_location="cpu", weights_only=True)
        )
        self.codec = s1_codec.build_codec(s1_codec.infer_shape(state))  # as hydra instantiates it
        self.codec.load_state_dict(state, strict=True)
        self.codec.to(device).eval()

    def run(self, args: argparse.Namespace, seed: int) -> Run:
        torch.manual_seed(seed)  # fish-speech seeds the global RNG per request
        started = time.perf_counter()
        codes = None
        for response in self.inference.generate_long(
            model=self.model, device=self.device, decode_one_token=self.decode_one_token, text=args.text,
            max_new_tokens=args.max_new_tokens, top_p=0.8, repetition_penalty=1.1, temperature=0.8,
            compile=self.compile, prompt_text=[], prompt_tokens=[],
        ):  # fmt: skip
            if response.action == "sample":
                codes = response.codes
        autocast = self.dtype if self.device.type == "cuda" and self.dtype != torch.float32 else None
        audio = s1_codec.decode(self.codec, codes, autocast_dtype=autocast)  # = VQManager.decode_vq_tokens
        _sync(self.device)
        seconds = time.perf_counter() - started
        return Run(frames=audio.size // HOP, seconds=seconds, first_audio=seconds)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(sides: dict[str, Callable[[int], Run]], runs: int) -> dict[str, list[Run]]:
    """Runs alternate between the sides, so a busy machine slows both alike."""
    for once in sides.values():
        once(10_000)  # warm-up: allocations, kernel selection, compilation
    results: dict[str, list[Run]] = {label: [] for label in sides}
    for index in range(runs):
        for label, once in sides.items():
            result = once(index)
            results[label].append(result)
            print(
                f"  {label:<11} run {index + 1}: {result.frames:4d} frames, {result.seconds:6.2f} s, "
                f"first audio {result.first_audio:6.3f} s",
                file=sys.stderr,
            )
    return results


def table(ours: list[Run], fish: list[Run]) -> str:
    def median(runs: list[Run], metric: str) -> float:
        return statistics.median(getattr(run, metric) for run in runs)

    rows = [
        ("tokens/s (codec frames/s)", "tokens_per_second", "{:.1f}", True),
        ("real-time factor (lower is faster)", "real_time_factor", "{:.3f}", False),
        ("time to first audio (s)", "first_audio", "{:.3f}", False),
    ]
    lines = [f"{'metric (median)':<36} {'ours':>10} {'fish-speech':>12} {'ours vs fish':>13}"]
    for name, metric, fmt, higher_is_better in rows:
        a, b = median(ours, metric), median(fish, metric)
        ratio = a / b if higher_is_better else b / a
        lines.append(f"{name:<36} {fmt.format(a):>10} {fmt.format(b):>12} {ratio:>12.2f}x")
    mean_ours = statistics.mean(run.frames for run in ours)
    mean_fish = statistics.mean(run.frames for run in fish)
    lines.append(f"{'frames per run (mean)':<36} {mean_ours:>10.1f} {mean_fish:>12.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="an S1 Mini checkpoint; default: generate one of --size")
    parser.add_argument("--size", choices=s1_checkpoint.SIZES, default="tiny")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=["auto", "bfloat16", "float16", "float32"], default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the decode step on both sides")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both sides (0: torch's default)")
    parser.add_argument("--text", default=TEXT)
    args = parser.parse_args()
    logger.remove()  # fish-speech logs every step of its generation at INFO

    with tempfile.TemporaryDirectory(prefix="bench-s1-") as scratch:
        checkpoint = args.checkpoint or s1_random_checkpoint.make_checkpoint(Path(scratch) / args.size, args.size, seed=0)
        device = s1_load.select_device(args.device)
        dtype = s1_load.select_precision(args.precision, device)
        if device.type == "cpu" and args.threads:
            torch.set_num_threads(args.threads)

        engine = s1_mini.S1MiniEngine(
            checkpoint, device=device.type, precision=str(dtype).removeprefix("torch."), compile=args.compile
        )
        engine.load()
        # Benchmark only: never end early (a -inf logit for <|im_end|>), so runs are full length.
        engine._layers.never_end()
        fish_path = FishPath(checkpoint, device, dtype, args.compile)
        results = measure(
            {
                "ours": lambda seed: bench_ours(engine, args, seed),
                "fish-speech": lambda seed: fish_path.run(args, seed),
            },
            args.runs,
        )

    name = args.checkpoint or f"{args.size} checkpoint (random weights)"
    threads = f", {torch.get_num_threads()} CPU thread(s)" if device.type == "cpu" else ""
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    print(
        f"\nS1 Mini engine vs fish-speech 0.1.0: {name}, {device.type}{gpu}, {str(dtype).removeprefix('torch.')}"
        f"{threads}, compile {'on' if args.compile else 'off'}, torch {torch.__version__}, "
        f"{args.runs} runs, max_new_tokens={args.max_new_tokens}\n"
    )
    print(table(results["ours"], results["fish-speech"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
