"""Reference voice storage: one small interface, three backends, one cache for the remote ones.

The voices API (``api_voices``) and ``reference_id`` lookups (``synthesis``) go through a
``VoiceStore``; ``create_store`` picks the backend from ``VOICE_REFERENCE_STORAGE``:

* ``local`` (``voices.local``): a directory in Fish Audio's layout, read/write.
* ``s3`` (``voices.s3``): a bucket and prefix through boto3, read/write, atomic by manifest.
* ``huggingface`` (``voices.huggingface``): a Hub dataset or model repo, read-only.

Remote backends keep a bounded on-disk cache (``voices.cache``) keyed by voice revision.
The backends' heavy clients (boto3, huggingface_hub) are imported only when selected.
"""

from __future__ import annotations

from voice_inference.settings import Settings
from voice_inference.voices.base import (
    AUDIO_SUFFIXES,
    VOICE_ID,
    CorruptVoice,
    InvalidVoice,
    ReadOnlyStore,
    StorageError,
    StorageUnavailable,
    StoredVoice,
    VoiceNotFound,
    VoiceStore,
    revision_of,
    validate_id,
)
from voice_inference.voices.local import LocalVoiceStore

__all__ = [
    "AUDIO_SUFFIXES",
    "VOICE_ID",
    "CorruptVoice",
    "InvalidVoice",
    "LocalVoiceStore",
    "ReadOnlyStore",
    "StorageError",
    "StorageUnavailable",
    "StoredVoice",
    "VoiceNotFound",
    "VoiceStore",
    "create_store",
    "revision_of",
    "validate_id",
]


def create_store(settings: Settings) -> VoiceStore:
    """The store named by ``VOICE_REFERENCE_STORAGE``. Makes no network calls (see ``VoiceStore.check``)."""
    if settings.reference_storage == "local":
        return LocalVoiceStore(settings.reference_path)
    from voice_inference.voices import cache

    voice_cache = cache.VoiceCache(settings.reference_cache_dir(), max_bytes=settings.reference_cache_max_bytes)
    if settings.reference_storage == "s3":
        from voice_inference.voices import s3

        return s3.S3VoiceStore.from_settings(settings, voice_cache)
    if settings.reference_storage == "huggingface":
        from voice_inference.voices import huggingface

        return huggingface.HfVoiceStore.from_settings(settings, voice_cache)
    raise ValueError(f"unknown reference storage {settings.reference_storage!r}")
