"""Schemathesis hooks for the contract fuzz test (``test_contract_fuzz``), loaded by its CLI
through ``SCHEMATHESIS_HOOKS``.

The document says an audio field holds an audio file (``format: binary`` in forms, ``format:
byte`` in JSON); JSON Schema cannot say "decodable audio", so random bytes would be valid by
the schema and rejected by the server. These hooks teach the generator what an audio file is
(short WAVs of random noise at common rates), how to send ``application/msgpack`` bodies,
which ``/v1/tts`` reads as Fish Audio's clients send them, and which cases no client can send.
"""

from __future__ import annotations

import base64
import io
import typing
from typing import Any

import numpy as np
import ormsgpack
import schemathesis
import soundfile
from hypothesis import strategies as st

from voice_inference import parsing, routes


def _wav(rate: int, frames: int, seed: int) -> bytes:
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, frames).astype(np.float32)
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


WAV_FILES = st.builds(
    _wav, st.sampled_from([8000, 16000, 24000, 44100]), st.integers(64, 4000), st.integers(0, 2**32 - 1)
)

schemathesis.openapi.format("binary", WAV_FILES)
schemathesis.openapi.format("byte", WAV_FILES.map(lambda data: base64.b64encode(data).decode()))


@schemathesis.serializer(*sorted(parsing.MSGPACK_TYPES))
def _msgpack(ctx: Any, value: Any) -> bytes:
    return ormsgpack.packb(value)


def _list_fields(method: str, path: str) -> frozenset[str]:
    """The form fields a route's body model declares as lists (sent as repeated parts)."""
    for route in routes.ROUTES:
        if (route.method, route.path) == (method, path) and route.body is not None:
            fields = route.body.model.model_fields
            return frozenset(name for name, info in fields.items() if typing.get_origin(info.annotation) is list)
    return frozenset()


@schemathesis.hook
def filter_case(context: Any, case: schemathesis.Case) -> bool:
    """Drop cases no client can send as schemathesis means them. msgpack cannot carry integers
    beyond 64 bits. A multipart form carries only text and files, and a list only as repeated
    parts: a value of another type (``false``, ``null``), or a list where the model wants one
    value (or one value where it wants a list), arrives as text that may well be valid, so as a
    "negative" case it tests nothing (schemathesis would still expect a rejection). And one
    rule JSON Schema cannot state: ``POST /model`` takes one transcript per voice file, so a
    "positive" case with other counts is not one."""
    if case.media_type in parsing.MSGPACK_TYPES:
        try:
            ormsgpack.packb(case.body)
        except TypeError:  # ormsgpack.MsgpackEncodeError
            return False
    if case.media_type in parsing.FORM_TYPES and isinstance(case.body, dict):
        lists = _list_fields(case.method.upper(), case.operation.path)
        for name, value in case.body.items():
            if (name in lists) != isinstance(value, list):
                return False
            if not all(isinstance(item, (str, bytes)) for item in (value if isinstance(value, list) else [value])):
                return False
        voices, texts = case.body.get("voices"), case.body.get("texts")
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if positive and isinstance(voices, list) and isinstance(texts, list) and len(voices) != len(texts):
            return False
    return True
