"""SIGTERM drains the real server process (tests/drain_checks.py has the policy and its
checks; tests/containers/test_inference_image.py runs the same checks on the image), and
work still going at the drain deadline ends without a 500: a 503, a cut stream, a live
session's ``finish`` error. Before the drain, ``VOICE_SHUTDOWN_DELAY_SECONDS`` keeps the
server serving while it closes each connection after its answer."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
from urllib.parse import urlsplit

import aiohttp
import httpx
import ormsgpack
import pytest

from tests import drain_checks
from tests.integration.conftest import StartServer


def test_sigterm_drains_accepted_requests_and_exits_zero(start_server: StartServer) -> None:
    server = start_server(drain_checks.SERVER_ENV)
    assert server.process is not None
    process = server.process

    outcome = drain_checks.check_drain(
        server.url,
        send_sigterm=lambda: process.send_signal(signal.SIGTERM),
        wait_exit=lambda timeout: process.wait(timeout=timeout),
    )
    drain_checks.assert_drained(outcome)
    log = server.log_path.read_text() if server.log_path else ""
    assert "Traceback" not in log



async def test_work_past_the_drain_deadline_ends_cleanly_and_the_process_exits_zero(start_server: StartServer) -> None:
    # 300 ms a chunk: each request needs far longer than the 1 s drain.
    server = start_server({"VOICE_MOCK_CHUNK_COST_MS": "300", "VOICE_DRAIN_SECONDS": "1"})
    assert server.process is not None
    process = server.process
    async with aiohttp.ClientSession(server.url) as session:
        whole = asyncio.create_task(session.post("/v1/tts", json={"text": drain_checks.TEXT, "format": "wav"}))
        async with session.post("/v1/tts", json={"text": drain_checks.TEXT, "format": "pcm", "streaming": True}) as stream:
            await stream.content.readany()  # its audio has started
            async with session.ws_connect("/v1/tts/live") as ws:
                await ws.send_bytes(ormsgpack.packb({"event": "start", "request": {"text": drain_checks.TEXT, "format": "pcm"}}))
                await ws.send_bytes(ormsgpack.packb({"event": "flush"}))  # the text is a segment now
                first = ormsgpack.unpackb(await ws.receive_bytes(timeout=30))
                assert first["event"] == "audio"
                process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(15):
                    while (event := ormsgpack.unpackb(await ws.receive_bytes()))["event"] != "finish":
                        pass
            with pytest.raises(aiohttp.ClientPayloadError):  # cut, so the client knows it is incomplete
                while await stream.content.readany():
                    pass
        response = await whole
        status, error = response.status, (await response.json())["error"]
    assert event["reason"] == "error" and event["code"] == "shutting_down", event
    assert "server is shutting down" in event["message"]
    assert status == 503 and error["code"] == "shutting_down"
    assert await asyncio.to_thread(process.wait, 30) == 0
    log = server.log_path.read_text() if server.log_path else ""
    assert "Traceback" not in log


def test_sigterm_first_serves_on_closing_each_connection_after_its_answer(start_server: StartServer) -> None:
    # A delay far longer than the test: the second SIGTERM ends it, so nothing here races a clock.
    server = start_server({"VOICE_SHUTDOWN_DELAY_SECONDS": "600", "VOICE_LOG_LEVEL": "info"})
    assert server.process is not None
    process = server.process
    address = urlsplit(server.url)
    kept = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    kept.request("GET", "/health/ready")
    before = kept.getresponse()
    assert before.status == 200 and not before.will_close, "a keep-alive connection to reuse"
    before.read()
    kept.auto_open = 0  # from here any request must go over this very connection

    process.send_signal(signal.SIGTERM)
    # New connections are still accepted, and readiness already turns load balancers away.
    assert drain_checks.wait_for(lambda: _readiness(server.url) == (503, "draining"), timeout=15), _readiness(server.url)
    kept.request("POST", "/v1/tts", body=json.dumps({"text": "Still served.", "format": "pcm"}),
                 headers={"Content-Type": "application/json"})  # fmt: skip
    answer = kept.getresponse()
    audio = answer.read()
    assert answer.status == 200 and len(audio) > 1000, answer.status
    assert answer.getheader("Connection") == "close" and answer.will_close, "the server closes the connection it answered on"

    process.send_signal(signal.SIGTERM)  # the second signal cuts the delay short: listening stops, the drain runs
    assert drain_checks.wait_for(lambda: _readiness(server.url) is None, timeout=15), "the socket still listens"
    assert process.wait(timeout=30) == 0
    log = server.log_path.read_text() if server.log_path else ""
    assert "serving on for 600 s" in log and "Traceback" not in log


def _readiness(base_url: str) -> tuple[int, str] | None:
    """A new connection's readiness answer; None when nothing listens."""
    try:
        response = httpx.get(f"{base_url}/health/ready", timeout=5)
    except httpx.TransportError:
        return None
    return response.status_code, response.json()["status"]
