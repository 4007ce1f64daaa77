"""The S3 voice store against a real S3-compatible server (moto_server on loopback, IAM auth on).

Covers the round trip, the on-bucket layout, atomic writes and deletes, the cache in front
of the bucket, and each bad input: corrupt audio, missing transcript, bad manifest, missing
bucket, wrong credentials, unreachable endpoint.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import botocore.exceptions
import numpy as np
import pytest
from voice_inference import voices
from voice_inference.settings import Settings
from voice_inference.voices import s3

from tests.servers import free_port
from tests.storage_fixtures import S3Bucket, wav_bytes


def tone(frequency: float = 220.0, seconds: float = 0.25, rate: int = 16_000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def make_store(s3_place: S3Bucket, cache_dir: Path, *, prefix: str = "", **overrides: Any) -> s3.S3VoiceStore:
    env = s3_place.env(prefix)
    settings = Settings(
        reference_storage="s3",
        reference_s3_bucket=overrides.pop("bucket_name", s3_place.name),
        reference_s3_prefix=prefix,
        reference_s3_endpoint_url=overrides.pop("endpoint_url", env["VOICE_REFERENCE_S3_ENDPOINT_URL"]),
        reference_s3_region=env["VOICE_REFERENCE_S3_REGION"],
        reference_cache_path=cache_dir,
        reference_timeout_seconds=5,
    )
    store = voices.create_store(settings)
    assert isinstance(store, s3.S3VoiceStore)
    for name, value in overrides.items():
        setattr(store, name, value)
    return store


def keys(bucket: S3Bucket) -> list[str]:
    listing = bucket.server.client().list_objects_v2(Bucket=bucket.name)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def count_calls(store: s3.S3VoiceStore, operation: str) -> list[str]:
    """Keys of every ``operation`` (e.g. GetObject) the store's client sends, from now on."""
    seen: list[str] = []
    hook = f"before-call.s3.{operation}"
    store._client().meta.events.register(hook, lambda params, **_: seen.append(params["url_path"]))
    return seen


