"""``/model``: Fish Audio's voice API (what the SDK's ``client.voices`` calls) over our voice store.

The same store as ``/v1/voices`` (local, S3 or Hub; read-only where the store is), seen through
Fish's "model" objects. What has no meaning here is mapped plainly:

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
from typing import Any

import numpy as np
from aiohttp import web

from voice_inference import api_voices, resample, synthesis, voices
from voice_inference.errors import ApiError

# Fish's author object is required by the SDK; every voice here belongs to the server.
_AUTHOR = {"_id": "voice-service", "nickname": "voice-service", "avatar": ""}


async def list_models(request: web.Request) -> web.Response:
    store = request.app[synthesis.SERVICES].store
    page_size = _int_param(request, "page_size", 10, 1, 100)
    page_number = _int_param(request, "page_number", 1, 1, 1_000_000)
    title = request.query.get("title", "").lower()
    with synthesis.store_errors(None, field=None):
        found = await store.list()
    matching = sorted((v for v in found if title in v.id.lower()), key=lambda v: (v.created_at, v.id), reverse=True)
    start = (page_number - 1) * page_size
    return web.json_response({"total": len(matching), "items": [model(v) for v in matching[start : start + page_size]]})


async def get_model(request: web.Request) -> web.Response:
    store = request.app[synthesis.SERVICES].store
    voice = await synthesis.get_voice(store, request.match_info["voice_id"], field="voice_id")
    return web.json_response(model(voice))


async def create_model(request: web.Request) -> web.Response:
    services = request.app[synthesis.SERVICES]
    form = await api_voices.upload_form(request, fields="title, voices files, texts")
    title = str(form.get("title", "")).strip()
    files = [item.file.read() for item in form.getall("voices", []) if isinstance(item, web.FileField)]
    texts = [str(text).strip() for text in form.getall("texts", [])]
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
    return web.json_response(model(voice), status=201)


def model(voice: voices.StoredVoice) -> dict[str, Any]:
    """A stored voice as Fish Audio's model object (the SDK's ``Voice``)."""
    return {
        "_id": voice.id,
        "type": "tts",
        "title": voice.id,
        "description": "",
        "cover_image": "",
        "train_mode": "fast",
        "state": "trained",
        "tags": [],
        "samples": [{"title": voice.id, "text": voice.text, "task_id": voice.revision, "audio": ""}],
        "created_at": voice.created_at,
        "updated_at": voice.created_at,
        "languages": [],
        "visibility": "private",
        "lock_visibility": False,
        "like_count": 0,
        "mark_count": 0,
        "shared_count": 0,
        "task_count": 0,
        "liked": False,
        "marked": False,
        "author": _AUTHOR,
    }


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


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "invalid_field", f"{name}: must be an integer, not {raw!r}", field=name) from None
    if not low <= value <= high:
        raise ApiError(422, "invalid_field", f"{name}: must be between {low} and {high}", field=name)
    return value
