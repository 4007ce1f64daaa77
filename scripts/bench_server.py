"""Benchmark of the inference server with the mock engine (``make bench``).

Starts the real server as a child process on loopback (``tests/servers.py: ServerProcess``)
and prints two tables:

1. Throughput and latency of ``POST /v1/tts`` (whole WAV) at 1, 8 and 64 concurrent clients,
   mock chunk cost 0: what the HTTP layer, scheduler and encoder cost per request. Each level
   runs until it has sent ``--requests`` requests or ``--seconds`` have passed.
2. Streaming: time to the first audio byte vs total time of a streamed ``/v1/tts`` request
   with a simulated per-chunk cost (``VOICE_MOCK_CHUNK_COST_MS``), median over ``--runs``.
   A ratio well below 1 means audio leaves as it is made.

Client and server share the machine, so the numbers include the client's own CPU time.
This is a script, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.servers

from tests import lifetime
from tests.servers import ServerProcess

TEXT = "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun."


@dataclass
class LevelResult:
    clients: int
    latencies: list[float] = field(default_factory=list)
    failures: dict[int | str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def one_request(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> int:
    async with session.post(url, json=body) as response:
        await response.read()
        return response.status


async def run_level(url: str, clients: int, *, max_requests: int, max_seconds: float) -> LevelResult:
    """``clients`` closed-loop clients share a budget of requests and a deadline."""
    result = LevelResult(clients)
    body = {"text": TEXT, "format": "wav"}
    issued = 0
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await one_request(session, url, body)  # warm the connection pool's first connection
        started = time.perf_counter()
        deadline = started + max_seconds

        async def client() -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                sent = time.perf_counter()
                try:
                    status = await one_request(session, url, body)
                except aiohttp.ClientError as exc:
                    key: int | str = exc.__class__.__name__
                else:
                    if status == 200:
                        result.latencies.append(time.perf_counter() - sent)
                        continue
                    key = status
                result.failures[key] = result.failures.get(key, 0) + 1

        await asyncio.gather(*(client() for _ in range(clients)))
        result.elapsed = time.perf_counter() - started
    return result


async def stream_once(session: aiohttp.ClientSession, url: str) -> tuple[float, float, int]:
    """(time to first body byte, total time, bytes) of one streamed request."""
    body = {"text": TEXT, "format": "wav", "streaming": True}
    sent = time.perf_counter()
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        first = await response.content.readany()
        first_at = time.perf_counter()
        size = len(first)
        async for chunk in response.content.iter_any():
            size += len(chunk)
    return first_at - sent, time.perf_counter() - sent, size


async def run_streaming(url: str, runs: int) -> tuple[list[float], list[float], int]:
    ttfb, total, size = [], [], 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await stream_once(session, url)  # warm-up
        for _ in range(runs):
            first, whole, size = await stream_once(session, url)
            ttfb.append(first)
            total.append(whole)
    return ttfb, total, size


def server_env(folder: Path, chunk_cost_ms: float) -> dict[str, str]:
    return {
        "VOICE_TTS_PROVIDER": "mock",
        "VOICE_MOCK_CHUNK_COST_MS": str(chunk_cost_ms),
        "VOICE_QUEUE_SIZE": "256",  # room for every client of the widest level
        "VOICE_REFERENCE_PATH": str(folder / "references"),
        "VOICE_LOG_LEVEL": "warning",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8,64", help="concurrent clients per level (comma list)")
    parser.add_argument("--requests", type=int, default=400, help="requests per level at most")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per level at most")
    parser.add_argument("--cost-ms", type=float, default=50.0, help="mock cost per chunk for the streaming run")
    parser.add_argument("--runs", type=int, default=10, help="streamed requests to take the median of")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    print(f"voice-service server benchmark: mock engine, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"request: POST /v1/tts, {len(TEXT)} characters of text, whole WAV response")
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        folder = Path(tmp)

        with ServerProcess(server_env(folder, 0.0), log_path=folder / "server-cost0.log") as server:
            results = [
                asyncio.run(
                    run_level(f"{server.url}/v1/tts", clients, max_requests=args.requests, max_seconds=args.seconds)
                )
                for clients in levels
            ]
        print()
        print("Throughput, mock chunk cost 0 ms")
        print(f"{'clients':>8} {'requests':>9} {'failed':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for result in results:
            ok = result.latencies
            p50 = f"{percentile(ok, 50) * 1000:8.1f}" if ok else f"{'-':>8}"
            p99 = f"{percentile(ok, 99) * 1000:8.1f}" if ok else f"{'-':>8}"
            failed = sum(result.failures.values())
            print(f"{result.clients:>8} {len(ok):>9} {failed:>7} {result.requests_per_second:>8.1f} {p50} {p99}")
            if result.failures:
                print(f"{'':>8} failures: {result.failures}")

        with ServerProcess(server_env(folder, args.cost_ms), log_path=folder / "server-cost.log") as server:
            ttfb, total, size = asyncio.run(run_streaming(f"{server.url}/v1/tts", args.runs))
        first_ms, total_ms = statistics.median(ttfb) * 1000, statistics.median(total) * 1000
        print()
        print(f"Streaming, mock chunk cost {args.cost_ms:g} ms, streamed WAV ({size} bytes), median of {args.runs}")
        print(f"{'time to first byte ms':>22} {'total ms':>9} {'first/total':>12}")
        print(f"{first_ms:>22.1f} {total_ms:>9.1f} {first_ms / total_ms:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(lifetime.run_main(main))
