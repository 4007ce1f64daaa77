"""The scheduler seen over HTTP: streaming really streams (WAV samples and Opus audio pages
leave while the engine is still at work), a full queue answers 429 with Retry-After, a client
that goes away frees the engine (running or queued, and the server survives it), slow synthesis
times out (a 504, or a cut connection once audio is out), and the server reports ready only
after the engine is loaded and warmed up.

The mock engine's per-chunk cost (``VOICE_MOCK_CHUNK_COST_MS``) makes generation take real
time, so the order of events can be checked through ``/metrics`` without timing asserts.
"""

from __future__ import annotations

import json
import socket
import threading

import httpx
import pytest

from tests import audio_checks, metrics_scrape
from tests.servers import ServerProcess

LONG_TEXT = "This sentence takes a while to say out loud. " * 6  # about 30 chunks of audio


def audio_started(fmt: str, received: bytes) -> bool:
    """WAV: samples after the 44-byte header; Opus: an audio page (granule > 0), not only
    the OpusHead and OpusTags pages."""
    if fmt == "wav":
        return len(received) > 44
    return max(audio_checks.ogg_granules(received), default=0) > 0


@pytest.mark.parametrize("fmt", ["wav", "opus"])
def test_stream_sends_audio_before_the_last_is_made(start_server, fmt: str) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "100"})
    body = {"text": LONG_TEXT, "streaming": True, "format": fmt}
    with httpx.stream("POST", f"{server.url}/v1/tts", json=body, timeout=60) as response:
        assert response.status_code == 200
        stream = response.iter_raw()
        received = b""
        for part in stream:
            received += part
            if audio_started(fmt, received):
                break
        assert audio_started(fmt, received), "no audio at all"
        # The engine is still generating while we hold the first audio.
        assert metrics_scrape.value(server.url, "voice_in_flight_requests") == 1.0
        rest = b"".join(stream)
    assert received[:4] == {"wav": b"RIFF", "opus": b"OggS"}[fmt]
    assert len(rest) > 10 * len(received)
    assert audio_checks.duration(received + rest, fmt) > 2.0


def test_full_queue_is_429_with_retry_after(start_server) -> None:
    server: ServerProcess = start_server(
        {"VOICE_MOCK_CHUNK_COST_MS": "100", "VOICE_QUEUE_SIZE": "1", "VOICE_RETRY_AFTER_SECONDS": "3"}
    )
    body = {"text": LONG_TEXT, "streaming": True}
    results: list[int] = []
    with httpx.stream("POST", f"{server.url}/v1/tts", json=body, timeout=60) as running:
        chunks = running.iter_raw()  # kept referenced: a dropped iterator closes the connection
        next(chunks)  # the engine is busy with this one
        waiting = threading.Thread(target=lambda: results.append(httpx.post(
            f"{server.url}/v1/tts", json={"text": "Short."}, timeout=60).status_code))  # fmt: skip
        waiting.start()
        assert metrics_scrape.wait_for(server.url, "voice_queue_depth", 1.0) == 1.0

        refused = httpx.post(f"{server.url}/v1/tts", json={"text": "One too many."}, timeout=60)

        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "3"
        assert refused.json()["error"]["code"] == "queue_full"
    waiting.join(timeout=60)
    assert results == [200]  # the queued request was served once the engine was free
    assert metrics_scrape.value(server.url, "voice_rejected_requests_total") == 1.0


