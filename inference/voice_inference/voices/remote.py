"""What the S3 and Hugging Face stores share: lookups through the cache, listing, stale reads.

Sits between ``voices.base``/``voices.cache`` and the two remote backends, which implement
three small steps: ``_locate`` (is the voice there, at which revision), ``_download`` (its
files) and ``_list_ids``. This class turns those into ``get`` and ``list``:

* ``get`` locates the voice, then reads it from the cache or downloads it once (single
  flight), checking the audio decodes before it is cached. If the backend is unreachable
  and a copy of the voice is cached, that copy is served (logged): a storage outage does
  not stop synthesis with voices the pod has already used.
* ``list`` lists ids, then reads each voice with a little concurrency; a voice that cannot
  be read is skipped with a warning, so one bad voice never hides the others.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Hashable
from dataclasses import dataclass

from voice_inference.voices import base, cache

log = logging.getLogger(__name__)

LIST_CONCURRENCY = 4  # parallel voice reads during list: enough to hide latency, light on the backend


@dataclass(frozen=True)
class RemoteVoice:
    """Where one voice is, as found by ``_locate``; ``handle`` is the backend's own address of its files."""

    id: str
    revision: str
    handle: Hashable


class RemoteVoiceStore(base.VoiceStore):
    def __init__(self, voice_cache: cache.VoiceCache) -> None:
        self.cache = voice_cache

    @abc.abstractmethod
    async def _locate(self, voice_id: str) -> RemoteVoice:
        """The voice's current revision; ``VoiceNotFound``, ``CorruptVoice`` or ``StorageUnavailable``."""

    @abc.abstractmethod
    async def _download(self, voice: RemoteVoice) -> cache.VoiceFiles:
        """The voice's files at that revision."""

    @abc.abstractmethod
    async def _list_ids(self) -> list[str]:
        """Ids of the voices visible now, sorted."""

    async def get(self, voice_id: str) -> base.StoredVoice:
        base.validate_id(voice_id)
        try:
            remote = await self._locate(voice_id)
        except base.StorageUnavailable as exc:
            stale = await self.cache.read_latest(voice_id)
            if stale is None:
                raise
            log.warning("voice storage unavailable, serving cached voice %r: %s", voice_id, exc)
            return await asyncio.to_thread(_decode, voice_id, stale[1], stale[0])

        fresh: base.StoredVoice | None = None

        async def load() -> cache.VoiceFiles:
            nonlocal fresh
            files = await self._download(remote)
            fresh = await asyncio.to_thread(_decode, voice_id, files, remote.revision)  # corrupt: never cached
            return files

        files = await self.cache.fetch(voice_id, remote.revision, load)
        if fresh is not None:  # this call downloaded it: already decoded
            return fresh
        return await asyncio.to_thread(_decode, voice_id, files, remote.revision)

    async def list(self) -> list[base.StoredVoice]:
        ids = await self._list_ids()
        gate = asyncio.Semaphore(LIST_CONCURRENCY)

        async def read(voice_id: str) -> base.StoredVoice | None:
            async with gate:
                try:
                    return await self.get(voice_id)
                except base.VoiceNotFound:
                    return None  # deleted since the listing
                except base.CorruptVoice as exc:
                    log.warning("skipping voice %r: %s", voice_id, exc)
                    return None

        # return_exceptions: every read finishes before a backend failure is raised, none is left running.
        found = await asyncio.gather(*(read(voice_id) for voice_id in ids), return_exceptions=True)
        for result in found:
            if isinstance(result, BaseException):
                raise result
        return [voice for voice in found if isinstance(voice, base.StoredVoice)]


def _decode(voice_id: str, files: cache.VoiceFiles, revision: str) -> base.StoredVoice:
    return base.decode_voice(voice_id, files.audio, files.text, created_at=files.created_at, revision=revision)
