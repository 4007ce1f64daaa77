"""Benchmark: speech from streamed text, ``/v1/tts/live`` against waiting for the whole text
(``make bench-live``).

A simulated LLM writes a paragraph at ``--tokens-per-second`` (a word or less per token). Two
ways to speak it, on the same server (mock engine, ``VOICE_MOCK_CHUNK_COST_MS`` per chunk of
audio so synthesis takes time), ``--runs`` times each, alternating:

* ``live``: every token goes to a ``/v1/tts/live`` session as it is written;
* ``after``: the client collects every token, then sends one streamed ``POST /v1/tts``.

The table gives medians, from the first token: time to the first audio, time to the last
audio, and the ratio of the two ways. Both ways make the same audio length. Client and
server share the machine. This is a script, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import ormsgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.servers

from tests.servers import ServerProcess

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. It naps in the afternoon sun, then wakes to "
    "chase a butterfly across the meadow. By evening it is tired again, and the lazy dog, who "
    "never moved at all, watches it curl up beside the old oak tree. Tomorrow they will do it "
    "all again, as foxes and dogs have always done."
)


def tokens(text: str) -> list[str]:
    """Words split in two where long, as an LLM's tokens often are."""
    out: list[str] = []
    for word in text.split(" "):
        half = len(word) // 2 if len(word) > 6 else len(word)
        out.extend(piece for piece in (word[:half], word[half:]) if piece)
        out[-1] += " "
    return out


async def written(pieces: list[str], rate: float) -> AsyncIterator[str]:
    for piece in pieces:
        await asyncio.sleep(1 / rate)  # the LLM's pace: the thing being simulated, not a wait
        yield piece


async def live(session: aiohttp.ClientSession, url: str, pieces: list[str], rate: float) -> tuple[float, float, int]:
    async with session.ws_connect(url.replace("http", "ws", 1) + "/v1/tts/live") as ws:
        started = time.perf_counter()
        await ws.send_bytes(ormsgpack.packb({"event": "start", "request": {"format": "pcm"}}))

        async def send() -> None:
            async for piece in written(pieces, rate):
                await ws.send_bytes(ormsgpack.packb({"event": "text", "text": piece}))
            await ws.send_bytes(ormsgpack.packb({"event": "stop"}))

        sender = asyncio.create_task(send())
        first, size = None, 0
        async for message in ws:
            event = ormsgpack.unpackb(message.data)
            if event["event"] == "audio":
                first = first or time.perf_counter()
                size += len(event["audio"])
            elif event["event"] == "finish":
                break
        await sender
        assert first is not None and event["reason"] == "stop", event
        return first - started, time.perf_counter() - started, size


async def after(session: aiohttp.ClientSession, url: str, pieces: list[str], rate: float) -> tuple[float, float, int]:
    started = time.perf_counter()
    text = "".join([piece async for piece in written(pieces, rate)])
    first, size = None, 0
    async with session.post(f"{url}/v1/tts", json={"text": text, "format": "pcm", "streaming": True}) as response:
        async for data in response.content.iter_any():
            first = first or time.perf_counter()
            size += len(data)
    assert first is not None
    return first - started, time.perf_counter() - started, size


async def measure(url: str, runs: int, rate: float) -> dict[str, list[tuple[float, float, int]]]:
    pieces = tokens(PARAGRAPH)
    results: dict[str, list[tuple[float, float, int]]] = {"live": [], "after": []}
    async with aiohttp.ClientSession() as session:
        for _ in range(runs):  # alternating, so drift on a shared machine hits both alike
            results["live"].append(await live(session, url, pieces, rate))
            results["after"].append(await after(session, url, pieces, rate))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens-per-second", type=float, default=30.0)
    parser.add_argument("--chunk-cost-ms", type=float, default=20.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        env = {"VOICE_TTS_PROVIDER": "mock", "VOICE_REFERENCE_PATH": folder,
               "VOICE_MOCK_CHUNK_COST_MS": str(args.chunk_cost_ms)}  # fmt: skip
        with ServerProcess(env) as server:
            results = asyncio.run(measure(server.url, args.runs, args.tokens_per_second))

    count = len(tokens(PARAGRAPH))
    print(f"{count} tokens at {args.tokens_per_second:g}/s ({count / args.tokens_per_second:.1f} s of writing), "
          f"mock chunk cost {args.chunk_cost_ms:g} ms, {args.runs} runs each, medians from the first token\n")  # fmt: skip
    print(f"| {'way':<6} | {'first audio s':>13} | {'last audio s':>12} | {'audio s':>7} |")
    print(f"|{'-' * 8}|{'-' * 15}|{'-' * 14}|{'-' * 9}|")
    medians = {}
    for way, rows in results.items():
        first, last = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        seconds = statistics.median(r[2] for r in rows) / 2 / 44_100
        medians[way] = (first, last)
        print(f"| {way:<6} | {first:>13.2f} | {last:>12.2f} | {seconds:>7.2f} |")
    print(f"\nlive / after: first audio x{medians['live'][0] / medians['after'][0]:.2f}, "
          f"last audio x{medians['live'][1] / medians['after'][1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
