"""The local-directory voice store (``voices.LocalVoiceStore``) on a temporary folder.

Covers: put/get/list/delete round trip; replacing a voice never leaves a half-written or
missing voice (a failure while writing keeps the old one, and staging folders are never
listed); path-traversal ids are rejected before any file is touched; Fish Audio's own folder
layout (``<id>/<name>.wav`` + ``<name>.lab``) is read, and a folder with audio but no ``.lab``
is not a voice; one unreadable voice does not break the listing; a reader racing a replace or a
delete gets one whole version of the voice or none, never an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from voice_inference import voices
from voice_inference.voices import local

RATE = 16_000
PCM16_STEP = 1 / 32768


def tone(seconds: float = 0.5, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "references"


@pytest.fixture
def store(root: Path) -> voices.LocalVoiceStore:
    return voices.LocalVoiceStore(root)


def visible_entries(root: Path) -> list[str]:
    return sorted(entry.name for entry in root.iterdir())


async def test_put_get_list_delete_round_trip(store: voices.LocalVoiceStore) -> None:
    samples = tone()
    stored = await store.put("alice", samples, RATE, "Hello, I am Alice.")
    assert stored.id == "alice"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stored.created_at)

    read = await store.get("alice")
    assert (read.id, read.text, read.sample_rate) == ("alice", "Hello, I am Alice.", RATE)
    assert read.samples.dtype == np.float32 and read.samples.shape == samples.shape
    np.testing.assert_allclose(read.samples, samples, atol=2 * PCM16_STEP)
    assert (read.revision, read.created_at) == (stored.revision, stored.created_at)
    assert read.info() == {
        "id": "alice",
        "text": "Hello, I am Alice.",
        "sample_rate": RATE,
        "duration_seconds": 0.5,
        "created_at": stored.created_at,
        "revision": stored.revision,
    }

    await store.put("bob", tone(hz=330.0), RATE, "And I am Bob.")
    assert [voice.id for voice in await store.list()] == ["alice", "bob"]

    await store.delete("alice")
    with pytest.raises(voices.VoiceNotFound):
        await store.get("alice")
    assert [voice.id for voice in await store.list()] == ["bob"]
    with pytest.raises(voices.VoiceNotFound):
        await store.delete("alice")


async def test_an_empty_or_missing_root_lists_nothing(store: voices.LocalVoiceStore, root: Path) -> None:
    assert await store.list() == []
    with pytest.raises(voices.VoiceNotFound):
        await store.get("nobody")
    root.mkdir()
    assert await store.list() == []


async def test_replacing_a_voice_swaps_it_completely(store: voices.LocalVoiceStore, root: Path) -> None:
    first = await store.put("carol", tone(hz=200.0), RATE, "Version one.")
    second = await store.put("carol", tone(seconds=0.25, hz=400.0), RATE, "Version two.")
    assert first.revision != second.revision
    read = await store.get("carol")
    assert (read.text, read.revision, read.samples.shape) == ("Version two.", second.revision, (RATE // 4,))
    assert visible_entries(root) == ["carol"], "no staging or trash folder left behind"


async def test_a_failure_mid_write_keeps_the_old_voice(
    store: voices.LocalVoiceStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await store.put("dave", tone(), RATE, "The original.")

    def broken_write(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(soundfile, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        await store.put("dave", tone(hz=500.0), RATE, "The replacement.")

    read = await store.get("dave")
    assert (read.text, read.revision) == ("The original.", old.revision)
    np.testing.assert_allclose(read.samples, tone(), atol=2 * PCM16_STEP)
    assert [voice.id for voice in await store.list()] == ["dave"]
    assert visible_entries(root) == ["dave"], "the staging folder is cleaned up"


async def test_a_failure_writing_a_new_voice_leaves_nothing(
    store: voices.LocalVoiceStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put("erin", tone(), RATE, "Erin.")
    original_write_text = Path.write_text

    def failing_write_text(self: Path, *args: object, **kwargs: object) -> int:
        if self.name == "meta.json":  # after the audio and the transcript are written
            raise OSError("crash while writing")
        return original_write_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", failing_write_text)
    with pytest.raises(OSError):
        await store.put("frank", tone(), RATE, "Frank.")
    monkeypatch.undo()
    with pytest.raises(voices.VoiceNotFound):
        await store.get("frank")
    assert [voice.id for voice in await store.list()] == ["erin"]


async def test_a_leftover_staging_folder_is_never_a_voice(store: voices.LocalVoiceStore, root: Path) -> None:
    # What a crash between writing and renaming leaves: a complete voice under a hidden name.
    staging = root / ".staging-0123abcd"
    staging.mkdir(parents=True)
    soundfile.write(staging / "reference.wav", tone(), RATE, subtype="PCM_16")
    (staging / "reference.lab").write_text("half done")
    assert await store.list() == []
    with pytest.raises(voices.InvalidVoice):
        await store.get(staging.name)


async def test_a_failure_while_swapping_in_keeps_the_old_voice(
    store: voices.LocalVoiceStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await store.put("gina", tone(), RATE, "The original.")
    real_rename = os.rename

    def failing_rename(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if Path(src).name.startswith(".staging-"):
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError):
        await store.put("gina", tone(hz=500.0), RATE, "The replacement.")
    monkeypatch.undo()
    assert (await store.get("gina")).revision == old.revision


@pytest.mark.parametrize(
    "voice_id",
    [
        "..",
        "../etc",
        "../../outside",
        "a/b",
        "a\\b",
        "/abs",
        ".hidden",
        "a..b",
        "",
        " ",
        "x" * 129,
        "a\x00b",
        "é",
        "-dash",
    ],
)
async def test_traversal_and_malformed_ids_are_rejected(
    store: voices.LocalVoiceStore, tmp_path: Path, root: Path, voice_id: str
) -> None:
    with pytest.raises(voices.InvalidVoice):
        await store.get(voice_id)
    with pytest.raises(voices.InvalidVoice):
        await store.put(voice_id, tone(), RATE, "text")
    with pytest.raises(voices.InvalidVoice):
        await store.delete(voice_id)
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "nothing was written anywhere"


@pytest.mark.parametrize("voice_id", ["a", "Alice_2", "voice-1.v2", "0", "x" * 128])
def test_valid_ids(voice_id: str) -> None:
    assert voices.validate_id(voice_id) == voice_id


async def test_fish_speech_folder_layout_is_read(store: voices.LocalVoiceStore, root: Path) -> None:
    folder = root / "speaker1"
    folder.mkdir(parents=True)
    samples = tone(seconds=0.75)
    soundfile.write(folder / "foo.wav", samples, RATE, subtype="PCM_16")
    (folder / "foo.lab").write_text("  The transcript of foo.\n", encoding="utf-8")

    voice = await store.get("speaker1")
    assert (voice.text, voice.sample_rate) == ("The transcript of foo.", RATE)
    np.testing.assert_allclose(voice.samples, samples, atol=2 * PCM16_STEP)
    assert voice.revision and voice.created_at.endswith("Z")
    assert [listed.id for listed in await store.list()] == ["speaker1"]


async def test_fish_speech_folder_with_other_audio_formats(store: voices.LocalVoiceStore, root: Path) -> None:
    folder = root / "flacky"
    folder.mkdir(parents=True)
    soundfile.write(folder / "sample.flac", tone(), RATE)
    (folder / "sample.lab").write_text("flac voice")
    assert (await store.get("flacky")).text == "flac voice"


async def test_audio_without_a_transcript_is_not_a_voice(store: voices.LocalVoiceStore, root: Path) -> None:
    await store.put("good", tone(), RATE, "A complete voice.")
    folder = root / "no-lab"
    folder.mkdir()
    soundfile.write(folder / "foo.wav", tone(), RATE)
    (folder / "bar.lab").write_text("a transcript of some other file")
    assert [voice.id for voice in await store.list()] == ["good"]
    with pytest.raises((voices.VoiceNotFound, voices.StorageError)):
        await store.get("no-lab")


async def test_folders_without_audio_and_stray_files_are_not_voices(store: voices.LocalVoiceStore, root: Path) -> None:
    (root / "empty").mkdir(parents=True)
    (root / "only-text").mkdir()
    (root / "only-text" / "foo.lab").write_text("words")
    (root / "a-file.wav").write_bytes(b"not a folder")
    assert await store.list() == []
    for voice_id in ("empty", "only-text", "a-file.wav"):
        with pytest.raises(voices.VoiceNotFound):
            await store.get(voice_id)


async def test_one_unreadable_voice_does_not_break_the_listing(store: voices.LocalVoiceStore, root: Path) -> None:
    await store.put("fine", tone(), RATE, "Fine.")
    broken = root / "broken"
    broken.mkdir()
    (broken / "foo.wav").write_bytes(b"RIFF but not really audio")
    (broken / "foo.lab").write_text("text")
    assert [voice.id for voice in await store.list()] == ["fine"]
    with pytest.raises(voices.StorageError):
        await store.get("broken")


@pytest.mark.parametrize(
    ("samples", "rate", "text"),
    [(np.zeros(0, dtype=np.float32), RATE, "text"), (tone(), RATE, "   "), (tone(), 0, "text")],
    ids=["no-samples", "blank-text", "zero-rate"],
)
async def test_invalid_content_is_refused_and_writes_nothing(
    store: voices.LocalVoiceStore, root: Path, samples: np.ndarray, rate: int, text: str
) -> None:
    with pytest.raises(voices.InvalidVoice):
        await store.put("bad", samples, rate, text)
    assert not root.exists() or visible_entries(root) == []


def _writer_strikes_mid_read(monkeypatch: pytest.MonkeyPatch, strike) -> None:
    """The first time a reader has read a transcript (it reads meta.json next), a writer acts."""
    read_meta = local._read_meta
    struck = []

    def racing(folder: int) -> dict[str, str]:
        if not struck:
            struck.append(True)
            strike()
        return read_meta(folder)

    monkeypatch.setattr(local, "_read_meta", racing)


async def test_a_reader_racing_a_replace_gets_one_whole_version(
    store: voices.LocalVoiceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put("v", tone(hz=220), RATE, "The old words.")
    _writer_strikes_mid_read(monkeypatch, lambda: store._write("v", tone(hz=440), RATE, "The new words."))
    voice = await store.get("v")
    new = await store.get("v")
    assert voice.text == new.text == "The new words."
    assert np.array_equal(voice.samples, new.samples), "the transcript of one version with the audio of another"


async def test_a_reader_racing_a_delete_finds_nothing(store: voices.LocalVoiceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    await store.put("gone", tone(), RATE, "Soon deleted.")
    await store.put("kept", tone(), RATE, "Kept.")
    _writer_strikes_mid_read(monkeypatch, lambda: store._delete("gone"))
    assert [voice.id for voice in await store.list()] == ["kept"]
    with pytest.raises(voices.VoiceNotFound):
        await store.get("gone")
