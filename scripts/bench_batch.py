"""Continuous batching against the batch-1 path, over HTTP (``make bench-batch``).

Starts the real server twice as child processes on loopback (``tests/servers.py``): one with
one batch slot (``VOICE_MAX_BATCH_SIZE=1``, the batch-1 path) and one with as many slots as
the widest level; each level runs on the first, then on the second. At each level (default 1,
4, 8, 16 and 32 concurrent clients) every client streams ``--rounds`` requests back to back
(WAV, ``streaming: true``, its own seed) and the script measures, per mode:

- aggregate audio seconds per second of wall time (all clients together);
- per-stream real-time factor (request time / its audio seconds; below 1 is faster than real
  time), median and worst;
- time to first audio (request sent -> first audio bytes), p50 and p99;
- 429s (the queue is sized so there should be none);

then prints one table and the batching / batch-1 ratios, with the issue's CPU targets at 8
clients (at least 4x the throughput, p50 time to first audio at most 3x one client's).

Engines: ``--engine s1_mini`` (default) on a random-weight checkpoint this script writes
(``--size tiny`` on CPU; ``--size s1-mini --device cuda --compile`` for GPU measurements), or
``--engine mock`` with a per-step cost (``--cost-ms``). Everything is bounded: ``--rounds``
requests per client, ``--max-new-tokens`` frames per request, ``--seconds`` per level.
Client and server share the machine. This is a script, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.servers

from tests.servers import ServerProcess

TEXT = "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun for a while."
WAV_HEADER = 44


@dataclass
class Stream:
    first_audio: float  # seconds from sending to the first audio bytes
    total: float
    audio_seconds: float

    @property
    def rtf(self) -> float:
        return self.total / self.audio_seconds if self.audio_seconds else math.inf


@dataclass
class Level:
    mode: str
    clients: int
    streams: list[Stream] = field(default_factory=list)
    refused: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def audio_per_second(self) -> float:
        return sum(s.audio_seconds for s in self.streams) / self.elapsed if self.elapsed else 0.0

    def first_audio(self, q: float) -> float:
        return percentile([s.first_audio for s in self.streams], q)

    def rtf(self, q: float) -> float:
        return percentile([s.rtf for s in self.streams], q)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


async def stream_once(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> Stream | int:
    """One streamed WAV request: its timings, or the HTTP status when it was not a 200."""
    sent = time.perf_counter()
    async with session.post(url, json=body) as response:
        if response.status != 200:
            await response.read()
            return response.status
        received = b""
        first_at = None
        async for chunk in response.content.iter_any():
            received += chunk
            if first_at is None and len(received) > WAV_HEADER:
                first_at = time.perf_counter()
    total = time.perf_counter() - sent
    rate, bits = struct.unpack("<I", received[24:28])[0], struct.unpack("<H", received[34:36])[0]
    audio = (len(received) - WAV_HEADER) / (rate * bits // 8)
    return Stream(first_audio=(first_at or sent + total) - sent, total=total, audio_seconds=audio)


async def run_level(url: str, mode: str, clients: int, args: argparse.Namespace) -> Level:
    level = Level(mode, clients)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        started = time.perf_counter()
        deadline = started + args.seconds

        async def client(index: int) -> None:
            for round_ in range(args.rounds):
                if round_ and time.perf_counter() > deadline:
                    return
                body = {"text": TEXT, "format": "wav", "streaming": True, "seed": index * 1000 + round_,
                        "max_new_tokens": args.max_new_tokens}  # fmt: skip
                try:
                    outcome = await stream_once(session, url, body)
                except aiohttp.ClientError as exc:
                    level.failures[exc.__class__.__name__] = level.failures.get(exc.__class__.__name__, 0) + 1
                    continue
                if isinstance(outcome, Stream):
                    level.streams.append(outcome)
                elif outcome == 429:
                    level.refused += 1
                else:
                    level.failures[str(outcome)] = level.failures.get(str(outcome), 0) + 1

        await asyncio.gather(*(client(i) for i in range(clients)))
        level.elapsed = time.perf_counter() - started
    return level


def server_env(args: argparse.Namespace, folder: Path, checkpoint: Path | None, slots: int) -> dict[str, str]:
    env = {
        "VOICE_TTS_PROVIDER": args.engine,
        "VOICE_MAX_BATCH_SIZE": str(slots),
        "VOICE_QUEUE_SIZE": str(max(16, 2 * max(args.levels))),  # room for every client: 429s mean a bug
        "VOICE_REFERENCE_PATH": str(folder / "references"),
        "VOICE_LOG_LEVEL": "warning",
    }
    if args.engine == "mock":
        env["VOICE_MOCK_CHUNK_COST_MS"] = str(args.cost_ms)
    else:
        assert checkpoint is not None
        env.update(VOICE_S1_CHECKPOINT_PATH=str(checkpoint), VOICE_S1_DEVICE=args.device,
                   VOICE_S1_COMPILE="true" if args.compile else "false")  # fmt: skip
    return env


def make_checkpoint(folder: Path, size: str) -> Path:
    out = folder / f"checkpoint-{size}"
    command = [sys.executable, "-m", "voice_inference", "make-checkpoint", str(out), "--size", size]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out


def print_table(results: dict[str, list[Level]]) -> None:
    print(f"{'clients':>7} {'mode':>9} {'streams':>7} {'429':>4} {'fail':>4} {'audio s/s':>9} "
          f"{'RTF p50':>7} {'RTF max':>7} {'TTFA p50 ms':>11} {'TTFA p99 ms':>11}")  # fmt: skip
    for levels in zip(*results.values(), strict=True):
        for level in levels:
            print(f"{level.clients:>7} {level.mode:>9} {len(level.streams):>7} {level.refused:>4} "
                  f"{sum(level.failures.values()):>4} {level.audio_per_second:>9.2f} {level.rtf(50):>7.3f} "
                  f"{level.rtf(100):>7.3f} {level.first_audio(50) * 1000:>11.1f} {level.first_audio(99) * 1000:>11.1f}")  # fmt: skip
            if level.failures:
                print(f"{'':>17} failures: {level.failures}")


def print_ratios(batch1: list[Level], batched: list[Level]) -> None:
    single = batched[0].first_audio(50) if batched[0].clients == 1 else math.nan
    print(f"{'clients':>7} {'throughput x':>12} {'TTFA p50 x':>10} {'TTFA p50 / 1 client':>19}")
    for one, many in zip(batch1, batched, strict=True):
        throughput = many.audio_per_second / one.audio_per_second if one.audio_per_second else math.nan
        ttfa = many.first_audio(50) / one.first_audio(50)
        print(f"{one.clients:>7} {throughput:>12.2f} {ttfa:>10.2f} {many.first_audio(50) / single:>19.2f}")
    at8 = [(one, many) for one, many in zip(batch1, batched, strict=True) if one.clients == 8]
    if at8 and not math.isnan(single):
        one, many = at8[0]
        gain, growth = many.audio_per_second / one.audio_per_second, many.first_audio(50) / single
        print(f"targets at 8 clients: throughput {gain:.2f}x batch-1 (target >= 4: {'met' if gain >= 4 else 'not met'}), "
              f"TTFA p50 {growth:.2f}x one client (target <= 3: {'met' if growth <= 3 else 'not met'})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["s1_mini", "mock"], default="s1_mini")
    parser.add_argument("--size", choices=["tiny", "s1-mini"], default="tiny", help="random-weight checkpoint (s1_mini)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="VOICE_S1_COMPILE=true")
    parser.add_argument("--cost-ms", type=float, default=50.0, help="mock engine: cost of one step")
    parser.add_argument("--levels", default="1,4,8,16,32", help="concurrent streaming clients (comma list)")
    parser.add_argument("--batch-size", type=int, default=0, help="slots of the batching run (default: widest level)")
    # Six rounds, so a level is mostly steady state: with two, a third of a batching level's few
    # seconds was its ramp (every client's first prefill together) and its drain.
    parser.add_argument("--rounds", type=int, default=6, help="requests per client, back to back")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="codec frames per request at most")
    parser.add_argument("--seconds", type=float, default=120.0, help="no new round starts after this, per level")
    args = parser.parse_args()
    args.levels = [int(level) for level in args.levels.split(",")]
    slots = args.batch_size or max(args.levels)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped benchmark still stops its server

    what = f"mock engine, {args.cost_ms:g} ms a step" if args.engine == "mock" else (
        f"S1 Mini engine, {args.size} random-weight checkpoint, {args.device}{', compiled' if args.compile else ''}")
    print(f"voice-service batching benchmark: {what}; {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"each client: {args.rounds} streamed WAV requests of {len(TEXT)} characters, at most {args.max_new_tokens} frames")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp)
        checkpoint = make_checkpoint(folder, args.size) if args.engine == "s1_mini" else None
        modes = {"batch-1": 1, f"batch-{slots}": slots}
        results: dict[str, list[Level]] = {mode: [] for mode in modes}
        servers: dict[str, ServerProcess] = {}
        try:
            for mode, mode_slots in modes.items():
                servers[mode] = ServerProcess(server_env(args, folder, checkpoint, mode_slots), log_path=folder / f"server-{mode}.log")
                servers[mode].start(timeout=1800)  # loading (and compiling) a real-size model takes a while
            # Both servers stay up and each level runs on one, then at once on the other (the idle
            # one waits without using the CPU): on a shared machine whose speed drifts, the two
            # halves of a ratio are measured seconds apart, not minutes.
            for clients in args.levels:
                for mode, server in servers.items():
                    results[mode].append(asyncio.run(run_level(f"{server.url}/v1/tts", mode, clients, args)))
                    print(f"  {mode}, {clients} clients: done", file=sys.stderr, flush=True)
        finally:
            for server in servers.values():
                server.stop()
        print()
        print_table(results)
        print()
        print_ratios(*results.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
