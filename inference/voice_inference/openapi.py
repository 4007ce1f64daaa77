"""The OpenAPI 3.1 document of the whole HTTP API, served at ``/openapi.json``.

Request and response bodies come from the pydantic models in ``schemas`` (one source of
truth); the paths below say which model each route takes and what it can answer. A test
checks that every registered route is described here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from voice_inference import __version__, schemas

_AUDIO = {
    f"audio/{kind}": {"schema": {"type": "string", "format": "binary"}}
    for kind in ("wav", "pcm", "mpeg", "ogg", "flac", "aac")
}
_MODELS: tuple[type[BaseModel], ...] = (
    schemas.TTSRequest, schemas.SpeechRequest, schemas.VoiceInfo, schemas.VoiceList, schemas.ErrorBody,
)  # fmt: skip


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _errors(*statuses: int) -> dict[str, Any]:
    content = {"application/json": {"schema": _ref(schemas.ErrorBody)}}
    return {str(status): {"description": _REASONS[status], "content": content} for status in statuses}


_REASONS = {
    400: "Bad input (empty text, unreadable audio, malformed body)",
    401: "Missing or invalid API key",
    404: "Unknown voice",
    405: "Voice storage is read-only",
    413: "Text, reference audio or body too large",
    415: "Unsupported content type",
    422: "A field is invalid, or the text produced no audio",
    429: "Queue full; see Retry-After",
    503: "Engine not ready, or voice storage unavailable",
    504: "Synthesis timed out",
}
_SYNTH_ERRORS = (400, 401, 404, 413, 415, 422, 429, 503, 504)


def _json_body(model: type[BaseModel], *, msgpack: bool) -> dict[str, Any]:
    content = {"application/json": {"schema": _ref(model)}}
    if msgpack:
        content["application/msgpack"] = {"schema": _ref(model)}
    return {"required": True, "content": content}


def _ok(description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": description, "content": content}}


def _json(model: type[BaseModel] | None = None) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model) if model else {"type": "object"}}}


@cache
def document() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(model, "validation") for model in _MODELS], ref_template="#/components/schemas/{model}"
    )
    voice_id = [{"name": "voice_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "voice-service inference API", "version": __version__},
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/tts": {"post": {
                "summary": "Synthesize speech (Fish Audio compatible; JSON or msgpack)",
                "requestBody": _json_body(schemas.TTSRequest, msgpack=True),
                "responses": {**_ok("Audio in the requested format", _AUDIO), **_errors(*_SYNTH_ERRORS)},
            }},
            "/v1/tts/live": {"get": {
                "summary": "Realtime synthesis over a WebSocket (Fish Audio's protocol): msgpack events "
                           "start (request: a TTSRequest without text), text, flush, stop in; audio and "
                           "finish (reason stop, or error with status, code, message, field) out",
                "responses": {"101": {"description": "Switching to the WebSocket"}, **_errors(400, 401)},
            }},
            "/v1/audio/speech": {"post": {
                "summary": "Synthesize speech (OpenAI compatible; errors in OpenAI's shape)",
                "requestBody": _json_body(schemas.SpeechRequest, msgpack=False),
                "responses": {
                    **_ok("Audio, streamed; or server-sent events", {**_AUDIO, "text/event-stream": {}}),
                    **_errors(*_SYNTH_ERRORS),
                },
            }},
            "/v1/voices": {
                "get": {"summary": "List stored voices", "responses": {
                    **_ok("The voices", _json(schemas.VoiceList)), **_errors(401, 503)}},
                "post": {
                    "summary": "Store a voice (multipart: id, audio file, text)",
                    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                        "type": "object", "required": ["id", "audio", "text"],
                        "properties": {"id": {"type": "string"}, "text": {"type": "string"},
                                       "audio": {"type": "string", "format": "binary"}},
                    }}}},
                    "responses": {"201": {"description": "Stored", "content": _json(schemas.VoiceInfo)},
                                  **_errors(400, 401, 405, 413, 415, 422, 503)},
                },
            },
            "/v1/voices/{voice_id}": {
                "get": {"summary": "One stored voice", "parameters": voice_id, "responses": {
                    **_ok("The voice", _json(schemas.VoiceInfo)), **_errors(400, 401, 404, 503)}},
                "delete": {"summary": "Delete a stored voice", "parameters": voice_id, "responses": {
                    **_ok("Deleted", _json()), **_errors(400, 401, 404, 405, 503)}},
            },
            "/model": {
                "get": {"summary": "Voices as Fish Audio models, paginated ({total, items})", "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": {"type": kind}}
                    for name, kind in (("page_size", "integer"), ("page_number", "integer"), ("title", "string"))
                ], "responses": {**_ok("The page", _json()), **_errors(401, 422, 503)}},
                "post": {
                    "summary": "Store a voice, Fish Audio style (multipart: title, voices files, texts)",
                    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                        "type": "object", "required": ["title", "voices", "texts"],
                        "properties": {"title": {"type": "string"},
                                       "voices": {"type": "array", "items": {"type": "string", "format": "binary"}},
                                       "texts": {"type": "array", "items": {"type": "string"}}},
                    }}}},
                    "responses": {"201": {"description": "Stored", "content": _json()},
                                  **_errors(400, 401, 405, 413, 415, 422, 503)},
                },
            },
            "/model/{voice_id}": {
                "get": {"summary": "One voice as a Fish Audio model", "parameters": voice_id, "responses": {
                    **_ok("The voice", _json()), **_errors(400, 401, 404, 503)}},
                "delete": {"summary": "Delete a stored voice", "parameters": voice_id, "responses": {
                    **_ok("Deleted", _json()), **_errors(400, 401, 404, 405, 503)}},
            },
            "/health/live": {"get": {"summary": "Liveness", "security": [], "responses": _ok("Alive", _json())}},
            "/health/ready": {"get": {"summary": "Readiness: engine loaded and warmed up", "security": [],
                                      "responses": {**_ok("Ready", _json()), "503": {"description": "Not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [],
                                 "responses": _ok("Metrics", {"text/plain": {}})}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": _ok("OpenAPI 3.1", _json())}},
        },
    }  # fmt: skip
