"""The Hugging Face Hub voice store (``VOICE_REFERENCE_STORAGE=huggingface``), read-only.

Created by ``voices.create_store``. Voices live in a Hub dataset or model repo in the same
layout as a local folder: ``[<path>/]<id>/<name>.wav`` with ``<name>.lab`` beside it and an
optional ``meta.json`` (``created_at``). Reading goes through ``huggingface_hub``'s own code:
``repo_info`` to learn the commit, ``list_repo_tree`` to index the voices at that commit and
``hf_hub_download`` to fetch files (pinned to the commit, so a voice is never read half old,
half new). Writes answer ``ReadOnlyStore``: voices are added by committing to the repo.

The index is refreshed at most every ``VOICE_REFERENCE_HF_REFRESH_SECONDS`` (never when the
revision is a commit id); an unchanged commit costs one small request. A voice's revision is
a hash of its files' git/LFS ids, so a new commit that leaves a voice alone keeps its cache
entry. If a refresh fails, the last index is kept and voices already cached keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import numpy as np
from huggingface_hub import HfApi, errors, hf_hub_download
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import silent_tqdm

from voice_inference.settings import Settings
from voice_inference.voices import base, cache, remote

log = logging.getLogger(__name__)

COMMIT_ID = re.compile(r"^[0-9a-f]{40}$")
META_FILE = "meta.json"


@dataclass(frozen=True)
class HfVoice:
    """One voice's files in the repo at one commit (paths in the repo)."""

    commit: str
    audio: str
    transcript: str | None
    meta: str | None
    revision: str


@dataclass
class Snapshot:
    """The repo's voices at one commit, and when we last checked the commit is current."""

    commit: str
    last_modified: str
    voices: dict[str, HfVoice]
    checked_at: float


