"""The OpenAPI document (``voice_inference.openapi``) against the app that serves it.

Every route of ``app.build_app(Settings(...))`` (whatever the settings: API keys and CORS add
middlewares and preflight routes, not API operations) must appear in the served document
with its method, and nothing documented may be missing from the app. The document must be
plain JSON whose every ``$ref`` resolves, and it must state what the server enforces from the
same constants the checks use: the voice-id pattern, non-blank and length-limited text, the
error shape of each path, and a key requirement only when keys are configured.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from voice_inference import api_models, api_system, app, errors, openapi, routes, schemas, voices
from voice_inference.settings import Settings

# HEAD is added by aiohttp for every GET; OPTIONS routes are CORS preflights.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def registered_operations(application: web.Application) -> set[tuple[str, str]]:
    operations = set()
    for route in application.router.routes():
        if route.method in IMPLICIT_METHODS or route.method == "*" or route.resource is None:
            continue
        operations.add((route.resource.canonical, route.method.lower()))
    return operations


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


SETTINGS = {
    "plain": {},
    "with-keys-and-cors": {"api_keys": ["k1"], "cors_allow_origins": ["https://app.example"]},
}


def built(tmp_path: Path, **settings: Any) -> tuple[web.Application, dict[str, Any]]:
    application = app.build_app(Settings(tts_provider="mock", reference_path=tmp_path, **settings))
    return application, json.loads(json.dumps(application[api_system.OPENAPI_DOCUMENT]))


@pytest.mark.parametrize("variant", SETTINGS)
def test_every_registered_route_is_documented_with_its_method(variant: str, tmp_path: Path) -> None:
    application, document = built(tmp_path, **SETTINGS[variant])
    registered = registered_operations(application)
    assert ("/v1/tts", "post") in registered, "sanity: the app's routes were read"
    missing = registered - documented_operations(document)
    assert not missing, f"routes without an OpenAPI entry: {sorted(missing)}"


def test_nothing_documented_is_missing_from_the_app(tmp_path: Path) -> None:
    application, document = built(tmp_path)
    stale = documented_operations(document) - registered_operations(application)
    assert not stale, f"documented but not served: {sorted(stale)}"


def test_document_is_json_with_request_model_components(tmp_path: Path) -> None:
    _, document = built(tmp_path)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] and document["info"]["version"]
    components = document["components"]["schemas"]
    for name in ("TTSRequest", "SpeechRequest", "ReferenceAudio", "VoiceUpload", "VoiceInfo", "ErrorBody"):
        assert name in components, name
    assert components["TTSRequest"]["required"] == ["text"]
    assert set(components["SpeechRequest"]["required"]) == {"model", "input", "voice"}
    assert set(components["VoiceUpload"]["required"]) == {"id", "text", "audio"}
    tts_body = document["paths"]["/v1/tts"]["post"]["requestBody"]["content"]
    assert tts_body["application/json"]["schema"] == {"$ref": "#/components/schemas/TTSRequest"}
    assert "application/msgpack" in tts_body


def test_every_ref_resolves(tmp_path: Path) -> None:
    _, document = built(tmp_path)
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


def test_no_pydantic_only_keywords_leak_into_schemas(tmp_path: Path) -> None:
    # ``ge``/``le`` mean nothing to JSON Schema: a constraint spelled so is silently not documented.
    _, document = built(tmp_path)
    text = json.dumps(document["components"])
    for keyword in ("ge", "le", "gt", "lt", schemas.TEXT_LIMIT):
        assert f'"{keyword}":' not in text, keyword


def test_operations_have_unique_ids_and_described_responses(tmp_path: Path) -> None:
    _, document = built(tmp_path)
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    for path, method, op in operations(document):
        assert op["responses"], (path, method)
        for status, response in op["responses"].items():
            assert status.isdigit() and response["description"], (path, method, status)


def test_error_responses_use_the_shape_the_error_middleware_renders(tmp_path: Path) -> None:
    _, document = built(tmp_path)
    for path, method, op in operations(document):
        for status, response in op["responses"].items():
            if path != "/health/ready" and int(status) >= 400:
                expected = {"$ref": f"#/components/schemas/{errors.body_model(path).__name__}"}
                assert response["content"]["application/json"]["schema"] == expected, (path, method, status)
    speech = document["paths"]["/v1/audio/speech"]["post"]["responses"]
    assert speech["415"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIErrorBody")
    # The OpenAI shape the middleware renders is the documented model.
    rendered = errors.body(errors.ApiError(415, "unsupported_media_type", "no"), openai=True)
    schemas.OpenAIErrorBody.model_validate(rendered)


def test_every_route_with_a_body_documents_415_and_413(tmp_path: Path) -> None:
    _, document = built(tmp_path)
    with_body = [(path, method, op) for path, method, op in operations(document) if "requestBody" in op]
    assert len(with_body) >= 3
    for path, method, op in with_body:
        assert {"400", "413", "415", "422"} <= set(op["responses"]), (path, method)


def test_voice_id_pattern_is_the_validators(tmp_path: Path) -> None:
    _, document = built(tmp_path)
    for method in ("get", "delete"):
        (parameter,) = document["paths"]["/v1/voices/{voice_id}"][method]["parameters"]
        assert parameter["schema"]["pattern"] == voices.VOICE_ID.pattern
        assert parameter["schema"]["maxLength"] == voices.base.VOICE_ID_MAX
    upload = document["components"]["schemas"]["VoiceUpload"]["properties"]["id"]
    assert upload["pattern"] == voices.VOICE_ID.pattern
    pattern = re.compile(voices.VOICE_ID.pattern)
    for voice_id in ("alice", "a.b-c_d", "x.", "../etc", ".hidden", "a..b", "a/b", "a\n", "é"):
        documented = len(voice_id) <= voices.base.VOICE_ID_MAX and pattern.fullmatch(voice_id) is not None
        assert documented == voices.base.is_valid_id(voice_id), voice_id


def test_synthesis_text_is_non_blank_and_limited_by_the_setting(tmp_path: Path) -> None:
    _, document = built(tmp_path, max_text_length=123)
    components = document["components"]["schemas"]
    for model, name in (("TTSRequest", "text"), ("SpeechRequest", "input")):
        field = components[model]["properties"][name]
        assert (field["pattern"], field["maxLength"]) == (schemas.NON_BLANK.pattern, 123), model
    transcript = components["VoiceUpload"]["properties"]["text"]
    assert transcript["pattern"] == schemas.NON_BLANK.pattern and "maxLength" not in transcript


def test_no_security_requirement_when_no_key_is_configured(tmp_path: Path) -> None:
    _, document = built(tmp_path)
    assert "security" not in document and "securitySchemes" not in document["components"]
    for path, method, op in operations(document):
        assert "security" not in op and "401" not in op["responses"], (path, method)


def test_keys_require_bearer_on_api_routes_only(tmp_path: Path) -> None:
    _, document = built(tmp_path, api_keys=["k1"])
    assert document["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    for path, method, op in operations(document):
        is_open = path.startswith(("/health/", "/metrics", "/openapi.json"))
        assert ("security" in op and op["security"] == []) == is_open, (path, method)
        assert ("401" in op["responses"]) != is_open, (path, method)


def test_a_path_parameter_without_a_declared_type_is_refused() -> None:
    route = routes.Route("GET", "/v1/things/{thing}", api_system.live, "thing", "A thing", {200: routes.Reply("ok")})
    with pytest.raises(ValueError, match="thing"):
        openapi.document([route], auth=False, max_text_length=10)


async def test_the_served_document_is_the_one_built(tmp_path: Path) -> None:
    application, document = built(tmp_path)
    response = await api_system.openapi_document(make_mocked_request("GET", "/openapi.json", app=application))
    assert isinstance(response, web.Response) and response.text is not None
    assert json.loads(response.text) == document


def test_the_websocket_route_documents_its_upgrade_and_its_plain_http_answer(tmp_path: Path) -> None:
    _, document = built(tmp_path)
    responses = document["paths"]["/v1/tts/live"]["get"]["responses"]
    assert set(responses) == {"101", "426"}
    assert set(responses["426"]["headers"]) == {"Upgrade", "Sec-WebSocket-Version"}
    assert "start" in document["paths"]["/v1/tts/live"]["get"]["description"]


def test_fish_model_routes_document_their_query_form_and_links(tmp_path: Path) -> None:
    _, document = built(tmp_path)
    listing = document["paths"]["/model"]["get"]
    assert [(p["name"], p["in"]) for p in listing["parameters"]] == [(name, "query") for name in schemas.ModelQuery.model_fields]
    assert listing["parameters"][0]["schema"]["minimum"] == 1
    upload = document["paths"]["/model"]["post"]
    assert set(upload["requestBody"]["content"]) == {"multipart/form-data"}
    form = document["components"]["schemas"]["ModelUpload"]
    assert set(form["required"]) == {"title", "voices", "texts"} and form["additionalProperties"] is False
    assert form["properties"]["voices"]["items"]["format"] == "binary"
    assert set(upload["responses"]["201"]["links"]) == {"get_model", "delete_model"}
    for method in ("get", "delete"):
        (parameter,) = document["paths"]["/model/{voice_id}"][method]["parameters"]
        assert parameter["schema"]["pattern"] == voices.VOICE_ID.pattern


def test_a_fish_model_reply_is_valid_by_the_document(tmp_path: Path) -> None:
    _, document = built(tmp_path)
    stored = voices.StoredVoice(
        id="narrator-1a2b3c4d", text="Hi.", samples=np.zeros(160, dtype=np.float32), sample_rate=16_000,
        created_at="2026-12-01T00:00:00Z", revision="r1",
    )  # fmt: skip
    reply = api_models.model(stored).model_dump(by_alias=True)
    assert (reply["_id"], reply["title"], reply["samples"][0]["text"]) == (stored.id, stored.id, "Hi.")
    page = {"total": 1, "items": [reply]}
    for name, value in (("FishModel", reply), ("FishModelPage", page)):
        schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        jsonschema.Draft202012Validator(schema).validate(value)
    assert {"_id", "title", "samples", "created_at"} <= set(document["components"]["schemas"]["FishModel"]["required"])
