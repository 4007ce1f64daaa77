"""Continuous batching seen over HTTP, with the mock engine (a real stepped, batching engine).

The mock's per-step cost (``VOICE_MOCK_CHUNK_COST_MS``) is paid once per step whatever the
number of rows, as on a GPU, so concurrent requests overlap in time and the server's own
metrics show what happened: rows per step, slots in use, queue depth. Covers: concurrent
requests share steps; slots then queue then 429 with Retry-After; one client leaving mid-stream
leaves the others' audio intact; a request's audio is the same alone and inside a batch; a
reader that stops reading is ended after the stall timeout and frees its slot.
"""

from __future__ import annotations

import concurrent.futures
import socket
from collections.abc import Callable
from typing import Any

import httpx

from tests import metrics_scrape
from tests.servers import ServerProcess

LONG_TEXT = "This sentence takes a while to say out loud. " * 6  # about 30 chunks of audio


def pcm(server: ServerProcess, text: str, seed: int | None = None) -> bytes:
    body: dict[str, Any] = {"text": text, "format": "pcm", "seed": seed}
    response = httpx.post(f"{server.url}/v1/tts", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.content


def concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return [future.result(timeout=120) for future in [pool.submit(call) for call in calls]]


def steps_with_more_than(server: ServerProcess, rows: int) -> float:
    count = metrics_scrape.value(server.url, "voice_engine_rows_per_step_count")
    at_most = metrics_scrape.value(server.url, "voice_engine_rows_per_step_bucket", {"le": f"{float(rows)}"})
    return count - at_most


def test_concurrent_requests_share_engine_steps(start_server) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "50", "VOICE_MAX_BATCH_SIZE": "4"})
    pcm(server, LONG_TEXT)  # alone: one row per step, one step per chunk
    alone = metrics_scrape.value(server.url, "voice_engine_rows_per_step_count")
    assert metrics_scrape.value(server.url, "voice_engine_rows_per_step_sum") == alone > 10

    bodies = concurrently([lambda i=i: pcm(server, LONG_TEXT, seed=i) for i in range(4)])
    chunks = metrics_scrape.value(server.url, "voice_engine_rows_per_step_sum") - alone
    steps = metrics_scrape.value(server.url, "voice_engine_rows_per_step_count") - alone
    assert all(len(body) == len(bodies[0]) > 0 for body in bodies)
    assert chunks == 4 * alone, "every chunk of the four requests came from a step"
    assert steps < 2 * alone, "the four requests advanced together, not one after another"
    assert steps_with_more_than(server, 2) > 0
    assert metrics_scrape.value(server.url, "voice_batch_slots") == 4
    assert metrics_scrape.value(server.url, "voice_queue_wait_seconds_count") == 5
    assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0.0) == 0.0


def test_slots_then_queue_then_429(start_server) -> None:
    server: ServerProcess = start_server({
        "VOICE_MOCK_CHUNK_COST_MS": "100", "VOICE_MAX_BATCH_SIZE": "2", "VOICE_QUEUE_SIZE": "1",
        "VOICE_RETRY_AFTER_SECONDS": "4",
    })  # fmt: skip
    body = {"text": LONG_TEXT, "streaming": True, "format": "pcm"}
    with httpx.Client(timeout=60) as one, httpx.Client(timeout=60) as two:
        with one.stream("POST", f"{server.url}/v1/tts", json=body) as a, two.stream("POST", f"{server.url}/v1/tts", json=body) as b:
            streams = [a.iter_raw(), b.iter_raw()]  # kept referenced: a dropped iterator closes the connection
            for stream in streams:
                next(stream)  # both are in slots and streaming
            assert metrics_scrape.value(server.url, "voice_in_flight_requests") == 2.0
            assert metrics_scrape.value(server.url, "voice_batch_slot_occupancy") == 1.0
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(pcm, server, "Short.")
                assert metrics_scrape.wait_for(server.url, "voice_queue_depth", 1.0) == 1.0
                refused = httpx.post(f"{server.url}/v1/tts", json={"text": "One too many."}, timeout=60)
                assert refused.status_code == 429
                assert refused.headers["Retry-After"] == "4"
                assert refused.json()["error"]["code"] == "queue_full"
                for stream in streams:
                    b"".join(stream)
                assert len(waiting.result(timeout=60)) > 0, "the queued request got a slot"
    assert metrics_scrape.value(server.url, "voice_rejected_requests_total") == 1.0
    assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0.0) == 0.0


def test_one_client_leaving_mid_stream_leaves_the_others_intact(start_server) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "30", "VOICE_MAX_BATCH_SIZE": "4"})
    expected = {seed: pcm(server, LONG_TEXT, seed) for seed in (1, 3)}

    def leave_early() -> int:
        body = {"text": LONG_TEXT, "streaming": True, "format": "pcm", "seed": 2}
        with httpx.stream("POST", f"{server.url}/v1/tts", json=body, timeout=60) as response:
            return len(next(response.iter_raw()))  # then the connection closes mid-stream

    first, left, third = concurrently([lambda: pcm(server, LONG_TEXT, 1), leave_early, lambda: pcm(server, LONG_TEXT, 3)])
    assert left > 0
    assert first == expected[1] and third == expected[3], "the rows beside the cancelled one are untouched"
    assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0.0) == 0.0
    closed = {"route": "/v1/tts", "status": "499"}
    assert metrics_scrape.value(server.url, "voice_http_requests_total", closed) == 1.0
    assert steps_with_more_than(server, 1) > 0, "they did share steps"


def test_a_request_sounds_the_same_alone_and_inside_a_batch_of_eight(start_server) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "20", "VOICE_MAX_BATCH_SIZE": "8"})
    alone = pcm(server, LONG_TEXT, seed=42)
    others = [lambda i=i: pcm(server, f"Someone else, number {i}, says something. " * (i + 1), seed=i) for i in range(7)]
    batched = concurrently([*others[:3], lambda: pcm(server, LONG_TEXT, seed=42), *others[3:]])
    assert batched[3] == alone
    assert steps_with_more_than(server, 4) > 0, "the request shared its steps with the others"


def test_a_reader_that_stops_reading_is_ended_and_frees_its_slot(start_server) -> None:
    server: ServerProcess = start_server({
        "VOICE_MAX_BATCH_SIZE": "2", "VOICE_STREAM_BUFFER_SECONDS": "1", "VOICE_STALL_TIMEOUT_SECONDS": "1",
    })  # fmt: skip
    # A tiny receive buffer, so the kernel cannot absorb the stream on the reader's behalf.
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    body = {"text": LONG_TEXT * 4, "streaming": True, "format": "pcm"}
    with httpx.Client(transport=transport, timeout=60) as client:
        with client.stream("POST", f"{server.url}/v1/tts", json=body) as stalled:
            stream = stalled.iter_raw()
            next(stream)  # and then read nothing
            assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0.0, timeout=30) == 0.0
            assert len(pcm(server, "Others are served.")) > 0
    assert "reader stalled" in server.log_path.read_text()
