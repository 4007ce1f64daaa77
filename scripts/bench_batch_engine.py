"""Benchmark: the batched S1 Mini engine against its batch-1 path, in one run (no HTTP).

`make bench-batch-engine` runs it on CPU with the tiny checkpoint. N clients send a streaming
request each at the same moment; two ways to serve them, on the same loaded engine:

- batched: every request takes a slot at once and all rows decode together (continuous batching;
  rows leave as they finish);
- batch-1: one request at a time in arrival order, as a scheduler without batching serves them.

Per N: aggregate audio seconds per second (all frames / wall time), per-stream real-time factor
(a row's time from arrival to its last audio / its audio's length; median over rows), time to
first audio (p50/p99 over rows), and the batched step's time per row. Runs alternate between
the two ways, and the table shows medians over ``--runs``. Random weights would end a request
at a random frame, so the end token is kept from being drawn: every request makes
``--max-new-tokens`` frames.

Then two component measurements: the stall a joining row's chunked prefill adds to the running
rows' step, and what decoding several rows' audio windows in one codec call saves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from voice_inference.engines import base, s1_load, s1_mini, s1_random_checkpoint, s1_stream

TEXT = "The quick brown fox jumps over the lazy dog, and then it takes a well deserved nap in the sun."
HOP = 2048
SAMPLE_RATE = 44_100


@dataclass
class Result:
    wall: float  # seconds until the last row's last audio
    frames: int
    first_audio: list[float]  # per row, from arrival
    finished: list[float]  # per row, from arrival
    audio_seconds: list[float]  # per row
    step_seconds: list[float]  # batched decode steps (all of them, over the run)
    rows_per_step: list[int]

    @property
    def audio_per_second(self) -> float:
        return sum(self.audio_seconds) / self.wall

    @property
    def real_time_factor(self) -> float:
        return statistics.median(done / audio for done, audio in zip(self.finished, self.audio_seconds, strict=True))

    @property
    def step_per_row_ms(self) -> float:
        return 1000 * statistics.median(s / n for s, n in zip(self.step_seconds, self.rows_per_step, strict=True))


def requests(count: int, args: argparse.Namespace) -> list[base.SynthesisRequest]:
    return [
        base.SynthesisRequest(text=args.text, seed=index, max_new_tokens=args.max_new_tokens, chunk_length=len(args.text) + 1)
        for index in range(count)
    ]


def serve(engine: s1_mini.S1MiniEngine, batch: list[base.SynthesisRequest], *, together: bool) -> Result:
    """All requests arrive at t=0; ``together``: all in slots at once, else one after another."""
    started = time.perf_counter()
    first: dict[int, float] = {}
    finished: dict[int, float] = {}
    samples: dict[int, int] = dict.fromkeys(range(len(batch)), 0)
    steps: list[float] = []
    rows_per_step: list[int] = []
    waves = [list(range(len(batch)))] if together else [[index] for index in range(len(batch))]
    for wave in waves:
        rows = {engine.admit(batch[index], slot): index for slot, index in enumerate(wave)}
        live = list(rows)
        while live:
            before = engine.steps
            tick = time.perf_counter()
            engine.step(live)
            if engine.steps > before:
                steps.append(time.perf_counter() - tick)
                rows_per_step.append(engine.last_step_rows)
            now = time.perf_counter() - started
            for row in list(live):
                index = rows[row]
                if row.chunks and index not in first:
                    first[index] = now
                samples[index] += sum(chunk.size for chunk in row.chunks)
                row.chunks.clear()
                if row.done:
                    if row.error is not None:
                        raise row.error
                    finished[index] = now
                    engine.release(row)
                    live.remove(row)
    wall = time.perf_counter() - started
    order = range(len(batch))
    return Result(
        wall=wall,
        frames=sum(samples.values()) // HOP,
        first_audio=[first[i] for i in order],
        finished=[finished[i] for i in order],
        audio_seconds=[samples[i] / SAMPLE_RATE for i in order],
        step_seconds=steps,
        rows_per_step=rows_per_step,
    )


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def throughput_table(engine: s1_mini.S1MiniEngine, args: argparse.Namespace) -> str:
    results: dict[tuple[int, str], list[Result]] = {}
    serve(engine, requests(2, args), together=True)  # warm-up
    for run in range(args.runs):
        for clients in args.clients:
            for way in ("batched", "batch-1"):
                result = serve(engine, requests(clients, args), together=way == "batched")
                results.setdefault((clients, way), []).append(result)
                print(
                    f"  run {run + 1} {clients:3d} clients {way:<8} {result.wall:7.2f} s, "
                    f"{result.audio_per_second:6.2f} audio s/s, p50 first audio {percentile(result.first_audio, 50):.3f} s",
                    file=sys.stderr,
                )

    def med(clients: int, way: str, metric) -> float:  # noqa: ANN001
        return statistics.median(metric(result) for result in results[(clients, way)])

    single = med(1, "batched", lambda r: percentile(r.first_audio, 50))
    lines = [
        f"{'clients':>7} {'way':<8} {'audio s/s':>9} {'vs b-1':>7} {'RTF p50':>8} {'TTFA p50':>9} {'TTFA p99':>9}"
        f" {'vs 1 client':>11} {'ms/row/step':>11}"
    ]
    for clients in args.clients:
        base_rate = med(clients, "batch-1", lambda r: r.audio_per_second)
        for way in ("batched", "batch-1"):
            rate = med(clients, way, lambda r: r.audio_per_second)
            ttfa = med(clients, way, lambda r: percentile(r.first_audio, 50))
            lines.append(
                f"{clients:>7} {way:<8} {rate:>9.2f} {rate / base_rate:>6.2f}x"
                f" {med(clients, way, lambda r: r.real_time_factor):>8.3f} {ttfa:>9.3f}"
                f" {med(clients, way, lambda r: percentile(r.first_audio, 99)):>9.3f} {ttfa / single:>10.2f}x"
                f" {med(clients, way, lambda r: r.step_per_row_ms):>11.2f}"
            )
    return "\n".join(lines)


def prefill_stall(engine: s1_mini.S1MiniEngine, args: argparse.Namespace) -> str:
    """Step time of ``running`` decoding rows, alone and while a row with a long prompt joins."""
    voice_seconds = 10.0
    t = np.arange(int(voice_seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voice = base.Reference(
        key="bench-voice", audio=(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sample_rate=SAMPLE_RATE,
        text="a reference voice of ten seconds, with its transcript " * 3,
    )  # fmt: skip
    engine.reference_codes(voice)  # encoded beforehand: only the prefill is measured
    lines = [f"{'running rows':>12} {'step (ms)':>10} {'step + prefill chunk (ms)':>26} {'stall (ms)':>11} {'chunks':>7}"]
    for running in (1, 8):
        long = [base.SynthesisRequest(text=args.text, seed=slot, max_new_tokens=2000) for slot in range(running)]
        rows = [engine.admit(request, slot) for slot, request in enumerate(long)]
        while any(row.state.progress.phase.value != "decode" for row in rows):
            engine.step(rows)
        plain, joined = [], []
        for _ in range(args.runs * 3):  # alternate: plain steps, then a join's prefill steps
            tick = time.perf_counter()
            engine.step(rows)
            plain.append(time.perf_counter() - tick)
            joiner = engine.admit(base.SynthesisRequest(text=args.text, references=(voice,), seed=7), slot=running)
            chunks = 0
            while joiner.state.progress.phase.value in ("references", "prompt", "prefill"):
                prefilling = joiner.state.progress.phase.value == "prefill"
                tick = time.perf_counter()
                engine.step([*rows, joiner])
                if prefilling:
                    joined.append(time.perf_counter() - tick)
                    chunks += 1
            engine.release(joiner)
        for row in rows:
            engine.release(row)
        step, with_prefill = statistics.median(plain) * 1000, statistics.median(joined) * 1000
        lines.append(f"{running:>12} {step:>10.2f} {with_prefill:>26.2f} {with_prefill - step:>11.2f} {chunks:>7}")
    return "\n".join(lines)


def codec_batching(engine: s1_mini.S1MiniEngine, args: argparse.Namespace) -> str:
    """Decoding k windows (16 new frames + 8 of context) one by one against one batched call."""
    assert engine.codec is not None and engine.model is not None
    generator = torch.Generator().manual_seed(0)
    rows = engine.model.config.num_codebooks
    lines = [f"{'windows':>7} {'one by one (ms)':>16} {'batched (ms)':>13} {'batched vs one by one':>22}"]
    for count in (2, 4, 8, 16):
        windows = [torch.randint(0, 100, (rows, 24), generator=generator) for _ in range(count)]
        single, batched = [], []
        for _ in range(args.runs * 2):
            tick = time.perf_counter()
            for window in windows:
                s1_stream.decode_batch(engine.codec, [window], autocast_dtype=None)
            single.append(time.perf_counter() - tick)
            tick = time.perf_counter()
            s1_stream.decode_batch(engine.codec, windows, autocast_dtype=None)
            batched.append(time.perf_counter() - tick)
        one, together = statistics.median(single) * 1000, statistics.median(batched) * 1000
        lines.append(f"{count:>7} {one:>16.2f} {together:>13.2f} {one / together:>21.2f}x")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="an S1 Mini checkpoint; default: generate one of --size")
    parser.add_argument("--size", choices=["tiny", "s1-mini"], default="tiny")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--text", default=TEXT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        checkpoint = args.checkpoint or s1_random_checkpoint.make_checkpoint(Path(scratch) / args.size, args.size)
        device = s1_load.select_device(args.device)
        if device.type == "cpu" and args.threads:
            torch.set_num_threads(args.threads)
        engine = s1_mini.S1MiniEngine(
            checkpoint, device=device.type, compile=args.compile, max_batch_size=max(*args.clients, 8) + 1
        )
        engine.load()
        engine._layers.never_end()  # benchmark only: every request makes max_new_tokens frames
        engine.warm_up()

        throughput = throughput_table(engine, args)
        stall = prefill_stall(engine, args)
        codec = codec_batching(engine, args)
        engine.close()

    threads = f", {torch.get_num_threads()} CPU thread(s)" if device.type == "cpu" else ""
    print(
        f"\nBatched S1 Mini engine vs its batch-1 path: {args.checkpoint or args.size}, {device.type}{threads}, "
        f"compile {'on' if args.compile else 'off'}, torch {torch.__version__}, {args.runs} runs (medians), "
        f"max_new_tokens={args.max_new_tokens}, KV cache {engine.slot_bytes / 2**20:.1f} MiB per slot\n"
    )
    print(throughput)
    print(f"\nChunked prefill (at most {engine.prefill_chunk} prompt tokens per step), a prompt with a 10 s voice:\n")
    print(stall)
    print("\nCodec decode of several rows' windows (24 frames each):\n")
    print(codec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
