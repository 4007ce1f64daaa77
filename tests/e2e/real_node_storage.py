"""Storage for pods on the real node: local PersistentVolumes, and an S3 server they reach.

Registered by tests/e2e/conftest.py; used by tests/e2e/test_real_node_checkpoint.py.

* ``local_volumes``: a claim's storage as a real cluster without a provisioner has it: a
  StorageClass with ``kubernetes.io/no-provisioner`` (binding waits for the first pod) and a
  ``local`` PersistentVolume pinned to the real node, pre-bound to the claim the test names,
  over a folder of this machine (the node) under ``node.ROOT/volumes``. The folder is
  root's and 0755, as a disk an administrator hands over: the kubelet gives it to the pod's
  fsGroup when it mounts it, so only a pod that asks for that (the fetch Job does) can write.
  The control plane's default StorageClass is no use here: its in-tree hostPath provisioner
  makes root-only (0750) folders, which the kubelet never hands to an fsGroup.
* ``node_s3``: moto's S3 server on ``node.NODE_HOST_ADDRESS``, this machine's address on the
  pods' bridge, so pods reach it and nothing beyond this machine does.
* ``image_checkpoint``: the tiny S1 checkpoint, written by the inference image itself
  (``voice-inference make-checkpoint``), so the host needs no torch.

The manifests are pure functions of their names (``storage_class``, ``local_volume``).
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cluster import client, node
from tests.containers import engine
from tests.storage_fixtures import MotoS3

VOLUMES = node.ROOT / "volumes"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def storage_class(name: str) -> dict[str, Any]:
    """Pre-made volumes only; a claim binds when its first pod is scheduled, on that node."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }


def local_volume(name: str, class_name: str, path: pathlib.Path, claim: tuple[str, str], size: str) -> dict[str, Any]:
    """A ``local`` PersistentVolume over ``path`` on the real node, reserved for ``claim``
    (namespace, name); Retain, so the folder outlives the claim until the test removes it."""
    namespace, claim_name = claim
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": class_name,
            "volumeMode": "Filesystem",
            "local": {"path": str(path)},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace, "name": claim_name},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [node.NODE_NAME]}]},
            ]}},
        },
    }  # fmt: skip


@dataclasses.dataclass(frozen=True)
class LocalVolume:
    """One pre-made volume: its StorageClass, PersistentVolume and folder on this machine."""

    storage_class: str
    name: str
    path: pathlib.Path


def volume_phase(cluster: client.Cluster, name: str) -> str:
    pv = cluster.kubectl_json("get", "pv", name)
    return str(pv.get("status", {}).get("phase", ""))


@pytest.fixture
def local_volumes(cluster: client.Cluster, namespace: str, real_node: node.RealNode) -> Iterator[Callable[..., LocalVolume]]:
    """``make(claim_name, size="1Gi")``: a volume for that claim of the test's namespace.

    At the end the namespace's VoiceServices go first (their pods and claims with them), so
    no pod still has the folder mounted when it is removed with its PV and StorageClass."""
    made: list[LocalVolume] = []

    def make(claim_name: str, size: str = "1Gi") -> LocalVolume:
        volume = LocalVolume(f"{namespace}-local", f"{namespace}-{claim_name}", VOLUMES / f"{namespace}-{claim_name}")
        volume.path.mkdir(parents=True, mode=0o755)
        made.append(volume)
        cluster.apply([
            storage_class(volume.storage_class),
            local_volume(volume.name, volume.storage_class, volume.path, (namespace, claim_name), size),
        ])  # fmt: skip
        return volume

    yield make
    if made:
        cluster.kubectl("delete", "voiceservices", "--all", "-n", namespace, "--wait=true", timeout=120)
    for volume in made:
        try:
            cluster.wait_for(
                f"PersistentVolume {volume.name} released by its claim",
                lambda v=volume: volume_phase(cluster, v.name) in ("Released", "Available"),
                timeout=180,
            )
        finally:
            cluster.kubectl("delete", "pv", volume.name, "--ignore-not-found", "--wait=false")
            cluster.kubectl("delete", "storageclass", volume.storage_class, "--ignore-not-found")
            shutil.rmtree(volume.path, ignore_errors=True)


@pytest.fixture(scope="session")
def node_s3(real_node: node.RealNode) -> Iterator[MotoS3]:
    """moto's S3 server (IAM on) on the real node's bridge address, for pods and this process."""
    server = MotoS3(host=node.NODE_HOST_ADDRESS).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def image_checkpoint(docker: engine.Docker, inference_image: str, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The tiny random-weight S1 checkpoint (real file format), made by the inference image."""
    out = tmp_path_factory.mktemp("image-checkpoint")
    out.chmod(0o777)  # the image writes as uid 10001
    made = docker.run(
        "run", "--rm", "--network=none", *engine.LOCKED_DOWN, "--tmpfs", "/tmp:uid=10001,gid=10001",
        "--tmpfs", "/cache:uid=10001,gid=10001",
        "--volume", f"{out}:/out", inference_image, "make-checkpoint", "/out/tiny", "--size", "tiny",
        timeout=300, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    return out / "tiny"


def upload_folder(server: MotoS3, folder: pathlib.Path, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every file of ``folder`` under ``s3://bucket/prefix/``; returns {relative path: bytes}."""
    s3 = server.client()
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    for relative, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{relative}", Body=data)
    return files
