"""API errors and request parsing (``errors``, ``parsing``, ``schemas``, the error middleware).

Covers: our error shape and OpenAI's, field for field; ``validate()`` reports the first error
with its field (nested fields dotted); ``parse_body`` turns each kind of bad body into the
status a client can act on (415, 400, 422) and reads JSON and msgpack alike; the error
middleware shapes ``ApiError``, aiohttp's own HTTP errors and unexpected exceptions as JSON in
the route's dialect, never a traceback. Requests are aiohttp's mocked requests: no server.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from unittest import mock

import ormsgpack
import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request

from voice_inference import errors, middlewares, parsing, schemas
from voice_inference.errors import ApiError


def request_with_body(body: bytes, content_type: str | None, path: str = "/v1/tts") -> web.Request:
    payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    payload.feed_eof()
    headers = {"Content-Type": content_type} if content_type else {}
    return make_mocked_request("POST", path, headers=headers, payload=payload)


async def parse(body: bytes, content_type: str | None, model: type = schemas.TTSRequest, **kwargs: Any) -> Any:
    return await parsing.parse_body(request_with_body(body, content_type), model, **kwargs)


def as_json(response: web.StreamResponse) -> dict[str, Any]:
    assert isinstance(response, web.Response)
    assert response.content_type == "application/json"
    assert response.text is not None
    return json.loads(response.text)


# Error shapes.


def test_our_error_shape() -> None:
    error = ApiError(422, "invalid_field", "format: bad", field="format")
    assert errors.body(error, openai=False) == {
        "error": {"status": 422, "code": "invalid_field", "message": "format: bad", "field": "format"}
    }
    schemas.ErrorBody.model_validate(errors.body(error, openai=False))  # what the OpenAPI document promises


def test_openai_error_shape() -> None:
    error = ApiError(422, "invalid_field", "speed: too fast", field="speed")
    assert errors.body(error, openai=True) == {
        "error": {
            "message": "speed: too fast",
            "type": "invalid_request_error",
            "param": "speed",
            "code": "invalid_field",
        }
    }


@pytest.mark.parametrize(
    ("status", "openai_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "not_found_error"),
        (413, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "service_unavailable_error"),
    ],
)
def test_openai_error_types(status: int, openai_type: str) -> None:
    assert errors.body(ApiError(status, "x", "y"), openai=True)["error"]["type"] == openai_type


def test_error_response_carries_status_and_headers() -> None:
    error = ApiError(429, "queue_full", "busy", headers={"Retry-After": "3"})
    response = errors.response(error, openai=False)
    assert response.status == 429
    assert response.headers["Retry-After"] == "3"
    assert as_json(response)["error"]["code"] == "queue_full"


@pytest.mark.parametrize(
    ("path", "openai"),
    [("/v1/audio/speech", True), ("/v1/tts", False), ("/v1/voices", False), ("/v1/audio", False)],
)
def test_openai_routes(path: str, openai: bool) -> None:
    assert errors.is_openai_route(path) is openai


# validate(): the first error, with its field.


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "text"),
        ({"text": "hi", "format": "ogg"}, "format"),
        ({"text": "hi", "chunk_length": 5}, "chunk_length"),
        ({"text": "hi", "top_p": 2}, "top_p"),
        ({"text": "hi", "seed": -1}, "seed"),
        ({"text": "hi", "max_new_tokens": "many"}, "max_new_tokens"),
        ({"text": "hi", "prosody": {"speed": 9}}, "prosody.speed"),
        ({"text": "hi", "references": [{"audio": "!!not base64!!", "text": "t"}]}, "references.0.audio"),
        ({"text": "hi", "references": [{"audio": "AAAA"}]}, "references.0.text"),
        ({"text": 12}, "text"),
    ],
)
def test_validate_names_the_field_of_the_first_error(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        parsing.validate(schemas.TTSRequest, data)
    assert caught.value.status == 422
    assert caught.value.code == "invalid_field"
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")


def test_validate_reports_only_the_first_of_several_errors() -> None:
    with pytest.raises(ApiError) as caught:
        parsing.validate(schemas.SpeechRequest, {"model": "", "input": "hi", "voice": "v", "speed": 99})
    assert caught.value.field == "model"


def test_validate_returns_the_model_and_ignores_unknown_fields() -> None:
    body = parsing.validate(schemas.TTSRequest, {"text": "hi", "format": "mp3", "some_future_field": 1})
    assert (body.text, body.format, body.streaming) == ("hi", "mp3", False)


def test_json_references_carry_base64_audio() -> None:
    body = parsing.validate(
        schemas.TTSRequest,
        {"text": "hi", "references": [{"audio": base64.b64encode(b"RIFF....").decode(), "text": "t"}]},
    )
    assert body.references[0].audio == b"RIFF...."


def test_openai_voice_may_be_an_object() -> None:
    body = parsing.validate(schemas.SpeechRequest, {"model": "tts-1", "input": "hi", "voice": {"id": "alice"}})
    assert body.voice == "alice"


# parse_body(): content types and bytes.


async def test_parse_json() -> None:
    body = await parse(b'{"text": "hello", "streaming": true}', "application/json")
    assert (body.text, body.streaming) == ("hello", True)


async def test_parse_json_with_a_charset_parameter() -> None:
    body = await parse(b'{"text": "hello"}', "application/json; charset=utf-8")
    assert body.text == "hello"


@pytest.mark.parametrize("content_type", sorted(parsing.MSGPACK_TYPES))
async def test_parse_msgpack_with_raw_reference_bytes(content_type: str) -> None:
    packed = ormsgpack.packb({"text": "hello", "references": [{"audio": b"\x00\x01binary", "text": "ref"}]})
    body = await parse(packed, content_type)
    assert body.references[0].audio == b"\x00\x01binary"


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data", None])
async def test_unsupported_content_type_is_415(content_type: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        await parse(b'{"text": "hi"}', content_type)
    assert caught.value.status == 415


async def test_msgpack_is_refused_where_only_json_is_read() -> None:
    packed = ormsgpack.packb({"model": "tts-1", "input": "hi", "voice": "default"})
    with pytest.raises(ApiError) as caught:
        await parse(packed, "application/msgpack", schemas.SpeechRequest, msgpack=False)
    assert caught.value.status == 415
    assert "application/json" in caught.value.message


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"", "application/json", "empty_body"),
        (b"{not json", "application/json", "malformed_body"),
        (b"\xff\xfe\x00", "application/json", "malformed_body"),
        (b"[1, 2]", "application/json", "malformed_body"),
        (b'"text"', "application/json", "malformed_body"),
        (b"[" * 100_000, "application/json", "malformed_body"),  # nesting beyond Python's recursion limit
        (b"\x91" * 100_000, "application/msgpack", "malformed_body"),
        (b"\xc1", "application/msgpack", "malformed_body"),
        (ormsgpack.packb([1, 2]), "application/msgpack", "malformed_body"),
    ],
)
async def test_unreadable_bodies_are_400(body: bytes, content_type: str, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        await parse(body, content_type)
    assert (caught.value.status, caught.value.code) == (400, code)


async def test_invalid_field_in_a_parsed_body_is_422() -> None:
    with pytest.raises(ApiError) as caught:
        await parse(ormsgpack.packb({"text": "hi", "temperature": 5}), "application/msgpack")
    assert (caught.value.status, caught.value.field) == (422, "temperature")


# The error middleware.


async def run_middleware(path: str, exc: BaseException) -> web.StreamResponse:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise exc

    return await middlewares.error_middleware(make_mocked_request("POST", path), handler)


async def test_middleware_renders_api_errors_in_our_shape() -> None:
    response = await run_middleware("/v1/tts", ApiError(422, "invalid_field", "seed: bad", field="seed"))
    assert response.status == 422
    assert as_json(response) == {
        "error": {"status": 422, "code": "invalid_field", "message": "seed: bad", "field": "seed"}
    }


async def test_middleware_renders_api_errors_in_openai_shape_on_openai_routes() -> None:
    error = ApiError(429, "queue_full", "busy", headers={"Retry-After": "1"})
    response = await run_middleware("/v1/audio/speech", error)
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert as_json(response) == {
        "error": {"message": "busy", "type": "rate_limit_error", "param": None, "code": "queue_full"}
    }


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (web.HTTPNotFound(), 404, "not_found"),
        (web.HTTPMethodNotAllowed("PUT", ["GET", "POST"]), 405, "method_not_allowed"),
        (web.HTTPRequestEntityTooLarge(max_size=1024, actual_size=4096), 413, "payload_too_large"),
        (web.HTTPBadRequest(), 400, "bad_request"),
    ],
)
async def test_middleware_renders_aiohttp_errors_as_json(exc: web.HTTPException, status: int, code: str) -> None:
    response = await run_middleware("/v1/tts", exc)
    assert response.status == status
    assert as_json(response)["error"]["code"] == code
    if status == 405:
        assert response.headers["Allow"] == "GET,POST"


async def test_middleware_hides_unexpected_exceptions() -> None:
    response = await run_middleware("/v1/tts", KeyError("secret internals"))
    assert response.status == 500
    body = as_json(response)
    assert body["error"]["code"] == "internal_error"
    assert "secret internals" not in json.dumps(body)


async def test_middleware_lets_redirects_through() -> None:
    with pytest.raises(web.HTTPFound):
        await run_middleware("/v1/tts", web.HTTPFound("/elsewhere"))
