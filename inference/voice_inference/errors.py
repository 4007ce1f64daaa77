"""API errors and their JSON shapes.

Handlers and request parsing raise ``ApiError``; the error middleware (``middlewares``)
renders it. Two shapes, both stable:

* ours, on every route but OpenAI's: ``{"error": {"status", "code", "message", "field"}}``
* OpenAI's, on ``/v1/audio/*``: ``{"error": {"message", "type", "param", "code"}}``

Both are the pydantic models in ``schemas`` (``ErrorBody``, ``OpenAIErrorBody``), which the
OpenAPI document also describes; ``body_model`` says which one a path answers with.
"""

from __future__ import annotations

from typing import Any

from aiohttp import http_exceptions, web
from pydantic import BaseModel

from voice_inference import schemas

# OpenAI's error ``type`` for each status we send.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


# What aiohttp raises for a request it cannot parse: its request line or headers, a part's
# headers, the body's chunked framing or ``Content-Encoding``. Always the client's mistake.
UNPARSEABLE: tuple[type[Exception], ...] = (http_exceptions.HttpProcessingError, web.RequestPayloadError)


def unparseable_reason(exc: BaseException) -> str:
    """aiohttp's multi-line message of an ``UNPARSEABLE`` error, on one line."""
    message = exc.message if isinstance(exc, http_exceptions.HttpProcessingError) else str(exc)
    return " ".join(str(message).split())


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def is_openai_route(path: str) -> bool:
    return path.startswith("/v1/audio/")


def body_model(path: str) -> type[BaseModel]:
    """The error model of a route: OpenAI's on ``/v1/audio/*``, ours elsewhere."""
    return schemas.OpenAIErrorBody if is_openai_route(path) else schemas.ErrorBody


def body(error: ApiError, *, openai: bool) -> dict[str, Any]:
    if openai:
        return schemas.OpenAIErrorBody(
            error=schemas.OpenAIErrorDetail(
                message=error.message,
                type=_OPENAI_TYPES.get(error.status, "server_error"),
                param=error.field,
                code=error.code,
            )
        ).model_dump()
    detail = schemas.ErrorDetail(status=error.status, code=error.code, message=error.message, field=error.field)
    return schemas.ErrorBody(error=detail).model_dump()


def response(error: ApiError, *, openai: bool) -> web.Response:
    return web.json_response(body(error, openai=openai), status=error.status, headers=error.headers)
