"""Once shutdown begins (``Scheduler.drain``, run by the app's on_shutdown hook), readiness
answers 503 ``draining`` and new work gets a JSON 503, while work accepted before it goes on
until the drain deadline (``Scheduler.end_drain``), over real HTTP and WebSockets on loopback.
The whole SIGTERM sequence, with a process, is tests/integration/test_shutdown.py."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ormsgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer

from voice_inference import synthesis
from voice_inference.app import build_app
from voice_inference.scheduler import Scheduler
from voice_inference.settings import Settings

TEXT = "A sentence long enough to keep the engine busy for a while as the server drains."


@pytest.fixture
async def client(tmp_path: pathlib.Path) -> AsyncIterator[TestClient]:
    # 50 ms a chunk: a request takes seconds, long enough to be running when the drain ends.
    settings = Settings(tts_provider="mock", reference_path=str(tmp_path), warmup=False, mock_chunk_cost_ms=50)
    async with TestClient(TestServer(build_app(settings))) as client:
        async with asyncio.timeout(30):  # the engine loads in the background
            while (await client.get("/health/ready")).status != 200:
                await asyncio.sleep(0.02)
        yield client


def _scheduler(client: TestClient) -> Scheduler:
    return client.app[synthesis.SERVICES].scheduler  # type: ignore[index]


async def _send(ws: aiohttp.ClientWebSocketResponse, event: str, **fields: Any) -> None:
    await ws.send_bytes(ormsgpack.packb({"event": event, **fields}))


async def _until_finish(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, dict[str, Any]]:
    """Audio bytes up to the finish event, and that event."""
    audio = 0
    async with asyncio.timeout(30):
        while (event := ormsgpack.unpackb((await ws.receive_bytes())))["event"] != "finish":
            audio += len(event["audio"])
    return audio, event


async def _first_audio(ws: aiohttp.ClientWebSocketResponse) -> None:
    async with asyncio.timeout(30):
        event = ormsgpack.unpackb(await ws.receive_bytes())
    assert event["event"] == "audio", event


async def _slots_free(scheduler: Scheduler) -> None:
    """Nothing is held any more: the engine thread released every row."""
    async with asyncio.timeout(10):
        while scheduler._jobs or scheduler._batches.table.in_use:
            await asyncio.sleep(0.01)


async def test_draining_server_is_unready_and_refuses_new_work(client: TestClient) -> None:
    _scheduler(client).drain()
    ready = await client.get("/health/ready")
    assert ready.status == 503 and (await ready.json())["status"] == "draining"
    refused = await client.post("/v1/tts", json={"text": "hello"})
    assert refused.status == 503
    error = (await refused.json())["error"]
    assert error["code"] == "not_ready" and "shutting down" in error["message"]
    assert (await client.get("/health/live")).status == 200  # alive: the kubelet must not restart it

    async with client.ws_connect("/v1/tts/live") as ws:  # a session not started before the drain
        await _send(ws, "start", request={"text": "Hello there.", "format": "pcm"})
        audio, finish = await _until_finish(ws)
    assert audio == 0 and finish["reason"] == "error" and finish["status"] == 503
    assert "shutting down" in finish["message"]


async def test_request_past_the_drain_deadline_gets_503_shutting_down(client: TestClient) -> None:
    scheduler = _scheduler(client)
    answer = asyncio.create_task(client.post("/v1/tts", json={"text": TEXT, "format": "wav"}))
    async with asyncio.timeout(10):
        while not scheduler._jobs:  # accepted: it holds a slot
            await asyncio.sleep(0.01)
    scheduler.drain()
    scheduler.end_drain()
    response = await answer
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    error = (await response.json())["error"]
    assert error["code"] == "shutting_down" and "shutting down" in error["message"]
    await _slots_free(scheduler)


async def test_live_session_started_before_the_drain_finishes_its_text(client: TestClient) -> None:
    async with client.ws_connect("/v1/tts/live") as ws:
        await _send(ws, "start", request={"format": "pcm"})
        await _send(ws, "text", text="First sentence here. ")
        await _send(ws, "flush")
        await _first_audio(ws)
        _scheduler(client).drain()
        await _send(ws, "text", text="Second sentence, sent while the server drains.")  # a new segment: accepted work
        await _send(ws, "stop")
        audio, finish = await _until_finish(ws)
    assert finish == {"event": "finish", "reason": "stop"}
    assert audio > 0


async def test_live_session_past_the_drain_deadline_finishes_with_shutting_down(client: TestClient) -> None:
    scheduler = _scheduler(client)
    async with client.ws_connect("/v1/tts/live") as ws:
        await _send(ws, "start", request={"format": "pcm"})
        await _send(ws, "text", text=TEXT)
        await _send(ws, "flush")
        await _first_audio(ws)
        scheduler.drain()
        scheduler.end_drain()  # the segment still runs; the client never said stop
        _, finish = await _until_finish(ws)
    assert finish["reason"] == "error" and finish["status"] == 503 and finish["code"] == "shutting_down"
    assert "server is shutting down" in finish["message"]
    await _slots_free(scheduler)
