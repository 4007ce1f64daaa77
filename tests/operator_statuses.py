"""Live children as the operator's watch caches hold them, and the statuses computed from them.

Builders of Deployments, pods and Jobs in the shape ``status.compute`` reads, used by
tests/unit/test_operator_status.py, and ``SCENARIOS``: a VoiceService status in each situation
the operator reports (ready, crash-looping, rolling out, stuck, fetching, fetch failed, claim
missing, Secret missing, scaled to zero, invalid spec). tests/unit/test_operator_status_schema.py
validates them against the CRD's status schema (``schema_errors``: what the API server would
prune or refuse); tests/e2e/test_operator_status.py writes them
to a real API server through the operator's write path and reads them back.
"""

from __future__ import annotations

import copy
import datetime
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jsonschema
from voice_operator import checkpoints, crd, naming, spec, status
from voice_operator.builders import checkpoint, common, deployment

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
MOCK = {"engine": {"provider": "mock"}, "replicas": 2}
HF = {"checkpoint": {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini"}}}}


def ctx_of(manifest: dict[str, Any], name: str = "tts", namespace: str = "ns") -> common.Context:
    return common.Context(name, namespace, "uid", spec.VoiceServiceSpec.model_validate(manifest))


def live_deployment(ctx: common.Context, served: str | None = None, **st: int) -> dict[str, Any]:
    dep = deployment.deployment(ctx, checkpoint.plan(ctx), served)
    dep["metadata"]["generation"] = 3
    dep["status"] = {"observedGeneration": 3, **st}
    return dep


def pod(
    name: str, template_hash: str, *, ready: bool = True, waiting: str | None = None, started: bool = True,
    deleting: bool = False,
) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": "inference", "ready": ready, "started": started, "restartCount": 3 if waiting else 0}
    cs["state"] = {"waiting": {"reason": waiting, "message": "back-off"}} if waiting else {"running": {}}
    meta: dict[str, Any] = {"name": name, "labels": {naming.COMPONENT_LABEL: naming.INFERENCE},
                            "annotations": {naming.TEMPLATE_HASH_ANNOTATION: template_hash}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T03:04:00Z"
    return {
        "metadata": meta,
        "status": {"phase": "Running", "containerStatuses": [cs],
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False", "message": "probe failed"}]},
    }


def template_hash(dep: dict[str, Any]) -> str:
    return dep["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION]


def ready_pods(dep: dict[str, Any], n: int) -> list[dict[str, Any]]:
    return [pod(f"p{i}", template_hash(dep)) for i in range(n)]


def job(*conds: tuple[str, str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "j"}, "status": {"conditions": [
        {"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conds]}}


def observe(ctx: common.Context, dep: dict[str, Any] | None, pods: Sequence[dict[str, Any]] = (), **kw: Any) -> status.Observation:
    desired_hash = template_hash(dep) if dep else kw.pop("desired_hash", None)
    return status.Observation(ctx=ctx, generation=7, plan=checkpoint.plan(ctx), desired_hash=desired_hash,
                              served=kw.pop("served", None), deployment=dep, pods=pods, **kw)


# -- the CRD's status schema, as the API server applies it ----------------------------------


def _closed(schema: Any) -> Any:
    """The schema with unknown properties refused wherever the API server would prune them."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def status_validator() -> jsonschema.protocols.Validator:
    """The CRD's status schema, closed like pruning (see ``_closed``)."""
    root = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema = _closed(copy.deepcopy(root["properties"]["status"]))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(value: dict[str, Any]) -> list[str]:
    """Why the API server would prune or refuse ``value`` as a VoiceService status (none: it keeps it whole)."""
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(status)'}: {e.message}" for e in status_validator().iter_errors(value)]


# -- one status per situation ----------------------------------------------------------------

Scenario = Callable[[common.Context, common.Context], dict[str, Any]]  # (mock ctx, checkpoint ctx) -> status


def _ready(mock: common.Context, _: common.Context) -> dict[str, Any]:
    dep = live_deployment(mock, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    return status.compute(observe(mock, dep, ready_pods(dep, 2)), NOW)[0]


def _crash_looping(mock: common.Context, _: common.Context) -> dict[str, Any]:
    dep = live_deployment(mock, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    pods = [pod("a", template_hash(dep)), pod("b", template_hash(dep), ready=False, waiting="CrashLoopBackOff")]
    return status.compute(observe(mock, dep, pods), NOW)[0]


def _stuck_rollout(mock: common.Context, _: common.Context) -> dict[str, Any]:
    dep = live_deployment(mock, replicas=2, readyReplicas=1, updatedReplicas=1, availableReplicas=1)
    dep["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                    "message": 'ReplicaSet "tts-1" has timed out progressing.'}]
    pods = [pod("a", "old"), pod("b", template_hash(dep), ready=False, started=False)]
    return status.compute(observe(mock, dep, pods), NOW)[0]


def _fetching(_: common.Context, hf: common.Context) -> dict[str, Any]:
    fetch = {"metadata": {"name": "j"}, "status": {}}
    return status.compute(observe(hf, None, job=fetch, claim={"status": {"phase": "Bound"}}), NOW)[0]


def _fetched(_: common.Context, hf: common.Context) -> dict[str, Any]:
    served = checkpoints.Served("rev-1", "hf://fishaudio/openaudio-s1-mini@main", "0123abcd")
    dep = live_deployment(hf, "rev-1", replicas=1, readyReplicas=1, updatedReplicas=1, availableReplicas=1)
    obs = observe(hf, dep, ready_pods(dep, 1), job=job(("Complete", "", "")), claim={"status": {"phase": "Bound"}}, served=served)
    return status.compute(obs, NOW)[0]


def _fetch_failed(_: common.Context, hf: common.Context) -> dict[str, Any]:
    failed = job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    return status.compute(observe(hf, None, job=failed), NOW)[0]


def _secret_missing(mock: common.Context, _: common.Context) -> dict[str, Any]:
    problem = status.Problem("SecretNotFound", "Secret keys (spec.apiKeySecret) not found in namespace ns")
    return status.compute(observe(mock, None, desired_hash="h", problems=[problem]), NOW)[0]


def _scaled_to_zero(mock: common.Context, _: common.Context) -> dict[str, Any]:
    zero = common.Context(mock.name, mock.namespace, mock.uid, mock.spec.model_copy(update={"replicas": 0}))
    return status.compute(observe(zero, live_deployment(zero)), NOW)[0]


def _invalid_spec(mock: common.Context, hf: common.Context) -> dict[str, Any]:
    return status.invalid(8, "spec.engine.queueSize: Input should be greater than or equal to 1", _ready(mock, hf), NOW)[0]


SCENARIOS: dict[str, Scenario] = {
    "ready": _ready,
    "crash-looping": _crash_looping,
    "stuck-rollout": _stuck_rollout,
    "fetching": _fetching,
    "fetched": _fetched,
    "fetch-failed": _fetch_failed,
    "secret-missing": _secret_missing,
    "scaled-to-zero": _scaled_to_zero,
    "invalid-spec": _invalid_spec,
}


def scenario(name: str, service: str = "tts", namespace: str = "ns") -> dict[str, Any]:
    """The status of situation ``name`` for a VoiceService ``service`` in ``namespace``."""
    return SCENARIOS[name](ctx_of(MOCK, service, namespace), ctx_of(HF, service, namespace))
