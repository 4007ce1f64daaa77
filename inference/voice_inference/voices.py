"""Reference voice storage: one small interface, and the local-directory backend.

The voices API (``api_voices``) and ``reference_id`` lookups in synthesis go through a
``VoiceStore``; ``create_store`` picks the backend from ``VOICE_REFERENCE_STORAGE``.

Local layout (the same as Fish Audio's server uses, so existing folders work):
``<root>/<voice id>/<name>.wav`` with the transcript in ``<name>.lab`` beside it, and our
``meta.json`` (creation time, revision). Writes build the whole voice in a temporary folder
and rename it into place, so a crash never leaves a half-written voice that reads as valid.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from voice_inference import audio
from voice_inference.settings import Settings

VOICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


class VoiceNotFound(LookupError):
    pass


class InvalidVoice(ValueError):
    """A voice id or content that cannot be stored."""


class ReadOnlyStore(PermissionError):
    pass


@dataclass(frozen=True)
class StoredVoice:
    id: str
    text: str
    samples: np.ndarray  # float32 mono
    sample_rate: int
    created_at: str  # ISO 8601, UTC
    revision: str  # content hash: changes whenever the voice changes

    @property
    def duration_seconds(self) -> float:
        return audio.duration_seconds(self.samples, self.sample_rate)

    def info(self) -> dict[str, object]:
        return {
            "id": self.id,
            "text": self.text,
            "sample_rate": self.sample_rate,
            "duration_seconds": round(self.duration_seconds, 3),
            "created_at": self.created_at,
            "revision": self.revision,
        }


def validate_id(voice_id: str) -> str:
    """Accept only ids that are safe as one path segment and as an object key."""
    if not VOICE_ID.match(voice_id) or ".." in voice_id:
        raise InvalidVoice(
            "voice id must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "start with a letter or digit, and not contain '..'"
        )
    return voice_id


def revision_of(samples: np.ndarray, text: str) -> str:
    digest = hashlib.sha256(samples.tobytes())
    digest.update(text.encode())
    return digest.hexdigest()[:16]


class VoiceStore(abc.ABC):
    """Where reference voices live. Methods raise ``VoiceNotFound``, ``InvalidVoice`` or
    ``ReadOnlyStore``; anything else is a backend failure that the API reports as 502/503."""

    read_only: bool = False

    @abc.abstractmethod
    async def list(self) -> list[StoredVoice]: ...

    @abc.abstractmethod
    async def get(self, voice_id: str) -> StoredVoice: ...

    @abc.abstractmethod
    async def put(self, voice_id: str, samples: np.ndarray, sample_rate: int, text: str) -> StoredVoice: ...

    @abc.abstractmethod
    async def delete(self, voice_id: str) -> None: ...

    async def close(self) -> None:
        pass


class LocalVoiceStore(VoiceStore):
    def __init__(self, root: Path) -> None:
        self.root = root

    async def list(self) -> list[StoredVoice]:
        return await asyncio.to_thread(self._list)

    async def get(self, voice_id: str) -> StoredVoice:
        return await asyncio.to_thread(self._read, validate_id(voice_id))

    async def put(self, voice_id: str, samples: np.ndarray, sample_rate: int, text: str) -> StoredVoice:
        return await asyncio.to_thread(self._write, validate_id(voice_id), samples, sample_rate, text)

    async def delete(self, voice_id: str) -> None:
        await asyncio.to_thread(self._delete, validate_id(voice_id))

    # Blocking parts, run on a worker thread.

    def _list(self) -> list[StoredVoice]:
        if not self.root.is_dir():
            return []
        voices = []
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and VOICE_ID.match(entry.name):
                try:
                    voices.append(self._read(entry.name))
                except (VoiceNotFound, InvalidVoice):
                    continue  # an unreadable folder is skipped, not fatal to the listing
        return voices

    def _read(self, voice_id: str) -> StoredVoice:
        folder = self.root / voice_id
        audio_file = next((p for p in sorted(folder.glob("*")) if p.suffix in AUDIO_SUFFIXES), None) if folder.is_dir() else None
        if audio_file is None or not audio_file.with_suffix(".lab").is_file():
            raise VoiceNotFound(voice_id)
        text = audio_file.with_suffix(".lab").read_text(encoding="utf-8").strip()
        try:
            samples, rate = audio.decode(audio_file.read_bytes())
        except audio.AudioDecodeError as exc:
            raise InvalidVoice(f"stored voice {voice_id!r} has unreadable audio: {exc}") from exc
        meta = _read_meta(folder / "meta.json")
        created = meta.get("created_at") or _iso(dt.datetime.fromtimestamp(audio_file.stat().st_mtime, dt.UTC))
        return StoredVoice(voice_id, text, samples, rate, created, meta.get("revision") or revision_of(samples, text))

    def _write(self, voice_id: str, samples: np.ndarray, sample_rate: int, text: str) -> StoredVoice:
        self.root.mkdir(parents=True, exist_ok=True)
        voice = StoredVoice(voice_id, text, samples, sample_rate, _iso(dt.datetime.now(dt.UTC)), revision_of(samples, text))
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            soundfile.write(staging / "reference.wav", samples, sample_rate, subtype="PCM_16")
            (staging / "reference.lab").write_text(text, encoding="utf-8")
            meta = {"created_at": voice.created_at, "revision": voice.revision}
            (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            _fsync_dir(staging)
            target = self.root / voice_id
            if target.exists():  # replace: move the old one aside first, then swap in
                trash = self.root / f".trash-{uuid.uuid4().hex}"
                os.rename(target, trash)
                os.rename(staging, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return voice

    def _delete(self, voice_id: str) -> None:
        target = self.root / voice_id
        if not target.is_dir():
            raise VoiceNotFound(voice_id)
        trash = self.root / f".trash-{uuid.uuid4().hex}"
        os.rename(target, trash)  # atomic: readers see the voice or nothing
        shutil.rmtree(trash, ignore_errors=True)


def _read_meta(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def create_store(settings: Settings) -> VoiceStore:
    """The store named by ``VOICE_REFERENCE_STORAGE``."""
    if settings.reference_storage == "local":
        return LocalVoiceStore(settings.reference_path)
    raise ValueError(f"reference storage {settings.reference_storage!r} is not available in this build")
