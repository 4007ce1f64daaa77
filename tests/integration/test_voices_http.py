"""The voices API and ``reference_id`` over real HTTP with remote storage behind the server.

The server runs as a child process configured only through ``VOICE_*``/``AWS_*`` variables,
as in a pod: S3 through moto_server, the Hub through ``LocalHub``, both on loopback.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.conftest import StartServer
from tests.storage_fixtures import LocalHub, S3Bucket, wav_bytes

SENTENCE = "The quick brown fox jumps over the lazy dog."


def upload(url: str, voice_id: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/voices", data={"id": voice_id, "text": text},
        files={"audio": (f"{voice_id}.wav", wav_bytes(seconds=1.0), "audio/wav")}, timeout=30,
    )  # fmt: skip


def tts(url: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/tts", json=body, timeout=60)


def test_s3_voices_are_shared_between_servers(start_server: StartServer, s3_bucket: S3Bucket, tmp_path: Path) -> None:
    first = start_server({**s3_bucket.env("voices"), "VOICE_REFERENCE_CACHE_PATH": str(tmp_path / "cache-1")})
    second = start_server({**s3_bucket.env("voices"), "VOICE_REFERENCE_CACHE_PATH": str(tmp_path / "cache-2")})
    created = upload(first.url, "narrator", "a tone")
    assert created.status_code == 201, created.text

    listed = httpx.get(f"{second.url}/v1/voices", timeout=30)
    assert [voice["id"] for voice in listed.json()["voices"]] == ["narrator"]
    assert listed.json()["voices"][0]["revision"] == created.json()["revision"]
    with_voice = tts(second.url, {"text": SENTENCE, "reference_id": "narrator"})
    assert with_voice.status_code == 200, with_voice.text
    assert with_voice.content != tts(second.url, {"text": SENTENCE}).content

    assert httpx.delete(f"{second.url}/v1/voices/narrator", timeout=30).status_code == 200
    gone = tts(first.url, {"text": SENTENCE, "reference_id": "narrator"})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "voice_not_found"


def test_a_missing_bucket_fails_voice_requests_only(start_server: StartServer, s3_bucket: S3Bucket) -> None:
    server = start_server({**s3_bucket.env(), "VOICE_REFERENCE_S3_BUCKET": "no-such-bucket"})
    listed = httpx.get(f"{server.url}/v1/voices", timeout=30)
    assert listed.status_code == 503
    assert "no-such-bucket" in listed.json()["error"]["message"]
    assert tts(server.url, {"text": SENTENCE, "reference_id": "narrator"}).status_code == 503
    assert tts(server.url, {"text": SENTENCE}).status_code == 200  # synthesis without a stored voice goes on
    assert httpx.get(f"{server.url}/health/live", timeout=10).status_code == 200


def test_hub_voices_are_served_and_writes_refused(
    start_server: StartServer, local_hub: LocalHub, tmp_path: Path
) -> None:
    local_hub.create_repo("acme/voices")
    local_hub.commit(
        "acme/voices",
        {"narrator/ref.wav": wav_bytes(seconds=1.0), "narrator/ref.lab": b"a tone", "broken/ref.wav": b"x"},
    )
    server = start_server({**local_hub.env("acme/voices"), "VOICE_REFERENCE_CACHE_PATH": str(tmp_path / "cache")})
    listed = httpx.get(f"{server.url}/v1/voices", timeout=30)
    assert [voice["id"] for voice in listed.json()["voices"]] == ["narrator"]
    assert tts(server.url, {"text": SENTENCE, "reference_id": "narrator"}).status_code == 200
    assert upload(server.url, "newcomer", "hello").status_code == 405
