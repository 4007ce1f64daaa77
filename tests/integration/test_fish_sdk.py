"""Fish Audio's official Python SDK (``fish-audio-sdk``) pointed at our server, used the way its
own documentation shows: ``tts.convert``, ``tts.stream``, ``tts.stream_websocket`` and
``voices.*``, with the SDK's defaults as ordinary input.

What can break: a field the SDK always sends (sample_rate, bitrates, min_chunk_length, ...)
refused or ignored, audio that only arrives after the text generator finished, a voice
created through ``/model`` that ``reference_id`` cannot find, errors that are not the SDK's
own exception types, a live session whose disconnect leaves work running.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator, Iterator

import fishaudio
import httpx
import httpx_ws
import numpy as np
import pytest
import soundfile
from fishaudio import exceptions
from fishaudio.types import Prosody, TTSConfig

from tests import metrics_scrape
from tests.audio_checks import decode
from tests.integration.conftest import StartServer
from tests.servers import ServerProcess

TEXT = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!"
MOCK_SECONDS_PER_CHAR = 1.5 * 2048 / 44_100  # the mock engine's pace


def client(server: ServerProcess, api_key: str = "unused") -> fishaudio.FishAudio:
    return fishaudio.FishAudio(api_key=api_key, base_url=server.url)


def wav_clip(seconds: float, rate: int, hz: float = 220.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "rate"), [("mp3", None), ("wav", 24_000), ("pcm", 16_000), ("opus", None)])
def test_convert_with_the_sdk_defaults(server: ServerProcess, fmt: str, rate: int | None) -> None:
    audio = client(server).tts.convert(text=TEXT, config=TTSConfig(format=fmt, sample_rate=rate))  # type: ignore[arg-type]
    samples, got_rate, channels = decode(audio, fmt, pcm_rate=rate or 44_100)
    assert channels == 1
    assert got_rate == (rate or (48_000 if fmt == "opus" else 44_100))
    assert samples.shape[0] / got_rate == pytest.approx(len(TEXT) * MOCK_SECONDS_PER_CHAR, rel=0.05)


def test_stream_yields_chunks_and_prosody_applies(server: ServerProcess) -> None:
    sdk = client(server)
    # The SDK's stream sends no `streaming: true`, so the body is one whole file (in HTTP chunks).
    streamed = b"".join(sdk.tts.stream(text=TEXT, format="wav"))
    assert streamed[:4] == b"RIFF"
    normal = soundfile.read(io.BytesIO(streamed))[0]
    fast = soundfile.read(io.BytesIO(sdk.tts.convert(text=TEXT, format="wav", speed=2.0)))[0]
    quiet = soundfile.read(io.BytesIO(sdk.tts.convert(text=TEXT, format="wav", config=TTSConfig(
        prosody=Prosody(volume=-12.0)))))[0]  # fmt: skip
    assert fast.shape[0] == pytest.approx(normal.shape[0] / 2, rel=0.05)
    assert np.abs(quiet).max() == pytest.approx(np.abs(normal).max() * 10 ** (-12 / 20), rel=0.02)


def test_mp3_bitrate_reaches_the_encoder(server: ServerProcess) -> None:
    sdk = client(server)
    low = sdk.tts.convert(text=TEXT, config=TTSConfig(format="mp3", mp3_bitrate=64))
    high = sdk.tts.convert(text=TEXT, config=TTSConfig(format="mp3", mp3_bitrate=192))
    assert len(high) == pytest.approx(3 * len(low), rel=0.1)


def test_stream_websocket_audio_arrives_while_the_text_still_streams(server: ServerProcess) -> None:
    first_audio = threading.Event()
    generator_done_at: list[float] = []

    def llm() -> Iterator[str]:
        """An LLM's tokens: a word or less at a time, paced, and stalled until speech starts."""
        words = TEXT.split(" ")
        for word in words[:10]:  # the first sentence and one more word
            yield word + " "
            time.sleep(0.01)
        first_audio.wait(timeout=30)  # the first sentence must be spoken before the rest exists
        for word in words[10:]:
            for piece in (word[: len(word) // 2], word[len(word) // 2 :] + " "):
                yield piece
        generator_done_at.append(time.monotonic())

    audio = bytearray()
    first_audio_at = None
    for chunk in client(server).tts.stream_websocket(llm(), format="wav", latency="balanced"):
        if first_audio_at is None:
            first_audio_at = time.monotonic()
            first_audio.set()
        audio += chunk
    assert first_audio_at is not None and generator_done_at and first_audio_at < generator_done_at[0]
    info = soundfile.info(io.BytesIO(bytes(audio)))
    assert (info.samplerate, info.channels, info.format) == (44_100, 1, "WAV")
    samples = soundfile.read(io.BytesIO(bytes(audio)))[0]
    assert samples.shape[0] / 44_100 == pytest.approx(len(TEXT) * MOCK_SECONDS_PER_CHAR, rel=0.1)


async def test_async_client_streams_from_an_async_generator(server: ServerProcess) -> None:
    first_audio = asyncio.Event()

    async def llm() -> AsyncIterator[str]:
        for word in TEXT.split(" ")[:10]:
            yield word + " "
        await asyncio.wait_for(first_audio.wait(), timeout=30)  # spoken before the rest is written
        yield " ".join(TEXT.split(" ")[10:])

    sdk = fishaudio.AsyncFishAudio(api_key="unused", base_url=server.url)
    audio = bytearray()
    async for chunk in sdk.tts.stream_websocket(llm(), format="pcm", config=TTSConfig(sample_rate=16_000)):
        first_audio.set()
        audio += chunk
    samples = decode(bytes(audio), "pcm", pcm_rate=16_000)[0]
    assert samples.shape[0] / 16_000 == pytest.approx(len(TEXT) * MOCK_SECONDS_PER_CHAR, rel=0.1)


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_stream_websocket_compressed_formats_decode_as_one_file(server: ServerProcess, fmt: str) -> None:
    pieces = iter([TEXT[i : i + 5] for i in range(0, len(TEXT), 5)])
    data = b"".join(client(server).tts.stream_websocket(pieces, format=fmt))  # type: ignore[arg-type]
    samples, rate, channels = decode(data, fmt)
    assert channels == 1
    assert samples.shape[0] / rate == pytest.approx(len(TEXT) * MOCK_SECONDS_PER_CHAR, rel=0.1)


def test_voices_create_list_use_and_delete(server: ServerProcess) -> None:
    sdk = client(server)
    before = sdk.voices.list(page_size=100).total
    voice = sdk.voices.create(
        title="Narrator Two", voices=[wav_clip(1.0, 22_050), wav_clip(0.5, 16_000, hz=330.0)],
        texts=["First clip.", "Second clip."], description="not stored", tags=["calm"], visibility="public",
    )  # fmt: skip
    assert voice.id.startswith("narrator-two-") and voice.state == "trained"
    assert voice.samples[0].text == "First clip. Second clip."
    listed = sdk.voices.list(page_size=100)
    assert listed.total == before + 1 and voice.id in [item.id for item in listed.items]
    assert sdk.voices.list(title="narrator-two").items[0].id == voice.id
    assert sdk.voices.get(voice.id).id == voice.id
    # The stored voice is one reference of both clips, joined at the first clip's rate.
    stored = httpx.get(f"{server.url}/v1/voices/{voice.id}").json()
    assert stored["sample_rate"] == 22_050 and stored["duration_seconds"] == pytest.approx(1.5, abs=0.01)

    default = sdk.tts.convert(text=TEXT, format="wav")
    cloned = sdk.tts.convert(text=TEXT, format="wav", reference_id=voice.id)
    live = b"".join(sdk.tts.stream_websocket(iter([TEXT]), format="wav", reference_id=voice.id))
    assert cloned != default and len(live) > 44

    sdk.voices.delete(voice.id)
    with pytest.raises(exceptions.NotFoundError):
        sdk.voices.get(voice.id)
    with pytest.raises(exceptions.NotFoundError):
        sdk.tts.convert(text=TEXT, reference_id=voice.id)


def test_pagination_pages_through_every_voice(server: ServerProcess) -> None:
    sdk = client(server)
    created = {sdk.voices.create(title=f"page {i}", voices=[wav_clip(0.3, 16_000)], texts=["Hi."]).id for i in range(3)}
    total = sdk.voices.list(page_size=2).total
    seen = [item.id for page in range(1, total // 2 + 2) for item in sdk.voices.list(page_size=2, page_number=page).items]
    assert len(seen) == len(set(seen)) == total and created <= set(seen)
    for voice_id in created:
        sdk.voices.delete(voice_id)


def test_errors_are_the_sdks_own_exceptions(start_server: StartServer) -> None:
    server = start_server({"VOICE_API_KEYS": "sesame"})
    with pytest.raises(exceptions.AuthenticationError):
        client(server, "wrong").tts.convert(text=TEXT)
    with pytest.raises(exceptions.AuthenticationError):
        client(server, "wrong").voices.list()
    with pytest.raises(httpx_ws.WebSocketUpgradeError) as refused:  # what the SDK lets through for a refused upgrade
        list(client(server, "wrong").tts.stream_websocket(iter([TEXT])))
    assert refused.value.response.status_code == 401

    sdk = client(server, "sesame")
    with pytest.raises(exceptions.NotFoundError):
        sdk.tts.convert(text=TEXT, reference_id="nobody")
    with pytest.raises(exceptions.APIError) as invalid:
        sdk.voices.create(title="no transcript", voices=[wav_clip(0.3, 16_000)])
    assert invalid.value.status == 422 and "texts" in invalid.value.message
    with pytest.raises(exceptions.WebSocketError):
        list(sdk.tts.stream_websocket(iter([TEXT]), reference_id="nobody"))
    with pytest.raises(exceptions.APIError) as bad_rate:
        sdk.tts.convert(text=TEXT, config=TTSConfig(format="opus", sample_rate=44_100))
    assert bad_rate.value.status == 422 and "sample_rate" in bad_rate.value.message


def test_read_only_storage_refuses_creation(start_server: StartServer) -> None:
    # The Hub backend is read-only; its repo is never reached: creation is refused first.
    server = start_server({"VOICE_REFERENCE_STORAGE": "huggingface", "VOICE_REFERENCE_HF_REPO": "nobody/voices",
                           "VOICE_REFERENCE_HF_ENDPOINT": "http://127.0.0.1:9"})  # fmt: skip
    with pytest.raises(exceptions.APIError) as refused:
        client(server).voices.create(title="x", voices=[wav_clip(0.3, 16_000)], texts=["Hi."])
    assert refused.value.status == 405


def test_a_disconnect_mid_stream_websocket_leaves_no_work_in_flight(start_server: StartServer) -> None:
    server = start_server({"VOICE_MOCK_CHUNK_COST_MS": "40"})
    text = " ".join(f"Sentence number {i} keeps the engine busy for a good while." for i in range(10))
    stream = client(server).tts.stream_websocket(iter([text]), format="wav")
    assert next(stream)[:4] == b"RIFF"
    stream.close()  # leaves the SDK's connection context: the socket closes mid-session
    assert metrics_scrape.wait_for(server.url, "voice_live_sessions", 0) == 0
    assert metrics_scrape.wait_for(server.url, "voice_in_flight_requests", 0) == 0
    assert metrics_scrape.value(server.url, "voice_queue_depth") == 0
    assert metrics_scrape.value(server.url, "voice_live_segments_total") < 10
