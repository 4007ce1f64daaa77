"""The S3 voice store (``VOICE_REFERENCE_STORAGE=s3``): a bucket and prefix through boto3.

Created by ``voices.create_store``; works with AWS S3 and S3-compatible stores (MinIO, Ceph,
R2) through ``VOICE_REFERENCE_S3_ENDPOINT_URL``. Credentials come from boto3's standard chain
(environment, shared files, web identity / IRSA, instance metadata); none are settings here.

Layout under ``<prefix>``::

    <id>/voice.json               the manifest: a voice exists exactly when this object does
    <id>/<revision>/reference.wav the audio, 16-bit PCM
    <id>/<revision>/reference.lab its transcript, UTF-8

The manifest is JSON: ``{"format": 1, "revision": ..., "created_at": ..., "audio": "<revision>/
reference.wav", "text": "<revision>/reference.lab"}`` with paths relative to ``<id>/``, so voices
can also be uploaded by hand. Writes upload the audio and transcript first and the manifest
last: a write that fails midway leaves no visible voice (or the previous one, intact). A
replaced revision's objects are removed after a grace period, so a reader that just read the
old manifest can still fetch its files. Deletes remove the manifest first, then the files.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import numpy as np
import soundfile

from voice_inference.settings import Settings
from voice_inference.voices import base, cache, remote

log = logging.getLogger(__name__)

MANIFEST = "voice.json"
MANIFEST_FORMAT = 1
ORPHAN_GRACE_SECONDS = 600.0
_ACCESS_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}


@dataclass(frozen=True)
class Manifest:
    revision: str
    created_at: str
    audio: str  # key relative to the voice's folder
    text: str

    def to_json(self) -> bytes:
        body = {"format": MANIFEST_FORMAT, "revision": self.revision, "created_at": self.created_at}
        return json.dumps({**body, "audio": self.audio, "text": self.text}).encode()

    @classmethod
    def parse(cls, voice_id: str, data: bytes, etag: str) -> Manifest:
        try:
            raw = json.loads(data)
            revision, created_at = str(raw.get("revision") or etag), str(raw.get("created_at") or "")
            manifest = cls(revision, created_at, raw["audio"], raw["text"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise base.CorruptVoice(f"voice {voice_id!r} has an unreadable {MANIFEST}: {exc!r}") from exc
        for key in (manifest.audio, manifest.text):
            if not isinstance(key, str) or not key or key.startswith("/") or ".." in key.split("/"):
                raise base.CorruptVoice(f"voice {voice_id!r}: {MANIFEST} names an invalid object key {key!r}")
        return manifest


class S3VoiceStore(remote.RemoteVoiceStore):
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        voice_cache: cache.VoiceCache,
        client_options: dict[str, Any],
        orphan_grace_seconds: float = ORPHAN_GRACE_SECONDS,
    ) -> None:
        super().__init__(voice_cache)
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.orphan_grace_seconds = orphan_grace_seconds
        self._client_options = client_options
        self._client_lock = threading.Lock()
        self._s3: Any = None
        region = client_options.get("region_name") or "default region"
        where = client_options.get("endpoint_url") or f"AWS S3 ({region})"
        self.location = f"s3://{bucket}/{self.prefix} at {where}"

    @classmethod
    def from_settings(cls, settings: Settings, voice_cache: cache.VoiceCache) -> S3VoiceStore:
        config = botocore.config.Config(
            connect_timeout=settings.reference_timeout_seconds,
            read_timeout=settings.reference_timeout_seconds,
            retries={"mode": "standard", "max_attempts": 3},
            s3={"addressing_style": settings.reference_s3_addressing_style},
            # Checksums only where S3 demands them: several S3-compatible stores reject the newer defaults.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        options = {
            "endpoint_url": settings.reference_s3_endpoint_url,
            "region_name": settings.reference_s3_region,
            "config": config,
        }
        assert settings.reference_s3_bucket is not None  # the settings validator guarantees it
        return cls(
            bucket=settings.reference_s3_bucket,
            prefix=settings.reference_s3_prefix,
            voice_cache=voice_cache,
            client_options=options,
        )

    # The store interface.

    async def put(self, voice_id: str, samples: np.ndarray, sample_rate: int, text: str) -> base.StoredVoice:
        base.validate_id(voice_id)
        base.check_new_voice(samples, sample_rate, text)
        wav = await asyncio.to_thread(_encode_wav, samples, sample_rate)
        revision = base.revision_of(samples, text)
        manifest = Manifest(revision, base.now_iso(), f"{revision}/reference.wav", f"{revision}/reference.lab")
        await asyncio.to_thread(self._write, voice_id, manifest, wav, text)
        # The bytes are at hand: cache them, so the first read does not download what we just sent.
        await self.cache.write(voice_id, revision, cache.VoiceFiles(wav, ".wav", text, manifest.created_at))
        return base.StoredVoice(voice_id, text, samples, sample_rate, manifest.created_at, revision)

    async def delete(self, voice_id: str) -> None:
        base.validate_id(voice_id)
        await asyncio.to_thread(self._delete, voice_id)
        await self.cache.drop(voice_id)

    async def check(self) -> None:
        await asyncio.to_thread(self._check)

    async def close(self) -> None:
        if self._s3 is not None:
            await asyncio.to_thread(self._s3.close)  # its connection pool

    async def _locate(self, voice_id: str) -> remote.RemoteVoice:
        manifest = await asyncio.to_thread(self._read_manifest, voice_id)
        return remote.RemoteVoice(voice_id, manifest.revision, manifest)

    async def _download(self, voice: remote.RemoteVoice) -> cache.VoiceFiles:
        assert isinstance(voice.handle, Manifest)
        return await asyncio.to_thread(self._download_files, voice.id, voice.handle)

    async def _list_ids(self) -> list[str]:
        return await asyncio.to_thread(self._scan_ids)

    # Blocking parts, run on worker threads.

    def _client(self) -> Any:
        # Created on first use, on a worker thread: resolving credentials may call the instance
        # metadata service. boto3 clients are thread-safe once made.
        with self._client_lock:
            if self._s3 is None:
                try:
                    self._s3 = boto3.session.Session().client("s3", **self._client_options)
                except (botocore.exceptions.BotoCoreError, ValueError) as exc:
                    raise base.StorageUnavailable(f"cannot set up the S3 client for {self.location}: {exc}") from exc
            return self._s3

    def _folder(self, voice_id: str) -> str:
        return f"{self.prefix}{voice_id}/"

    def _call(self, action: str, method: str, **kwargs: Any) -> Any:
        """One S3 call; every failure becomes a ``StorageUnavailable`` that says what to fix.

        A missing key is not a failure: ``get_object`` then returns None.
        """
        try:
            return getattr(self._client(), method)(Bucket=self.bucket, **kwargs)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code, status = str(error.get("Code", "")), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchKey" and method == "get_object":
                return None
            if code == "NoSuchBucket" or (method == "head_bucket" and status == 404):
                raise base.StorageUnavailable(f"S3 bucket {self.bucket!r} does not exist ({self.location})") from exc
            if code in _ACCESS_CODES or status == 403:
                raise base.StorageUnavailable(
                    f"S3 refused to {action} in {self.location} ({code or status}): check the AWS credentials "
                    "and the bucket policy"
                ) from exc
            raise base.StorageUnavailable(
                f"S3 failed to {action} in {self.location}: {code or status} {error.get('Message', '')}".rstrip()
            ) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise base.StorageUnavailable(
                f"no AWS credentials for {self.location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "a profile, or a pod identity"
            ) from exc
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError) as exc:
            raise base.StorageUnavailable(f"cannot reach S3 for {self.location}: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise base.StorageUnavailable(f"S3 failed to {action} in {self.location}: {exc}") from exc

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """An object's bytes and ETag, or None when there is no such key."""
        response = self._call(f"read {key!r}", "get_object", Key=key)
        if response is None:
            return None
        with response["Body"] as body:
            return body.read(), str(response.get("ETag", "")).strip('"')

    def _read_manifest(self, voice_id: str) -> Manifest:
        found = self._get(self._folder(voice_id) + MANIFEST)
        if found is None:
            raise base.VoiceNotFound(voice_id)
        return Manifest.parse(voice_id, *found)

    def _download_files(self, voice_id: str, manifest: Manifest) -> cache.VoiceFiles:
        folder = self._folder(voice_id)
        audio = self._get(folder + manifest.audio)
        text = self._get(folder + manifest.text)
        if audio is None or text is None:
            if self._get(folder + MANIFEST) is None:
                raise base.VoiceNotFound(voice_id)  # deleted while we were reading it
            missing = manifest.audio if audio is None else manifest.text
            what = "audio" if audio is None else "transcript"
            raise base.CorruptVoice(
                f"voice {voice_id!r} has no {what}: {MANIFEST} names {folder + missing!r}, which is missing"
            )
        try:
            transcript = text[0].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise base.CorruptVoice(f"voice {voice_id!r} has a transcript that is not UTF-8 text") from exc
        return cache.VoiceFiles(audio[0], cache.suffix_of(manifest.audio), transcript, manifest.created_at)

    def _scan_ids(self) -> list[str]:
        ids = [
            key[len(self.prefix) :].split("/", 1)[0]
            for key, _ in self._objects(self.prefix)
            if key.endswith("/" + MANIFEST) and key[len(self.prefix) :].count("/") == 1
        ]
        return sorted(voice_id for voice_id in ids if _valid_id(voice_id))

    def _objects(self, prefix: str) -> list[tuple[str, dt.datetime]]:
        """(key, last modified) of every object under ``prefix``."""
        found: list[tuple[str, dt.datetime]] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call("list objects", "list_objects_v2", Prefix=prefix, **extra)
            found.extend((item["Key"], item["LastModified"]) for item in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    def _write(self, voice_id: str, manifest: Manifest, wav: bytes, text: str) -> None:
        folder = self._folder(voice_id)
        self._call("upload audio", "put_object", Key=folder + manifest.audio, Body=wav, ContentType="audio/wav")
        self._call(
            "upload a transcript", "put_object", Key=folder + manifest.text, Body=text.encode("utf-8"),
            ContentType="text/plain; charset=utf-8",
        )  # fmt: skip
        # The commit point: until this object lands, readers see the previous voice or none.
        self._call(
            "write a manifest", "put_object", Key=folder + MANIFEST, Body=manifest.to_json(),
            ContentType="application/json",
        )  # fmt: skip
        try:
            self._remove_orphans(voice_id)
        except base.StorageError as exc:
            log.warning("voice %r saved, but removing its old files failed: %s", voice_id, exc)

    def _remove_orphans(self, voice_id: str) -> None:
        """Delete files no manifest names, once older than the grace period (a writer may be uploading them)."""
        folder = self._folder(voice_id)
        current = self._read_manifest(voice_id)  # re-read: a concurrent writer's manifest may have won
        keep = {folder + MANIFEST, folder + current.audio, folder + current.text}
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.orphan_grace_seconds)
        self._delete_keys([key for key, modified in self._objects(folder) if key not in keep and modified <= cutoff])

    def _delete(self, voice_id: str) -> None:
        folder = self._folder(voice_id)
        if self._get(folder + MANIFEST) is None:
            raise base.VoiceNotFound(voice_id)
        self._call("delete a manifest", "delete_object", Key=folder + MANIFEST)  # the voice is gone from here on
        self._delete_keys([key for key, _ in self._objects(folder)])

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # S3's limit per request
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            result = self._call("delete objects", "delete_objects", Delete={"Objects": batch, "Quiet": True})
            if result.get("Errors"):
                first = result["Errors"][0]
                raise base.StorageUnavailable(f"S3 could not delete {first.get('Key')!r}: {first.get('Code')}")

    def _check(self) -> None:
        self._call("read the bucket", "head_bucket")


def _valid_id(voice_id: str) -> bool:
    try:
        base.validate_id(voice_id)
    except base.InvalidVoice:
        return False
    return True


def _encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
