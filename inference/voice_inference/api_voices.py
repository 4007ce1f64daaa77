"""``/v1/voices``: list, read, upload and delete reference voices in the configured store.

Uploads are multipart forms with fields ``id``, ``audio`` (a file) and ``text`` (its
transcript). The audio is decoded and checked before anything is written, so a bad upload
changes nothing. Store failures map to API errors in ``synthesis.store_errors``.
"""

from __future__ import annotations

import asyncio

import numpy as np
from aiohttp import web
from multidict import MultiDictProxy

from voice_inference import audio, synthesis, voices
from voice_inference.errors import ApiError
from voice_inference.settings import Settings


async def list_voices(request: web.Request) -> web.Response:
    store = request.app[synthesis.SERVICES].store
    with synthesis.store_errors(None, field=None):
        found = await store.list()
    return web.json_response({"voices": [voice.info() for voice in found]})


async def get_voice(request: web.Request) -> web.Response:
    store = request.app[synthesis.SERVICES].store
    voice = await synthesis.get_voice(store, request.match_info["voice_id"], field="voice_id")
    return web.json_response(voice.info())


async def create_voice(request: web.Request) -> web.Response:
    services = request.app[synthesis.SERVICES]
    form = _fields(await upload_form(request, fields="fields id, audio, text"))
    voice_id, text, data = str(form.get("id", "")), str(form.get("text", "")).strip(), form.get("audio", b"")
    for name, value in (("id", voice_id), ("text", text), ("audio", data)):
        if not value:
            raise ApiError(422, "missing_field", f"form field {name!r} is required", field=name)
    try:
        voices.validate_id(voice_id)
    except voices.InvalidVoice as exc:
        raise ApiError(422, "invalid_voice_id", str(exc), field="id") from None
    samples, rate = await decode_upload(bytes(data), services.settings, field="audio")  # type: ignore[arg-type]
    with synthesis.store_errors(voice_id, field="id"):
        voice = await services.store.put(voice_id, samples, rate, text)
    return web.json_response(voice.info(), status=201)


async def decode_upload(data: bytes, settings: Settings, *, field: str) -> tuple[np.ndarray, int]:
    """Uploaded audio decoded (off the event loop) and checked; also used by ``api_models``."""
    try:
        samples, rate = await asyncio.to_thread(audio.decode, data)
    except audio.AudioDecodeError as exc:
        raise ApiError(400, "invalid_audio", f"{field}: {exc}", field=field) from None
    synthesis.check_reference_length(samples, rate, settings, field=field)
    return samples, rate


async def delete_voice(request: web.Request) -> web.Response:
    store = request.app[synthesis.SERVICES].store
    voice_id = request.match_info["voice_id"]
    with synthesis.store_errors(voice_id, field="voice_id"):
        await store.delete(voice_id)
    return web.json_response({"id": voice_id, "deleted": True})


async def upload_form(request: web.Request, *, fields: str) -> MultiDictProxy[str | bytes | web.FileField]:
    """The multipart form of an upload (also ``api_models``'), refused first where the store is
    read-only; ``fields`` names what the form should hold, for the 415 message."""
    if request.app[synthesis.SERVICES].store.read_only:
        raise ApiError(405, "read_only_storage", "voice storage is read-only", headers={"Allow": "GET"})
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", f"upload voices as multipart/form-data ({fields})")
    try:
        return await request.post()
    except ValueError as exc:
        raise ApiError(400, "malformed_body", f"multipart body is malformed: {exc}") from None


def _fields(form: MultiDictProxy[str | bytes | web.FileField]) -> dict[str, str | bytes]:
    """Text fields as str, the audio file as bytes."""
    fields: dict[str, str | bytes] = {}
    for name in ("id", "text", "audio"):
        value = form.get(name)
        if isinstance(value, web.FileField):
            data = value.file.read()
            fields[name] = data if name == "audio" else data.decode("utf-8", errors="replace")
        elif isinstance(value, str):
            fields[name] = value.encode() if name == "audio" else value
    return fields
