"""Manifest builders: pure functions from a VoiceService spec to its children."""

from __future__ import annotations

from typing import Any

from voice_operator import config, contract, naming, spec
from voice_operator.builders import (
    autoscaling,
    checkpoint,
    common,
    deployment,
    disruption,
    service,
)

HF = {"checkpoint": {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini", "revision": "v1"}}}}


def ctx_of(manifest: dict[str, Any], defaults: config.Defaults | None = None) -> common.Context:
    return common.Context("tts", "team-a", "uid-1", spec.VoiceServiceSpec.model_validate(manifest), defaults or config.Defaults())


def render(manifest: dict[str, Any], served: str | None = "rev-x") -> dict[str, Any]:
    ctx = ctx_of(manifest)
    return deployment.deployment(ctx, checkpoint.plan(ctx), served)


def container(dep: dict[str, Any]) -> dict[str, Any]:
    return dep["spec"]["template"]["spec"]["containers"][0]


def env(dep: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(dep)["env"]}


def test_deployment_identity_owner_and_selector() -> None:
    dep = render(HF)
    meta = dep["metadata"]
    assert (meta["name"], meta["namespace"]) == ("tts", "team-a")
    assert meta["ownerReferences"] == [{
        "apiVersion": "voice-service.io/v1alpha1", "kind": "VoiceService", "name": "tts", "uid": "uid-1",
        "controller": True, "blockOwnerDeletion": True,
    }]
    assert dep["spec"]["selector"]["matchLabels"] == naming.selector_labels("tts")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[naming.SERVICE_LABEL] == "tts" and labels[naming.MANAGED_BY_LABEL] == "voice-operator"


def test_gpu_requests_equal_limits_and_resource_name_defaults() -> None:
    res = container(render({**HF, "resources": {"gpu": 2, "requests": {"cpu": 4}, "limits": {"memory": "16Gi"}}}))["resources"]
    assert res["requests"] == {"cpu": "4", "nvidia.com/gpu": "2"}
    assert res["limits"] == {"memory": "16Gi", "nvidia.com/gpu": "2"}
    ctx = ctx_of({**HF, "resources": {"gpu": 1}}, config.Defaults(gpu_resource_name="amd.com/gpu"))
    res = container(deployment.deployment(ctx, checkpoint.plan(ctx), "rev"))["resources"]
    assert res["limits"] == {"amd.com/gpu": "1"}
    assert "resources" not in container(render({"engine": {"provider": "mock"}, "resources": {"gpu": 0}}))


def test_pods_are_hardened() -> None:
    dep = render(HF)
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container(dep)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_checkpoint_mounted_read_only_and_path_in_env() -> None:
    dep = render(HF, served="rev-abc")
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "tts-checkpoints", "readOnly": True}
    mount = next(m for m in container(dep)["volumeMounts"] if m["name"] == "checkpoints")
    assert mount["readOnly"] is True
    assert env(dep)[contract.S1_CHECKPOINT_PATH] == "/checkpoints/rev-abc"
    assert dep["metadata"]["annotations"][naming.CHECKPOINT_ANNOTATION] == "rev-abc"


def test_secrets_are_referenced_never_inlined() -> None:
    manifest = {
        **HF,
        "apiKeySecret": {"name": "keys", "key": "list"},
        "references": {"storage": "s3", "s3": {"bucket": "voices", "credentialsSecret": {"name": "aws"}}},
    }
    dep = render(manifest)
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "keys"
    assert volumes["api-keys"]["secret"]["items"] == [{"key": "list", "path": "keys"}]
    assert env(dep)[contract.API_KEYS_FILE] == f"{contract.API_KEYS_MOUNT}/keys"
    assert container(dep)["envFrom"] == [{"secretRef": {"name": "aws"}}]
    ctx = ctx_of({"checkpoint": {"source": {"huggingface": {"repo": "a/b", "tokenSecret": {"name": "hf", "key": "t"}}}}})
    job = checkpoint.fetch_job(ctx, checkpoint.plan(ctx))
    job_env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}} in job_env


