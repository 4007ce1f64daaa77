"""The on-disk voice cache: hits, single-flight fetches, invalidation by revision, the size bound."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from voice_inference.voices import cache


def files(tag: str, size: int = 100) -> cache.VoiceFiles:
    return cache.VoiceFiles(tag.encode() * size, ".wav", f"text {tag}", created_at="2026-01-01T00:00:00Z")


class Loader:
    """A ``load`` callable that counts its calls and can be held open until released."""

    def __init__(self, result: cache.VoiceFiles, *, hold: bool = False) -> None:
        self.result = result
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self) -> cache.VoiceFiles:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return self.result


async def test_a_miss_loads_and_a_hit_does_not(tmp_path: Path) -> None:
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=10_000)
    load = Loader(files("a"))
    assert await voice_cache.fetch("alice", "r1", load) == files("a")
    assert await voice_cache.fetch("alice", "r1", load) == files("a")
    assert load.calls == 1
    assert voice_cache.cached_ids() == {"alice": "r1"}


async def test_concurrent_fetches_of_one_voice_load_it_once(tmp_path: Path) -> None:
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=10_000)
    load = Loader(files("a"), hold=True)
    tasks = [asyncio.create_task(voice_cache.fetch("alice", "r1", load)) for _ in range(5)]
    await load.started.wait()
    load.release.set()
    results = await asyncio.gather(*tasks)
    assert load.calls == 1
    assert all(result == files("a") for result in results)


async def test_a_slow_voice_does_not_block_another(tmp_path: Path) -> None:
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=10_000)
    slow = Loader(files("a"), hold=True)
    slow_task = asyncio.create_task(voice_cache.fetch("alice", "r1", slow))
    await slow.started.wait()
    # bob's fetch completes while alice's load is still held open: the locks are per voice.
    assert await voice_cache.fetch("bob", "r1", Loader(files("b"))) == files("b")
    assert not slow_task.done()
    slow.release.set()
    assert await slow_task == files("a")


async def test_a_new_revision_replaces_the_old_copy(tmp_path: Path) -> None:
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=10_000)
    await voice_cache.fetch("alice", "r1", Loader(files("a")))
    newer = Loader(files("A"))
    assert await voice_cache.fetch("alice", "r2", newer) == files("A")
    assert newer.calls == 1
    assert await voice_cache.read("alice", "r1") is None
    assert await voice_cache.read_latest("alice") == ("r2", files("A"))
    assert [path.name for path in tmp_path.iterdir()] == ["alice"]


async def test_a_lookup_at_another_revision_reads_nothing_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=10_000)
    await voice_cache.fetch("alice", "r1", Loader(files("a")))
    reads: list[Path] = []
    real_read_entry = cache._read_entry

    def read_entry(folder: Path, revision: str) -> cache.VoiceFiles | None:
        reads.append(folder)
        return real_read_entry(folder, revision)

    monkeypatch.setattr(cache, "_read_entry", read_entry)
    assert await voice_cache.read("alice", "r2") is None
    assert reads == []
    assert await voice_cache.read_latest("alice") == ("r1", files("a"))
    assert len(reads) == 1


async def test_a_failed_load_caches_nothing_and_the_next_fetch_retries(tmp_path: Path) -> None:
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=10_000)

    async def broken() -> cache.VoiceFiles:
        raise RuntimeError("backend fell over")

    with pytest.raises(RuntimeError):
        await voice_cache.fetch("alice", "r1", broken)
    assert voice_cache.cached_ids() == {}
    load = Loader(files("a"))
    assert await voice_cache.fetch("alice", "r1", load) == files("a")
    assert load.calls == 1


async def test_the_size_bound_evicts_the_least_recently_used(tmp_path: Path) -> None:
    entry_size = files("a").size
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=int(entry_size * 2.5))
    await voice_cache.fetch("alice", "r1", Loader(files("a")))
    await voice_cache.fetch("bob", "r1", Loader(files("b")))
    await voice_cache.fetch("alice", "r1", Loader(files("a")))  # alice is now the more recent
    await voice_cache.fetch("carol", "r1", Loader(files("c")))
    assert set(voice_cache.cached_ids()) == {"alice", "carol"}
    assert voice_cache.total_bytes <= voice_cache.max_bytes
    assert sorted(path.name for path in tmp_path.iterdir()) == ["alice", "carol"]
    # An evicted voice is simply fetched again.
    again = Loader(files("b"))
    assert await voice_cache.fetch("bob", "r1", again) == files("b")
    assert again.calls == 1


async def test_a_voice_larger_than_the_bound_is_served_but_not_kept(tmp_path: Path) -> None:
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=50)
    load = Loader(files("a", size=100))
    assert await voice_cache.fetch("alice", "r1", load) == files("a", size=100)
    assert voice_cache.cached_ids() == {}
    await voice_cache.fetch("alice", "r1", load)
    assert load.calls == 2


async def test_a_zero_bound_keeps_nothing_on_disk(tmp_path: Path) -> None:
    voice_cache = cache.VoiceCache(tmp_path / "cache", max_bytes=0)
    await voice_cache.fetch("alice", "r1", Loader(files("a")))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


async def test_entries_survive_a_restart_and_leftovers_are_cleared(tmp_path: Path) -> None:
    first = cache.VoiceCache(tmp_path, max_bytes=10_000)
    await first.fetch("alice", "r1", Loader(files("a")))
    (tmp_path / ".staging-deadbeef").mkdir()  # what a crash mid-write leaves
    (tmp_path / "not-an-entry").mkdir()
    second = cache.VoiceCache(tmp_path, max_bytes=10_000)
    load = Loader(files("x"))
    assert await second.fetch("alice", "r1", load) == files("a")
    assert load.calls == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["alice"]


async def test_drop_forgets_a_voice(tmp_path: Path) -> None:
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=10_000)
    await voice_cache.fetch("alice", "r1", Loader(files("a")))
    await voice_cache.drop("alice")
    assert await voice_cache.read_latest("alice") is None
    assert not (tmp_path / "alice").exists()


async def test_a_copy_removed_behind_its_back_is_a_miss(tmp_path: Path) -> None:
    voice_cache = cache.VoiceCache(tmp_path, max_bytes=10_000)
    await voice_cache.fetch("alice", "r1", Loader(files("a")))
    (tmp_path / "alice" / cache.TRANSCRIPT_FILE).unlink()
    load = Loader(files("a"))
    assert await voice_cache.fetch("alice", "r1", load) == files("a")
    assert load.calls == 1


def test_suffix_of_keeps_known_audio_suffixes_only() -> None:
    assert cache.suffix_of("voices/a/REF.FLAC") == ".flac"
    assert cache.suffix_of("a/ref.wav") == ".wav"
    assert cache.suffix_of("a/../../etc") == ".wav"


async def test_a_cache_that_cannot_write_still_serves(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("the cache folder cannot be created here")
    voice_cache = cache.VoiceCache(blocked, max_bytes=10_000)
    load = Loader(files("a"))
    assert await voice_cache.fetch("alice", "r1", load) == files("a")
    assert await voice_cache.fetch("alice", "r1", load) == files("a")
    assert load.calls == 2  # nothing kept, nothing broken
