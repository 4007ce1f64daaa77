"""``/v1/voices`` over HTTP on local storage: the upload, list, read, delete cycle, and every
kind of bad upload refused with nothing written."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_tts_api import wav_bytes
from tests.servers import ServerProcess


def upload(server: ServerProcess, voice_id: str | None = "alice", text: str | None = "Hello, I am Alice.",
           audio: bytes | None = None) -> httpx.Response:  # fmt: skip
    data = {key: value for key, value in (("id", voice_id), ("text", text)) if value is not None}
    files: dict[str, tuple[str | None, bytes | str, str] | tuple[None, str]]
    files = {"audio": ("alice.wav", wav_bytes() if audio is None else audio, "audio/wav")}
    if audio == b"-":  # leaves the audio out; sending the text fields as parts keeps the body multipart
        files, data = {key: (None, value) for key, value in data.items()}, {}
    return httpx.post(f"{server.url}/v1/voices", data=data, files=files, timeout=30)


def test_voice_lifecycle(start_server) -> None:
    server: ServerProcess = start_server()
    assert httpx.get(f"{server.url}/v1/voices").json() == {"voices": []}

    created = upload(server)
    assert created.status_code == 201, created.text
    info = created.json()
    assert info["id"] == "alice"
    assert info["text"] == "Hello, I am Alice."
    assert info["duration_seconds"] == pytest.approx(1.0, abs=0.01)

    assert [v["id"] for v in httpx.get(f"{server.url}/v1/voices").json()["voices"]] == ["alice"]
    assert httpx.get(f"{server.url}/v1/voices/alice").json()["revision"] == info["revision"]

    replaced = upload(server, text="A new transcript.")
    assert replaced.status_code == 201
    assert replaced.json()["revision"] != info["revision"]

    deleted = httpx.delete(f"{server.url}/v1/voices/alice")
    assert deleted.json() == {"id": "alice", "deleted": True}
    assert httpx.get(f"{server.url}/v1/voices/alice").status_code == 404
    assert httpx.delete(f"{server.url}/v1/voices/alice").status_code == 404


@pytest.mark.parametrize(
    "kwargs,status,code",
    [
        ({"voice_id": "../evil"}, 422, "invalid_voice_id"),
        ({"voice_id": ".hidden"}, 422, "invalid_voice_id"),
        ({"voice_id": "a/b"}, 422, "invalid_voice_id"),
        ({"voice_id": None}, 422, "missing_field"),
        ({"text": None}, 422, "missing_field"),
        ({"text": "   "}, 422, "missing_field"),
        ({"audio": b"-"}, 422, "missing_field"),
        ({"audio": b"this is not audio at all"}, 400, "invalid_audio"),
        ({"audio": wav_bytes(seconds=31.0, rate=8000)}, 413, "reference_too_long"),
    ],
)  # fmt: skip
def test_bad_uploads_write_nothing(server: ServerProcess, kwargs: dict, status: int, code: str) -> None:
    before = httpx.get(f"{server.url}/v1/voices").json()
    response = upload(server, **{"voice_id": "bad-upload", **kwargs})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert httpx.get(f"{server.url}/v1/voices").json() == before


def test_upload_must_be_multipart(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/v1/voices", json={"id": "x", "text": "t", "audio": ""})
    assert response.status_code == 415


@pytest.mark.parametrize("path", ["/v1/voices/..%2F..%2Fetc", "/v1/voices/%2E%2E"])
def test_traversal_ids_in_the_path_are_refused(server: ServerProcess, path: str) -> None:
    response = httpx.get(f"{server.url}{path}")
    assert response.status_code == 400  # refused as an id, not merely not found
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == ("invalid_voice", "voice_id")
