"""The voice-store interface every backend implements, its value type and its errors.

Sits below the backends (``local``, ``s3``, ``huggingface``) and the cache; the HTTP handlers
(``api_voices``) and ``reference_id`` lookups (``synthesis``) only see what is defined here.

Errors and the HTTP status the API gives them:

* ``VoiceNotFound`` -> 404; ``InvalidVoice`` (a bad id or bad content sent by a client) -> 400/422;
  ``ReadOnlyStore`` -> 405.
* ``StorageError`` and its kinds -> 503: ``StorageUnavailable`` (the backend cannot be reached,
  refuses our credentials, or the bucket/repo does not exist) and ``CorruptVoice`` (one stored
  voice cannot be read: unreadable audio, missing transcript). Other voices keep working.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import re
from dataclasses import dataclass

import numpy as np

from voice_inference import audio

# Letters, digits, '.', '_', '-'; a letter or digit first; never '..' (each '.' is followed by
# another character or ends the id). No lookaround, so the OpenAPI document can state the same
# pattern (``schemas.VoiceId``) for any JSON Schema engine.
VOICE_ID = re.compile(r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_-])*\.?$")
VOICE_ID_MAX = 128
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
TRANSCRIPT_SUFFIX = ".lab"


class VoiceNotFound(LookupError):
    pass


class InvalidVoice(ValueError):
    """A voice id or content that cannot be stored (the client's input is wrong)."""


class ReadOnlyStore(PermissionError):
    pass


class StorageError(RuntimeError):
    """The store failed on its side; the message says why in words an operator can act on."""


class StorageUnavailable(StorageError):
    """The backend cannot be used at all right now: unreachable, bad credentials, no such bucket or repo."""


class CorruptVoice(StorageError):
    """One stored voice exists but cannot be read: unreadable audio, missing transcript, bad manifest."""


@dataclass(frozen=True)
class StoredVoice:
    id: str
    text: str
    samples: np.ndarray  # float32 mono
    sample_rate: int
    created_at: str  # ISO 8601, UTC
    revision: str  # changes whenever the voice changes

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


def is_valid_id(voice_id: object) -> bool:
    """Safe as one path segment and as an object key. ``fullmatch``: ``$`` alone would let a trailing newline in."""
    return isinstance(voice_id, str) and len(voice_id) <= VOICE_ID_MAX and VOICE_ID.fullmatch(voice_id) is not None


def validate_id(voice_id: str) -> str:
    """Accept only ids that are safe as one path segment and as an object key."""
    if not is_valid_id(voice_id):
        raise InvalidVoice(
            "voice id must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "start with a letter or digit, and not contain '..'"
        )
    return voice_id


def check_new_voice(samples: np.ndarray, sample_rate: int, text: str) -> None:
    """Reject content no backend should store; the API checks first, this is the last guard."""
    if not isinstance(samples, np.ndarray) or samples.ndim != 1 or samples.size == 0:
        raise InvalidVoice("voice audio must be a non-empty mono sample array")
    if sample_rate <= 0:
        raise InvalidVoice(f"sample rate must be positive, got {sample_rate}")
    if not text.strip():
        raise InvalidVoice("voice transcript must not be empty")


def revision_of(samples: np.ndarray, text: str) -> str:
    digest = hashlib.sha256(samples.tobytes())
    digest.update(text.encode())
    return digest.hexdigest()[:16]


def pick_voice_files(names: list[str]) -> tuple[str | None, str | None]:
    """The audio file and its transcript among one voice folder's file names.

    The same rule for every backend (and Fish Audio's folders): the first audio file by name,
    and the ``.lab`` file with the same stem. Returns ``(audio, transcript)``; either may be None.
    """
    audio_name = next((name for name in sorted(names) if name.lower().endswith(AUDIO_SUFFIXES)), None)
    if audio_name is None:
        return None, None
    transcript = audio_name.rsplit(".", 1)[0] + TRANSCRIPT_SUFFIX
    return audio_name, transcript if transcript in names else None


def decode_voice(voice_id: str, data: bytes, text: str, *, created_at: str, revision: str) -> StoredVoice:
    """Stored bytes -> ``StoredVoice``; unreadable audio or an empty transcript is ``CorruptVoice``.

    Blocking (CPU): callers run it on a worker thread.
    """
    try:
        samples, rate = audio.decode(data)
    except audio.AudioDecodeError as exc:
        raise CorruptVoice(f"stored voice {voice_id!r} has unreadable audio: {exc}") from exc
    if not text.strip():
        raise CorruptVoice(f"stored voice {voice_id!r} has an empty transcript")
    return StoredVoice(voice_id, text.strip(), samples, rate, created_at, revision)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return iso(dt.datetime.now(dt.UTC))


class VoiceStore(abc.ABC):
    """Where reference voices live.

    Methods raise ``VoiceNotFound``, ``InvalidVoice``, ``ReadOnlyStore`` or a ``StorageError``;
    anything else is a backend failure too. One failing voice never fails ``list``: it is skipped.
    """

    read_only: bool = False

    @abc.abstractmethod
    async def list(self) -> list[StoredVoice]: ...

    @abc.abstractmethod
    async def get(self, voice_id: str) -> StoredVoice: ...

    @abc.abstractmethod
    async def put(self, voice_id: str, samples: np.ndarray, sample_rate: int, text: str) -> StoredVoice: ...

    @abc.abstractmethod
    async def delete(self, voice_id: str) -> None: ...

    async def check(self) -> None:
        """Raise ``StorageUnavailable`` with the reason if the backend cannot be used.

        A diagnostic for tests and tools: the server does not call it, so a misconfigured backend
        shows on the first voice request (503 with this same reason).
        """

    async def close(self) -> None:
        pass
