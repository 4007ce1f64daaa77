"""Fixtures of the e2e tests: a real Kubernetes cluster for the whole session.

Which cluster, decided once per session by `cluster`:
- `VOICE_E2E_CLUSTER=existing`: the cluster named by `KUBECONFIG` (required then),
  e.g. a kind cluster from `make e2e-kind`. Never chosen implicitly, so a KUBECONFIG
  that points at a shared cluster is not used by accident.
- otherwise, a cluster already started by `make cluster-up` in `.cluster/` is reused
  and left running (fast iteration);
- otherwise the session starts its own local control plane (tests/cluster/launcher.py)
  in `.cluster/pytest-<pid>/` and stops it at the end, also on Ctrl-C or SIGTERM.

Tests get a `tests.cluster.client.Cluster` handle; `namespace` gives each test its own
namespace. Pod behaviours (ready, unready, crash, fail, pending) are described in
tests/cluster/kwok/stages.yaml and set with `cluster.set_pod_behavior()` or the
`voice-service.test/pod-behavior` annotation in a pod template.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.cluster import client, launcher

Cluster = client.Cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[client.Cluster]:
    mode = os.environ.get("VOICE_E2E_CLUSTER", "local")
    if mode == "existing":
        yield _existing_cluster()
        return
    if mode != "local":
        raise pytest.UsageError(f"VOICE_E2E_CLUSTER must be 'local' or 'existing', not {mode!r}")

    state = launcher.running_state(launcher.DEFAULT_DIR)
    if state is not None:
        yield client.Cluster(
            kubeconfig=pathlib.Path(state.kubeconfig),
            bin_dir=pathlib.Path(state.bin_dir),
            local=True,
            cache_dir=launcher.DEFAULT_DIR / "run" / "kube-cache",
        )
        return

    bin_dir = launcher.tools_bin_dir()
    launcher.ensure_tools(bin_dir)
    launcher.clean_stale_sessions()
    directory = launcher.session_dir()
    plane = launcher.ControlPlane(directory, bin_dir, owned=True)
    started = time.monotonic()
    plane.start()
    print(f"\ncluster: local control plane up in {time.monotonic() - started:.1f}s at {plane.server}")
    try:
        yield client.Cluster(
            kubeconfig=plane.kubeconfig, bin_dir=bin_dir, local=True, cache_dir=plane.run_dir / "kube-cache"
        )
    finally:
        plane.stop()
        # Logs stay for a failed run's post-mortem only when asked for.
        if not os.environ.get("VOICE_E2E_KEEP_CLUSTER_DIR"):
            shutil.rmtree(directory, ignore_errors=True)


def _existing_cluster() -> client.Cluster:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        raise pytest.UsageError("VOICE_E2E_CLUSTER=existing needs KUBECONFIG to name the cluster")
    bin_dir = launcher.tools_bin_dir()
    launcher.ensure_tools(bin_dir)
    cache_dir = launcher.DEFAULT_DIR / "existing-kube-cache"
    return client.Cluster(kubeconfig=pathlib.Path(kubeconfig), bin_dir=bin_dir, local=False, cache_dir=cache_dir)


@pytest.fixture
def namespace(cluster: client.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for it to go)."""
    name = cluster.create_namespace(prefix="e2e")
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def fake_nodes(cluster: client.Cluster) -> list[str]:
    """Names of kwok's simulated nodes; skips the test on a cluster without them."""
    names = [n["metadata"]["name"] for n in cluster.fake_nodes()]
    if not names:
        pytest.skip("this cluster has no kwok-simulated nodes (run `python -m tests.cluster attach-kwok`)")
    return names


# The operator's fixtures (a real operator process, the CRD installed), shared by the
# test_operator_*.py modules; importing them here registers them for this folder.
from tests.e2e.operator_fixtures import crd_installed, operator, start_operator  # noqa: E402, F401
# The real node (containerd, kubelet, kube-proxy), started on first use by the tests of pods
# that really run (test_real_node*.py).
from tests.e2e.real_node_fixtures import real_node  # noqa: E402, F401
# Storage its pods use: local PersistentVolumes, an S3 server on the node's bridge, and the
# tiny S1 checkpoint (test_real_node_checkpoint.py).
from tests.e2e.real_node_storage import image_checkpoint, local_volumes, node_s3  # noqa: E402, F401
