"""``/model``: Fish Audio's voice API (what the SDK's ``client.voices`` calls) over our voice store.

The same store as ``/v1/voices`` (local, S3 or Hub; read-only where the store is), seen through
Fish's "model" objects (``schemas.FishModel``). Forms are read by ``parsing.read_form`` into the
fields of ``schemas.ModelUpload`` (others are a 422), the query into ``schemas.ModelQuery``.
What has no meaning here is mapped plainly:

* ``title``: the id is made from it (``My Voice`` -> ``my-voice-<8 hex>``) and it reads back as
  the id; ``description``, ``tags``, ``visibility``, ``cover_image``, ``train_mode`` and
  ``enhance_audio_quality`` are accepted and not stored. Every voice reads back as private,
  ``trained`` (usable at once), with no tags, no languages, zero counters and one author.
* ``voices`` and ``texts``: one transcript per audio file (there is no speech recognition
  here); several files become one reference voice, their audio joined in order.
* ``GET /model``: ``page_size`` and ``page_number`` paginate, ``title`` filters by part of the
  id, newest first; the other filters (tags, language, author, self) are accepted and ignored.
"""

from __future__ import annotations

import re
import uuid

import numpy as np
from aiohttp import web

from voice_inference import api_voices, parsing, resample, schemas, synthesis, voices
from voice_inference.errors import ApiError

_FILES = frozenset({"voices", "cover_image"})  # the form fields (``schemas.ModelUpload``) sent as files


async def list_models(request: web.Request) -> web.Response:
    store = request.app[synthesis.SERVICES].store
    query = parsing.validate(schemas.ModelQuery, dict(request.query))
    with synthesis.store_errors(None, field=None):
        found = await store.list()
    title = query.title.lower()
    matching = sorted((v for v in found if title in v.id.lower()), key=lambda v: (v.created_at, v.id), reverse=True)
    start = (query.page_number - 1) * query.page_size
    page = [model(v) for v in matching[start : start + query.page_size]]
    return web.json_response(schemas.FishModelPage(total=len(matching), items=page).model_dump(by_alias=True))


async def get_model(request: web.Request) -> web.Response:
    store = request.app[synthesis.SERVICES].store
    voice = await synthesis.get_voice(store, request.match_info["voice_id"], field="voice_id")
    return web.json_response(model(voice).model_dump(by_alias=True))


async def create_model(request: web.Request) -> web.Response:
    services = request.app[synthesis.SERVICES]
    api_voices.check_writable(services.store)
    form = await parsing.read_form(request, schemas.ModelUpload, files=_FILES)
    title = str(form.get("title", "")).strip()
    files = [bytes(data) for data in form.get("voices", [])]
    texts = [str(text).strip() for text in form.get("texts", [])]
    if not title:
        raise ApiError(422, "missing_field", "form field 'title' is required", field="title")
    if form.get("type", "tts") != "tts":
        raise ApiError(422, "invalid_field", "type: only 'tts' voices exist here", field="type")
    if not files:
        raise ApiError(422, "missing_field", "form field 'voices' needs at least one audio file", field="voices")
    if len(texts) != len(files) or not all(texts):
        raise ApiError(
            422, "missing_field",
            f"texts: one transcript per voice file is required (got {len(texts)} for {len(files)} files; "
            "this server has no speech recognition)", field="texts",
        )  # fmt: skip
    decoded = [
        await api_voices.decode_upload(data, services.settings, field=f"voices.{i}") for i, data in enumerate(files)
    ]
    samples, rate = join_audio(decoded)
    synthesis.check_reference_length(samples, rate, services.settings, field="voices")
    voice_id = new_id(title)
    with synthesis.store_errors(voice_id, field="title"):
        voice = await services.store.put(voice_id, samples, rate, " ".join(texts))
    return web.json_response(model(voice).model_dump(by_alias=True), status=201)


def model(voice: voices.StoredVoice) -> schemas.FishModel:
    """A stored voice as Fish Audio's model object (the SDK's ``Voice``)."""
    sample = schemas.FishSample(title=voice.id, text=voice.text, task_id=voice.revision, audio="")
    return schemas.FishModel(
        _id=voice.id, title=voice.id, samples=[sample], created_at=voice.created_at, updated_at=voice.created_at
    )


def new_id(title: str) -> str:
    """A fresh voice id that reads like the title: ``My Voice!`` -> ``my-voice-1a2b3c4d``."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:100]
    suffix = uuid.uuid4().hex[:8]
    return voices.validate_id(f"{slug}-{suffix}" if slug else uuid.uuid4().hex)


def join_audio(parts: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    """Several clips as one, at the first clip's rate (the others resampled)."""
    rate = parts[0][1]
    converted = [resample.whole(samples, clip_rate, rate) for samples, clip_rate in parts]
    return np.concatenate(converted).astype(np.float32), rate
