"""The rules every voice store shares (``voices.base``): file picking, content checks, errors.

The local store's own behaviour is in test_local_voices.py; here, only what the remote
stores rely on too, checked through the local store where a store is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from voice_inference import voices
from voice_inference.voices import base

from tests.storage_fixtures import wav_bytes


async def test_a_broken_stored_voice_says_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "noisy").mkdir()
    (tmp_path / "noisy" / "ref.wav").write_bytes(b"definitely not audio")
    (tmp_path / "noisy" / "ref.lab").write_text("text", encoding="utf-8")
    (tmp_path / "mute").mkdir()
    (tmp_path / "mute" / "ref.wav").write_bytes(wav_bytes())
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "ref.wav").write_bytes(wav_bytes())
    (tmp_path / "blank" / "ref.lab").write_text(" \n", encoding="utf-8")
    store = voices.LocalVoiceStore(tmp_path)
    with pytest.raises(voices.CorruptVoice, match="'noisy' has unreadable audio"):
        await store.get("noisy")
    with pytest.raises(voices.CorruptVoice, match="'mute' has no transcript: expected ref.lab beside ref.wav"):
        await store.get("mute")
    with pytest.raises(voices.CorruptVoice, match="'blank' has an empty transcript"):
        await store.get("blank")


async def test_stereo_samples_are_refused(tmp_path: Path) -> None:
    with pytest.raises(voices.InvalidVoice, match="mono"):
        await voices.LocalVoiceStore(tmp_path).put("alice", np.zeros((10, 2), np.float32), 16_000, "text")


def test_pick_voice_files_follows_fish_audio_rules() -> None:
    assert base.pick_voice_files(["b.wav", "a.mp3", "a.lab", "meta.json"]) == ("a.mp3", "a.lab")
    assert base.pick_voice_files(["ref.WAV", "ref.lab"]) == ("ref.WAV", "ref.lab")
    assert base.pick_voice_files(["ref.wav", "other.lab"]) == ("ref.wav", None)
    assert base.pick_voice_files(["notes.txt"]) == (None, None)


def test_errors_form_the_documented_hierarchy() -> None:
    assert issubclass(voices.StorageUnavailable, voices.StorageError)
    assert issubclass(voices.CorruptVoice, voices.StorageError)
    assert not issubclass(voices.CorruptVoice, voices.InvalidVoice)  # a broken stored voice is not the client's fault
    assert not issubclass(voices.StorageError, (LookupError, ValueError, PermissionError))