@pytest.mark.parametrize("fmt", ["wav", "mp3"])  # mp3: an FFmpeg encoder abandoned mid-stream
def test_client_going_away_stops_the_work(start_server, fmt: str) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "100"})
    full_seconds = len(httpx.post(f"{server.url}/v1/tts", json={"text": LONG_TEXT, "format": "pcm"}, timeout=60).content) / 2 / 44_100
    before = metrics_scrape.value(server.url, "voice_audio_seconds_total")

    body = {"text": LONG_TEXT, "streaming": True, "format": fmt}
    with httpx.stream("POST", f"{server.url}/v1/tts", json=body, timeout=60) as r:
        next(r.iter_raw())
    # The connection is closed mid-stream: the job is cancelled and the gauges return to zero.
    assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0.0) == 0.0
    assert metrics_scrape.value(server.url, "voice_queue_depth") == 0.0
    produced = metrics_scrape.value(server.url, "voice_audio_seconds_total") - before
    assert 0 < produced < full_seconds / 2
    # Counted as the client's doing (499), not a server error, and logged without a traceback.
    closed = {"route": "/v1/tts", "status": "499"}
    assert metrics_scrape.value(server.url, "voice_http_requests_total", closed) == 1.0
    assert metrics_scrape.value(server.url, "voice_http_requests_total", {"route": "/v1/tts", "status": "500"}) == 0.0
    # The server lives on. (An abandoned encoder crashed it once it was garbage-collected, which
    # may take longer than this; test_encoders proves that crash gone deterministically.)
    for _ in range(3):
        assert httpx.post(f"{server.url}/v1/tts", json={"text": "Still here?", "format": fmt}, timeout=60).status_code == 200
    assert server.process is not None and server.process.poll() is None
    assert "Traceback" not in server.log_path.read_text()


def test_waiting_request_whose_client_left_leaves_the_queue(start_server) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "100"})
    with httpx.stream("POST", f"{server.url}/v1/tts", json={"text": LONG_TEXT, "streaming": True}, timeout=60) as r:
        chunks = r.iter_raw()
        next(chunks)  # the engine is busy with this one
        body = json.dumps({"text": "I will not wait."}).encode()
        head = f"POST /v1/tts HTTP/1.1\r\nHost: {server.url[7:]}\r\nContent-Type: application/json\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as impatient:
            impatient.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            assert metrics_scrape.wait_for(server.url, "voice_queue_depth", 1.0) == 1.0, "queued"
        # The client hung up while its request waited: it leaves the queue, the running one goes on.
        assert metrics_scrape.wait_for(server.url, "voice_queue_depth", 0.0) == 0.0
        assert metrics_scrape.value(server.url, "voice_in_flight_requests") == 1.0
        left = {"route": "/v1/tts", "status": "499"}
        assert metrics_scrape.value(server.url, "voice_http_requests_total", left) == 1.0
        rest = b"".join(chunks)
    assert len(rest) > 0
    assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0.0) == 0.0
    served = {"route": "/v1/tts", "status": "200"}
    assert metrics_scrape.value(server.url, "voice_http_requests_total", served) == 1.0, "only the running one"


def test_slow_synthesis_times_out_with_504(start_server) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "200", "VOICE_REQUEST_TIMEOUT_SECONDS": "0.5"})
    response = httpx.post(f"{server.url}/v1/tts", json={"text": LONG_TEXT}, timeout=60)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0.0) == 0.0


def test_a_timeout_after_audio_was_sent_cuts_the_connection(start_server) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "200", "VOICE_REQUEST_TIMEOUT_SECONDS": "2"})
    received = b""
    body = {"text": LONG_TEXT, "streaming": True, "format": "pcm"}
    with httpx.stream("POST", f"{server.url}/v1/tts", json=body, timeout=60) as response:
        assert response.status_code == 200  # the headers left with the first audio, before the timeout
        # A clean end here would pass for complete audio: the client must see a broken body.
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            for part in response.iter_raw():
                received += part
    assert len(received) > 0
    assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0.0) == 0.0
    assert httpx.post(f"{server.url}/v1/tts", json={"text": "Short."}, timeout=60).status_code == 200


def test_ready_only_after_warm_up(start_server) -> None:
    # Warm-up synthesizes 12 frames = 2 chunks; at 1.5 s a chunk it takes 3 s.
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "1500"}, wait_ready=False)
    live = httpx.get(f"{server.url}/health/live")
    loading = httpx.get(f"{server.url}/health/ready")
    early = httpx.post(f"{server.url}/v1/tts", json={"text": "Too soon."})
    assert live.status_code == 200
    assert (loading.status_code, loading.json()["status"]) == (503, "loading")
    assert (early.status_code, early.json()["error"]["code"]) == (503, "not_ready")
    server.wait("/health/ready", timeout=60)
    assert httpx.get(f"{server.url}/health/ready").json() == {"status": "ready", "engine": "mock"}
