"""What goes wrong, and how the VoiceService says so: broken pods, a stuck rollout, missing
Secrets, a failing checkpoint fetch, and manifests the API server refuses."""

from __future__ import annotations

import json

import pytest

from tests.cluster import client, nodes
from tests.e2e.operator_fixtures import (
    OperatorProcess,
    condition,
    event_reasons,
    exists,
    voiceservice,
    wait_condition,
)

pytestmark = pytest.mark.e2e

HF = {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini", "revision": "main"}}, "storage": {"size": "1Gi"}}


def live_pods(cluster: client.Cluster, namespace: str, name: str) -> list[dict]:
    return [
        p for p in cluster.pods(namespace, f"voice-service.io/service={name},app.kubernetes.io/component=inference")
        if not p["metadata"].get("deletionTimestamp")
    ]


@pytest.mark.parametrize("behavior, reason", [("crash", "CrashLoopBackOff"), ("unready", "PodsNotReady")])
def test_broken_pod_is_degraded_then_recovers(
    cluster: client.Cluster, namespace: str, operator: OperatorProcess, behavior: str, reason: str
) -> None:
    cluster.apply(voiceservice("tts", replicas=2), namespace)
    wait_condition(cluster, namespace, "tts", "Ready", "True")
    victim = live_pods(cluster, namespace, "tts")[0]["metadata"]["name"]

    cluster.set_pod_behavior(namespace, victim, behavior)
    vs = wait_condition(cluster, namespace, "tts", "Degraded", "True", reason)
    assert victim in condition(vs, "Degraded")["message"]
    assert condition(vs, "Ready")["status"] == "False"
    assert reason in event_reasons(cluster, namespace, "tts")

    cluster.set_pod_behavior(namespace, victim, "ready")
    wait_condition(cluster, namespace, "tts", "Degraded", "False")
    wait_condition(cluster, namespace, "tts", "Ready", "True")
    assert "Recovered" in event_reasons(cluster, namespace, "tts")


def test_stuck_rollout_is_degraded(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(voiceservice("tts"), namespace)
    wait_condition(cluster, namespace, "tts", "Ready", "True")
    # The new pods never leave Pending (as if the image never arrived).
    patch = {"spec": {"podAnnotations": {nodes.POD_BEHAVIOR_ANNOTATION: "pending"}, "rollout": {"progressDeadlineSeconds": 10}}}
    cluster.kubectl("patch", "voiceservice", "tts", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    vs = wait_condition(cluster, namespace, "tts", "Degraded", "True", "ProgressDeadlineExceeded", timeout=60)
    assert condition(vs, "Progressing")["status"] == "False"
    assert "ProgressDeadlineExceeded" in event_reasons(cluster, namespace, "tts")


def test_missing_secret_is_reported_and_retried(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(voiceservice("tts", apiKeySecret={"name": "tts-keys", "key": "keys"}), namespace)
    vs = wait_condition(cluster, namespace, "tts", "Degraded", "True", "SecretNotFound")
    assert "Secret tts-keys (spec.apiKeySecret) not found" in condition(vs, "Degraded")["message"]
    assert not exists(cluster, namespace, "deployment", "tts")  # no pod that cannot start

    cluster.kubectl("create", "secret", "generic", "tts-keys", "-n", namespace, "--from-literal=keys=k1")
    wait_condition(cluster, namespace, "tts", "Ready", "True", timeout=60)
    volume = next(
        v for v in cluster.kubectl_json("get", "deployment", "tts", "-n", namespace)["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "api-keys"
    )
    assert volume["secret"]["secretName"] == "tts-keys"  # by reference, never inlined


def test_checkpoint_job_success_gates_the_pods(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(voiceservice("tts", engine={"provider": "s1_mini"}, checkpoint=HF), namespace)
    vs = wait_condition(cluster, namespace, "tts", "CheckpointReady", "True", "Fetched", timeout=90)
    job_name = vs["status"]["checkpoint"]["jobName"]
    job = cluster.kubectl_json("get", "job", job_name, "-n", namespace)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["voice-fetch-checkpoint"]
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    claim = cluster.kubectl_json("get", "pvc", "tts-checkpoints", "-n", namespace)
    assert claim["status"]["phase"] == "Bound"

    vs = wait_condition(cluster, namespace, "tts", "Ready", "True", timeout=60)
    dep = cluster.kubectl_json("get", "deployment", "tts", "-n", namespace)
    pod_spec = dep["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod_spec["containers"][0]["env"]}
    folder = dep["metadata"]["annotations"]["voice-service.io/checkpoint"]
    assert env["VOICE_S1_CHECKPOINT_PATH"] == f"/checkpoints/{folder}"
    claim_volume = next(v for v in pod_spec["volumes"] if v["name"] == "checkpoints")["persistentVolumeClaim"]
    assert claim_volume == {"claimName": "tts-checkpoints", "readOnly": True}
    # The Deployment appeared only after the Job completed.
    assert dep["metadata"]["creationTimestamp"] >= max(c["lastTransitionTime"] for c in job["status"]["conditions"])
    assert vs["status"]["checkpoint"]["source"] == "hf://fishaudio/openaudio-s1-mini@main"
    assert "CheckpointFetched" in event_reasons(cluster, namespace, "tts")


def test_checkpoint_job_failure_then_fix(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    failing = {nodes.POD_BEHAVIOR_ANNOTATION: "fail"}  # the fetch pod exits 1 (kwok)
    cluster.apply(voiceservice("tts", engine={"provider": "s1_mini"}, checkpoint=HF, podAnnotations=failing), namespace)
    vs = wait_condition(cluster, namespace, "tts", "CheckpointReady", "False", "FetchFailed", timeout=120)
    assert condition(vs, "Degraded")["reason"] == "CheckpointFetchFailed"
    assert "could not fetch hf://fishaudio/openaudio-s1-mini@main" in condition(vs, "Degraded")["message"]
    assert condition(vs, "Ready")["status"] == "False"
    assert not exists(cluster, namespace, "deployment", "tts")
    failed_job = vs["status"]["checkpoint"]["jobName"]

    # A fixed spec replaces the failed Job.
    cluster.kubectl("patch", "voiceservice", "tts", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"podAnnotations": {nodes.POD_BEHAVIOR_ANNOTATION: "ready"}}}))
    wait_condition(cluster, namespace, "tts", "Ready", "True", timeout=90)
    job = cluster.kubectl_json("get", "job", failed_job, "-n", namespace)
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    assert "FetchRestarted" in event_reasons(cluster, namespace, "tts")


def test_hpa_targets_the_voiceservice(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(voiceservice("tts", autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 4}), namespace)
    wait_condition(cluster, namespace, "tts", "Ready", "True")
    hpa = cluster.wait_for("the HPA", lambda: exists(cluster, namespace, "hpa", "tts") and cluster.kubectl_json("get", "hpa", "tts", "-n", namespace))
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "voice-service.io/v1alpha1", "kind": "VoiceService", "name": "tts"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)

    def read_scale() -> bool:
        # The HPA controller reached the VoiceService's scale subresource (no metrics server here).
        h = cluster.kubectl_json("get", "hpa", "tts", "-n", namespace)
        return any(c["type"] == "AbleToScale" and c["status"] == "True" for c in h.get("status", {}).get("conditions", []))

    cluster.wait_for("the HPA controller reads /scale", read_scale, timeout=60)

    cluster.kubectl("patch", "voiceservice", "tts", "-n", namespace, "--type=merge", "-p", '{"spec": {"autoscaling": {"enabled": false}}}')
    cluster.wait_for("the HPA removed", lambda: not exists(cluster, namespace, "hpa", "tts"))


INVALID = [
    ({"engine": {"provider": "mock"}, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
     "minReplicas must not exceed maxReplicas"),
    ({}, "engine.provider s1_mini needs spec.checkpoint"),
    ({"checkpoint": {"source": {"huggingface": {"repo": "a/b"}, "s3": {"uri": "s3://bucket/x"}}}},
     "exactly one of huggingface, s3 or existingClaim must be set"),
    ({"engine": {"provider": "mock", "queueSize": 0}}, "spec.engine.queueSize: Invalid value: 0"),
    ({"engine": {"provider": "tortoise"}}, 'spec.engine.provider: Unsupported value: "tortoise"'),
    ({"engine": {"provider": "mock"}, "resources": {"gpu": 1, "requests": {"memory": "lots"}}}, "spec.resources.requests.memory"),
    ({"engine": {"provider": "mock"}, "rollout": {"maxSurge": 0, "maxUnavailable": 0}}, "maxSurge and maxUnavailable cannot both be 0"),
    ({"engine": {"provider": "mock"}, "references": {"storage": "s3"}}, "storage s3 needs references.s3"),
]


@pytest.mark.parametrize("spec, message", INVALID, ids=[m.split(":")[0][:40] for _, m in INVALID])
def test_invalid_manifests_are_refused_with_a_readable_message(
    cluster: client.Cluster, namespace: str, crd_installed: None, spec: dict, message: str
) -> None:
    manifest = {"apiVersion": "voice-service.io/v1alpha1", "kind": "VoiceService", "metadata": {"name": "bad"}, "spec": spec}
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not exists(cluster, namespace, "voiceservice", "bad")


def test_too_long_name_is_refused(cluster: client.Cluster, namespace: str, crd_installed: None) -> None:
    manifest = voiceservice("x" * 49)
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0 and "metadata.name must be at most 48 characters" in result.stderr


def test_existing_claim_is_waited_for_then_served(cluster: client.Cluster, namespace: str, operator: OperatorProcess) -> None:
    source = {"source": {"existingClaim": {"name": "models", "path": "openaudio-s1-mini"}}}
    cluster.apply(voiceservice("tts", engine={"provider": "s1_mini"}, checkpoint=source), namespace)
    vs = wait_condition(cluster, namespace, "tts", "CheckpointReady", "False", "ClaimNotFound")
    assert condition(vs, "Degraded")["reason"] == "ClaimNotFound"

    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    cluster.apply(claim, namespace)
    vs = wait_condition(cluster, namespace, "tts", "Ready", "True", timeout=60)  # found on a backoff retry
    assert condition(vs, "CheckpointReady")["reason"] == "ClaimBound"
    pod_spec = cluster.kubectl_json("get", "deployment", "tts", "-n", namespace)["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod_spec["containers"][0]["env"]}
    assert env["VOICE_S1_CHECKPOINT_PATH"] == "/checkpoints/openaudio-s1-mini"
    assert not cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.strip()  # nothing to fetch
