"""The ``/v1/tts`` fields Fish Audio's SDK sends on every request (``schemas.TTSRequest``):
its defaults validate as they are, a sample rate the format cannot carry is refused with the
field named, and the bit rates reach the encoder in bit/s. The served OpenAPI document states
the same rules: a body is valid by its schema exactly when the model accepts it, so the
document promises nothing the server refuses (and schemathesis's valid cases are served).
"""

from __future__ import annotations

import typing

import jsonschema
import pytest
from pydantic import ValidationError

from voice_inference import encoders, openapi, routes, schemas

# What fish-audio-sdk 1.3.0 sends for TTSConfig() (its TTSRequest.model_dump(exclude_none=True)).
SDK_DEFAULTS = {
    "text": "Hello.", "chunk_length": 200, "format": "mp3", "mp3_bitrate": 128, "opus_bitrate": 32,
    "references": [], "normalize": True, "latency": "balanced", "top_p": 0.7, "temperature": 0.7,
    "max_new_tokens": 1024, "repetition_penalty": 1.2, "min_chunk_length": 50,
    "condition_on_previous_chunks": True, "early_stop_threshold": 1.0,
}  # fmt: skip


def test_the_sdk_defaults_are_ordinary_input() -> None:
    body = schemas.TTSRequest.model_validate(SDK_DEFAULTS)
    assert (body.temperature, body.top_p, body.repetition_penalty) == (0.7, 0.7, 1.2)
    assert body.bit_rate() == 128_000 and body.sample_rate is None


@pytest.mark.parametrize(
    ("fields", "bit_rate"),
    [({"format": "mp3", "mp3_bitrate": 64}, 64_000), ({"format": "opus", "opus_bitrate": 24}, 24_000),
     ({"format": "opus", "opus_bitrate": -1000}, None), ({"format": "wav", "mp3_bitrate": 192}, None)],
)  # fmt: skip
def test_bit_rate_follows_the_format(fields: dict, bit_rate: int | None) -> None:
    assert schemas.TTSRequest.model_validate({"text": "x", **fields}).bit_rate() == bit_rate


@pytest.mark.parametrize(
    ("fmt", "rate", "ok"),
    [("wav", 24_000, True), ("mp3", 22_050, True), ("opus", 24_000, True), ("opus", 44_100, False),
     ("wav", 23_000, False), ("pcm", 0, False)],
)  # fmt: skip
def test_sample_rate_must_suit_the_format(fmt: str, rate: int, ok: bool) -> None:
    fields = {"text": "x", "format": fmt, "sample_rate": rate}
    if ok:
        assert schemas.TTSRequest.model_validate(fields).sample_rate == rate
        return
    with pytest.raises(ValidationError) as refused:
        schemas.TTSRequest.model_validate(fields)
    assert refused.value.errors()[0]["loc"] == ("sample_rate",)


# The served document's TTSRequest, its references resolvable, judged by a JSON Schema validator.
DOCUMENTED = jsonschema.Draft202012Validator(
    {"$ref": "#/components/schemas/TTSRequest",
     "components": openapi.document(routes.ROUTES, auth=False, max_text_length=2000)["components"]}
)  # fmt: skip


def accepted(fields: dict) -> bool:
    try:
        schemas.TTSRequest.model_validate(fields)
    except ValidationError:
        return False
    return True


def test_the_sdk_defaults_are_valid_by_the_document() -> None:
    DOCUMENTED.validate(SDK_DEFAULTS)


RATES = sorted(encoders.SAMPLE_RATES | encoders.OPUS_RATES | {0, 22_000, 44_101, 96_000})


@pytest.mark.parametrize("fmt", [None, *typing.get_args(schemas.TTSRequest.model_fields["format"].annotation)])
def test_the_document_allows_exactly_the_sample_rates_the_server_accepts(fmt: str | None) -> None:
    for rate in [None, *RATES, 24_000.0, "24000"]:
        fields = {"text": "x", "sample_rate": rate, **({"format": fmt} if fmt else {})}
        assert DOCUMENTED.is_valid(fields) == accepted(fields), fields


@pytest.mark.parametrize(
    ("name", "values"),
    [("mp3_bitrate", [64, 128, 192, 128.0, 96, "128", True]), ("opus_bitrate", [-1000, 24, 64, 0, 128, "64"]),
     ("min_chunk_length", [0, 50, 300, 50.0, -1, 301, 50.5, "50"]),
     ("condition_on_previous_chunks", [True, False, 1, "true", None]),
     ("early_stop_threshold", [0, 0.5, 1.0, 7, "1", True, None])],
)  # fmt: skip
def test_the_document_allows_exactly_what_the_new_fields_accept(name: str, values: list) -> None:
    for value in values:
        fields = {"text": "x", name: value}
        assert DOCUMENTED.is_valid(fields) == accepted(fields), fields
