"""voice-fetch-checkpoint against real protocol servers on loopback: moto's S3 server and a
local Hugging Face Hub (tests/storage_fixtures.py), run as the Job's container would run it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
from voice_operator import fetch

from tests.storage_fixtures import LocalHub, S3Bucket


FILES = {
    "config.json": b'{"dim": 8}',
    "model.pth": b"\x00weights" * 100,
    "codec.pth": b"\x01codec" * 50,
    "tokenizer.tiktoken": b"abc 1\n",
    "special_tokens.json": b"{}",
}


def run_cli(*args: str, env: dict[str, str] | None = None, termination: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voice_operator.fetch", "--termination-log", str(termination), *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )


def test_s3_fetch_is_atomic_and_idempotent(s3_bucket: S3Bucket, tmp_path: pathlib.Path) -> None:
    client = s3_bucket.server.client()
    for name, data in FILES.items():
        client.put_object(Bucket=s3_bucket.name, Key=f"openaudio/s1/{name}", Body=data)
    client.put_object(Bucket=s3_bucket.name, Key="openaudio/s1/sub/extra.bin", Body=b"x")
    dest = tmp_path / "claim" / "rev-1"
    termination = tmp_path / "termination-log"
    import os

    env = dict(os.environ)
    result = run_cli("s3", "--uri", f"s3://{s3_bucket.name}/openaudio/s1", "--endpoint", s3_bucket.server.endpoint_url,
                     "--dest", str(dest), env=env, termination=termination)
    assert result.returncode == 0, result.stderr
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert (dest / "sub" / "extra.bin").read_bytes() == b"x"
    record = json.loads(termination.read_text())
    assert record["revision"].startswith("etag-") and record["files"] == 6
    assert not [p for p in dest.parent.iterdir() if ".partial-" in p.name]

    # A second run (a re-created Job on a retained claim) does nothing.
    client.delete_object(Bucket=s3_bucket.name, Key="openaudio/s1/model.pth")
    again = run_cli("s3", "--uri", f"s3://{s3_bucket.name}/openaudio/s1", "--endpoint", s3_bucket.server.endpoint_url,
                    "--dest", str(dest), env=env, termination=termination)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert (dest / "model.pth").exists()


def test_s3_missing_prefix_and_bucket_are_permanent(s3_bucket: S3Bucket, tmp_path: pathlib.Path) -> None:
    import os

    termination = tmp_path / "termination-log"
    empty = run_cli("s3", "--uri", f"s3://{s3_bucket.name}/nothing-here", "--endpoint", s3_bucket.server.endpoint_url,
                    "--dest", str(tmp_path / "a"), env=dict(os.environ), termination=termination)
    assert empty.returncode == fetch.PERMANENT and "no objects under this prefix" in empty.stderr
    assert "permanent failure" in termination.read_text()
    missing = run_cli("s3", "--uri", "s3://no-such-bucket-xyz/p", "--endpoint", s3_bucket.server.endpoint_url,
                      "--dest", str(tmp_path / "b"), env=dict(os.environ), termination=termination)
    assert missing.returncode == fetch.PERMANENT and "NoSuchBucket" in missing.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_s3_unreachable_endpoint_is_retried(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.servers import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code = fetch.main(["--termination-log", str(tmp_path / "t"), "s3", "--uri", "s3://bucket/p",
                       "--endpoint", f"http://127.0.0.1:{free_port()}", "--region", "us-east-1", "--dest", str(tmp_path / "d")])
    assert code == fetch.RETRY


def test_huggingface_fetch_pins_the_commit(local_hub: LocalHub, tmp_path: pathlib.Path) -> None:
    local_hub.create_repo("fishaudio/tiny-s1", repo_type="model")
    sha = local_hub.commit("fishaudio/tiny-s1", FILES, repo_type="model")
    dest = tmp_path / "rev-hf"
    record = fetch.install(dest, lambda tmp: fetch.fetch_huggingface("fishaudio/tiny-s1", "main", tmp, local_hub.endpoint), "hf://x")
    assert record["revision"] == sha
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert not (dest / ".cache").exists()


def test_huggingface_unknown_repo_is_permanent(local_hub: LocalHub, tmp_path: pathlib.Path) -> None:
    code = fetch.main(["--termination-log", str(tmp_path / "t"), "huggingface", "--repo", "nobody/nothing",
                       "--endpoint", local_hub.endpoint, "--dest", str(tmp_path / "d")])
    assert code == fetch.PERMANENT
    assert "permanent failure" in (tmp_path / "t").read_text()


def test_bad_uri_is_permanent(tmp_path: pathlib.Path) -> None:
    assert fetch.main(["--termination-log", str(tmp_path / "t"), "s3", "--uri", "http://x", "--dest", str(tmp_path / "d")]) == fetch.PERMANENT
