"""Tests of the e2e harness itself: the control plane behaves like a real cluster.

Each test drives one real controller or API server feature that the operator relies
on (scheduling onto GPU nodes, garbage collection, CRD validation, RBAC, readiness,
Jobs, volume provisioning) through kubectl, as a person would.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import uuid
from typing import Any

import pytest

from tests.cluster import client, nodes

pytestmark = pytest.mark.e2e

GPU_TOLERATION = {"key": nodes.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# On a cluster with real nodes too (kind), the pods of these tests stay on kwok's nodes.
ON_FAKE_NODES = {nodes.FAKE_NODE_LABEL: "true"}


def deployment(
    name: str, *, replicas: int = 1, gpus: int = 0, tolerate_gpu_taint: bool = False,
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "server", "image": "registry.invalid/voice-e2e:1"}
    if gpus:
        container["resources"] = {"limits": {nodes.GPU_RESOURCE: str(gpus)}}
    pod_spec: dict[str, Any] = {"containers": [container], "nodeSelector": ON_FAKE_NODES}
    if tolerate_gpu_taint:
        pod_spec["tolerations"] = [GPU_TOLERATION]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": pod_annotations or {}},
                "spec": pod_spec,
            },
        },
    }


def test_deployment_gets_ready_pods_on_gpu_nodes(
    cluster: client.Cluster, namespace: str, fake_nodes: list[str]
) -> None:
    cluster.apply(deployment("tts", replicas=2, gpus=1, tolerate_gpu_taint=True), namespace)

    cluster.kubectl("rollout", "status", "deployment/tts", "-n", namespace, "--timeout=60s")
    pods = cluster.pods(namespace, "app=tts")
    assert len(pods) == 2
    gpu_nodes = set(cluster.gpu_node_names())
    for pod in pods:
        assert client.pod_is_ready(pod), pod["status"]
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"] in gpu_nodes
    deploy = cluster.kubectl_json("get", "deployment", "tts", "-n", namespace)
    assert deploy["status"]["readyReplicas"] == 2


def test_gpu_capacity_and_taint_constrain_scheduling(
    cluster: client.Cluster, namespace: str, fake_nodes: list[str]
) -> None:
    # Without the toleration only the untainted GPU node fits, and it has 2 GPUs:
    # the real scheduler places two pods there and leaves the rest Pending.
    untainted_gpu_nodes = [
        n["metadata"]["name"] for n in cluster.fake_nodes()
        if n["status"]["allocatable"].get(nodes.GPU_RESOURCE) and not n["spec"].get("taints")
    ]
    capacity = sum(
        int(n["status"]["allocatable"][nodes.GPU_RESOURCE]) for n in cluster.fake_nodes()
        if n["metadata"]["name"] in untainted_gpu_nodes
    )
    cluster.apply(deployment("greedy", replicas=capacity + 2, gpus=1), namespace)

    def placed() -> list[dict[str, Any]] | None:
        pods = cluster.pods(namespace, "app=greedy")
        scheduled = [p for p in pods if p["spec"].get("nodeName")]
        unschedulable = [
            p for p in pods
            if any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                   for c in p["status"].get("conditions", []))
        ]
        return pods if len(scheduled) == capacity and len(unschedulable) == 2 else None

    pods = cluster.wait_for("GPU pods to fill the untainted GPU node", placed, timeout=60)
    assert {p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")} <= set(untainted_gpu_nodes)


def test_deleting_an_owner_garbage_collects_its_dependents(cluster: client.Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace, "--from-literal=role=owner")
    owner_uid = cluster.kubectl_json("get", "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    cluster.apply({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
        "data": {"role": "dependent"},
    }, namespace)
    cluster.apply(deployment("owned"), namespace)
    cluster.wait_for("the Deployment's pods", lambda: cluster.pods(namespace, "app=owned"))

    cluster.kubectl("delete", "configmap", "owner", "-n", namespace, "--cascade=background")
    cluster.kubectl("delete", "deployment", "owned", "-n", namespace, "--cascade=background")

    def dependents_left() -> list[str]:
        configmaps = cluster.kubectl("get", "configmap", "dependent", "-n", namespace, "-o", "name", "--ignore-not-found")
        workloads = cluster.kubectl("get", "replicasets,pods", "-n", namespace, "-l", "app=owned", "-o", "name")
        return (configmaps.stdout + workloads.stdout).split()

    cluster.wait_for("the garbage collector", lambda: not dependents_left() or None, timeout=60)


def test_crd_schema_rejects_an_invalid_object(cluster: client.Cluster, namespace: str) -> None:
    group = f"e2e{uuid.uuid4().hex[:8]}.voice-service.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "required": ["voice"],
                        "properties": {
                            "voice": {"type": "string", "minLength": 1},
                            "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
                        },
                    }},
                }},
            }],
        },
    }
    cluster.apply(crd)
    try:
        cluster.wait_crd_established(f"widgets.{group}", timeout=30)

        def widget(name: str, spec: dict[str, Any]) -> str:
            return json.dumps({"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})

        cluster.kubectl("create", "-n", namespace, "-f", "-", input=widget("good", {"voice": "alice", "replicas": 2}))
        refused = cluster.kubectl(
            "create", "-n", namespace, "-f", "-", input=widget("bad", {"replicas": 99}), check=False
        )
        assert refused.returncode != 0
        assert "spec.replicas" in refused.stderr and "spec.voice" in refused.stderr, refused.stderr
        assert "Invalid value" in refused.stderr or "Required value" in refused.stderr
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false")


def test_service_account_with_a_narrow_role_is_refused_the_rest(
    cluster: client.Cluster, namespace: str, tmp_path: pathlib.Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl("create", "role", "configmap-reader", "-n", namespace, "--verb=get,list", "--resource=configmaps")
    cluster.kubectl(
        "create", "rolebinding", "reader", "-n", namespace,
        "--role=configmap-reader", f"--serviceaccount={namespace}:reader",
    )
    cluster.kubectl("create", "configmap", "visible", "-n", namespace, "--from-literal=a=b")
    # A real bound token: authentication and RBAC exactly as a pod would meet them.
    as_reader = cluster.service_account_kubeconfig(namespace, "reader", tmp_path / "reader.kubeconfig")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(*args, kubeconfig=as_reader, check=False)

    # RBAC rules take effect as soon as the authorizer's cache sees the binding.
    cluster.wait_for("the RoleBinding to apply", lambda: run("get", "configmap", "visible").returncode == 0)
    assert run("get", "configmaps").returncode == 0
    for refused in (
        run("create", "configmap", "nope", "--from-literal=a=b"),
        run("delete", "configmap", "visible"),
        run("get", "secrets"),
        run("get", "configmaps", "-n", "kube-system"),
    ):
        assert refused.returncode != 0
        assert "forbidden" in refused.stderr.lower(), refused.stderr
        assert f"system:serviceaccount:{namespace}:reader" in refused.stderr


def test_a_pod_made_to_fail_readiness_or_crash_shows_not_ready(
    cluster: client.Cluster, namespace: str, fake_nodes: list[str]
) -> None:
    cluster.apply(deployment("flaky"), namespace)
    cluster.kubectl("rollout", "status", "deployment/flaky", "-n", namespace, "--timeout=60s")
    pod = cluster.pods(namespace, "app=flaky")[0]["metadata"]["name"]

    def pod_now() -> dict[str, Any]:
        return cluster.kubectl_json("get", "pod", pod, "-n", namespace)

    def available() -> int:
        return cluster.kubectl_json("get", "deployment", "flaky", "-n", namespace)["status"].get("availableReplicas", 0)

    cluster.set_pod_behavior(namespace, pod, "unready")
    cluster.wait_for("the pod to turn unready", lambda: not client.pod_is_ready(pod_now()))
    assert pod_now()["status"]["phase"] == "Running"
    # The Deployment controller sees it too: the replica is no longer available.
    cluster.wait_for("the Deployment to count it unavailable", lambda: available() == 0)

    cluster.set_pod_behavior(namespace, pod, "crash")

    def crash_looping() -> bool:
        statuses = pod_now()["status"].get("containerStatuses", [])
        return any(s["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" for s in statuses)

    cluster.wait_for("the container to crash-loop", crash_looping)
    assert not client.pod_is_ready(pod_now())

    cluster.set_pod_behavior(namespace, pod, "ready")
    cluster.wait_for("the pod to recover", lambda: client.pod_is_ready(pod_now()))
    cluster.wait_for("the Deployment to count it available", lambda: available() == 1)

    # Set in the template, the behaviour holds from the start: the rollout never completes.
    cluster.apply(deployment("never-ready", pod_annotations={nodes.POD_BEHAVIOR_ANNOTATION: "unready"}), namespace)
    stuck = cluster.kubectl("rollout", "status", "deployment/never-ready", "-n", namespace, "--timeout=5s", check=False)
    assert stuck.returncode != 0
    pods = cluster.pods(namespace, "app=never-ready")
    assert pods and all(p["status"]["phase"] == "Running" and not client.pod_is_ready(p) for p in pods)


def test_jobs_complete_or_fail(cluster: client.Cluster, namespace: str, fake_nodes: list[str]) -> None:
    def job(name: str, behavior: str) -> dict[str, Any]:
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": {nodes.POD_BEHAVIOR_ANNOTATION: behavior}},
                    "spec": {
                        "restartPolicy": "Never",
                        "nodeSelector": ON_FAKE_NODES,
                        "containers": [{"name": "fetch", "image": "registry.invalid/fetch:1"}],
                    },
                },
            },
        }

    cluster.apply([job("fetch-ok", "ready"), job("fetch-bad", "fail")], namespace)
    cluster.kubectl("wait", "--for=condition=Complete", "job/fetch-ok", "-n", namespace, "--timeout=60s")
    cluster.kubectl("wait", "--for=condition=Failed", "job/fetch-bad", "-n", namespace, "--timeout=60s")


def test_a_claim_of_the_default_storage_class_is_bound(cluster: client.Cluster, namespace: str) -> None:
    if not cluster.local:
        pytest.skip("binding depends on the existing cluster's storage classes")
    cluster.apply({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "checkpoints"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }, namespace)
    cluster.kubectl(
        "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/checkpoints", "-n", namespace, "--timeout=60s"
    )


def test_helm_installs_a_chart(cluster: client.Cluster, namespace: str, tmp_path: pathlib.Path) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    cluster.helm("install", "probe", str(chart), "-n", namespace, "--set", "greeting=hi", "--wait", "--timeout=60s")
    data = cluster.kubectl_json("get", "configmap", "probe-probe", "-n", namespace)["data"]
    assert data == {"greeting": "hi"}
    cluster.helm("uninstall", "probe", "-n", namespace, "--wait")


def test_the_server_runs_the_pinned_release(cluster: client.Cluster) -> None:
    if not cluster.local:
        pytest.skip("an existing cluster runs whatever release it runs")
    version = cluster.kubectl_json("version")
    assert version["serverVersion"]["gitVersion"] == version["clientVersion"]["gitVersion"]
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
