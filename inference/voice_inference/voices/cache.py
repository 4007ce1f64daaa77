"""A bounded on-disk cache of remote voices, in front of the S3 and Hugging Face stores.

Used by ``voices.remote.RemoteVoiceStore``; created by ``voices.create_store``.

One folder per voice id holds the files of one revision (the backend's revision: a content
hash for S3, a hash of the files' git/LFS ids for the Hub). A lookup with another revision
is a miss, and the fetched revision replaces the old one: that is the invalidation.

* Bounded: after each write, least recently used voices are removed until the total size is
  at most ``max_bytes``. A voice larger than the bound is served but not kept.
* Single flight: ``fetch`` holds a per-voice asyncio lock, so two requests for the same
  missing voice cause one download; the second finds the first one's copy.
* Crash safe: entries are written into a staging folder and renamed into place.

Bookkeeping (sizes, last use) lives in memory on the event loop; all file I/O runs on worker
threads. One server process owns a cache folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from voice_inference.voices import base

log = logging.getLogger(__name__)

ENTRY_FILE = "entry.json"
TRANSCRIPT_FILE = "transcript.lab"


@dataclass(frozen=True)
class VoiceFiles:
    """A voice as fetched from a backend: the audio file's bytes and its transcript."""

    audio: bytes
    audio_suffix: str  # ".wav", ".flac", ...: kept so the bytes decode the same way later
    text: str
    created_at: str

    @property
    def size(self) -> int:
        return len(self.audio) + len(self.text.encode())


@dataclass
class _Entry:
    revision: str
    size: int
    last_used: float