async def test_put_get_list_delete_round_trip(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = make_store(s3_bucket, tmp_path / "cache")
    saved = await store.put("alice", tone(), 16_000, "hello from alice")
    await store.put("bob", tone(330), 16_000, "hello from bob")

    reader = make_store(s3_bucket, tmp_path / "other-cache")  # another pod: nothing cached
    alice = await reader.get("alice")
    assert (alice.text, alice.sample_rate, alice.revision, alice.created_at) == (
        "hello from alice", 16_000, saved.revision, saved.created_at,
    )  # fmt: skip
    assert np.allclose(alice.samples, tone(), atol=1e-3)
    assert [voice.id for voice in await reader.list()] == ["alice", "bob"]
    assert keys(s3_bucket) == [
        f"alice/{saved.revision}/reference.lab", f"alice/{saved.revision}/reference.wav", "alice/voice.json",
        *[key for key in keys(s3_bucket) if key.startswith("bob/")],
    ]  # fmt: skip

    await reader.delete("alice")
    assert [voice.id for voice in await store.list()] == ["bob"]
    assert not [key for key in keys(s3_bucket) if key.startswith("alice/")]
    with pytest.raises(voices.VoiceNotFound):
        await store.get("alice")  # the writer's cached copy does not resurrect it
    with pytest.raises(voices.VoiceNotFound):
        await store.delete("alice")
    await store.close()
    await reader.close()


async def test_voices_live_under_the_prefix(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    team_a = make_store(s3_bucket, tmp_path / "a", prefix="teams/a/")
    team_b = make_store(s3_bucket, tmp_path / "b", prefix="teams/b")
    await team_a.put("alice", tone(), 16_000, "a")
    assert all(key.startswith("teams/a/alice/") for key in keys(s3_bucket))
    assert await team_b.list() == []
    with pytest.raises(voices.VoiceNotFound):
        await team_b.get("alice")


async def test_a_failed_write_leaves_no_visible_voice(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = make_store(s3_bucket, tmp_path / "cache")

    def fail_on_manifest(params: dict[str, Any], **_: Any) -> None:
        if params["url_path"].endswith("/voice.json"):
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=params["url_path"])  # as a dropped link

    store._client().meta.events.register("before-call.s3.PutObject", fail_on_manifest)
    with pytest.raises(voices.StorageError):
        await store.put("alice", tone(), 16_000, "never visible")
    assert any(key.endswith("reference.wav") for key in keys(s3_bucket))  # the files did land...
    fresh = make_store(s3_bucket, tmp_path / "fresh")
    assert await fresh.list() == []  # ...but without a manifest no reader sees them
    with pytest.raises(voices.VoiceNotFound):
        await fresh.get("alice")


async def test_a_failed_replace_keeps_the_previous_voice_intact(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = make_store(s3_bucket, tmp_path / "cache")
    before = await store.put("alice", tone(), 16_000, "the original")

    def fail_on_manifest(params: dict[str, Any], **_: Any) -> None:
        if params["url_path"].endswith("/voice.json"):
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=params["url_path"])

    store._client().meta.events.register("before-call.s3.PutObject", fail_on_manifest)
    with pytest.raises(voices.StorageError):
        await store.put("alice", tone(440), 16_000, "the replacement")
    got = await make_store(s3_bucket, tmp_path / "fresh").get("alice")
    assert (got.text, got.revision) == ("the original", before.revision)


async def test_a_replace_is_seen_by_other_readers_and_old_files_go(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    writer = make_store(s3_bucket, tmp_path / "writer", orphan_grace_seconds=0.0)
    reader = make_store(s3_bucket, tmp_path / "reader")
    first = await writer.put("alice", tone(), 16_000, "one")
    assert (await reader.get("alice")).text == "one"  # now cached by the reader
    second = await writer.put("alice", tone(440), 16_000, "two")
    got = await reader.get("alice")
    assert (got.text, got.revision) == ("two", second.revision)
    assert reader.cache.cached_ids() == {"alice": second.revision}
    assert not [key for key in keys(s3_bucket) if first.revision in key]


async def test_a_replace_keeps_recent_old_files_for_readers_in_flight(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = make_store(s3_bucket, tmp_path / "cache")  # default grace period
    first = await store.put("alice", tone(), 16_000, "one")
    await store.put("alice", tone(440), 16_000, "two")
    assert [key for key in keys(s3_bucket) if first.revision in key]
    assert (await store.get("alice")).text == "two"


async def test_reads_come_from_the_cache_and_concurrent_reads_download_once(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    await make_store(s3_bucket, tmp_path / "writer").put("alice", tone(), 16_000, "hello")
    reader = make_store(s3_bucket, tmp_path / "reader")
    gets = count_calls(reader, "GetObject")
    results = await asyncio.gather(*(reader.get("alice") for _ in range(5)))
    assert {voice.text for voice in results} == {"hello"}
    assert sum(1 for path in gets if path.endswith("reference.wav")) == 1
    await reader.get("alice")
    assert sum(1 for path in gets if path.endswith("reference.wav")) == 1  # a hit: only the manifest is read


async def test_a_hand_uploaded_voice_in_the_documented_layout_is_read(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    client = s3_bucket.server.client()
    client.put_object(Bucket=s3_bucket.name, Key="carol/v1/sample.flac", Body=_flac())
    client.put_object(Bucket=s3_bucket.name, Key="carol/v1/sample.lab", Body=b"bonjour")
    manifest = {"format": 1, "audio": "v1/sample.flac", "text": "v1/sample.lab"}  # no revision: the ETag is used
    client.put_object(Bucket=s3_bucket.name, Key="carol/voice.json", Body=json.dumps(manifest).encode())
    client.put_object(Bucket=s3_bucket.name, Key="bad..id/voice.json", Body=b"{}")  # not a valid id: ignored
    client.put_object(Bucket=s3_bucket.name, Key="dave/v1/x.wav", Body=wav_bytes())  # no manifest: invisible
    store = make_store(s3_bucket, tmp_path / "cache")
    voice = await store.get("carol")
    assert voice.text == "bonjour" and voice.revision
    assert [found.id for found in await store.list()] == ["carol"]


async def test_corrupt_audio_and_missing_transcript_fail_only_their_voice(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = make_store(s3_bucket, tmp_path / "cache")
    await store.put("good", tone(), 16_000, "fine")
    noisy = await store.put("noisy", tone(), 16_000, "noise")
    mute = await store.put("mute", tone(), 16_000, "silence")
    client = s3_bucket.server.client()
    client.put_object(Bucket=s3_bucket.name, Key=f"noisy/{noisy.revision}/reference.wav", Body=b"not audio at all")
    client.delete_object(Bucket=s3_bucket.name, Key=f"mute/{mute.revision}/reference.lab")
    client.put_object(Bucket=s3_bucket.name, Key="garbled/voice.json", Body=b"{not json")

    reader = make_store(s3_bucket, tmp_path / "reader")
    with pytest.raises(voices.CorruptVoice, match="unreadable audio"):
        await reader.get("noisy")
    with pytest.raises(voices.CorruptVoice, match="no transcript"):
        await reader.get("mute")
    with pytest.raises(voices.CorruptVoice, match="unreadable voice.json"):
        await reader.get("garbled")
    assert [voice.id for voice in await reader.list()] == ["good"]
    assert (await reader.get("good")).text == "fine"
    assert "noisy" not in reader.cache.cached_ids()  # corrupt audio is never cached


async def test_a_missing_bucket_is_a_clear_error(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = make_store(s3_bucket, tmp_path / "cache", bucket_name="no-such-bucket")
    for call in (store.list(), store.get("alice"), store.put("alice", tone(), 16_000, "x"), store.check()):
        with pytest.raises(voices.StorageUnavailable, match="bucket 'no-such-bucket' does not exist"):
            await call


async def test_wrong_credentials_are_a_clear_error(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = make_store(s3_bucket, tmp_path / "cache")
    with pytest.raises(voices.StorageUnavailable, match="SignatureDoesNotMatch.*credentials"):
        await store.list()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOBODY")
    with pytest.raises(voices.StorageUnavailable, match="InvalidAccessKeyId.*credentials"):
        await make_store(s3_bucket, tmp_path / "cache").get("alice")


async def test_no_credentials_at_all_is_a_clear_error(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(voices.StorageUnavailable, match="no AWS credentials"):
        await make_store(s3_bucket, tmp_path / "cache").list()


async def test_an_unreachable_endpoint_is_a_clear_error_and_cached_voices_still_work(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    await make_store(s3_bucket, cache_dir).put("alice", tone(), 16_000, "cached")
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    offline = make_store(s3_bucket, cache_dir, endpoint_url=closed)
    with pytest.raises(voices.StorageUnavailable, match="cannot reach S3"):
        await offline.list()
    with pytest.raises(voices.StorageUnavailable, match="cannot reach S3"):
        await offline.get("bob")
    assert (await offline.get("alice")).text == "cached"  # the pod's copy keeps synthesis going


def _flac() -> bytes:
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, tone(), 16_000, format="FLAC")
    return buffer.getvalue()
