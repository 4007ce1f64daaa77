"""The real node (tests/cluster/node.py) as a session fixture, and helpers for its pods.

Registered by tests/e2e/conftest.py; used by tests/e2e/test_real_node*.py. The node starts
on first use only (containerd, kubelet, kube-proxy; our two images imported), so e2e runs
that never ask for it pay nothing. Where it cannot run (no root, packages or images, or a
cluster that is not the local control plane) its tests skip and say why, and fail instead
under VOICE_REQUIRE_CONTAINERS=1.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import client, node
from tests.containers import engine

# Where VoiceServices and client pods go to run for real (no GPU: resources.gpu 0).
ON_REAL_NODE = {node.REAL_NODE_LABEL: "true"}


def _missing(reason: str) -> None:
    if os.environ.get("VOICE_REQUIRE_CONTAINERS") == "1":
        pytest.fail(f"VOICE_REQUIRE_CONTAINERS=1, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_node(cluster: client.Cluster, docker: engine.Docker, operator_image: str, inference_image: str) -> Iterator[node.RealNode]:
    if not cluster.local:
        pytest.skip("the cluster is not the local control plane; its own nodes run pods (kind)")
    missing = node.missing_prerequisites(cluster.bin_dir)
    if missing:
        _missing(f"no real node can run here: missing {', '.join(missing)}")
    server = json.loads(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    real = node.RealNode(cluster.kubeconfig.parent, cluster.bin_dir, server)
    started = time.monotonic()
    real.start([operator_image, inference_image], progress=lambda m: print(f"real node: {m} ({time.monotonic() - started:.1f}s)"))
    try:
        yield real
    finally:
        real.stop()


def client_pod(name: str, image: str, script: str) -> dict[str, Any]:
    """A pod on the real node that runs ``python -c script`` once (our operator image has
    Python and nothing of the server): the in-cluster client of the e2e tests."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": dict(ON_REAL_NODE),
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "client", "image": image, "imagePullPolicy": "Never",
                "command": ["python", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }  # fmt: skip


def run_client(cluster: client.Cluster, namespace: str, name: str, image: str, script: str, timeout: float = 120) -> str:
    """Run a client pod to its end; returns its log, or fails with it."""
    cluster.apply(client_pod(name, image, script), namespace)

    def finished() -> str | None:
        phase = cluster.kubectl_json("get", "pod", name, "-n", namespace).get("status", {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = cluster.wait_for(f"client pod {name} to finish", finished, timeout=timeout)
    log = cluster.kubectl("logs", name, "-n", namespace).stdout
    assert phase == "Succeeded", f"client pod {name} {phase}:\n{log}"
    return log
