"""Health, metrics and the OpenAPI document; API keys and CORS as a browser or client sees them."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests import metrics_scrape
from tests.servers import ServerProcess


def test_metrics_count_requests_and_audio(start_server) -> None:
    server: ServerProcess = start_server()
    for _ in range(3):
        assert httpx.post(f"{server.url}/v1/tts", json={"text": "Count me."}).status_code == 200
    httpx.post(f"{server.url}/v1/tts", json={"text": ""})

    ok = metrics_scrape.value(server.url, "voice_http_requests_total", {"route": "/v1/tts", "status": "200"})
    bad = metrics_scrape.value(server.url, "voice_http_requests_total", {"route": "/v1/tts", "status": "400"})
    assert (ok, bad) == (3.0, 1.0)
    assert metrics_scrape.value(server.url, "voice_time_to_first_audio_seconds_count") == 3.0
    assert metrics_scrape.value(server.url, "voice_audio_seconds_total") > 0
    assert metrics_scrape.value(server.url, "voice_real_time_factor_count") == 3.0
    assert metrics_scrape.value(server.url, "voice_engine_ready") == 1.0


def test_openapi_document_describes_the_api(server: ServerProcess) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {"/v1/tts", "/v1/audio/speech", "/v1/voices", "/v1/voices/{voice_id}", "/health/ready"} <= set(document["paths"])
    assert "TTSRequest" in document["components"]["schemas"]


def test_api_keys(start_server, tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("from-secret\n\n")
    server: ServerProcess = start_server({"VOICE_API_KEYS": "key-one, key-two", "VOICE_API_KEYS_FILE": str(key_file)})
    url = f"{server.url}/v1/tts"

    missing = httpx.post(url, json={"text": "hi"})
    wrong = httpx.post(url, json={"text": "hi"}, headers={"Authorization": "Bearer nope"})
    openai_route = httpx.post(f"{server.url}/v1/audio/speech", json={}, headers={"Authorization": "Basic x"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "invalid_api_key")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert (openai_route.status_code, openai_route.json()["error"]["type"]) == (401, "authentication_error")

    for key in ("key-one", "key-two", "from-secret"):
        assert httpx.post(url, json={"text": "hi"}, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    for open_path in ("/health/live", "/health/ready", "/metrics", "/openapi.json"):
        assert httpx.get(f"{server.url}{open_path}").status_code == 200


def test_cors_allows_listed_origins_only(start_server) -> None:
    server: ServerProcess = start_server({"VOICE_CORS_ALLOW_ORIGINS": "https://app.example.com"})
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Content-Type"}

    allowed = httpx.options(f"{server.url}/v1/tts", headers={"Origin": "https://app.example.com", **preflight})
    denied = httpx.options(f"{server.url}/v1/tts", headers={"Origin": "https://evil.example.com", **preflight})
    actual = httpx.post(f"{server.url}/v1/tts", json={"text": "hi"}, headers={"Origin": "https://app.example.com"})

    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert denied.status_code == 403
    assert "Access-Control-Allow-Origin" not in denied.headers
    assert actual.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_cors_off_by_default(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/v1/tts", json={"text": "hi"}, headers={"Origin": "https://app.example.com"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = httpx.options(
        f"{server.url}/v1/tts", headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_bad_settings_exit_with_a_clear_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "voice_inference", "serve"],
        env={"PATH": "/usr/bin:/bin", "VOICE_QUEUE_SIZE": "zero", "VOICE_S1_DEVICE": "tpu"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "VOICE_QUEUE_SIZE" in result.stderr
    assert "VOICE_S1_DEVICE" in result.stderr
    assert "Traceback" not in result.stderr