def test_probes_use_contract_paths_and_startup_allowance() -> None:
    c = container(render({**HF, "probes": {"startupSeconds": 125, "periodSeconds": 5}}))
    assert c["startupProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 125
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    compiled = container(render({**HF, "engine": {"compile": True}}))
    assert compiled["startupProbe"]["failureThreshold"] * 10 >= config.Defaults().startup_seconds_compile


def test_rollout_defaults_need_no_spare_gpu() -> None:
    dep = render(HF)
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert dep["spec"]["progressDeadlineSeconds"] == config.Defaults().startup_seconds + 300


def test_batch_slots_and_queue_are_rendered() -> None:
    assert (env(render(HF))[contract.MAX_BATCH_SIZE], env(render(HF))[contract.QUEUE_SIZE]) == ("8", "16")
    tuned = env(render({**HF, "engine": {"maxBatchSize": 64, "queueSize": 128}}))
    assert (tuned["VOICE_MAX_BATCH_SIZE"], tuned["VOICE_QUEUE_SIZE"]) == ("64", "128")


def test_extra_env_overrides_rendered_and_appends() -> None:
    e = env(render({**HF, "env": [{"name": "VOICE_LOG_LEVEL", "value": "debug"}, {"name": "EXTRA", "value": "1"}]}))
    assert e["VOICE_LOG_LEVEL"] == "debug" and e["EXTRA"] == "1"
    names = [x["name"] for x in container(render({**HF, "env": [{"name": "VOICE_LOG_LEVEL", "value": "debug"}]}))["env"]]
    assert names.count("VOICE_LOG_LEVEL") == 1


def test_template_hash_follows_the_pod_template_only() -> None:
    base = render(HF)["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION]
    assert render(HF)["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION] == base  # stable
    scaled = render({**HF, "replicas": 3})
    assert scaled["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION] == base  # scaling is no rollout
    new_image = render({**HF, "image": "x/y:2"})
    assert new_image["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION] != base
    other_checkpoint = render(HF, served="rev-other")
    assert other_checkpoint["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION] != base
    pod_hash = scaled["spec"]["template"]["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION]
    assert pod_hash == base


def test_scheduling_fields_pass_through() -> None:
    pod = render({
        **HF,
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"x": 1}},
        "runtimeClassName": "nvidia",
        "priorityClassName": "high",
        "podAnnotations": {"a": "1"},
        "podLabels": {"team": "speech", naming.SERVICE_LABEL: "hijack"},
    })["spec"]["template"]
    spec_ = pod["spec"]
    assert spec_["nodeSelector"] == {"pool": "gpu"}
    assert spec_["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec_["affinity"] == {"nodeAffinity": {"x": 1}}
    assert spec_["runtimeClassName"] == "nvidia" and spec_["priorityClassName"] == "high"
    assert pod["metadata"]["annotations"]["a"] == "1"
    assert pod["metadata"]["labels"]["team"] == "speech"
    assert pod["metadata"]["labels"][naming.SERVICE_LABEL] == "tts"  # ours win


def test_service() -> None:
    ctx = ctx_of({**HF, "service": {"type": "LoadBalancer", "port": 8000, "annotations": {"lb": "internal"}}})
    svc = service.service(ctx)
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["ports"][0] == {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
    assert svc["spec"]["selector"] == naming.selector_labels("tts")
    assert svc["metadata"]["annotations"] == {"lb": "internal"}
    assert ctx.endpoint == "http://tts.team-a.svc.cluster.local:8000"
    assert ctx_of(HF).endpoint == "http://tts.team-a.svc.cluster.local"


def test_checkpoint_plan_and_claim() -> None:
    ctx = ctx_of(HF)
    plan = checkpoint.plan(ctx)
    assert plan.mode == "fetch" and plan.source == "hf://fishaudio/openaudio-s1-mini@v1"
    assert plan.job_name == f"tts-fetch-{plan.source_hash[:8]}" and plan.folder == f"rev-{plan.source_hash[:12]}"
    assert checkpoint.plan(ctx_of({**HF, "replicas": 4})).source_hash == plan.source_hash
    other = checkpoint.plan(ctx_of({"checkpoint": {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini", "revision": "v2"}}}}))
    assert other.source_hash != plan.source_hash
    pvc = checkpoint.claim(ctx)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["metadata"]["ownerReferences"]
    retained = checkpoint.claim(ctx_of({**HF, "checkpoint": {**HF["checkpoint"], "storage": {"retainOnDelete": True}}}))
    assert "ownerReferences" not in retained["metadata"]
    existing = checkpoint.plan(ctx_of({"checkpoint": {"source": {"existingClaim": {"name": "models", "path": "s1"}}}}))
    assert (existing.mode, existing.claim_name, existing.folder, existing.job_name) == ("existing", "models", "s1", None)
    assert checkpoint.plan(ctx_of({"engine": {"provider": "mock"}})).mode == "none"


def test_fetch_job_runs_once_per_revision_and_fails_fast_on_permanent_errors() -> None:
    ctx = ctx_of({"checkpoint": {"source": {"s3": {"uri": "s3://models/s1/", "endpoint": "http://minio:9000", "credentialsSecret": {"name": "aws"}}}}})
    plan = checkpoint.plan(ctx)
    job = checkpoint.fetch_job(ctx, plan)
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert job["metadata"]["name"] == plan.job_name
    assert c["command"] == ["voice-fetch-checkpoint"]
    assert c["args"] == ["s3", "--uri", "s3://models/s1/", "--endpoint", "http://minio:9000", "--dest", f"/checkpoints/{plan.folder}"]
    assert c["envFrom"] == [{"secretRef": {"name": "aws"}}]
    assert c["image"] == config.Defaults().fetch_image
    assert pod["restartPolicy"] == "Never"
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "tts-checkpoints"}
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [checkpoint.PERMANENT_FAILURE_EXIT_CODE]
    assert job["spec"]["template"]["metadata"]["labels"][naming.COMPONENT_LABEL] == naming.CHECKPOINT_FETCH


def test_autoscaler_targets_the_voiceservice() -> None:
    ctx = ctx_of({**HF, "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6,
                                        "target": {"podMetric": {"name": "voice_inflight_requests", "averageValue": 4}},
                                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}}}})
    assert autoscaling.wanted(ctx)
    hpa = autoscaling.autoscaler(ctx)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "voice-service.io/v1alpha1", "kind": "VoiceService", "name": "tts"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "voice_inflight_requests"},
                                                                 "target": {"type": "AverageValue", "averageValue": "4"}}}]
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 600}}
    cpu = autoscaling.autoscaler(ctx_of({**HF, "autoscaling": {"enabled": True, "maxReplicas": 3}}))
    assert cpu["spec"]["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
    assert not autoscaling.wanted(ctx_of(HF))


def test_disruption_budget_only_with_several_pods() -> None:
    assert not disruption.wanted(ctx_of(HF))
    assert disruption.wanted(ctx_of({**HF, "replicas": 2}))
    assert disruption.wanted(ctx_of({**HF, "autoscaling": {"enabled": True, "maxReplicas": 3}}))
    assert not disruption.wanted(ctx_of({**HF, "replicas": 3, "autoscaling": {"enabled": True, "maxReplicas": 1}}))
    pdb = disruption.disruption_budget(ctx_of({**HF, "replicas": 2}))
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["selector"]["matchLabels"] == naming.selector_labels("tts")
