"""The operator image as it ships: its checkpoint fetcher run from inside the container.

The container runs as the Job's pod does (uid 10001, read-only root, no capabilities) and
fetches from a real S3-compatible server (moto) on this machine's loopback, so it uses the
host's network namespace: loopback is the only place it talks to. The operator process
itself, from this image against the control plane, is tests/e2e/test_operator_image.py.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from tests.containers import engine
from tests.storage_fixtures import S3Bucket

FILES = {"model.pth": b"\x00weights" * 100, "codec.pth": b"\x01codec" * 50, "config.json": b"{}"}


def run_fetch(
    docker: engine.Docker, image: str, claim: pathlib.Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    env_args = [f"--env={k}={v}" for k, v in env.items()]
    return docker.run(
        "run", "--rm", "--network=host", *engine.LOCKED_DOWN, "--volume", f"{claim}:/checkpoints",
        *env_args, "--entrypoint", "voice-fetch-checkpoint", image,
        "--termination-log", "/checkpoints/termination-log", *args,
        check=False, timeout=180,
    )  # fmt: skip


def test_fetch_checkpoint_from_s3_in_the_image(
    docker: engine.Docker, operator_image: str, s3_bucket: S3Bucket, tmp_path: pathlib.Path
) -> None:
    client = s3_bucket.server.client()
    for name, data in FILES.items():
        client.put_object(Bucket=s3_bucket.name, Key=f"tiny/{name}", Body=data)
    claim = tmp_path / "claim"
    claim.mkdir()
    claim.chmod(0o777)  # the claim, as the pod's fsGroup makes it writable for uid 10001
    env = {k: v for k, v in s3_bucket.server.aws_env().items() if not k.endswith("_FILE")}
    uri = f"s3://{s3_bucket.name}/tiny"
    args = ("s3", "--uri", uri, "--endpoint", s3_bucket.server.endpoint_url, "--dest", "/checkpoints/rev-1")

    result = run_fetch(docker, operator_image, claim, env, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, data in FILES.items():
        assert (claim / "rev-1" / name).read_bytes() == data
    record = json.loads((claim / "termination-log").read_text())
    assert record["revision"].startswith("etag-") and record["files"] == len(FILES)
    assert (claim / "rev-1" / name).stat().st_uid == 10001

    # A prefix with nothing under it is permanent (exit 2): the Job fails at once.
    missing = run_fetch(docker, operator_image, claim, env, "s3", "--uri", f"s3://{s3_bucket.name}/none",
                        "--endpoint", s3_bucket.server.endpoint_url, "--dest", "/checkpoints/rev-2")  # fmt: skip
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "no objects under this prefix" in missing.stderr


@pytest.mark.parametrize("command", [["voice-operator", "--help"], ["voice-fetch-checkpoint", "--help"]])
def test_entrypoints_start_locked_down(docker: engine.Docker, operator_image: str, command: list[str]) -> None:
    result = docker.run("run", "--rm", "--network=none", *engine.LOCKED_DOWN, "--entrypoint", command[0],
                        operator_image, *command[1:], check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Only the operator's stack is in the image: the server's audio and model libraries are not.
    probe = docker.run("run", "--rm", "--network=none", "--entrypoint", "python", operator_image, "-c",
                       "import importlib.util as u; print([m for m in ('torch', 'numpy', 'av') if u.find_spec(m)])")  # fmt: skip
    assert probe.stdout.strip() == "[]"
