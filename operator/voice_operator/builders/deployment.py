"""The Deployment of inference pods: env from the contract, GPUs, probes, hardened pods.

Called by ``reconcile`` with the checkpoint folder currently ready to serve (or None when
the spec needs no checkpoint). The pod template is hashed (``template_hash``) and the hash
stamped on the Deployment and its pods: ``reconcile`` compares it with the live one to
decide on a rollout, and ``status`` uses it to tell updated pods from old ones.
"""

from __future__ import annotations

from typing import Any

from voice_operator import contract, naming
from voice_operator.builders import checkpoint as checkpoint_builder
from voice_operator.builders import common


# The pod leaves the Service's endpoints when its deletion starts, but kube-proxies and load
# balancers follow a moment later: after SIGTERM the server serves on this long, closing each
# connection after its answer, before it stops listening and drains (45 s): a rollout fails no
# request. 5 + 45 + the server's 5 s margin stay inside terminationGracePeriodSeconds (60).
SHUTDOWN_DELAY_SECONDS = 5


def environment(ctx: common.Context, checkpoint_path: str | None) -> list[dict[str, Any]]:
    """The container's env: the VOICE_* contract, cache locations, then the user's extras."""
    s = ctx.spec
    engine = s.engine
    rendered: list[dict[str, Any]] = [
        {"name": contract.HOST, "value": "0.0.0.0"},
        {"name": contract.PORT_ENV, "value": str(contract.PORT)},
        {"name": contract.TTS_PROVIDER, "value": engine.provider},
        {"name": contract.S1_DEVICE, "value": engine.device},
        {"name": contract.S1_PRECISION, "value": engine.precision},
        {"name": contract.S1_COMPILE, "value": "true" if engine.compile else "false"},
        {"name": contract.MAX_BATCH_SIZE, "value": str(engine.max_batch_size)},
        {"name": contract.QUEUE_SIZE, "value": str(engine.queue_size)},
        {"name": contract.MAX_TEXT_LENGTH, "value": str(engine.max_text_length)},
        {"name": contract.LOG_LEVEL, "value": engine.log_level},
        {"name": contract.SHUTDOWN_DELAY, "value": str(SHUTDOWN_DELAY_SECONDS)},
        {"name": contract.REFERENCE_STORAGE, "value": s.references.storage},
        {"name": contract.REFERENCE_PATH, "value": contract.REFERENCES_MOUNT},
    ]
    for name, value in (
        (contract.S1_STREAM_FRAMES, engine.stream_frames),
        (contract.S1_REFERENCE_CACHE_SIZE, engine.reference_cache_size),
        (contract.S1_CPU_THREADS, engine.cpu_threads),
    ):
        if value is not None:  # unset: the server's own default applies
            rendered.append({"name": name, "value": str(value)})
    if checkpoint_path is not None:
        rendered.append({"name": contract.S1_CHECKPOINT_PATH, "value": checkpoint_path})
    if s.cors.allow_origins:
        rendered.append({"name": contract.CORS_ALLOW_ORIGINS, "value": ",".join(s.cors.allow_origins)})
    if s.api_key_secret is not None:
        rendered.append({"name": contract.API_KEYS_FILE, "value": f"{contract.API_KEYS_MOUNT}/keys"})
    rendered += _voice_store_env(ctx)
    rendered += [{"name": k, "value": v} for k, v in contract.CACHE_ENV.items()]

    # A user's variable replaces a rendered one of the same name (env is a map keyed by name).
    extras = {e.name: e.model_dump(by_alias=True, exclude_none=True) for e in s.env}
    merged = [extras.pop(item["name"], item) for item in rendered]
    return merged + list(extras.values())


def _voice_store_env(ctx: common.Context) -> list[dict[str, Any]]:
    """Remote voice stores: where they are; their secrets arrive as a file or envFrom."""
    refs = ctx.spec.references
    env: list[dict[str, Any]] = []
    if refs.storage == "huggingface" and refs.huggingface is not None:
        hf = refs.huggingface
        env += [
            {"name": contract.REFERENCE_CACHE_PATH, "value": f"{contract.CACHE_MOUNT}/references"},
            {"name": contract.REFERENCE_HF_REPO, "value": hf.repo},
            {"name": contract.REFERENCE_HF_REPO_TYPE, "value": hf.repo_type},
            {"name": contract.REFERENCE_HF_REVISION, "value": hf.revision},
            {"name": contract.REFERENCE_HF_PATH, "value": hf.path},
        ]
        if hf.endpoint:
            env.append({"name": contract.REFERENCE_HF_ENDPOINT, "value": hf.endpoint})
        if hf.token_secret is not None:
            env.append({"name": contract.REFERENCE_HF_TOKEN_FILE, "value": f"{contract.HF_TOKEN_MOUNT}/token"})
    elif refs.storage == "s3" and refs.s3 is not None:
        s3 = refs.s3
        env += [
            {"name": contract.REFERENCE_CACHE_PATH, "value": f"{contract.CACHE_MOUNT}/references"},
            {"name": contract.REFERENCE_S3_BUCKET, "value": s3.bucket},
            {"name": contract.REFERENCE_S3_PREFIX, "value": s3.prefix},
            {"name": contract.REFERENCE_S3_ADDRESSING_STYLE, "value": s3.addressing_style},
        ]
        if s3.endpoint:
            env.append({"name": contract.REFERENCE_S3_ENDPOINT_URL, "value": s3.endpoint})
        if s3.region:
            env.append({"name": contract.REFERENCE_S3_REGION, "value": s3.region})
    return env


