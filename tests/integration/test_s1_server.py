"""The real server with the real S1 Mini engine (tiny random-weight checkpoint, CPU), end to end
over HTTP: ``/v1/tts`` plain, streamed, with an inline reference and with a stored voice,
``/v1/audio/speech`` through the ``openai`` SDK, and a ``/v1/tts/live`` session through Fish
Audio's SDK. Audio is decoded independently (PyAV)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests import s1_support

s1_support.require_engine()

import fishaudio  # noqa: E402
import openai  # noqa: E402
import soundfile  # noqa: E402
from fishaudio.types import TTSConfig  # noqa: E402

from tests import metrics_scrape  # noqa: E402
from tests.audio_checks import decode  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402

pytestmark = pytest.mark.s1

HOP = 2048  # samples per S1 Mini codec frame
TEXT = "Hello from the tiny model."
BODY = {"text": TEXT, "seed": 3, "max_new_tokens": 30, "format": "pcm"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("s1-server")
    env = {
        "VOICE_TTS_PROVIDER": "s1_mini",
        "VOICE_S1_CHECKPOINT_PATH": str(s1_support.tiny_checkpoint_dir(tmp_path_factory)),
        "VOICE_S1_DEVICE": "cpu",
        "VOICE_S1_CPU_THREADS": "1",
        "VOICE_REFERENCE_PATH": str(folder / "references"),
    }
    with ServerProcess(env, log_path=folder / "server.log") as running:
        yield running


def tts(server: ServerProcess, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/tts", json=body, timeout=120)


def pcm(data: bytes) -> np.ndarray:
    return decode(data, "pcm")[0]


def wav_bytes(seconds: float = 1.0, hz: float = 220.0, rate: int = 22_050) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, s1_support.tone(seconds, hz, rate), rate, format="WAV")
    return buffer.getvalue()


def test_ready_reports_the_s1_engine(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/health/ready").json()["engine"] == "s1_mini"


def test_plain_tts_returns_model_audio(server: ServerProcess) -> None:
    response = tts(server, {**BODY, "format": "wav"})
    assert response.status_code == 200, response.text
    samples, rate, channels = decode(response.content, "wav")
    assert (rate, channels) == (44_100, 1)
    assert 0 < samples.size <= 30 * HOP and samples.size % HOP == 0  # whole codec frames
    assert np.abs(samples).max() > 0.01  # the codec's output, not silence
    again = tts(server, {**BODY, "format": "wav"})
    assert again.content == response.content  # seeded: the same bytes


def test_streamed_tts_arrives_while_the_model_works_and_matches_plain(server: ServerProcess) -> None:
    body = {**BODY, "max_new_tokens": 90}  # chunks of 8, 16, 32, 34 frames: the last ones take a while
    plain = tts(server, body).content
    with httpx.stream("POST", f"{server.url}/v1/tts", json={**body, "streaming": True}, timeout=120) as response:
        assert response.status_code == 200
        parts = response.iter_raw()
        first = next(part for part in parts if part)
        # Bytes in a few reads prove nothing (a whole body arrives so too): the model is still at work.
        assert metrics_scrape.value(server.url, "voice_in_flight_requests") == 1.0
        streamed = pcm(first + b"".join(parts))
    assert streamed.size == pcm(plain).size
    np.testing.assert_allclose(streamed, pcm(plain), atol=2 / 32767)


def test_inline_reference_changes_the_voice(server: ServerProcess) -> None:
    plain = tts(server, BODY)
    reference = {"audio": base64.b64encode(wav_bytes()).decode(), "text": "A calm low tone."}
    cloned = tts(server, {**BODY, "references": [reference]})
    again = tts(server, {**BODY, "references": [reference]})
    assert cloned.status_code == 200, cloned.text
    assert cloned.content == again.content  # the second one came from the reference cache
    assert cloned.content != plain.content
    assert pcm(cloned.content).size > 0


def test_references_that_fill_the_model_context_are_413(server: ServerProcess) -> None:
    """The client's input, not a server failure: the tiny model's context is 2560 tokens."""
    reference = {"audio": base64.b64encode(wav_bytes()).decode(), "text": "word " * 600}
    response = tts(server, {**BODY, "references": [reference]})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
    assert "leaves no room" in response.json()["error"]["message"]


def test_stored_voice_by_reference_id(server: ServerProcess) -> None:
    upload = httpx.post(
        f"{server.url}/v1/voices", data={"id": "narrator", "text": "A calm low tone."},
        files={"audio": ("narrator.wav", wav_bytes(), "audio/wav")}, timeout=30,
    )  # fmt: skip
    assert upload.status_code == 201, upload.text
    stored = tts(server, {**BODY, "reference_id": "narrator"})
    assert stored.status_code == 200, stored.text
    assert stored.content != tts(server, BODY).content
    inline = {"audio": base64.b64encode(wav_bytes()).decode(), "text": "A calm low tone."}
    # The same voice by id or inline: the same prompt codes, so (seeded) the same audio.
    assert stored.content == tts(server, {**BODY, "references": [inline]}).content


def test_openai_speech_endpoint(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
    response = client.audio.speech.create(model="s1-mini", voice="default", input=TEXT, response_format="wav")
    samples, rate, channels = decode(response.content, "wav")
    assert (rate, channels) == (44_100, 1)
    assert samples.size > 0 and samples.size % HOP == 0

    with client.audio.speech.with_streaming_response.create(
        model="s1-mini", voice="narrator", input=TEXT, response_format="pcm"
    ) as streamed:
        body = b"".join(streamed.iter_bytes())
    assert len(body) > 0 and len(body) % (2 * HOP) == 0


def test_live_session_through_the_fish_sdk(server: ServerProcess) -> None:
    """Two segments through the real model, the second continuing from the first's audio."""
    sdk = fishaudio.FishAudio(api_key="unused", base_url=server.url)
    pieces = iter(["Hello from the ", "tiny model. ", "And a ", "second sentence."])
    config = TTSConfig(format="pcm", max_new_tokens=20)
    audio = pcm(b"".join(sdk.tts.stream_websocket(pieces, config=config)))
    assert 0 < audio.size <= 2 * 20 * HOP  # max_new_tokens bounds each segment
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert "voice_live_segments_total 2.0" in text
