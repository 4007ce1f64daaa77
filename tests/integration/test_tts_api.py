"""``POST /v1/tts`` over real HTTP: both body encodings, every format, determinism,
references, ``prosody.volume`` as a gain in dB, and the error table (each bad request gets its status and a JSON error, and the
server keeps serving)."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import ormsgpack
import pytest
import soundfile

from tests.audio_checks import decode
from tests.servers import ServerProcess

SENTENCE = "The quick brown fox jumps over the lazy dog."


def tts(server: ServerProcess, body: dict, *, msgpack: bool = False, **kwargs: object) -> httpx.Response:
    if msgpack:
        return httpx.post(
            f"{server.url}/v1/tts", content=ormsgpack.packb(body),
            headers={"Content-Type": "application/msgpack"}, timeout=60, **kwargs,
        )  # fmt: skip
    return httpx.post(f"{server.url}/v1/tts", json=body, timeout=60, **kwargs)


def wav_bytes(seconds: float = 1.0, hz: float = 220.0, rate: int = 22_050) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "fmt,content_type,rate",
    [("wav", "audio/wav", 44_100), ("pcm", "audio/pcm", 44_100), ("mp3", "audio/mpeg", 44_100),
     ("opus", "audio/ogg", 48_000), ("flac", "audio/flac", 44_100)],
)  # fmt: skip
@pytest.mark.parametrize("streaming", [False, True])
def test_every_format_decodes(server: ServerProcess, fmt: str, content_type: str, rate: int, streaming: bool) -> None:
    reference = tts(server, {"text": SENTENCE, "format": "wav"})
    expected_seconds = soundfile.info(io.BytesIO(reference.content)).duration

    response = tts(server, {"text": SENTENCE, "format": fmt, "streaming": streaming})

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith(content_type)
    samples, got_rate, channels = decode(response.content, fmt)
    assert (got_rate, channels) == (rate, 1)
    # Codecs pad a little (encoder delay, frame rounding); the duration must still match.
    assert samples.shape[0] / got_rate == pytest.approx(expected_seconds, abs=0.08)
    assert np.abs(samples).max() > 0.05  # real audio, not silence


def test_msgpack_and_json_give_the_same_audio(server: ServerProcess) -> None:
    body = {"text": SENTENCE, "seed": 7}
    as_json = tts(server, body)
    as_msgpack = tts(server, body, msgpack=True)
    assert as_json.status_code == as_msgpack.status_code == 200
    assert as_json.content == as_msgpack.content


def test_audio_length_follows_text(server: ServerProcess) -> None:
    short = soundfile.info(io.BytesIO(tts(server, {"text": "Hello there."}).content)).duration
    long = soundfile.info(io.BytesIO(tts(server, {"text": "Hello there. " * 6}).content)).duration
    assert long > 4 * short


def test_same_seed_same_bytes_and_seed_matters(server: ServerProcess) -> None:
    first = tts(server, {"text": SENTENCE, "seed": 1}).content
    again = tts(server, {"text": SENTENCE, "seed": 1}).content
    other = tts(server, {"text": SENTENCE, "seed": 2}).content
    assert first == again
    assert first != other


def test_max_new_tokens_bounds_audio(server: ServerProcess) -> None:
    bounded = tts(server, {"text": SENTENCE * 3, "max_new_tokens": 20})
    seconds = soundfile.info(io.BytesIO(bounded.content)).duration
    assert seconds == pytest.approx(20 * 2048 / 44_100, abs=0.01)  # 20 codec frames of 2048 samples


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.mark.parametrize(("gain_db", "streaming"), [(-12.0, False), (6.0, True)])
def test_prosody_volume_is_a_gain_in_db(server: ServerProcess, gain_db: float, streaming: bool) -> None:
    body = {"text": SENTENCE, "format": "pcm", "seed": 3, "streaming": streaming}
    plain = decode(tts(server, body).content, "pcm")[0]
    gained = decode(tts(server, {**body, "prosody": {"volume": gain_db}}).content, "pcm")[0]
    assert gained.shape == plain.shape
    assert 20 * np.log10(rms(gained) / rms(plain)) == pytest.approx(gain_db, abs=0.05)


def test_prosody_volume_beyond_full_scale_clips(server: ServerProcess) -> None:
    body = {"text": SENTENCE, "format": "pcm", "seed": 3}
    plain = decode(tts(server, body).content, "pcm")[0]
    loud = decode(tts(server, {**body, "prosody": {"volume": 20.0}}).content, "pcm")[0]  # x10 of a 0.3 tone
    assert np.abs(loud).max() == pytest.approx(1.0, abs=1e-4)
    assert np.all(loud * plain >= 0), "clipped at full scale, never wrapped around to the other sign"


def test_inline_reference_in_msgpack_and_base64_json(server: ServerProcess) -> None:
    audio = wav_bytes()
    plain = tts(server, {"text": SENTENCE}).content
    packed = tts(server, {"text": SENTENCE, "references": [{"audio": audio, "text": "a tone"}]}, msgpack=True)
    as_json = tts(server, {"text": SENTENCE, "references": [{"audio": base64.b64encode(audio).decode(), "text": "a tone"}]})
    assert packed.status_code == as_json.status_code == 200
    assert packed.content == as_json.content
    assert packed.content != plain  # the reference voice changed the audio


def test_stored_voice_by_reference_id(server: ServerProcess) -> None:
    upload = httpx.post(
        f"{server.url}/v1/voices", data={"id": "narrator", "text": "a tone"},
        files={"audio": ("narrator.wav", wav_bytes(), "audio/wav")},
    )  # fmt: skip
    assert upload.status_code == 201, upload.text
    with_voice = tts(server, {"text": SENTENCE, "reference_id": "narrator"})
    assert with_voice.status_code == 200
    assert with_voice.content != tts(server, {"text": SENTENCE}).content


def test_unknown_fields_are_ignored(server: ServerProcess) -> None:
    response = tts(server, {"text": "Hi.", "some_future_field": {"x": 1}, "mp3_bitrate": 64})
    assert response.status_code == 200


HUGE = "x" * (21 * 1024 * 1024)
BAD_REQUESTS = [
    # (id, content, content type, status, code, field)
    ("malformed-json", b'{"text": ', "application/json", 400, "malformed_body", None),
    ("json-array", b"[1, 2]", "application/json", 400, "malformed_body", None),
    ("malformed-msgpack", b"\xc1\xc1\xc1", "application/msgpack", 400, "malformed_body", None),
    ("empty-body", b"", "application/json", 400, "empty_body", None),
    ("text-plain", b"hello", "text/plain", 415, "unsupported_media_type", None),
    ("form", b"text=hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type", None),
    ("missing-text", b"{}", "application/json", 422, "invalid_field", "text"),
    ("text-not-string", b'{"text": 5}', "application/json", 422, "invalid_field", "text"),
    ("empty-text", b'{"text": ""}', "application/json", 400, "empty_text", "text"),
    ("whitespace-text", b'{"text": " \\n\\t "}', "application/json", 400, "empty_text", "text"),
    ("top-p-high", b'{"text": "hi", "top_p": 1.5}', "application/json", 422, "invalid_field", "top_p"),
    ("temperature-low", b'{"text": "hi", "temperature": 0}', "application/json", 422, "invalid_field", "temperature"),
    ("chunk-length", b'{"text": "hi", "chunk_length": 50}', "application/json", 422, "invalid_field", "chunk_length"),
    ("bad-format", b'{"text": "hi", "format": "ogg"}', "application/json", 422, "invalid_field", "format"),
    ("negative-tokens", b'{"text": "hi", "max_new_tokens": -1}', "application/json", 422, "invalid_field", "max_new_tokens"),
    ("bad-base64", b'{"text": "hi", "references": [{"audio": "%%%", "text": "t"}]}', "application/json", 422,
     "invalid_field", "references.0.audio"),
    ("corrupt-audio", b'{"text": "hi", "references": [{"audio": "bm90IGF1ZGlv", "text": "t"}]}', "application/json",
     400, "invalid_audio", "references.0.audio"),
    ("unknown-voice", b'{"text": "hi", "reference_id": "nobody"}', "application/json", 404, "voice_not_found",
     "reference_id"),
    ("traversal-voice", b'{"text": "hi", "reference_id": "../../etc/passwd"}', "application/json", 400,
     "invalid_voice", "reference_id"),
    ("text-too-long", b'{"text": "' + b"a" * 2001 + b'"}', "application/json", 413, "text_too_long", "text"),
    ("huge-body", b'{"text": "' + HUGE.encode() + b'"}', "application/json", 413, "payload_too_large", None),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_input_gets_json_error_and_server_keeps_serving(server: ServerProcess, case: tuple) -> None:
    _, content, content_type, status, code, field = case
    response = httpx.post(f"{server.url}/v1/tts", content=content, headers={"Content-Type": content_type}, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"], error["field"]) == (status, code, field)
    assert error["message"]
    assert "Traceback" not in response.text
    assert tts(server, {"text": "Still here."}).status_code == 200


def test_reference_longer_than_limit_is_413(start_server) -> None:
    server = start_server({"VOICE_MAX_REFERENCE_SECONDS": "1"})
    response = tts(server, {"text": "hi", "references": [{"audio": wav_bytes(seconds=2.0), "text": "t"}]}, msgpack=True)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "reference_too_long"


def test_unknown_route_and_wrong_method_are_json(server: ServerProcess) -> None:
    missing = httpx.get(f"{server.url}/v2/nothing")
    wrong_method = httpx.get(f"{server.url}/v1/tts")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    assert "POST" in wrong_method.headers["Allow"]