def _resources(ctx: common.Context) -> dict[str, Any]:
    r = ctx.spec.resources
    requests = {k: common.quantity(v) for k, v in r.requests.items()}
    limits = {k: common.quantity(v) for k, v in r.limits.items()}
    if r.gpu > 0:
        # Extended resources must have requests == limits.
        requests[ctx.gpu_resource] = str(r.gpu)
        limits[ctx.gpu_resource] = str(r.gpu)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _probes(ctx: common.Context) -> dict[str, Any]:
    p = ctx.probing

    def http(path: str, failure_threshold: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": contract.PORT_NAME},
            "periodSeconds": p.period_seconds,
            "timeoutSeconds": p.timeout_seconds,
            "failureThreshold": failure_threshold,
        }

    return {
        # Ready only after load + warm-up, so the startup allowance covers model load and compile.
        "startupProbe": http(contract.READY_PATH, p.startup_failure_threshold),
        "readinessProbe": http(contract.READY_PATH, p.failure_threshold),
        "livenessProbe": http(contract.LIVE_PATH, p.failure_threshold),
    }


def _volumes(ctx: common.Context, plan: checkpoint_builder.Plan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    s = ctx.spec
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if plan.claim_name is not None:
        volumes.append({"name": "checkpoints", "persistentVolumeClaim": {"claimName": plan.claim_name, "readOnly": True}})
        mounts.append({"name": "checkpoints", "mountPath": contract.CHECKPOINTS_MOUNT, "readOnly": True})
    if s.references.claim_name:
        volumes.append({"name": "references", "persistentVolumeClaim": {"claimName": s.references.claim_name}})
    else:
        volumes.append({"name": "references", "emptyDir": {}})
    mounts.append({"name": "references", "mountPath": contract.REFERENCES_MOUNT})
    hf = s.references.huggingface if s.references.storage == "huggingface" else None
    for volume, ref, mount_path, file_name in (
        ("api-keys", s.api_key_secret, contract.API_KEYS_MOUNT, "keys"),
        ("hf-token", hf.token_secret if hf is not None else None, contract.HF_TOKEN_MOUNT, "token"),
    ):
        if ref is None:
            continue
        # One key of the Secret as one read-only file (the server reads the file, not env).
        volumes.append({
            "name": volume,
            "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": file_name}], "defaultMode": 0o440},
        })
        mounts.append({"name": volume, "mountPath": mount_path, "readOnly": True})
    volumes += [{"name": "cache", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    mounts += [
        {"name": "cache", "mountPath": contract.CACHE_MOUNT},
        {"name": "tmp", "mountPath": contract.TMP_MOUNT},
    ]
    return volumes, mounts


def pod_template(ctx: common.Context, plan: checkpoint_builder.Plan, served_folder: str | None) -> dict[str, Any]:
    """The pod template without its hash annotation (the hash is taken over this)."""
    s = ctx.spec
    checkpoint_path = None
    if plan.mode != "none" and served_folder is not None:
        checkpoint_path = f"{contract.CHECKPOINTS_MOUNT}/{served_folder}".rstrip("/")
    volumes, mounts = _volumes(ctx, plan)
    container: dict[str, Any] = {
        "name": "inference",
        "image": ctx.image,
        "imagePullPolicy": s.image_pull_policy,
        "ports": [{"name": contract.PORT_NAME, "containerPort": contract.PORT, "protocol": "TCP"}],
        "env": environment(ctx, checkpoint_path),
        "securityContext": common.container_security_context(),
        "volumeMounts": mounts,
        **_probes(ctx),
    }
    resources = _resources(ctx)
    if resources:
        container["resources"] = resources
    s3_voices = s.references.s3 if s.references.storage == "s3" else None
    if s3_voices is not None and s3_voices.credentials_secret is not None:
        # AWS_ACCESS_KEY_ID etc. straight from the Secret: never copied into the manifest.
        container["envFrom"] = [{"secretRef": {"name": s3_voices.credentials_secret.name}}]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the server never talks to Kubernetes
        "enableServiceLinks": False,
        "securityContext": common.pod_security_context(),
        "terminationGracePeriodSeconds": 60,  # let in-flight syntheses finish
        **common.scheduling(ctx),
        "containers": [container],
        "volumes": volumes,
    }
    if s.runtime_class_name:
        pod_spec["runtimeClassName"] = s.runtime_class_name
    meta: dict[str, Any] = {"labels": common.pod_labels(ctx, naming.INFERENCE)}
    if s.pod_annotations:
        meta["annotations"] = dict(s.pod_annotations)
    return {"metadata": meta, "spec": pod_spec}


def template_hash(template: dict[str, Any]) -> str:
    return naming.stable_hash(template)


def deployment(ctx: common.Context, plan: checkpoint_builder.Plan, served_folder: str | None) -> dict[str, Any]:
    template = pod_template(ctx, plan, served_folder)
    digest = template_hash(template)
    template["metadata"].setdefault("annotations", {})[naming.TEMPLATE_HASH_ANNOTATION] = digest
    annotations = {naming.TEMPLATE_HASH_ANNOTATION: digest}
    if served_folder is not None and plan.mode != "none":
        annotations[naming.CHECKPOINT_ANNOTATION] = served_folder
    rollout = ctx.spec.rollout
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.metadata(ctx, naming.deployment(ctx.name), naming.INFERENCE, annotations=annotations),
        "spec": {
            "replicas": ctx.spec.replicas,
            "selector": {"matchLabels": naming.selector_labels(ctx.name)},
            "strategy": {
                "type": "RollingUpdate",
                # maxSurge 0 by default: a rollout replaces pods in place, no spare GPU needed.
                "rollingUpdate": {"maxSurge": rollout.max_surge, "maxUnavailable": rollout.max_unavailable},
            },
            "progressDeadlineSeconds": ctx.progress_deadline_seconds,
            "revisionHistoryLimit": 3,
            "template": template,
        },
    }
