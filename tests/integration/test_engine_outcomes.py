"""What a client sees when the engine fails or says nothing, over real HTTP.

The real app (``app.build_app``) runs in this process on a loopback port with a scripted
engine in place of a model (nothing else can make a model fail on cue), so the whole path
runs: scheduler, synthesis, encoders, middlewares, aiohttp's HTTP writer. Covers: a failure
after audio has been sent cuts the connection (a broken body, never a clean end that passes
for complete audio); a failure before any audio is a JSON 500, streamed or not; an engine
that ends without a sample is a JSON 422 ``no_audio`` on both routes, in every format,
streamed or not, never a 200 with an empty body.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from aiohttp import web
from voice_inference import app as app_mod
from voice_inference import settings as settings_mod
from voice_inference.engines import base

CHUNK = 4096  # samples per scripted chunk
FORMATS = ["wav", "pcm", "mp3", "opus", "flac"]


class ScriptedEngine(base.Engine):
    """Text ``fail after N`` yields N chunks then raises; ``silent`` yields only empty chunks;
    ``nothing`` yields none; anything else yields 3 chunks of a tone."""

    name = "scripted"
    sample_rate = 44_100

    def load(self) -> None:
        pass

    def generate(self, request: base.SynthesisRequest, cancelled: threading.Event) -> Iterator[np.ndarray]:
        tone = (0.3 * np.sin(np.arange(CHUNK) * 2 * np.pi * 440 / self.sample_rate)).astype(np.float32)
        if request.text == "nothing":
            return
        if request.text == "silent":
            yield from (np.zeros(0, dtype=np.float32) for _ in range(3))
            return
        count = int(request.text.removeprefix("fail after ")) if request.text.startswith("fail after") else 3
        for _ in range(count):
            yield tone
        if request.text.startswith("fail after"):
            raise RuntimeError("the model fell over")


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    settings = settings_mod.Settings(tts_provider="mock", reference_path=tmp_path / "references", warmup=False)
    runner = web.AppRunner(app_mod.build_app(settings, engine=ScriptedEngine()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    address = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(500):  # the engine loads in the background; bounded wait for ready
                if (await client.get(f"{address}/health/ready")).status_code == 200:
                    break
        yield address
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("fmt", ["pcm", "mp3"])
async def test_a_failure_after_audio_was_sent_cuts_the_connection(url: str, fmt: str) -> None:
    received = b""
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"text": "fail after 3", "format": fmt, "streaming": True}
        async with client.stream("POST", f"{url}/v1/tts", json=body) as response:
            assert response.status_code == 200  # the headers left with the first audio
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                async for part in response.aiter_raw():
                    received += part
        if fmt == "pcm":
            assert len(received) == 3 * CHUNK * 2, "what was made before the failure was delivered"
        assert (await client.post(f"{url}/v1/tts", json={"text": "fine", "format": fmt})).status_code == 200


async def test_a_failure_mid_way_through_a_whole_response_is_a_json_500(url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{url}/v1/tts", json={"text": "fail after 3"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "synthesis_failed"
    assert "RuntimeError" in response.json()["error"]["message"]


@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streamed"])
async def test_a_failure_before_any_audio_is_a_json_500(url: str, streaming: bool) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{url}/v1/tts", json={"text": "fail after 0", "streaming": streaming})
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "synthesis_failed"


@pytest.mark.parametrize("text", ["nothing", "silent"])
@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("fmt", FORMATS)
async def test_no_audio_is_a_422_not_an_empty_200(url: str, fmt: str, streaming: bool, text: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{url}/v1/tts", json={"text": text, "format": fmt, "streaming": streaming})
    assert response.status_code == 422, response.content[:200]
    assert response.json()["error"]["code"] == "no_audio"


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
async def test_no_audio_on_the_openai_route_is_a_422_in_its_shape(url: str, stream_format: str) -> None:
    body = {"model": "s1-mini", "voice": "default", "input": "nothing", "stream_format": stream_format}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{url}/v1/audio/speech", json=body)
        metrics = (await client.get(f"{url}/metrics")).text
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "no_audio"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert 'voice_http_requests_total{method="POST",route="/v1/audio/speech",status="422"} 1.0' in metrics
