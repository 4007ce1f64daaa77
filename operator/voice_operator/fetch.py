"""``voice-fetch-checkpoint``: download a checkpoint into the claim, once, atomically.

Runs as the container of the checkpoint-fetch Job that ``builders.checkpoint`` renders
(the operator's image carries it); never imported by the operator process itself. Files
go to a temporary sibling folder first and are renamed into ``--dest`` only when complete,
with a marker file, so the serving pods never see half a checkpoint and a re-run of the
Job on a retained claim finishes at once.

Exit codes: 0 done; 1 a failure worth retrying (network, 5xx); 2 a failure no retry can
fix (no such repo/revision/bucket/prefix, access denied): the Job's podFailurePolicy then
fails the Job at once. The revision fetched (a Hugging Face commit, or a digest of the S3
objects' ETags) goes to the termination message, where the operator reads it for status.

Examples::

    voice-fetch-checkpoint huggingface --repo fishaudio/openaudio-s1-mini --revision main --dest /checkpoints/rev-abc
    voice-fetch-checkpoint s3 --uri s3://models/openaudio-s1-mini/ --endpoint http://minio:9000 --dest /checkpoints/rev-def
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

MARKER = ".voice-checkpoint.json"
RETRY, PERMANENT = 1, 2


class FetchError(Exception):
    """A failed fetch; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def _log(message: str) -> None:
    print(f"voice-fetch-checkpoint: {message}", flush=True)


# -- sources -------------------------------------------------------------------------------


def fetch_huggingface(repo: str, revision: str, target: pathlib.Path, endpoint: str | None = None) -> str:
    """Download ``repo@revision`` into ``target``; returns the commit fetched."""
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    token = os.environ.get("HF_TOKEN") or None
    api = huggingface_hub.HfApi(endpoint=endpoint, token=token)
    try:
        info = api.model_info(repo, revision=revision)
        commit = info.sha or revision
        huggingface_hub.snapshot_download(
            repo, revision=commit, local_dir=str(target), token=token, endpoint=endpoint, max_workers=4
        )
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError, hf_errors.DisabledRepoError) as err:
        raise FetchError(f"{repo}@{revision}: {type(err).__name__}: {_first_line(err)}", permanent=True) from err
    except hf_errors.HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", 0) or 0
        raise FetchError(f"{repo}@{revision}: HTTP {status}: {_first_line(err)}", permanent=status in (401, 403, 404)) from err
    # snapshot_download leaves its bookkeeping in local_dir; the pods need only the files.
    shutil.rmtree(target / ".cache", ignore_errors=True)
    return commit


def fetch_s3(uri: str, target: pathlib.Path, endpoint: str | None = None, region: str | None = None) -> str:
    """Download every object under ``s3://bucket/prefix`` into ``target``; returns an ETag digest."""
    import boto3
    import botocore.exceptions

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=region)
    digest = hashlib.sha256()
    count = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key: str = obj["Key"]
                relative = key[len(prefix):]
                if not relative or relative.endswith("/"):
                    continue  # folder markers
                destination = (target / relative).resolve()
                if target.resolve() not in destination.parents:
                    raise FetchError(f"object key {key!r} escapes the destination", permanent=True)
                destination.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(destination))
                digest.update(f"{relative}\0{obj.get('ETag', '')}\n".encode())
                count += 1
                _log(f"got {relative} ({obj.get('Size', 0)} bytes)")
    except botocore.exceptions.ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        permanent = code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled")
        raise FetchError(f"{uri}: {code}: {_first_line(err)}", permanent=permanent) from err
    except botocore.exceptions.BotoCoreError as err:
        permanent = isinstance(err, botocore.exceptions.NoCredentialsError)
        raise FetchError(f"{uri}: {type(err).__name__}: {_first_line(err)}", permanent=permanent) from err
    if count == 0:
        raise FetchError(f"{uri}: no objects under this prefix", permanent=True)
    return f"etag-{digest.hexdigest()[:12]}"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300]


# -- the atomic install ----------------------------------------------------------------------


def already_fetched(dest: pathlib.Path) -> dict[str, Any] | None:
    marker = dest / MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except ValueError:
        return None


def install(dest: pathlib.Path, download: Any, source: str) -> dict[str, Any]:
    """Run ``download(tmp_dir) -> revision`` and move the result to ``dest`` atomically."""
    done = already_fetched(dest)
    if done is not None:
        _log(f"{dest} already holds {done.get('source')} at {done.get('revision')}; nothing to do")
        return done
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.monotonic()
    try:
        revision = download(tmp)
        files = [p for p in tmp.rglob("*") if p.is_file()]
        record = {
            "source": source,
            "revision": revision,
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
            "seconds": round(time.monotonic() - started, 1),
        }
        (tmp / MARKER).write_text(json.dumps(record))
        if dest.exists():
            shutil.rmtree(dest)  # a half-written folder from an older, interrupted tool
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _log(f"fetched {source} at {revision}: {record['files']} files, {record['bytes']} bytes in {record['seconds']}s")
    return record


def _write_termination(path: str, text: str) -> None:
    """What the operator reads back from the pod's status (the kubelet keeps 4096 bytes)."""
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text[:4000])
    except OSError:
        pass  # not in a pod (or no termination log): the marker file and the logs still say it


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voice-fetch-checkpoint", description="Download a checkpoint once, atomically.")
    parser.add_argument("--termination-log", default="/dev/termination-log", help=argparse.SUPPRESS)
    sources = parser.add_subparsers(dest="source", required=True)
    hf = sources.add_parser("huggingface", help="from a Hugging Face model repository")
    hf.add_argument("--repo", required=True)
    hf.add_argument("--revision", default="main")
    hf.add_argument("--endpoint", default=os.environ.get("HF_ENDPOINT") or None)
    hf.add_argument("--dest", required=True, type=pathlib.Path)
    s3 = sources.add_parser("s3", help="from s3://bucket/prefix (or an S3-compatible store)")
    s3.add_argument("--uri", required=True)
    s3.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL") or None)
    s3.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION") or None)
    s3.add_argument("--dest", required=True, type=pathlib.Path)
    args = parser.parse_args(argv)

    if args.source == "huggingface":
        source = f"hf://{args.repo}@{args.revision}"
        download = lambda tmp: fetch_huggingface(args.repo, args.revision, tmp, args.endpoint)
    else:
        if not args.uri.startswith("s3://") or len(args.uri) <= len("s3://"):
            print(f"voice-fetch-checkpoint: {args.uri!r} is not an s3://bucket/prefix URI", file=sys.stderr)
            return PERMANENT
        source = args.uri
        download = lambda tmp: fetch_s3(args.uri, tmp, args.endpoint, args.region)
    try:
        record = install(args.dest, download, source)
    except FetchError as err:
        message = f"{'permanent' if err.permanent else 'temporary'} failure: {err}"
        print(f"voice-fetch-checkpoint: {message}", file=sys.stderr)
        _write_termination(args.termination_log, message)
        return PERMANENT if err.permanent else RETRY
    summary = {"revision": record.get("revision"), "files": record.get("files"), "bytes": record.get("bytes")}
    _write_termination(args.termination_log, json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
