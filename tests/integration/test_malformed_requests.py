"""Malformed requests of every kind, against the real server over HTTP: bodies that do not parse
as what their content type says (multipart framing and part headers, charsets, transfer and
content encodings, JSON, msgpack) get a 400 in the route's JSON error shape (both upload routes,
``/v1/voices`` and Fish Audio's ``/model``, read forms the same way), and a request
aiohttp cannot even parse gets its 400; none leaves a traceback in the server's log, only one
line at info or warning.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import StartServer
from tests.integration.test_tts_api import wav_bytes
from tests.servers import ServerProcess

BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def part(headers: dict[str, str], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"--{BOUNDARY}\r\n{head}\r\n".encode("latin-1") + body + b"\r\n"


def field(name: str, **headers: str) -> dict[str, str]:
    return {"Content-Disposition": f'form-data; name="{name}"', **headers}


END = f"--{BOUNDARY}--\r\n".encode()
UPLOADS = ["/v1/voices", "/model"]  # the routes that read multipart forms

MULTIPART_BODIES = {
    "part header with control bytes": part({"Content-Disposition": 'form-data; name="\xf3\x11x"'}, b"v") + END,
    "part without a name": part({"Content-Disposition": "form-data"}, b"v") + END,
    "unknown charset": part(field("id", **{"Content-Type": "text/plain; charset=nope"}), b"v") + END,
    "unknown transfer encoding": part(field("id", **{"Content-Transfer-Encoding": "rot13"}), b"v") + END,
    "text that is not UTF-8": part(field("id"), b"\xff\xfe") + END,
    "too many part headers": part({f"X-{i}": "y" for i in range(200)}, b"v") + END,
    "truncated": part(field("id"), b"v")[:-5],
    "no starting boundary": b"\x00\x01\x02",
    "empty": b"",
}


@pytest.fixture(scope="module")
def logged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("malformed")
    env = {"VOICE_TTS_PROVIDER": "mock", "VOICE_REFERENCE_PATH": str(folder / "references"), "VOICE_LOG_LEVEL": "info"}
    with ServerProcess(env, log_path=folder / "server.log") as running:
        yield running


def server_log(server: ServerProcess) -> str:
    assert server.log_path is not None
    return Path(server.log_path).read_text(errors="replace")


@pytest.mark.parametrize("path", UPLOADS)
@pytest.mark.parametrize("name", MULTIPART_BODIES)
def test_malformed_multipart_uploads_are_a_json_400(logged_server: ServerProcess, name: str, path: str) -> None:
    response = httpx.post(
        f"{logged_server.url}{path}", content=MULTIPART_BODIES[name], headers={"Content-Type": MULTIPART}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "malformed_body"
    assert httpx.get(f"{logged_server.url}/v1/voices").json() == {"voices": []}
    assert "Traceback" not in server_log(logged_server)


@pytest.mark.parametrize("path", UPLOADS)
@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=" + "a" * 80])
def test_bad_multipart_boundaries_are_a_json_400(logged_server: ServerProcess, content_type: str, path: str) -> None:
    body = MULTIPART_BODIES["part without a name"]
    response = httpx.post(f"{logged_server.url}{path}", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "malformed_body"


@pytest.mark.parametrize(
    ("path", "fields", "audio"),
    [("/v1/voices", {"id": "alice", "text": "Hello."}, "audio"), ("/model", {"title": "Alice", "texts": "Hello."}, "voices")],
)  # fmt: skip
def test_unknown_form_fields_are_refused(logged_server: ServerProcess, path: str, fields: dict, audio: str) -> None:
    response = httpx.post(
        f"{logged_server.url}{path}", data={**fields, "colour": "blue"},
        files={audio: ("alice.wav", wav_bytes(), "audio/wav")},
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == ("unknown_field", "colour")
    assert httpx.get(f"{logged_server.url}/v1/voices").json() == {"voices": []}


@pytest.mark.parametrize(
    ("path", "content_type", "encoding", "openai"),
    [
        ("/v1/tts", "application/json", "gzip", False),
        ("/v1/tts", "application/msgpack", "deflate", False),
        ("/v1/audio/speech", "application/json", "gzip", True),
        ("/v1/voices", MULTIPART, "gzip", False),
        ("/model", MULTIPART, "deflate", False),
    ],
)
def test_bodies_that_do_not_decompress_are_a_json_400(
    logged_server: ServerProcess, path: str, content_type: str, encoding: str, openai: bool
) -> None:
    response = httpx.post(
        f"{logged_server.url}{path}", content=b"not compressed at all",
        headers={"Content-Type": content_type, "Content-Encoding": encoding},
    )  # fmt: skip
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "malformed_body"
    assert ("type" in error) == openai  # OpenAI's shape on /v1/audio/*, ours elsewhere
    assert "Traceback" not in server_log(logged_server)


def test_a_request_aiohttp_cannot_parse_is_one_warning_line(start_server: StartServer) -> None:
    server = start_server({"VOICE_LOG_LEVEL": "info"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Probe: a\x00b\r\n\r\n")
        answer = conn.recv(4096)
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request")  # aiohttp logs before it answers
    log = server_log(server)
    assert "Traceback" not in log
    (line,) = [line for line in log.splitlines() if "malformed request" in line]
    assert " WARNING aiohttp.server: malformed request: Invalid header value char" in line
