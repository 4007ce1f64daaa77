"""The operator as a real process against the local control plane: create, scale, update,
drift repair, delete. Pods are kwok's simulated pods (tests/cluster/kwok/stages.yaml)."""

from __future__ import annotations

import json

import pytest

from tests.cluster import client, nodes
from tests.e2e.operator_fixtures import (
    GPU_TOLERATION,
    OperatorProcess,
    event_reasons,
    exists,
    get_vs,
    voiceservice,
    wait_condition,
)

pytestmark = pytest.mark.e2e


def deployment_of(cluster: client.Cluster, namespace: str, name: str) -> dict:
    return cluster.kubectl_json("get", "deployment", name, "-n", namespace)


def test_create_becomes_ready_on_a_gpu_node(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(voiceservice("tts", resources={"gpu": 1}, tolerations=[GPU_TOLERATION]), namespace)
    vs = wait_condition(cluster, namespace, "tts", "Ready", "True", "Available")

    status = vs["status"]
    assert status["endpoint"] == f"http://tts.{namespace}.svc.cluster.local"
    assert status["replicaSummary"] == "1/1" and status["observedGeneration"] == vs["metadata"]["generation"]
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Progressing", "Degraded", "CheckpointReady"}
    # The operator writes nothing of its own into the object: no finalizer, no kopf annotations.
    assert not vs["metadata"].get("finalizers")
    assert not [k for k in vs["metadata"].get("annotations", {}) if "kopf" in k]

    dep = deployment_of(cluster, namespace, "tts")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"][nodes.GPU_RESOURCE] == "1"
    assert dep["metadata"]["ownerReferences"][0]["uid"] == vs["metadata"]["uid"]
    pods = cluster.pods(namespace, "voice-service.io/service=tts")
    assert len(pods) == 1 and pods[0]["spec"]["nodeName"] in cluster.gpu_node_names()
    assert exists(cluster, namespace, "service", "tts")

    table = cluster.kubectl("get", "vsvc", "tts", "-n", namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "READY", "REPLICAS", "ENDPOINT", "AGE"]
    assert "True" in table and "1/1" in table
    assert {"Created", "Ready"} <= set(event_reasons(cluster, namespace, "tts"))

    # Settled: a reconcile with nothing to do writes nothing. Touch the VoiceService (a watch
    # event that changes nothing the operator owns) and wait for the reconcile it causes.
    operator.wait_idle()
    writes = ("apply", "patch_status", "delete", "create")
    before = operator.api_requests(writes)
    noops = operator.metric("voice_operator_reconciles_total", result="noop")
    cluster.kubectl("annotate", "voiceservice", "tts", "-n", namespace, "e2e.voice-service.io/touched=1")
    cluster.wait_for(
        "a reconcile that found nothing to do",
        lambda: operator.metric("voice_operator_reconciles_total", result="noop") > noops, timeout=30,
    )
    assert operator.api_requests(writes) == before


def test_kubectl_scale_and_update_roll_out(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(voiceservice("tts"), namespace)
    wait_condition(cluster, namespace, "tts", "Ready", "True")

    cluster.kubectl("scale", "voiceservice/tts", "--replicas=3", "-n", namespace)
    vs = cluster.wait_for(
        "3/3 ready", lambda: (v := get_vs(cluster, namespace, "tts"))["status"].get("readyReplicas") == 3 and v, timeout=60
    )
    assert vs["status"]["replicaSummary"] == "3/3"
    assert deployment_of(cluster, namespace, "tts")["spec"]["replicas"] == 3
    assert exists(cluster, namespace, "pdb", "tts")  # more than one pod: a disruption budget
    scale = json.loads(cluster.kubectl("get", "--raw", f"/apis/voice-service.io/v1alpha1/namespaces/{namespace}/voiceservices/tts/scale").stdout)
    assert scale["status"]["replicas"] == 3 and "voice-service.io/service=tts" in scale["status"]["selector"]

    old_hash = vs["status"]["templateHash"]
    cluster.kubectl("patch", "voiceservice", "tts", "-n", namespace, "--type=merge",
                    "-p", '{"spec": {"image": "registry.invalid/voice:2", "engine": {"logLevel": "debug"}}}')
    vs = cluster.wait_for(
        "the new template rolled out",
        lambda: (v := get_vs(cluster, namespace, "tts"))["status"].get("templateHash") != old_hash
        and v["status"]["observedGeneration"] == v["metadata"]["generation"]
        and next(c for c in v["status"]["conditions"] if c["type"] == "Ready")["status"] == "True" and v,
        timeout=90,
    )
    pods = [p for p in cluster.pods(namespace, "voice-service.io/service=tts") if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 3
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"registry.invalid/voice:2"}
    assert {p["metadata"]["annotations"]["voice-service.io/template-hash"] for p in pods} == {vs["status"]["templateHash"]}
    reasons = event_reasons(cluster, namespace, "tts")
    assert "Updated" in reasons and "RolloutStarted" in reasons
    strategy = deployment_of(cluster, namespace, "tts")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxSurge"] == 0  # no spare GPU needed


def test_drift_is_repaired(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(voiceservice("tts", replicas=2), namespace)
    wait_condition(cluster, namespace, "tts", "Ready", "True")

    cluster.kubectl("patch", "deployment", "tts", "-n", namespace, "--type=merge", "-p", '{"spec": {"replicas": 5}}')
    cluster.kubectl("label", "--overwrite", "service", "tts", "-n", namespace, "voice-service.io/service-", "app.kubernetes.io/managed-by=someone")
    cluster.wait_for("Deployment back to 2 replicas", lambda: deployment_of(cluster, namespace, "tts")["spec"]["replicas"] == 2)
    cluster.wait_for(
        "Service labels restored",
        lambda: cluster.kubectl_json("get", "service", "tts", "-n", namespace)["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "voice-operator",
    )
    cluster.kubectl("delete", "service", "tts", "-n", namespace)
    cluster.wait_for("Service re-created", lambda: exists(cluster, namespace, "service", "tts"))
    cluster.kubectl("delete", "pdb", "tts", "-n", namespace)
    cluster.wait_for("PDB re-created", lambda: exists(cluster, namespace, "pdb", "tts"))
    assert "DriftRepaired" in event_reasons(cluster, namespace, "tts")
    wait_condition(cluster, namespace, "tts", "Ready", "True")


def test_delete_collects_children_and_keeps_a_retained_claim(
    cluster: client.Cluster, namespace: str, operator: OperatorProcess
) -> None:
    hf = {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini"}}, "storage": {"size": "1Gi", "retainOnDelete": True}}
    cluster.apply(voiceservice("kept", checkpoint=hf, replicas=2), namespace)
    cluster.apply(voiceservice("gone", checkpoint={**hf, "storage": {"size": "1Gi"}}), namespace)
    for name in ("kept", "gone"):
        wait_condition(cluster, namespace, name, "Ready", "True", timeout=90)
    cluster.kubectl("delete", "voiceservice", "kept", "gone", "-n", namespace, "--wait=true", "--timeout=60s")

    def collected() -> bool:
        return not any(
            exists(cluster, namespace, kind, name)
            for kind, name in (("deployment", "kept"), ("service", "kept"), ("pdb", "kept"), ("deployment", "gone"))
        ) and not cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.strip()

    cluster.wait_for("children garbage-collected", collected, timeout=60)
    cluster.wait_for("the non-retained claim deleted", lambda: not exists(cluster, namespace, "pvc", "gone-checkpoints"), timeout=60)
    # Garbage collection has acted on both (the other claim is gone); this one has no owner to follow.
    claim = cluster.kubectl_json("get", "pvc", "kept-checkpoints", "-n", namespace)
    assert not claim["metadata"].get("deletionTimestamp") and not claim["metadata"].get("ownerReferences")
