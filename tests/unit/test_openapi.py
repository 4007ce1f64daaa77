"""The OpenAPI document (``voice_inference.openapi``) against the routes the app really registers.

Every route of ``app.build_app(Settings(...))`` (whatever the settings: API keys and CORS add
middlewares and preflight routes, not API operations) must appear in ``document()["paths"]``
with its method, and nothing documented may be missing from the app. The document must be
plain JSON, carry the request models as components, and every ``$ref`` must resolve.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from voice_inference import api_system, app, openapi
from voice_inference.settings import Settings

# HEAD is added by aiohttp for every GET; OPTIONS routes are CORS preflights.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


def registered_operations(application: web.Application) -> set[tuple[str, str]]:
    operations = set()
    for route in application.router.routes():
        if route.method in IMPLICIT_METHODS or route.method == "*" or route.resource is None:
            continue
        operations.add((route.resource.canonical, route.method.lower()))
    return operations


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


SETTINGS = {
    "plain": {},
    "with-keys-and-cors": {"api_keys": ["k1"], "cors_allow_origins": ["https://app.example"]},
}


@pytest.mark.parametrize("variant", SETTINGS)
def test_every_registered_route_is_documented_with_its_method(variant: str, tmp_path: Path) -> None:
    application = app.build_app(Settings(reference_path=tmp_path, **SETTINGS[variant]))
    registered = registered_operations(application)
    assert ("/v1/tts", "post") in registered, "sanity: the app's routes were read"
    missing = registered - documented_operations(openapi.document())
    assert not missing, f"routes without an OpenAPI entry: {sorted(missing)}"


def test_nothing_documented_is_missing_from_the_app(tmp_path: Path) -> None:
    application = app.build_app(Settings(reference_path=tmp_path))
    stale = documented_operations(openapi.document()) - registered_operations(application)
    assert not stale, f"documented but not served: {sorted(stale)}"


def test_document_is_json_with_request_model_components() -> None:
    document = json.loads(json.dumps(openapi.document()))
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] and document["info"]["version"]
    schemas = document["components"]["schemas"]
    for name in ("TTSRequest", "SpeechRequest", "ReferenceAudio", "VoiceInfo", "ErrorBody"):
        assert name in schemas, name
    assert "text" in schemas["TTSRequest"]["properties"]
    assert schemas["TTSRequest"]["required"] == ["text"]
    assert set(schemas["SpeechRequest"]["required"]) == {"model", "input", "voice"}
    tts_body = document["paths"]["/v1/tts"]["post"]["requestBody"]["content"]
    assert tts_body["application/json"]["schema"] == {"$ref": "#/components/schemas/TTSRequest"}
    assert "application/msgpack" in tts_body


def test_every_ref_resolves() -> None:
    document = openapi.document()
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            assert part in target, f"unresolved $ref {ref}"
            target = target[part]


def test_every_operation_has_responses_with_descriptions() -> None:
    for path, item in openapi.document()["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
            for status, response in operation["responses"].items():
                assert status.isdigit() and response["description"], (path, method, status)


def test_probes_and_metrics_need_no_key() -> None:
    paths = openapi.document()["paths"]
    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json"):
        assert paths[path]["get"]["security"] == [], path
    assert "security" not in paths["/v1/tts"]["post"], "API routes inherit the bearer requirement"


async def test_the_served_document_is_the_same() -> None:
    response = await api_system.openapi_document(make_mocked_request("GET", "/openapi.json"))
    assert isinstance(response, web.Response) and response.text is not None
    assert json.loads(response.text) == json.loads(json.dumps(openapi.document()))