class VoiceCache:
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._entries: dict[str, _Entry] | None = None  # loaded from disk on first use
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, int] = {}

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in (self._entries or {}).values())

    def cached_ids(self) -> dict[str, str]:
        """Voice id -> cached revision (for tests and diagnostics)."""
        return {voice_id: entry.revision for voice_id, entry in (self._entries or {}).items()}

    async def fetch(
        self, voice_id: str, revision: str, load: Callable[[], Awaitable[VoiceFiles]]
    ) -> VoiceFiles:
        """The voice at ``revision``: from disk if cached, else ``load()``ed once and kept.

        ``load`` should raise rather than return something it would not want cached.
        """
        async with self._lock(voice_id):
            files = await self.read(voice_id, revision)
            if files is not None:
                return files
            files = await load()
            await self.write(voice_id, revision, files)
            return files

    async def read(self, voice_id: str, revision: str) -> VoiceFiles | None:
        """The cached copy at ``revision``, or None (without reading a copy of another revision)."""
        found = await self._read(voice_id, revision)
        return found[1] if found is not None else None

    async def read_latest(self, voice_id: str) -> tuple[str, VoiceFiles] | None:
        """The cached copy whatever its revision, as ``(revision, files)``, or None."""
        return await self._read(voice_id, None)

    async def _read(self, voice_id: str, revision: str | None) -> tuple[str, VoiceFiles] | None:
        entries = await self._index()
        entry = entries.get(voice_id)
        if entry is None or revision not in (None, entry.revision):
            return None
        files = await asyncio.to_thread(_read_entry, self.root / voice_id, entry.revision)
        if files is None:  # removed behind our back (or by an eviction racing this read)
            if entries.get(voice_id) is entry:
                del entries[voice_id]
            return None
        entry.last_used = time.time()
        return entry.revision, files

    async def write(self, voice_id: str, revision: str, files: VoiceFiles) -> None:
        """Keep a copy. Best effort: a full or read-only disk costs speed, never a request."""
        entries = await self._index()
        if files.size > self.max_bytes:
            await self.drop(voice_id)  # an older revision must not linger either
            return
        try:
            await asyncio.to_thread(_write_entry, self.root, voice_id, revision, files)
        except OSError as exc:
            log.warning("cannot cache voice %r in %s: %s", voice_id, self.root, exc)
            entries.pop(voice_id, None)
            return
        entries[voice_id] = _Entry(revision, files.size, time.time())
        await self._evict(keep=voice_id)

    async def drop(self, voice_id: str) -> None:
        entries = await self._index()
        if entries.pop(voice_id, None) is not None:
            await asyncio.to_thread(_remove, self.root, voice_id)

    @contextlib.asynccontextmanager
    async def _lock(self, voice_id: str) -> AsyncIterator[None]:
        # Locks are created on demand and forgotten when nobody waits, so the map stays small.
        lock = self._locks.setdefault(voice_id, asyncio.Lock())
        self._waiters[voice_id] = self._waiters.get(voice_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiters[voice_id] -= 1
            if self._waiters[voice_id] == 0:
                del self._waiters[voice_id]
                del self._locks[voice_id]

    async def _index(self) -> dict[str, _Entry]:
        if self._entries is None:
            entries = await asyncio.to_thread(_scan, self.root)
            if self._entries is None:  # another task may have finished first
                self._entries = entries
        return self._entries

    async def _evict(self, *, keep: str) -> None:
        entries = await self._index()
        total = sum(entry.size for entry in entries.values())
        for voice_id in sorted(entries, key=lambda key: entries[key].last_used):
            if total <= self.max_bytes:
                break
            if voice_id == keep or voice_id in self._locks:
                continue  # never pull a voice from under a fetch in progress
            total -= entries.pop(voice_id).size
            await asyncio.to_thread(_remove, self.root, voice_id)
            log.debug("evicted voice %r from the cache", voice_id)


# Blocking parts, run on worker threads.


def _scan(root: Path) -> dict[str, _Entry]:
    """Index what an earlier run left, and clear its unfinished staging folders."""
    entries: dict[str, _Entry] = {}
    try:
        folders = list(root.iterdir())
    except OSError:  # no folder yet (or an unreadable one): start empty, writes will say what is wrong
        return entries
    for folder in folders:
        if folder.name.startswith("."):
            shutil.rmtree(folder, ignore_errors=True)
            continue
        try:
            meta = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
            size = sum(path.stat().st_size for path in folder.iterdir() if path.name != ENTRY_FILE)
            entries[folder.name] = _Entry(str(meta["revision"]), size, (folder / ENTRY_FILE).stat().st_mtime)
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(folder, ignore_errors=True)  # not ours or half-gone: a cache may drop anything
    return entries


def _read_entry(folder: Path, revision: str) -> VoiceFiles | None:
    try:
        meta = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
        if meta.get("revision") != revision:
            return None
        suffix = str(meta["audio_suffix"])
        files = VoiceFiles(
            audio=(folder / f"audio{suffix}").read_bytes(),
            audio_suffix=suffix,
            text=(folder / TRANSCRIPT_FILE).read_text(encoding="utf-8"),
            created_at=str(meta["created_at"]),
        )
        os.utime(folder / ENTRY_FILE)  # last use survives a restart
        return files
    except (OSError, ValueError, KeyError):
        return None


def _write_entry(root: Path, voice_id: str, revision: str, files: VoiceFiles) -> None:
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        (staging / f"audio{files.audio_suffix}").write_bytes(files.audio)
        (staging / TRANSCRIPT_FILE).write_text(files.text, encoding="utf-8")
        meta = {"id": voice_id, "revision": revision, "audio_suffix": files.audio_suffix}
        meta["created_at"] = files.created_at
        (staging / ENTRY_FILE).write_text(json.dumps(meta), encoding="utf-8")
        _remove(root, voice_id)
        os.rename(staging, root / voice_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove(root: Path, voice_id: str) -> None:
    target = root / voice_id
    trash = root / f".trash-{uuid.uuid4().hex}"
    try:
        os.rename(target, trash)  # atomic: a reader sees the entry or nothing
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot remove cached voice %r from %s: %s", voice_id, root, exc)
        return
    shutil.rmtree(trash, ignore_errors=True)


def suffix_of(name: str) -> str:
    """The audio suffix to keep for a file name (lower-cased), ``.wav`` when it has none we know."""
    lowered = name.lower()
    return next((suffix for suffix in base.AUDIO_SUFFIXES if lowered.endswith(suffix)), ".wav")
