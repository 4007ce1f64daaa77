"""``/v1/voices``: list, read, upload and delete reference voices in the configured store.

Uploads are multipart forms (``schemas.VoiceUpload``) with fields ``id``, ``audio`` (a file)
and ``text`` (its transcript), and no others. The audio is decoded and checked before anything
is written, so a bad upload changes nothing. Store failures map to API errors in ``synthesis.store_errors``.
"""

from __future__ import annotations

import asyncio

import numpy as np
from aiohttp import web

from voice_inference import audio, parsing, schemas, synthesis, voices
from voice_inference.errors import ApiError
from voice_inference.settings import Settings

_FILES = frozenset({"audio"})  # the form fields (``schemas.VoiceUpload``) sent as files


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
    check_writable(services.store)
    form = await parsing.read_form(request, schemas.VoiceUpload, files=_FILES)
    voice_id, text, data = str(form.get("id", "")), str(form.get("text", "")), bytes(form.get("audio", b""))
    for name, given in (("id", voice_id), ("text", schemas.NON_BLANK.search(text)), ("audio", data)):
        if not given:
            raise ApiError(422, "missing_field", f"form field {name!r} is required", field=name)
    try:
        voices.validate_id(voice_id)
    except voices.InvalidVoice as exc:
        raise ApiError(422, "invalid_voice_id", str(exc), field="id") from None
    samples, rate = await decode_upload(data, services.settings, field="audio")
    with synthesis.store_errors(voice_id, field="id"):
        voice = await services.store.put(voice_id, samples, rate, text.strip())
    return web.json_response(voice.info(), status=201)


def check_writable(store: voices.VoiceStore) -> None:
    """Refuse an upload before its body is read where the store is read-only (also ``api_models``)."""
    if store.read_only:
        raise ApiError(405, "read_only_storage", "voice storage is read-only", headers={"Allow": "GET"})


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
    return web.json_response(schemas.VoiceDeleted(id=voice_id, deleted=True).model_dump())
