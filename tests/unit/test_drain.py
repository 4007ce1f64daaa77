"""Once shutdown begins (``Scheduler.drain``, run by the app's on_shutdown hook), readiness
answers 503 ``draining`` and new synthesis gets a JSON 503, over real HTTP on loopback.
The whole SIGTERM sequence, with a process, is tests/integration/test_shutdown.py."""

from __future__ import annotations

import asyncio
import pathlib

from aiohttp.test_utils import TestClient, TestServer

from voice_inference import synthesis
from voice_inference.app import build_app
from voice_inference.settings import Settings


async def test_draining_server_is_unready_and_refuses_new_work(tmp_path: pathlib.Path) -> None:
    app = build_app(Settings(tts_provider="mock", reference_path=str(tmp_path), warmup=False))
    async with TestClient(TestServer(app)) as client:
        scheduler = app[synthesis.SERVICES].scheduler
        async with asyncio.timeout(30):  # the engine loads in the background
            while (await client.get("/health/ready")).status != 200:
                await asyncio.sleep(0.02)

        scheduler.drain()
        ready = await client.get("/health/ready")
        assert ready.status == 503 and (await ready.json())["status"] == "draining"
        refused = await client.post("/v1/tts", json={"text": "hello"})
        assert refused.status == 503
        error = (await refused.json())["error"]
        assert error["code"] == "not_ready" and "shutting down" in error["message"]
        assert (await client.get("/health/live")).status == 200  # alive: the kubelet must not restart it
