"""What every builder shares: the render context, metadata with owner references, hashing.

The bottom of ``builders``: each child module (deployment, service, storage, fetch_job,
autoscaling, disruption) takes a ``Context`` and returns a plain manifest dict; nothing
here talks to the API. ``reconcile`` builds the ``Context`` from a VoiceService object and
the operator's ``config.Defaults``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from voice_operator import config, contract, naming, spec


@dataclasses.dataclass(frozen=True)
class Probing:
    """Resolved probe timing (spec values, else the operator's defaults)."""

    startup_seconds: int
    period_seconds: int
    timeout_seconds: int
    failure_threshold: int

    @property
    def startup_failure_threshold(self) -> int:
        return max(1, math.ceil(self.startup_seconds / self.period_seconds))


@dataclasses.dataclass(frozen=True)
class Context:
    """One VoiceService as the builders see it: identity, parsed spec, operator defaults."""

    name: str
    namespace: str
    uid: str
    spec: spec.VoiceServiceSpec
    defaults: config.Defaults = dataclasses.field(default_factory=config.Defaults)

    @property
    def image(self) -> str:
        return self.spec.image or self.defaults.image

    @property
    def gpu_resource(self) -> str:
        return self.spec.resources.gpu_resource_name or self.defaults.gpu_resource_name

    @property
    def probing(self) -> Probing:
        probes, d = self.spec.probes, self.defaults
        startup_default = d.startup_seconds_compile if self.spec.engine.compile else d.startup_seconds
        return Probing(
            startup_seconds=probes.startup_seconds or startup_default,
            period_seconds=probes.period_seconds or d.probe_period_seconds,
            timeout_seconds=probes.timeout_seconds or d.probe_timeout_seconds,
            failure_threshold=probes.failure_threshold or d.probe_failure_threshold,
        )

    @property
    def progress_deadline_seconds(self) -> int:
        # A rollout may legitimately take the whole startup allowance per pod.
        return self.spec.rollout.progress_deadline_seconds or self.probing.startup_seconds + 300

    @property
    def endpoint(self) -> str:
        host = f"{naming.service(self.name)}.{self.namespace}.svc.{self.defaults.cluster_domain}"
        port = self.spec.service.port
        return f"http://{host}" if port == 80 else f"http://{host}:{port}"


def owner_reference(ctx: Context) -> dict[str, Any]:
    """Makes the child garbage-collected with its VoiceService."""
    return {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "name": ctx.name,
        "uid": ctx.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    ctx: Context,
    name: str,
    component: str,
    *,
    owned: bool = True,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ctx.namespace,
        "labels": naming.common_labels(ctx.name, component),
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    if owned:
        meta["ownerReferences"] = [owner_reference(ctx)]
    return meta


def pod_labels(ctx: Context, component: str) -> dict[str, str]:
    """User pod labels first, so ours (which selectors rely on) always win."""
    return {**ctx.spec.pod_labels, **naming.common_labels(ctx.name, component)}


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": contract.RUN_AS_USER,
        "runAsGroup": contract.RUN_AS_USER,
        "fsGroup": contract.RUN_AS_USER,  # makes the checkpoint claim's files readable
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scheduling(ctx: Context) -> dict[str, Any]:
    """Pod spec fields that place the pod (shared by the serving pods and the fetch Job)."""
    s = ctx.spec
    out: dict[str, Any] = {}
    if s.node_selector:
        out["nodeSelector"] = dict(s.node_selector)
    if s.tolerations:
        out["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in s.tolerations]
    if s.affinity:
        out["affinity"] = s.affinity
    if s.priority_class_name:
        out["priorityClassName"] = s.priority_class_name
    if s.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": r.name} for r in s.image_pull_secrets]
    if s.service_account_name:
        out["serviceAccountName"] = s.service_account_name
    return out


def quantity(value: int | str) -> str:
    return str(value)
