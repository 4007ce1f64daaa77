"""Reading request bodies into models: content type, size, JSON or msgpack, validation.

Handlers call ``parse_body``; every failure becomes an ``ApiError`` with the status a client
can act on: 415 for a content type we do not read, 400 for bytes that do not parse, 422 with
the field named for a value outside its rules. (Bodies over the size limit never get here:
aiohttp answers 413 while reading, and the error middleware shapes that answer.)
"""

from __future__ import annotations

import json
from typing import TypeVar

import ormsgpack
from aiohttp import web
from pydantic import BaseModel, ValidationError

from voice_inference.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)

JSON_TYPES = frozenset({"application/json"})
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})


async def parse_body(request: web.Request, model: type[Model], *, msgpack: bool = True) -> Model:
    accepted = JSON_TYPES | MSGPACK_TYPES if msgpack else JSON_TYPES
    if request.content_type not in accepted:
        raise ApiError(
            415, "unsupported_media_type",
            f"Content-Type must be one of {', '.join(sorted(accepted))}, not {request.content_type!r}",
        )  # fmt: skip
    raw = await request.read()
    if not raw:
        raise ApiError(400, "empty_body", "request body is empty")
    try:
        data = ormsgpack.unpackb(raw) if request.content_type in MSGPACK_TYPES else json.loads(raw)
    except (ValueError, RecursionError, ormsgpack.MsgpackDecodeError) as exc:  # RecursionError: absurd nesting
        kind = "msgpack" if request.content_type in MSGPACK_TYPES else "JSON"
        raise ApiError(400, "malformed_body", f"body is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_body", "body must be an object")
    return validate(model, data)


def validate(model: type[Model], data: object) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = f"{field}: {first['msg']}" if field else first["msg"]
        raise ApiError(422, "invalid_field", message, field=field) from None
