"""``GET /v1/tts/live`` over a real WebSocket (aiohttp's client): the protocol's details and its
failures, which the official SDK hides (it raises one WebSocketError for every ``finish``
error).

What can break: audio held until ``stop``, several WAV headers in one session, a bad ``start``
answered with a closed socket instead of a ``finish`` naming the field, a session that never
ends when the client goes quiet, work left running after a disconnect, the route open without
a key, a client that reads slowly making the server buffer the whole session.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import ormsgpack
import pytest
import soundfile

from tests import metrics_scrape
from tests.audio_checks import decode
from tests.integration.conftest import StartServer
from tests.servers import ServerProcess

FIRST = "The quick brown fox jumps over the lazy dog."
SECOND = "Pack my box with five dozen liquor jugs!"


@asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http", "ws", 1) + "/v1/tts/live", **kwargs) as ws:
            yield ws


async def send(ws: aiohttp.ClientWebSocketResponse, event: str, **fields: Any) -> None:
    await ws.send_bytes(ormsgpack.packb({"event": event, **fields}))


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 30) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout)
    assert message.type == aiohttp.WSMsgType.BINARY, message
    return ormsgpack.unpackb(message.data)


async def until_finish(ws: aiohttp.ClientWebSocketResponse) -> tuple[bytes, dict[str, Any]]:
    """All audio up to the finish event, and that event."""
    audio = bytearray()
    while (event := await receive(ws))["event"] != "finish":
        assert event["event"] == "audio"
        audio += event["audio"]
    return bytes(audio), event


async def test_first_audio_comes_after_the_first_sentence_not_after_stop(server: ServerProcess) -> None:
    async with connect(server.url) as ws:
        await send(ws, "start", request={"format": "wav", "seed": 3})
        for word in FIRST.split():
            await send(ws, "text", text=word + " ")
        await send(ws, "text", text="Pack")  # the full stop is settled by what follows it
        first = await receive(ws)
        assert first["event"] == "audio" and first["audio"][:4] == b"RIFF"
        for word in SECOND.split()[1:]:
            await send(ws, "text", text=" " + word)
        await send(ws, "stop")
        rest, finish = await until_finish(ws)
    assert finish == {"event": "finish", "reason": "stop"}
    data = first["audio"] + rest
    assert data.count(b"RIFF") == 1  # one continuous stream: one header for both segments
    samples, rate, _ = decode(data, "wav")
    # The mock speaks about 14 characters a second; both sentences are in the audio.
    assert samples.shape[0] / rate == pytest.approx(len(FIRST + SECOND) * 1.5 * 2048 / 44_100, rel=0.1)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "pcm"])
async def test_every_format_is_one_stream_across_segments(server: ServerProcess, fmt: str) -> None:
    async with connect(server.url) as ws:
        await send(ws, "start", request={"format": fmt, "sample_rate": 24_000})
        await send(ws, "text", text=FIRST + " ")
        await send(ws, "flush")
        await send(ws, "text", text=SECOND)
        await send(ws, "stop")
        data, finish = await until_finish(ws)
    assert finish["reason"] == "stop"
    samples, rate, channels = decode(data, fmt, pcm_rate=24_000)
    assert channels == 1 and rate == (48_000 if fmt == "opus" else 24_000)
    assert samples.shape[0] / rate == pytest.approx(len(FIRST + SECOND) * 1.5 * 2048 / 44_100, rel=0.1)


async def test_a_session_is_deterministic_with_a_seed(server: ServerProcess) -> None:
    async def once() -> bytes:
        async with connect(server.url) as ws:
            await send(ws, "start", request={"format": "wav", "seed": 11, "text": FIRST + " "})
            await send(ws, "text", text=SECOND)
            await send(ws, "stop")
            return (await until_finish(ws))[0]

    first, second = await once(), await once()
    assert first == second and soundfile.info(io.BytesIO(first)).duration > 3


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [({"format": "ogg"}, "request.format"), ({"chunk_length": 50}, "request.chunk_length"),
     ({"sample_rate": 44_100, "format": "opus"}, "request.sample_rate"),
     ({"reference_id": "nobody"}, "request.reference_id")],
)  # fmt: skip
async def test_an_invalid_start_is_a_finish_error_naming_the_field(
    server: ServerProcess, request_fields: dict[str, Any], field: str
) -> None:
    async with connect(server.url) as ws:
        await send(ws, "start", request=request_fields)
        finish = await receive(ws)
        assert (await ws.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert finish["event"] == "finish" and finish["reason"] == "error"
    assert finish["field"] == field
    if field == "request.reference_id":
        assert finish["status"] == 404 and "'nobody' does not exist" in finish["message"]
    else:
        assert finish["status"] == 422 and finish["message"].startswith(field)


@pytest.mark.parametrize(
    ("frames", "code"),
    [([b"\xc1not msgpack"], "malformed_event"), ([{"event": "text", "text": "hi"}], "start_expected"),
     ([{"event": "start", "request": {}}, {"event": "dance"}], "unknown_event"),
     ([{"event": "start", "request": {}}, {"event": "text", "text": 5}], "invalid_field")],
)  # fmt: skip
async def test_bad_events_end_the_session_with_their_reason(server: ServerProcess, frames: list, code: str) -> None:
    async with connect(server.url) as ws:
        for frame in frames:
            await ws.send_bytes(frame if isinstance(frame, bytes) else ormsgpack.packb(frame))
        finish = await receive(ws)
    assert (finish["event"], finish["reason"], finish["code"]) == ("finish", "error", code)
    # The server keeps serving.
    async with connect(server.url) as ws:
        await send(ws, "start", request={"text": FIRST})
        await send(ws, "stop")
        assert (await until_finish(ws))[1]["reason"] == "stop"


async def test_a_plain_get_is_426_upgrade_required_as_json(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/v1/tts/live") as response:
        assert response.status == 426
        assert (response.headers["Upgrade"], response.headers["Sec-WebSocket-Version"]) == ("websocket", "13")
        assert (await response.json())["error"]["code"] == "websocket_required"


async def test_idle_and_overlong_sessions_are_closed_with_a_reason(start_server: StartServer) -> None:
    server = start_server({"VOICE_LIVE_IDLE_TIMEOUT_SECONDS": "0.5", "VOICE_LIVE_MAX_TEXT_LENGTH": "60"})
    async with connect(server.url) as ws:
        await send(ws, "start", request={})
        assert (await receive(ws))["code"] == "idle_timeout"
    async with connect(server.url) as ws:  # never sends start
        assert (await receive(ws))["code"] == "idle_timeout"
    async with connect(server.url) as ws:
        await send(ws, "start", request={})
        await send(ws, "text", text=FIRST)
        await send(ws, "text", text=SECOND)
        _, finish = await until_finish(ws)
    assert (finish["reason"], finish["code"], finish["status"]) == ("error", "text_too_long", 413)


async def test_the_session_length_is_bounded(start_server: StartServer) -> None:
    server = start_server({"VOICE_LIVE_MAX_SESSION_SECONDS": "1"})
    async with connect(server.url) as ws:
        await send(ws, "start", request={})
        await send(ws, "text", text="still thinking")
        finish = await receive(ws)
    assert finish["code"] == "session_too_long"


async def test_the_socket_needs_the_api_key(start_server: StartServer) -> None:
    server = start_server({"VOICE_API_KEYS": "sesame", "VOICE_CORS_ALLOW_ORIGINS": "https://app.example"})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with connect(server.url):
            pass
    assert refused.value.status == 401
    headers = {"Authorization": "Bearer sesame", "Origin": "https://app.example"}  # a browser's, with CORS on
    async with connect(server.url, headers=headers) as ws:
        await send(ws, "start", request={"text": FIRST})
        await send(ws, "stop")
        assert (await until_finish(ws))[1]["reason"] == "stop"


async def test_a_disconnect_mid_session_leaves_no_work_in_flight(start_server: StartServer) -> None:
    server = start_server({"VOICE_MOCK_CHUNK_COST_MS": "40"})
    sentences = [f"Sentence number {i} is here to keep the engine busy for a while." for i in range(10)]
    async with connect(server.url) as ws:
        await send(ws, "start", request={"format": "wav"})
        await send(ws, "text", text=" ".join(sentences))
        await send(ws, "flush")
        assert (await receive(ws))["event"] == "audio"
        assert metrics_scrape.value(server.url, "voice_live_sessions") == 1
    # The client is gone: the session closes, its job stops, nothing waits in the queue.
    assert metrics_scrape.wait_for(server.url, "voice_live_sessions", 0) == 0
    assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0) == 0
    assert metrics_scrape.value(server.url, "voice_queue_depth") == 0
    assert metrics_scrape.value(server.url, "voice_live_segments_total") < len(sentences)
    assert metrics_scrape.value(server.url, "voice_live_time_to_first_audio_seconds_count") == 1


async def test_a_slow_reader_holds_the_server_back(start_server: StartServer) -> None:
    server = start_server()
    sentences = [f"Sentence {i} is long enough that its audio fills a socket buffer quickly, " * 3 for i in range(12)]
    async with connect(server.url, max_msg_size=0) as ws:
        await send(ws, "start", request={"format": "wav", "chunk_length": 300})
        for sentence in sentences:
            await send(ws, "text", text=sentence.strip() + ". ")
        await send(ws, "stop")
        # Not reading: the server synthesizes what the socket buffers hold, then waits.
        assert metrics_scrape.wait_for(server.url, "voice_live_segments_total", 1) >= 1
        stalled = _quiet(server.url, "voice_live_segments_total")
        # Its segment keeps its batch slot, but the engine stops stepping it: no work is done.
        _quiet(server.url, "voice_engine_step_seconds_count")
        assert metrics_scrape.value(server.url, "voice_in_flight_requests") <= 1
        assert stalled < len(sentences)
        data, finish = await until_finish(ws)
    assert finish["reason"] == "stop"
    assert metrics_scrape.value(server.url, "voice_live_segments_total") == len(sentences)
    assert soundfile.info(io.BytesIO(data)).duration > 30


def _quiet(url: str, sample: str, *, still_for: float = 1.0, timeout: float = 30.0) -> float:
    """Poll ``sample`` until it has not changed for ``still_for`` seconds; returns its value."""
    deadline = time.monotonic() + timeout
    last, since = metrics_scrape.value(url, sample), time.monotonic()
    while time.monotonic() < deadline:
        current = metrics_scrape.value(url, sample)
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= still_for:
            return current
        time.sleep(0.05)
    raise AssertionError(f"{sample} kept changing for {timeout} s")


async def test_live_sessions_share_the_scheduler_with_http_requests(start_server: StartServer) -> None:
    server = start_server({"VOICE_MOCK_CHUNK_COST_MS": "5"})
    async with connect(server.url) as ws, aiohttp.ClientSession() as http:
        await send(ws, "start", request={"format": "pcm"})
        await send(ws, "text", text=FIRST + " " + SECOND)
        await send(ws, "stop")
        live, speech = await asyncio.gather(
            until_finish(ws), http.post(f"{server.url}/v1/tts", json={"text": FIRST, "format": "pcm"})
        )
        assert speech.status == 200 and len(await speech.read()) > 0
    assert live[1]["reason"] == "stop" and len(live[0]) > 0
    assert metrics_scrape.value(server.url, "voice_live_segments_total") == 2
