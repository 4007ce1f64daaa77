"""Every HTTP route of the server, declared once: ``app.build_app`` registers ``ROUTES`` and
``openapi.document`` describes the same entries. A new route is one more ``Route`` here.

An entry names its handler, the models its body and query are read into (``parsing``), the
replies it gives on success and the error statuses it can answer; the error shape follows from
the path (``errors.body_model``), and whether it needs an API key from ``middlewares.OPEN_PATHS``.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from voice_inference import (
    api_live, api_models, api_openai, api_system, api_tts, api_voices, encoders, middlewares, parsing, schemas,
)

# A reply's content: media type -> the model of its body, or None for bytes or text.
Content = Mapping[str, type[BaseModel] | None]


@dataclass(frozen=True)
class Reply:
    description: str
    content: Content = field(default_factory=dict)


@dataclass(frozen=True)
class Body:
    """A request body: the model it is validated into, and the media types read."""

    model: type[BaseModel]
    media_types: frozenset[str]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: middlewares.Handler
    name: str  # the OpenAPI operationId
    summary: str
    replies: Mapping[int, Reply]  # what it answers when the request is served (200, 201; 503 for readiness)
    errors: tuple[int, ...] = ()  # the ``ApiError`` statuses it can answer (401 is added when keys are required)
    body: Body | None = None
    query: type[BaseModel] | None = None  # its fields are the query parameters
    path_parameters: Mapping[str, object] = field(default_factory=dict)  # name -> its (annotated) type
    # Follow-up operations (by name) and their path parameters taken from the reply (OpenAPI links).
    links: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    description: str = ""

    @property
    def open(self) -> bool:
        """Answers without an API key (probes, metrics, this document)."""
        return self.path.startswith(middlewares.OPEN_PATHS)


_JSON = "application/json"


def _audio(model: type[BaseModel], field: str) -> Content:
    """The audio media types a route answers with: one per value of its format field."""
    return {encoders.CONTENT_TYPES[fmt]: None for fmt in typing.get_args(model.model_fields[field].annotation)}


_SYNTHESIS_ERRORS = (400, 404, 413, 415, 422, 429, 500, 503, 504)
_VOICE_ID = {"voice_id": schemas.VoiceId}
_VOICE_LINKS = {"get_voice": {"voice_id": "$response.body#/id"}, "delete_voice": {"voice_id": "$response.body#/id"}}
_MODEL_LINKS = {"get_model": {"voice_id": "$response.body#/_id"}, "delete_model": {"voice_id": "$response.body#/_id"}}
_LIVE = (
    "Fish Audio's protocol, msgpack events in binary frames: start (request: a TTSRequest, its text "
    "optional), text, flush, stop in; audio, then one finish (reason stop, or error with status, code, "
    "message, field) out. A request that is not a WebSocket handshake gets 426."
)

ROUTES: tuple[Route, ...] = (
    Route(
        "POST", "/v1/tts", api_tts.tts, "tts", "Synthesize speech (Fish Audio compatible; JSON or msgpack)",
        {200: Reply("Audio in the requested format, whole or streamed", _audio(schemas.TTSRequest, "format"))},
        _SYNTHESIS_ERRORS,
        Body(schemas.TTSRequest, parsing.JSON_TYPES | parsing.MSGPACK_TYPES),
    ),
    Route(
        "GET", "/v1/tts/live", api_live.live, "tts_live", "Realtime synthesis over a WebSocket",
        {101: Reply("Switching Protocols: the session runs on the WebSocket")}, (426,), description=_LIVE,
    ),
    Route(
        "POST", "/v1/audio/speech", api_openai.speech, "speech", "Synthesize speech (OpenAI compatible)",
        {200: Reply("Audio, streamed; or server-sent events", {
            **_audio(schemas.SpeechRequest, "response_format"), "text/event-stream": None})},
        _SYNTHESIS_ERRORS, Body(schemas.SpeechRequest, parsing.JSON_TYPES),
    ),
    Route(
        "GET", "/v1/voices", api_voices.list_voices, "list_voices", "List stored voices",
        {200: Reply("The voices", {_JSON: schemas.VoiceList})}, (503,),
    ),
    Route(
        "POST", "/v1/voices", api_voices.create_voice, "create_voice", "Store a voice (multipart: id, audio, text)",
        {201: Reply("Stored", {_JSON: schemas.VoiceInfo})}, (400, 405, 413, 415, 422, 503),
        Body(schemas.VoiceUpload, parsing.FORM_TYPES), links=_VOICE_LINKS,
    ),
    Route(
        "GET", "/v1/voices/{voice_id}", api_voices.get_voice, "get_voice", "One stored voice",
        {200: Reply("The voice", {_JSON: schemas.VoiceInfo})}, (400, 404, 503), path_parameters=_VOICE_ID,
    ),
    Route(
        "DELETE", "/v1/voices/{voice_id}", api_voices.delete_voice, "delete_voice", "Delete a stored voice",
        {200: Reply("Deleted", {_JSON: schemas.VoiceDeleted})}, (400, 404, 405, 503), path_parameters=_VOICE_ID,
    ),
    Route(
        "GET", "/model", api_models.list_models, "list_models", "Voices as Fish Audio models, newest first",
        {200: Reply("One page", {_JSON: schemas.FishModelPage})}, (422, 503), query=schemas.ModelQuery,
    ),
    Route(
        "POST", "/model", api_models.create_model, "create_model",
        "Store a voice, Fish Audio style (multipart: title, voices files, texts)",
        {201: Reply("Stored", {_JSON: schemas.FishModel})}, (400, 405, 413, 415, 422, 503),
        Body(schemas.ModelUpload, parsing.FORM_TYPES), links=_MODEL_LINKS,
    ),
    Route(
        "GET", "/model/{voice_id}", api_models.get_model, "get_model", "One voice as a Fish Audio model",
        {200: Reply("The voice", {_JSON: schemas.FishModel})}, (400, 404, 503), path_parameters=_VOICE_ID,
    ),
    Route(
        "DELETE", "/model/{voice_id}", api_voices.delete_voice, "delete_model", "Delete a stored voice",
        {200: Reply("Deleted", {_JSON: schemas.VoiceDeleted})}, (400, 404, 405, 503), path_parameters=_VOICE_ID,
    ),
    Route("GET", "/health/live", api_system.live, "live", "Liveness", {200: Reply("Alive", {_JSON: None})}),
    Route(
        "GET", "/health/ready", api_system.ready, "ready", "Readiness: engine loaded and warmed up",
        {200: Reply("Ready", {_JSON: schemas.Readiness}), 503: Reply("Not ready", {_JSON: schemas.Readiness})},
    ),
    Route(
        "GET", "/metrics", api_system.metrics, "metrics", "Prometheus metrics",
        {200: Reply("Metrics", {"text/plain": None})},
    ),
    Route(
        "GET", "/openapi.json", api_system.openapi_document, "openapi", "This document",
        {200: Reply("OpenAPI 3.1", {_JSON: None})},
    ),
)  # fmt: skip


def register(app: web.Application, routes: tuple[Route, ...] = ROUTES) -> list[web.AbstractRoute]:
    """Add the routes to the app's router (a GET answers HEAD too); returns the ones that need
    a key, where CORS applies."""
    api = []
    for route in routes:
        if route.method == "GET":
            added = app.router.add_get(route.path, route.handler)
        else:
            added = app.router.add_route(route.method, route.path, route.handler)
        if not route.open:
            api.append(added)
    return api
