"""Reading request bodies into models: content type, size, JSON or msgpack, validation.

Handlers call ``parse_body``; every failure becomes an ``ApiError`` with the status a client
can act on: 415 for a content type we do not read, 400 for bytes that do not parse, 422 with
the field named for a value outside its rules. ``read_form`` does the same for multipart forms.
(Bodies over the size limit never get here: aiohttp answers 413 while reading, and the error
middleware shapes that answer, as it does aiohttp's own parse errors of a body's framing or
``Content-Encoding``.)
"""

from __future__ import annotations

import json
import typing
from typing import TypeVar

import ormsgpack
from aiohttp import web
from pydantic import BaseModel, ValidationError

from voice_inference import errors
from voice_inference.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)

JSON_TYPES = frozenset({"application/json"})
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})
FORM_TYPES = frozenset({"multipart/form-data"})

# What aiohttp's multipart reader raises for a body it cannot read: bad framing (ValueError), bad
# part headers or body encoding (UNPARSEABLE), an unknown charset (LookupError) or part encoding (RuntimeError).
_MALFORMED_FORM = (ValueError, LookupError, RuntimeError, *errors.UNPARSEABLE)


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


FormValue = str | bytes


async def read_form(
    request: web.Request, model: type[BaseModel], *, files: frozenset[str]
) -> dict[str, FormValue | list[FormValue]]:
    """The fields of a multipart form that ``model`` names: ``files`` as bytes, the others as
    text (a file part sent where text is expected is decoded as UTF-8); a field the model
    declares as a list gets every part of that name, in order, the others their first part.
    Absent fields are left out; a field the model does not name is a 422 when it forbids extra fields."""
    if request.content_type not in FORM_TYPES:
        raise ApiError(
            415, "unsupported_media_type", f"Content-Type must be multipart/form-data, not {request.content_type!r}"
        )
    try:
        form = await request.post()
    except _MALFORMED_FORM as exc:
        reason = errors.unparseable_reason(exc)
        raise ApiError(400, "malformed_body", f"multipart body is malformed: {reason}") from None
    unknown = sorted(set(form) - set(model.model_fields))
    if unknown and model.model_config.get("extra") == "forbid":
        raise ApiError(422, "unknown_field", f"unknown form field {unknown[0]!r}", field=unknown[0])
    fields: dict[str, FormValue | list[FormValue]] = {}
    for name, info in model.model_fields.items():
        values = [_form_value(part, as_bytes=name in files) for part in form.getall(name, [])]
        if typing.get_origin(info.annotation) is list:
            fields[name] = values
        elif values:
            fields[name] = values[0]
    return fields


def _form_value(part: str | bytes | web.FileField, *, as_bytes: bool) -> FormValue:
    data = part.file.read() if isinstance(part, web.FileField) else part
    if as_bytes:
        return data.encode() if isinstance(data, str) else data
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
