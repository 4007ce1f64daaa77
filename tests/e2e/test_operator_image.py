"""The operator image against the local control plane: ``voice-operator run`` from inside the
container (uid 10001, read-only root, no capabilities, as the chart runs it) reconciles a
VoiceService on the simulated nodes to Ready. The container shares this machine's network
namespace because the control plane listens on loopback only.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.cluster import client
from tests.containers import engine
from tests.e2e.operator_fixtures import voiceservice, wait_condition
from tests.servers import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def operator_container(
    cluster: client.Cluster, crd_installed: None, docker: engine.Docker, operator_image: str,
    namespace: str, tmp_path: pathlib.Path,
) -> Iterator[engine.Container]:  # fmt: skip
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(cluster.kubeconfig.read_text())
    kubeconfig.chmod(0o644)  # readable by the container's uid 10001
    liveness = free_port()
    container = engine.start(
        docker, operator_image,
        "run", "--namespace", namespace, "--liveness", f"http://127.0.0.1:{liveness}/healthz",
        "--metrics-port", str(free_port()),
        network="host", env={"KUBECONFIG": "/kube/config"},
        # /tmp: the chart's emptyDir, the one writable place.
        options=[*engine.LOCKED_DOWN, "--tmpfs", "/tmp:uid=10001,gid=10001", "--volume", f"{kubeconfig}:/kube/config:ro"],
    )  # fmt: skip
    try:
        container.wait_http(f"http://127.0.0.1:{liveness}/healthz", timeout=60)
        yield container
    finally:
        print(f"--- operator container log ---\n{container.logs()[-4000:]}")
        container.remove()


def test_operator_image_reconciles_a_voiceservice(
    cluster: client.Cluster, namespace: str, operator_container: engine.Container
) -> None:
    cluster.apply(voiceservice("tts"), namespace)
    vs = wait_condition(cluster, namespace, "tts", "Ready", "True", "Available", timeout=90)
    assert vs["status"]["replicaSummary"] == "1/1"
    deployment = cluster.kubectl_json("get", "deployment", "tts", "-n", namespace)
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == vs["metadata"]["uid"]
    state = operator_container.state()
    assert state["Running"] and state["ExitCode"] == 0
    assert "Traceback" not in operator_container.logs()


def test_operator_container_runs_locked_down(operator_container: engine.Container) -> None:
    # The container's own view of itself: the user and the read-only root the chart asks for.
    assert operator_container.exec("id", "-u").stdout.strip() == "10001"
    write = operator_container.exec("touch", "/opt/venv/x")
    assert write.returncode != 0 and "Read-only file system" in write.stderr
