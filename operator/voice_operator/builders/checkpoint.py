"""The checkpoint: where it comes from (a plan), the claim that holds it, the Job that fills it.

Called by ``reconcile``. ``plan`` is pure bookkeeping: a source gets a stable hash, and its
files land in the claim under a folder named by that hash, so a new revision downloads next
to the one being served and the pods switch only once the Job has succeeded. The Job runs
``voice-fetch-checkpoint`` (``voice_operator.fetch``) from the operator's image; its name
carries the source hash, so it runs once per source revision.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from voice_operator import contract, naming
from voice_operator.builders import common

# Exit code of voice-fetch-checkpoint for errors a retry cannot fix (404, 403, bad URI).
PERMANENT_FAILURE_EXIT_CODE = 2
FETCH_BACKOFF_LIMIT = 2
FETCH_DEADLINE_SECONDS = 4 * 3600


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where the pods' checkpoint comes from.

    ``mode``: ``none`` (the mock engine needs none), ``fetch`` (a Job downloads into a claim
    the operator owns) or ``existing`` (a claim that already holds it). ``folder`` is the
    checkpoint's folder inside the claim.
    """

    mode: Literal["none", "fetch", "existing"]
    source: str = ""
    source_hash: str = ""
    claim_name: str | None = None
    folder: str = ""
    job_name: str | None = None


def plan(ctx: common.Context) -> Plan:
    checkpoint = ctx.spec.checkpoint
    if checkpoint is None:
        return Plan(mode="none")
    src = checkpoint.source
    if src.existing_claim is not None:
        claim = src.existing_claim
        return Plan(
            mode="existing",
            source=f"pvc://{claim.name}/{claim.path}".rstrip("/"),
            claim_name=claim.name,
            folder=claim.path,
        )
    if src.huggingface is not None:
        hf = src.huggingface
        display = f"hf://{hf.repo}@{hf.revision}"
        identity: dict[str, Any] = {"hf": hf.repo, "revision": hf.revision}
    else:
        assert src.s3 is not None
        display = src.s3.uri
        identity = {"s3": src.s3.uri, "endpoint": src.s3.endpoint}
    source_hash = naming.stable_hash(identity)
    return Plan(
        mode="fetch",
        source=display,
        source_hash=source_hash,
        claim_name=naming.checkpoint_claim(ctx.name),
        folder=f"rev-{source_hash[:12]}",
        job_name=naming.fetch_job(ctx.name, source_hash),
    )


def claim(ctx: common.Context) -> dict[str, Any]:
    """The PersistentVolumeClaim the fetch Job fills; no owner when it must outlive us."""
    checkpoint = ctx.spec.checkpoint
    assert checkpoint is not None
    storage = checkpoint.storage
    pvc_spec: dict[str, Any] = {
        "accessModes": [storage.access_mode],
        "resources": {"requests": {"storage": common.quantity(storage.size)}},
    }
    if storage.storage_class_name:
        pvc_spec["storageClassName"] = storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": common.metadata(
            ctx, naming.checkpoint_claim(ctx.name), naming.CHECKPOINT_STORAGE, owned=not storage.retain_on_delete
        ),
        "spec": pvc_spec,
    }


def fetch_job(ctx: common.Context, checkpoint_plan: Plan) -> dict[str, Any]:
    """The Job that downloads the source into ``<claim>/<folder>`` once."""
    checkpoint = ctx.spec.checkpoint
    assert checkpoint is not None and checkpoint_plan.mode == "fetch" and checkpoint_plan.job_name
    src = checkpoint.source
    dest = f"{contract.CHECKPOINTS_MOUNT}/{checkpoint_plan.folder}"
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": contract.TMP_MOUNT},
        {"name": "HF_HOME", "value": f"{contract.TMP_MOUNT}/hf"},
    ]
    env_from: list[dict[str, Any]] = []
    if src.huggingface is not None:
        hf = src.huggingface
        args = ["huggingface", "--repo", hf.repo, "--revision", hf.revision]
        if hf.token_secret is not None:
            # The token stays in its Secret; the pod reads it at start.
            env.append({
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": hf.token_secret.name, "key": hf.token_secret.key}},
            })
    else:
        assert src.s3 is not None
        s3 = src.s3
        args = ["s3", "--uri", s3.uri]
        if s3.endpoint:
            args += ["--endpoint", s3.endpoint]
        if s3.region:
            args += ["--region", s3.region]
        if s3.credentials_secret is not None:
            env_from.append({"secretRef": {"name": s3.credentials_secret.name}})
    args += ["--dest", dest]

    container: dict[str, Any] = {
        "name": "fetch",
        "image": checkpoint.fetch_image or ctx.defaults.fetch_image,
        "imagePullPolicy": ctx.spec.image_pull_policy,
        "command": ["voice-fetch-checkpoint"],
        "args": args,
        "env": env,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": common.container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "checkpoints", "mountPath": contract.CHECKPOINTS_MOUNT},
            {"name": "tmp", "mountPath": contract.TMP_MOUNT},
        ],
    }
    if env_from:
        container["envFrom"] = env_from

    template_meta: dict[str, Any] = {"labels": common.pod_labels(ctx, naming.CHECKPOINT_FETCH)}
    if ctx.spec.pod_annotations:
        template_meta["annotations"] = dict(ctx.spec.pod_annotations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": common.metadata(
            ctx,
            checkpoint_plan.job_name,
            naming.CHECKPOINT_FETCH,
            annotations={
                naming.SOURCE_HASH_ANNOTATION: checkpoint_plan.source_hash,
                naming.SOURCE_ANNOTATION: checkpoint_plan.source,
            },
        ),
        "spec": {
            "backoffLimit": FETCH_BACKOFF_LIMIT,
            "activeDeadlineSeconds": FETCH_DEADLINE_SECONDS,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "fetch",
                            "operator": "In",
                            "values": [PERMANENT_FAILURE_EXIT_CODE],
                        },
                    }
                ]
            },
            "template": {
                "metadata": template_meta,
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": common.pod_security_context(),
                    **common.scheduling(ctx),
                    "containers": [container],
                    "volumes": [
                        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": checkpoint_plan.claim_name}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
