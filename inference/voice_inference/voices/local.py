"""The local-directory voice store (``VOICE_REFERENCE_STORAGE=local``, the default).

Created by ``voices.create_store``; called by the voices API and ``reference_id`` lookups.

Layout (the same as Fish Audio's server uses, so existing folders work):
``<root>/<voice id>/<name>.wav`` with the transcript in ``<name>.lab`` beside it, and our
``meta.json`` (creation time, revision). Writes build the whole voice in a temporary folder
and rename it into place, so a crash never leaves a half-written voice that reads as valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import stat
import uuid
from pathlib import Path

import numpy as np
import soundfile

from voice_inference.voices import base

log = logging.getLogger(__name__)


class LocalVoiceStore(base.VoiceStore):
    def __init__(self, root: Path) -> None:
        self.root = root

    async def list(self) -> list[base.StoredVoice]:
        return await asyncio.to_thread(self._list)

    async def get(self, voice_id: str) -> base.StoredVoice:
        return await asyncio.to_thread(self._read, base.validate_id(voice_id))

    async def put(self, voice_id: str, samples: np.ndarray, sample_rate: int, text: str) -> base.StoredVoice:
        base.validate_id(voice_id)
        base.check_new_voice(samples, sample_rate, text)
        return await asyncio.to_thread(self._write, voice_id, samples, sample_rate, text)

    async def delete(self, voice_id: str) -> None:
        await asyncio.to_thread(self._delete, base.validate_id(voice_id))

    # Blocking parts, run on a worker thread.

    def _list(self) -> list[base.StoredVoice]:
        if not self.root.is_dir():
            return []
        voices = []
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and base.is_valid_id(entry.name):
                try:
                    voices.append(self._read(entry.name))
                except base.VoiceNotFound:
                    continue
                except base.CorruptVoice as exc:
                    log.warning("skipping voice %r: %s", entry.name, exc)  # one bad folder never fails the list
        return voices

    def _read(self, voice_id: str) -> base.StoredVoice:
        """Every file is read through one descriptor of the voice's folder, so the files come
        from one version of the voice even if a writer renames the folder away meanwhile. If
        the old version's files are deleted under the reader, it reads again: the new version
        (a replace) or none (a delete), never an error."""
        for _ in range(2):
            with contextlib.suppress(FileNotFoundError):
                return self._read_folder(voice_id)
        raise base.VoiceNotFound(voice_id)

    def _read_folder(self, voice_id: str) -> base.StoredVoice:
        try:
            folder = os.open(self.root / voice_id, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise base.VoiceNotFound(voice_id) from None
        try:
            files = {name: os.stat(name, dir_fd=folder) for name in os.listdir(folder)}
            names = [name for name, info in files.items() if stat.S_ISREG(info.st_mode)]
            audio_name, transcript_name = base.pick_voice_files(names)
            if audio_name is None:
                raise base.VoiceNotFound(voice_id)
            if transcript_name is None:
                raise base.CorruptVoice(
                    f"stored voice {voice_id!r} has no transcript: expected {Path(audio_name).stem}.lab beside {audio_name}"
                )
            text = _read_file(folder, transcript_name).decode("utf-8")
            meta = _read_meta(folder)
            audio = _read_file(folder, audio_name)
        finally:
            os.close(folder)
        created = meta.get("created_at") or base.iso(dt.datetime.fromtimestamp(files[audio_name].st_mtime, dt.UTC))
        voice = base.decode_voice(voice_id, audio, text, created_at=created, revision="")
        revision = meta.get("revision") or base.revision_of(voice.samples, voice.text)
        return base.StoredVoice(voice.id, voice.text, voice.samples, voice.sample_rate, created, revision)

    def _write(self, voice_id: str, samples: np.ndarray, sample_rate: int, text: str) -> base.StoredVoice:
        self.root.mkdir(parents=True, exist_ok=True)
        voice = base.StoredVoice(
            voice_id, text, samples, sample_rate, base.now_iso(), base.revision_of(samples, text)
        )
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
                try:
                    os.rename(staging, target)
                except BaseException:
                    os.rename(trash, target)  # the new one could not go in: put the old one back
                    raise
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return voice

    def _delete(self, voice_id: str) -> None:
        target = self.root / voice_id
        if not target.is_dir():
            raise base.VoiceNotFound(voice_id)
        trash = self.root / f".trash-{uuid.uuid4().hex}"
        os.rename(target, trash)  # atomic: readers see the voice or nothing
        shutil.rmtree(trash, ignore_errors=True)


def _read_file(folder: int, name: str) -> bytes:
    with open(os.open(name, os.O_RDONLY, dir_fd=folder), "rb") as handle:
        return handle.read()


def _read_meta(folder: int) -> dict[str, str]:
    try:
        data = json.loads(_read_file(folder, "meta.json").decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
