"""The Hugging Face voice store through huggingface_hub's real code, against a loopback Hub.

``LocalHub`` (tests/storage_fixtures.py) answers the Hub routes the client calls; nothing here
reaches the internet. Covers reading dataset and model repos, the revision-keyed cache,
tokens, and each bad input: corrupt audio, missing transcript, unknown repo or revision,
bad token, unreachable endpoint.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import numpy as np
import pytest
from voice_inference import voices
from voice_inference.settings import Settings
from voice_inference.voices import huggingface

from tests.servers import free_port
from tests.storage_fixtures import LocalHub, wav_bytes

REPO = "acme/voices"


def make_store(hub: LocalHub, cache_dir: Path, **overrides: Any) -> huggingface.HfVoiceStore:
    settings = {
        **{name.removeprefix("VOICE_").lower(): value for name, value in hub.env(REPO).items() if "VOICE_" in name},
        "reference_cache_path": cache_dir,
        "reference_timeout_seconds": 5,
        **overrides,
    }
    store = voices.create_store(Settings(**settings))
    assert isinstance(store, huggingface.HfVoiceStore)
    return store


def voice_files(voice_id: str, text: str, *, frequency: float = 220.0, folder: str = "") -> dict[str, bytes | None]:
    return {
        f"{folder}{voice_id}/reference.wav": wav_bytes(frequency=frequency),
        f"{folder}{voice_id}/reference.lab": text.encode(),
    }


@pytest.fixture
def hub(local_hub: LocalHub) -> LocalHub:
    local_hub.create_repo(REPO)
    local_hub.commit(
        REPO,
        {
            **voice_files("alice", "hello from alice"),
            **voice_files("bob", "hello from bob", frequency=330),
            "README.md": b"# voices",
            "notes/readme.txt": b"not a voice",
        },
    )
    return local_hub


async def test_lists_and_reads_the_repo_voices(hub: LocalHub, tmp_path: Path) -> None:
    store = make_store(hub, tmp_path)
    assert [voice.id for voice in await store.list()] == ["alice", "bob"]
    alice = await store.get("alice")
    assert (alice.text, alice.sample_rate) == ("hello from alice", 16_000)
    assert alice.created_at.endswith("Z") and len(alice.revision) == 16
    with pytest.raises(voices.VoiceNotFound):
        await store.get("carol")
    # Files were fetched by huggingface_hub, pinned to the commit the index was built from.
    commit = hub.repos[("dataset", REPO)].branches["main"]
    assert hub.count("HEAD", f"/datasets/{REPO}/resolve/{commit}/alice/reference.wav") == 1


async def test_writes_are_refused(hub: LocalHub, tmp_path: Path) -> None:
    store = make_store(hub, tmp_path)
    assert store.read_only
    with pytest.raises(voices.ReadOnlyStore, match="read-only"):
        await store.put("carol", np.zeros(100, np.float32), 16_000, "text")
    with pytest.raises(voices.ReadOnlyStore):
        await store.delete("alice")


async def test_a_model_repo_with_a_voices_folder_and_meta(local_hub: LocalHub, tmp_path: Path) -> None:
    local_hub.create_repo("acme/tts", repo_type="model")
    meta = json.dumps({"created_at": "2025-05-05T05:05:05Z"}).encode()
    local_hub.commit(
        "acme/tts",
        {**voice_files("dora", "bonjour", folder="voices/"), "voices/dora/meta.json": meta, "config.json": b"{}"},
        repo_type="model",
    )
    store = make_store(
        local_hub, tmp_path, reference_hf_repo="acme/tts", reference_hf_repo_type="model", reference_hf_path="voices"
    )
    dora = await store.get("dora")
    assert (dora.text, dora.created_at) == ("bonjour", "2025-05-05T05:05:05Z")
    assert [voice.id for voice in await store.list()] == ["dora"]


async def test_the_cache_follows_each_voice_revision(hub: LocalHub, tmp_path: Path) -> None:
    store = make_store(hub, tmp_path)
    alice, bob = await store.get("alice"), await store.get("bob")
    await store.get("alice")
    assert hub.count("GET", "/resolve/") == 4  # two files each, once

    hub.commit(REPO, {"bob/reference.lab": b"bob says something new"})
    assert (await store.get("alice")).revision == alice.revision  # untouched by the commit: still cached
    new_bob = await store.get("bob")
    assert (new_bob.text, new_bob.revision != bob.revision) == ("bob says something new", True)
    assert hub.count("GET", "/resolve/") == 6  # only bob's files again

    hub.commit(REPO, {"alice/reference.wav": None, "alice/reference.lab": None})
    with pytest.raises(voices.VoiceNotFound):
        await store.get("alice")


async def test_concurrent_reads_download_once(hub: LocalHub, tmp_path: Path) -> None:
    store = make_store(hub, tmp_path)
    results = await asyncio.gather(*(store.get("alice") for _ in range(5)))
    assert {voice.text for voice in results} == {"hello from alice"}
    assert hub.count("GET", "/resolve/") == 2


async def test_a_pinned_commit_is_not_looked_up_again(hub: LocalHub, tmp_path: Path) -> None:
    commit = hub.repos[("dataset", REPO)].branches["main"]
    store = make_store(hub, tmp_path, reference_hf_revision=commit)
    await store.get("alice")
    hub.commit(REPO, {"alice/reference.lab": b"changed on main"})
    assert (await store.get("alice")).text == "hello from alice"
    assert hub.count("GET", "/revision/") == 1


async def test_the_index_is_refreshed_on_its_interval_only(hub: LocalHub, tmp_path: Path) -> None:
    store = make_store(hub, tmp_path, reference_hf_refresh_seconds=3600)
    assert (await store.get("alice")).text == "hello from alice"
    hub.commit(REPO, voice_files("carol", "new voice"))
    with pytest.raises(voices.VoiceNotFound):
        await store.get("carol")  # not looked for until the interval passes...
    await store.check()  # ...or a forced refresh
    assert (await store.get("carol")).text == "new voice"


async def test_a_private_repo_needs_the_token(
    local_hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No token from the host: not its HF_TOKEN, not its saved login.
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    local_hub.create_repo(REPO, token="hf_right")
    local_hub.commit(REPO, voice_files("alice", "secret voice"))
    token_file = tmp_path / "token"
    token_file.write_text("hf_right\n", encoding="utf-8")
    with_file = make_store(local_hub, tmp_path / "a", reference_hf_token_file=token_file)
    assert (await with_file.get("alice")).text == "secret voice"
    with pytest.raises(voices.StorageUnavailable, match="refused the token"):
        await make_store(local_hub, tmp_path / "b", reference_hf_token="hf_wrong").list()
    with pytest.raises(voices.StorageUnavailable, match="not found, or the token cannot read it"):
        await make_store(local_hub, tmp_path / "c").list()


async def test_a_missing_repo_or_revision_is_a_clear_error(hub: LocalHub, tmp_path: Path) -> None:
    with pytest.raises(voices.StorageUnavailable, match="repository not found"):
        await make_store(hub, tmp_path, reference_hf_repo="acme/nothing").list()
    with pytest.raises(voices.StorageUnavailable, match="revision 'v9' not found"):
        await make_store(hub, tmp_path, reference_hf_revision="v9").get("alice")
    with pytest.raises(voices.StorageUnavailable, match="folder 'nowhere' not found"):
        await make_store(hub, tmp_path, reference_hf_path="nowhere").check()


async def test_corrupt_audio_and_missing_transcript_fail_only_their_voice(hub: LocalHub, tmp_path: Path) -> None:
    hub.commit(
        REPO,
        {"noisy/reference.wav": b"not audio", "noisy/reference.lab": b"noise", "mute/reference.wav": wav_bytes()},
    )
    store = make_store(hub, tmp_path)
    with pytest.raises(voices.CorruptVoice, match="unreadable audio"):
        await store.get("noisy")
    with pytest.raises(voices.CorruptVoice, match="no transcript: expected reference.lab"):
        await store.get("mute")
    assert [voice.id for voice in await store.list()] == ["alice", "bob"]
    assert "noisy" not in store.cache.cached_ids()


async def test_an_unreachable_endpoint_is_a_clear_error(tmp_path: Path, local_hub: LocalHub) -> None:
    local_hub.port = free_port()  # nothing listens there
    with pytest.raises(voices.StorageUnavailable, match="cannot reach Hugging Face dataset acme/voices@main"):
        await make_store(local_hub, tmp_path).list()


async def test_cached_voices_keep_working_when_the_hub_goes_down(hub: LocalHub, tmp_path: Path) -> None:
    store = make_store(hub, tmp_path / "cache")
    await store.get("alice")
    hub.stop()
    assert (await store.get("alice")).text == "hello from alice"
    with pytest.raises(voices.StorageUnavailable, match="cannot reach"):
        await make_store(hub, tmp_path / "cache").list()  # a fresh pod has no index to fall back on
