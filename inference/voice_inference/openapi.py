"""The OpenAPI 3.1 document of the whole HTTP API, served at ``/openapi.json``.

Generated, never hand-kept: ``app.build_app`` calls ``document`` with the route table
(``routes.ROUTES``) and what the settings change. Bodies, replies and errors are the pydantic
models in ``schemas`` that the handlers validate and answer with; the error shape of a path is
``errors.body_model``, the one the error middleware renders; the bearer requirement appears
only when API keys are configured, as the auth middleware is installed only then.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from voice_inference import __version__, errors, schemas

if TYPE_CHECKING:
    from voice_inference.routes import Route

_REASONS = {
    400: "Bad input (blank text, unreadable audio, malformed body, invalid voice id)",
    401: "Missing or invalid API key",
    404: "Unknown voice",
    405: "Voice storage is read-only",
    413: "Text, reference audio or body too large",
    415: "Unsupported content type",
    422: "A field is invalid or missing, or the text produced no audio",
    426: "Not a WebSocket handshake: this route speaks only WebSocket",
    429: "Queue full; see Retry-After",
    500: "The engine failed to synthesize",
    503: "Engine not ready, or voice storage unavailable",
    504: "Synthesis timed out",
}
_STRING = {"schema": {"type": "string"}}
_HEADERS = {
    401: {"WWW-Authenticate": {**_STRING, "required": True}},
    405: {"Allow": {**_STRING, "required": True}},
    426: {"Upgrade": {**_STRING, "required": True}, "Sec-WebSocket-Version": {**_STRING, "required": True}},
    429: {"Retry-After": {**_STRING, "required": True}},
    503: {"Retry-After": _STRING},
}
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def document(routes: Sequence[Route], *, auth: bool, max_text_length: int) -> dict[str, Any]:
    """The document for these routes; ``auth``: API keys are required; ``max_text_length``: the
    setting that ``schemas.TEXT_LIMIT`` stands for."""
    _, definitions = models_json_schema(
        [(model, "validation") for model in _models(routes)], ref_template="#/components/schemas/{model}"
    )
    components: dict[str, Any] = {"schemas": _fill_limits(definitions["$defs"], max_text_length=max_text_length)}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, auth=auth)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "voice-service inference API", "version": __version__},
        "components": components,
        "paths": paths,
    }
    if auth:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def _operation(route: Route, *, auth: bool) -> dict[str, Any]:
    responses = {str(status): _reply(route, status) for status in route.replies}
    statuses = sorted({*route.errors, *([401] if auth and not route.open else [])})
    responses.update({str(status): _error(route.path, status) for status in statuses})
    operation: dict[str, Any] = {"operationId": route.name, "summary": route.summary, "responses": responses}
    if route.description:
        operation["description"] = route.description
    parameters = _path_parameters(route) + _query_parameters(route)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema = _ref(route.body.model)
        content = {media_type: {"schema": schema} for media_type in sorted(route.body.media_types)}
        operation["requestBody"] = {"required": True, "content": content}
    if auth and route.open:
        operation["security"] = []
    return operation


def _reply(route: Route, status: int) -> dict[str, Any]:
    reply = route.replies[status]
    response: dict[str, Any] = {"description": reply.description}
    if reply.content:
        response["content"] = {
            media_type: {"schema": _ref(model)} if model else {} for media_type, model in reply.content.items()
        }
    if route.links and 200 <= status < 300:
        response["links"] = {
            name: {"operationId": name, "parameters": dict(parameters)} for name, parameters in route.links.items()
        }
    return response


def _error(path: str, status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _REASONS[status],
        "content": {"application/json": {"schema": _ref(errors.body_model(path))}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    names = _PATH_PARAMETER.findall(route.path)
    missing = set(names) - set(route.path_parameters)
    if missing:
        raise ValueError(f"{route.method} {route.path}: no type declared for path parameters {sorted(missing)}")
    return [
        {"name": name, "in": "path", "required": True, "schema": TypeAdapter(route.path_parameters[name]).json_schema()}
        for name in names
    ]


def _query_parameters(route: Route) -> list[dict[str, Any]]:
    if route.query is None:
        return []
    schema = route.query.model_json_schema()
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def _models(routes: Iterable[Route]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for route in routes:
        models = [model for reply in route.replies.values() for model in reply.content.values() if model]
        models += [errors.body_model(route.path)] + ([route.body.model] if route.body else [])
        found.update((model.__name__, model) for model in models)
    return list(found.values())


def _fill_limits(node: Any, *, max_text_length: int) -> Any:
    """``schemas.TEXT_LIMIT`` markers become ``maxLength`` with the configured limit."""
    if isinstance(node, dict):
        filled = {key: _fill_limits(value, max_text_length=max_text_length) for key, value in node.items()}
        if filled.pop(schemas.TEXT_LIMIT, None) is not None:
            filled["maxLength"] = max_text_length
        return filled
    if isinstance(node, list):
        return [_fill_limits(value, max_text_length=max_text_length) for value in node]
    return node


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}
