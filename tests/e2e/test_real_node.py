"""VoiceServices whose pods really run: on the real node (tests/cluster/node.py), from our
inference image, probed by a real kubelet, behind a Service that kube-proxy routes.

A mock-engine VoiceService turns Ready because its pod's probes pass; speech comes through
the Service to a client pod inside the cluster; ``kubectl exec`` and ``kubectl port-forward``
reach the pod. GPU VoiceServices still land on kwok's simulated GPU nodes.
"""

from __future__ import annotations

import ipaddress
import pathlib
import re
import subprocess

import httpx
import pytest

from tests.cluster import client, node
from tests.containers import engine
from tests.drain_checks import wait_for
from tests.e2e.operator_fixtures import (
    GPU_TOLERATION,
    OperatorProcess,
    voiceservice,
    wait_condition,
)
from tests.e2e.real_node_fixtures import ON_REAL_NODE, run_client

pytestmark = pytest.mark.e2e

SPEAK = """
import json, sys, urllib.request
url = sys.argv[1] if len(sys.argv) > 1 else "{url}"
request = urllib.request.Request(url + "/v1/tts", data=json.dumps({{"text": "Hello from inside the cluster.", "format": "wav"}}).encode(),
                                 headers={{"Content-Type": "application/json"}})
with urllib.request.urlopen(request, timeout=60) as response:
    body = response.read()
    print(response.status, response.headers["Content-Type"], len(body), body[:4].decode())
"""


def real_voiceservice(name: str, **spec: object) -> dict:
    return voiceservice(name, nodeSelector=dict(ON_REAL_NODE), imagePullPolicy="Never", **spec)


def test_mock_voiceservice_serves_through_its_service_on_the_real_node(
    cluster: client.Cluster, namespace: str, operator: OperatorProcess, real_node: node.RealNode, operator_image: str
) -> None:
    cluster.apply(real_voiceservice("tts"), namespace)
    vs = wait_condition(cluster, namespace, "tts", "Ready", "True", "Available", timeout=240)
    assert vs["status"]["replicaSummary"] == "1/1"

    [pod] = cluster.pods(namespace, "voice-service.io/service=tts")
    assert pod["spec"]["nodeName"] == node.NODE_NAME
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(node.NODE_POD_CIDR)
    [status] = pod["status"]["containerStatuses"]
    assert status["ready"] and status["restartCount"] == 0 and "running" in status["state"]

    # Through the Service's cluster IP, from a pod: kube-proxy's rules carry it.
    service = cluster.kubectl_json("get", "service", "tts", "-n", namespace)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    log = run_client(cluster, namespace, "speak", operator_image, SPEAK.format(url=url))
    code, content_type, size, magic = log.split()
    assert (code, content_type, magic) == ("200", "audio/wav", "RIFF") and int(size) > 10_000

    # kubectl exec and port-forward reach the pod through the kubelet.
    name = pod["metadata"]["name"]
    inside = cluster.kubectl("exec", name, "-n", namespace, "--", "id", "-u").stdout.strip()
    assert inside == "10001"
    forward = subprocess.Popen(
        [str(cluster.bin_dir / "kubectl"), "port-forward", "-n", namespace, f"pod/{name}", ":8080"],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+) -> 8080", line)
        assert match, line
        ready = httpx.get(f"http://127.0.0.1:{match.group(1)}/health/ready", timeout=30)
        assert ready.status_code == 200 and ready.json()["engine"] == "mock"
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_gpu_voiceservices_stay_on_the_simulated_gpu_nodes(
    cluster: client.Cluster, namespace: str, operator: OperatorProcess, real_node: node.RealNode
) -> None:
    real = cluster.kubectl_json("get", "node", node.NODE_NAME)
    assert "nvidia.com/gpu" not in real["status"]["capacity"]
    cluster.apply(voiceservice("gpu", nodeSelector={}, resources={"gpu": 1}, tolerations=[GPU_TOLERATION]), namespace)
    wait_condition(cluster, namespace, "gpu", "Ready", "True", "Available", timeout=90)
    [pod] = cluster.pods(namespace, "voice-service.io/service=gpu")
    assert pod["spec"]["nodeName"] in cluster.gpu_node_names()


def test_a_rebuilt_image_frees_its_old_build_in_the_node(real_node: node.RealNode, docker: engine.Docker, tmp_path: pathlib.Path) -> None:
    """The CRI plugin keeps an image-id record (``sha256:<config>``) for every image, and it
    outlives the tag's move to a new build; importing the new build must drop the old record,
    or every rebuild of the inference image would pin another 6 GB of snapshots."""
    tag = "voice-service.local/rebuild-probe:1"
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY build.txt /\n")
    built: list[str] = []

    def build(content: str) -> str:
        (tmp_path / "build.txt").write_text(content)
        docker.run("build", "--quiet", "-t", tag, str(tmp_path))
        built.append(docker.inspect(tag)["Id"])
        return built[-1]

    def records() -> list[str]:
        return real_node.ctr("images", "ls", "-q").stdout.decode().split()

    try:
        first = build("first")
        real_node.import_images([tag])
        assert wait_for(lambda: first in records(), timeout=30), f"no image-id record for {first}: {records()}"
        second = build("second")
        real_node.import_images([tag])
        assert first not in records()
        assert wait_for(lambda: second in records(), timeout=30)
        assert node.stale_image_ids(real_node.ctr) == []
    finally:
        for record in [tag, *built]:
            real_node.ctr("images", "rm", "--sync", record, check=False)
        docker.run("rmi", "--force", *built, check=False)