class HfVoiceStore(remote.RemoteVoiceStore):
    read_only = True

    def __init__(
        self,
        *,
        repo_id: str,
        repo_type: str,
        revision: str,
        path: str,
        token: str | None,
        endpoint: str | None,
        timeout: float,
        refresh_seconds: float,
        voice_cache: cache.VoiceCache,
    ) -> None:
        super().__init__(voice_cache)
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.revision = revision
        self.path = path.strip("/")
        self.timeout = timeout
        self.refresh_seconds = refresh_seconds
        self._token = token
        self._api = HfApi(endpoint=endpoint.rstrip("/") if endpoint else None, token=token)
        self.location = f"Hugging Face {repo_type} {repo_id}@{revision} at {self._api.endpoint}"
        self._snapshot: Snapshot | None = None
        self._refresh_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, voice_cache: cache.VoiceCache) -> HfVoiceStore:
        assert settings.reference_hf_repo is not None  # the settings validator guarantees it
        return cls(
            repo_id=settings.reference_hf_repo,
            repo_type=settings.reference_hf_repo_type,
            revision=settings.reference_hf_revision,
            path=settings.reference_hf_path,
            token=settings.load_hf_token(),
            endpoint=settings.reference_hf_endpoint,
            timeout=settings.reference_timeout_seconds,
            refresh_seconds=settings.reference_hf_refresh_seconds,
            voice_cache=voice_cache,
        )

    # The store interface.

    async def put(self, voice_id: str, samples: np.ndarray, sample_rate: int, text: str) -> base.StoredVoice:
        raise base.ReadOnlyStore(f"{self.location} is read-only: add voices by committing them to the repo")

    async def delete(self, voice_id: str) -> None:
        raise base.ReadOnlyStore(f"{self.location} is read-only: remove voices by committing to the repo")

    async def check(self) -> None:
        await self._current(force=True)

    async def _locate(self, voice_id: str) -> remote.RemoteVoice:
        snapshot = await self._current()
        voice = snapshot.voices.get(voice_id)
        if voice is None:
            raise base.VoiceNotFound(voice_id)
        if voice.transcript is None:
            stem = voice.audio.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            raise base.CorruptVoice(f"voice {voice_id!r} has no transcript: expected {stem}.lab beside {voice.audio}")
        return remote.RemoteVoice(voice_id, voice.revision, voice)

    async def _download(self, voice: remote.RemoteVoice) -> cache.VoiceFiles:
        assert isinstance(voice.handle, HfVoice)
        fallback_created = self._snapshot.last_modified if self._snapshot else ""
        return await asyncio.to_thread(self._download_files, voice.id, voice.handle, fallback_created)

    async def _list_ids(self) -> list[str]:
        return sorted((await self._current()).voices)

    # The index.

    async def _current(self, *, force: bool = False) -> Snapshot:
        """The index, refreshed when older than the refresh interval (one refresh at a time)."""
        async with self._refresh_lock:
            snapshot = self._snapshot
            if snapshot is not None and not force:
                pinned = COMMIT_ID.match(self.revision) is not None
                if pinned or time.monotonic() - snapshot.checked_at < self.refresh_seconds:
                    return snapshot
            try:
                self._snapshot = await asyncio.to_thread(self._refresh, snapshot)
            except base.StorageUnavailable as exc:
                if snapshot is None or force:
                    raise
                # Keep serving the last index (cached voices need no network); retry after the interval.
                log.warning("cannot refresh the voice index, keeping commit %s: %s", snapshot.commit[:12], exc)
                snapshot.checked_at = time.monotonic()
            assert self._snapshot is not None
            return self._snapshot

    def _refresh(self, previous: Snapshot | None) -> Snapshot:
        with self._errors("read the repo"):
            info = self._api.repo_info(
                self.repo_id, repo_type=self.repo_type, revision=self.revision, timeout=self.timeout, token=self._token
            )
        commit = info.sha
        if not commit:
            raise base.StorageUnavailable(f"{self.location} did not say which commit it is at")
        if previous is not None and previous.commit == commit:
            return dataclasses.replace(previous, checked_at=time.monotonic())
        with self._errors("list the repo's files"):
            listing = self._api.list_repo_tree(
                self.repo_id,
                path_in_repo=self.path or None,
                recursive=True,
                revision=commit,
                repo_type=self.repo_type,
                token=self._token,
            )
            tree = list(listing)  # the listing is lazy: its requests run here, inside the error mapping
        modified = base.iso(info.last_modified) if info.last_modified else ""
        return Snapshot(commit, modified, self._index(commit, tree), time.monotonic())

    def _index(self, commit: str, tree: list[object]) -> dict[str, HfVoice]:
        """Group the files into voices: ``<id>/<file>`` right under the voices folder."""
        folders: dict[str, dict[str, RepoFile]] = {}
        root = f"{self.path}/" if self.path else ""
        for entry in tree:
            if not isinstance(entry, RepoFile) or not entry.path.startswith(root):
                continue
            parts = entry.path[len(root) :].split("/")
            if len(parts) == 2 and base.is_valid_id(parts[0]):
                folders.setdefault(parts[0], {})[parts[1]] = entry
        voices = {}
        for voice_id, files in folders.items():
            audio_name, transcript_name = base.pick_voice_files(list(files))
            if audio_name is None:
                continue  # a folder without audio is not a voice
            meta_name = META_FILE if META_FILE in files else None
            named = [name for name in (audio_name, transcript_name, meta_name) if name is not None]
            # Content ids (LFS sha256 or git blob id): the revision changes exactly when a file does.
            digest = hashlib.sha256("|".join(f"{name}:{_content_id(files[name])}" for name in named).encode())
            voices[voice_id] = HfVoice(
                commit=commit,
                audio=files[audio_name].path,
                transcript=files[transcript_name].path if transcript_name else None,
                meta=files[meta_name].path if meta_name else None,
                revision=digest.hexdigest()[:16],
            )
        return voices

    # Downloads, on worker threads.

    def _download_files(self, voice_id: str, voice: HfVoice, fallback_created: str) -> cache.VoiceFiles:
        assert voice.transcript is not None
        with tempfile.TemporaryDirectory(prefix="voice-hf-") as scratch:
            audio = self._fetch(voice, voice.audio, Path(scratch))
            text = self._fetch(voice, voice.transcript, Path(scratch))
            meta = self._fetch(voice, voice.meta, Path(scratch)) if voice.meta else b""
        try:
            transcript = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise base.CorruptVoice(f"voice {voice_id!r} has a transcript that is not UTF-8 text") from exc
        return cache.VoiceFiles(audio, cache.suffix_of(voice.audio), transcript, _created_at(meta) or fallback_created)

    def _fetch(self, voice: HfVoice, path_in_repo: str, scratch: Path) -> bytes:
        with self._errors(f"download {path_in_repo!r}"):
            local = hf_hub_download(
                self.repo_id,
                path_in_repo,
                repo_type=self.repo_type,
                revision=voice.commit,
                local_dir=scratch,  # a scratch copy: our own cache keeps the bytes, bounded
                endpoint=self._api.endpoint,
                token=self._token,
                etag_timeout=self.timeout,
                tqdm_class=silent_tqdm,  # type: ignore[arg-type]
            )
        return Path(local).read_bytes()

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """huggingface_hub and network exceptions as ``StorageError``s that say what to fix."""
        where = self.location
        try:
            yield
        except base.StorageError:
            raise
        except errors.GatedRepoError as exc:
            raise base.StorageUnavailable(f"{where} is gated: accept its terms with the token's account") from exc
        except errors.RepositoryNotFoundError as exc:
            raise base.StorageUnavailable(
                f"{where}: repository not found, or the token cannot read it (VOICE_REFERENCE_HF_TOKEN)"
            ) from exc
        except errors.RevisionNotFoundError as exc:
            raise base.StorageUnavailable(f"{where}: revision {self.revision!r} not found") from exc
        except errors.RemoteEntryNotFoundError as exc:
            if action == "list the repo's files":  # the voices folder itself is missing
                raise base.StorageUnavailable(f"{where}: folder {self.path!r} not found") from exc
            raise base.CorruptVoice(f"{where}: could not {action}: the file is missing at that commit") from exc
        except errors.HfHubHTTPError as exc:
            status = exc.response.status_code
            if status in (401, 403):
                message = f"{where} refused the token ({status}): check VOICE_REFERENCE_HF_TOKEN"
                raise base.StorageUnavailable(message) from exc
            raise base.StorageUnavailable(f"{where}: could not {action}: {_first_line(exc)}") from exc
        except (httpx2.TransportError, errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as exc:
            raise base.StorageUnavailable(f"cannot reach {where} to {action}: {_first_line(exc)}") from exc
        except (httpx2.HTTPError, OSError, ValueError) as exc:
            raise base.StorageUnavailable(f"{where}: could not {action}: {_first_line(exc)}") from exc


def _content_id(entry: RepoFile) -> str:
    return entry.lfs.sha256 if entry.lfs is not None else entry.blob_id


def _created_at(meta: bytes) -> str:
    try:
        data = json.loads(meta) if meta else {}
    except ValueError:
        return ""
    value = data.get("created_at") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
