"""``POST /v1/audio/speech`` through the official ``openai`` SDK (pointed at our server with
``base_url``): every response format, streaming that really streams (bytes and server-sent
events arrive while the engine is still at work), stored voices, and errors in OpenAI's shape
(which the SDK turns into its own exception types)."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from tests import metrics_scrape
from tests.audio_checks import decode
from tests.integration.test_tts_api import wav_bytes
from tests.servers import ServerProcess

TEXT = "Hello from the OpenAI compatible route."


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize(
    "fmt,rate", [("mp3", 44_100), ("opus", 48_000), ("aac", 44_100), ("flac", 44_100), ("wav", 44_100), ("pcm", 44_100)]
)
def test_sdk_gets_audio_in_every_format(client: openai.OpenAI, server: ServerProcess, fmt: str, rate: int) -> None:
    expected = decode(httpx.post(f"{server.url}/v1/tts", json={"text": TEXT, "format": "pcm"}).content, "pcm")[0]

    response = client.audio.speech.create(model="s1-mini", voice="default", input=TEXT, response_format=fmt)

    samples, got_rate, channels = decode(response.content, fmt)
    assert (got_rate, channels) == (rate, 1)
    assert samples.shape[0] / got_rate == pytest.approx(expected.shape[0] / 44_100, abs=0.08)


def test_sdk_streaming_response_arrives_while_the_engine_works(start_server) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "100"})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    with client.audio.speech.with_streaming_response.create(
        model="s1-mini", voice="default", input=TEXT * 3, response_format="pcm"
    ) as response:
        parts = response.iter_bytes()  # as the bytes arrive: no re-chunking that would hide a whole body
        first = next(part for part in parts if part)
        assert metrics_scrape.value(server.url, "voice_in_flight_requests") == 1.0, "the engine is still at work"
        rest = b"".join(parts)
    plain = httpx.post(f"{server.url}/v1/tts", json={"text": TEXT * 3, "format": "pcm"}, timeout=60).content
    assert first + rest == plain
    assert len(rest) > 5 * len(first)


def test_speed_changes_duration(client: openai.OpenAI) -> None:
    normal = client.audio.speech.create(model="tts-1", voice="default", input=TEXT, response_format="pcm")
    fast = client.audio.speech.create(model="tts-1", voice="default", input=TEXT, response_format="pcm", speed=2.0)
    assert len(fast.content) == pytest.approx(len(normal.content) / 2, rel=0.1)


def test_stored_voice_is_used(client: openai.OpenAI, server: ServerProcess) -> None:
    upload = httpx.post(
        f"{server.url}/v1/voices", data={"id": "speaker-1", "text": "a tone"},
        files={"audio": ("a.wav", wav_bytes(hz=330.0), "audio/wav")},
    )  # fmt: skip
    assert upload.status_code == 201
    default = client.audio.speech.create(model="s1-mini", voice="default", input=TEXT, response_format="pcm")
    cloned = client.audio.speech.create(model="s1-mini", voice="speaker-1", input=TEXT, response_format="pcm")
    assert cloned.content != default.content


def test_unknown_voice_is_404_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.audio.speech.create(model="s1-mini", voice="alloy", input=TEXT)
    error = caught.value.body
    assert error == {
        "message": "voice 'alloy' does not exist", "type": "not_found_error", "param": "voice", "code": "voice_not_found",
    }  # fmt: skip


def test_invalid_speed_is_422_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.audio.speech.create(model="s1-mini", voice="default", input=TEXT, speed=9)
    assert caught.value.body["param"] == "speed"
    assert caught.value.body["type"] == "invalid_request_error"


def test_empty_input_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="s1-mini", voice="default", input="   ")
    assert caught.value.body["code"] == "empty_text"


def test_server_sent_events_arrive_while_the_engine_works(start_server) -> None:
    server: ServerProcess = start_server({"VOICE_MOCK_CHUNK_COST_MS": "100"})
    body = {"model": "s1-mini", "voice": "default", "input": TEXT * 3, "response_format": "pcm", "stream_format": "sse"}
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=60) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[len("data: "):])["type"] == "speech.audio.delta"
        assert metrics_scrape.value(server.url, "voice_in_flight_requests") == 1.0, "the engine is still at work"
        rest = [line for line in lines if line.startswith("data: ")]
    assert json.loads(rest[-1][len("data: "):])["type"] == "speech.audio.done"
    assert len(rest) > 5


def test_server_sent_events(server: ServerProcess) -> None:
    body = {"model": "s1-mini", "voice": "default", "input": TEXT, "response_format": "pcm", "stream_format": "sse"}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=60)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) > 1
    assert events[-1]["type"] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    plain = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "stream_format": "audio"}, timeout=60)
    assert pcm == plain.content


def test_voice_as_object(server: ServerProcess) -> None:
    body = {"model": "s1-mini", "voice": {"id": "default"}, "input": TEXT, "response_format": "wav"}
    assert httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=60).status_code == 200
