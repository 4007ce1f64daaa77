"""One reconcile of one VoiceService: render children, apply what differs, write the status.

Called by ``controller`` (in a worker thread) with a ``Snapshot`` taken from kopf's
in-memory indexes, so reading the world costs no API request. The flow:

1. parse the spec (an invalid one becomes a condition, never an exception);
2. plan the checkpoint and find which folder the pods may serve;
3. check the Secrets the pods would need (a missing one holds back the rollout);
4. render every child with ``builders``; apply only those the live object does not match
   (``compare``), delete the ones no longer wanted (old fetch Jobs, HPA, PDB);
5. compute the status (``status.compute``) and write it only if it changed;
6. post the Events the changes deserve.

A reconcile that finds nothing to do makes no API request at all.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from voice_operator import compare, config, kube, metrics, naming, spec, status
from voice_operator.builders import (
    autoscaling,
    checkpoint,
    common,
    deployment,
    disruption,
    service,
)

logger = logging.getLogger(__name__)

CHILD_KINDS = ("Deployment", "Service", "PersistentVolumeClaim", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget")
EVENT_COMPONENT = "voice-operator"
SECRET_REASONS = frozenset({"SecretNotFound", "SecretCheckFailed"})  # a later reconcile looks again


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A VoiceService and its children as the watch caches last saw them."""

    service: Mapping[str, Any]
    children: Mapping[str, Mapping[str, Mapping[str, Any]]]  # kind -> name -> live object
    pods: Sequence[Mapping[str, Any]] = ()


@dataclasses.dataclass
class Result:
    wrote: bool = False
    retry: bool = False  # something failed that a later attempt may fix (backoff)
    tally: kube.Tally = dataclasses.field(default_factory=kube.Tally)
    events: list[status.Event] = dataclasses.field(default_factory=list)
    created: list[str] = dataclasses.field(default_factory=list)  # one Event for them all


class Memory:
    """What this replica wrote recently, so a reconcile running ahead of the watch
    (the cache not yet showing our own write) does not write the same thing twice.

    Entries are grouped by VoiceService and dropped with it (``forget``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (namespace, service) -> (kind, child name) -> (manifest hash, rv before, rv after)
        self._applied: dict[tuple[str, str], dict[tuple[str, str], tuple[str, str, str]]] = {}
        self._status: dict[tuple[str, str], dict[str, Any]] = {}

    def applied_unchanged(self, owner: tuple[str, str], child: tuple[str, str], desired_hash: str, live_rv: str) -> bool:
        with self._lock:
            entry = self._applied.get(owner, {}).get(child)
        return entry is not None and entry[0] == desired_hash and live_rv in entry[1:]

    def remember_apply(self, owner: tuple[str, str], child: tuple[str, str], desired_hash: str, rv_before: str, rv_after: str) -> None:
        with self._lock:
            self._applied.setdefault(owner, {})[child] = (desired_hash, rv_before, rv_after)

    def last_status(self, owner: tuple[str, str]) -> dict[str, Any] | None:
        with self._lock:
            return self._status.get(owner)

    def remember_status(self, owner: tuple[str, str], value: dict[str, Any]) -> None:
        with self._lock:
            self._status[owner] = value

    def forget(self, owner: tuple[str, str]) -> None:
        with self._lock:
            self._applied.pop(owner, None)
            self._status.pop(owner, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._applied.keys() | self._status.keys())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def spec_errors(err: pydantic.ValidationError) -> str:
    """A pydantic error as one readable line: 'spec.engine.queueSize: ...; ...'."""
    parts = []
    for item in err.errors()[:5]:
        where = ".".join(str(p) for p in ("spec", *item["loc"]))
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _referenced_secrets(s: spec.VoiceServiceSpec) -> list[tuple[str, str, str]]:
    """(secret name, spec field, the child that needs it)."""
    out = []
    if s.api_key_secret is not None:
        out.append((s.api_key_secret.name, "spec.apiKeySecret", "Deployment"))
    refs = s.references
    if refs.storage == "huggingface" and refs.huggingface is not None and refs.huggingface.token_secret is not None:
        out.append((refs.huggingface.token_secret.name, "spec.references.huggingface.tokenSecret", "Deployment"))
    if refs.storage == "s3" and refs.s3 is not None and refs.s3.credentials_secret is not None:
        out.append((refs.s3.credentials_secret.name, "spec.references.s3.credentialsSecret", "Deployment"))
    if s.checkpoint is not None:
        src = s.checkpoint.source
        if src.huggingface is not None and src.huggingface.token_secret is not None:
            out.append((src.huggingface.token_secret.name, "spec.checkpoint.source.huggingface.tokenSecret", "Job"))
        if src.s3 is not None and src.s3.credentials_secret is not None:
            out.append((src.s3.credentials_secret.name, "spec.checkpoint.source.s3.credentialsSecret", "Job"))
    return out


def _served(
    plan: checkpoint.Plan,
    job: Mapping[str, Any] | None,
    job_pods: Sequence[Mapping[str, Any]],
    live_deployment: Mapping[str, Any] | None,
    requested_revision: str,
) -> status.Served | None:
    """Which checkpoint folder the pods may be given now.

    The desired source's folder once its Job succeeded; until then whatever the live
    Deployment serves (a new revision downloads beside the old one); None when nothing
    has been fetched yet, so no pod starts without its model.
    """
    annotations = (live_deployment or {}).get("metadata", {}).get("annotations", {}) or {}
    live_folder = annotations.get(naming.CHECKPOINT_ANNOTATION)
    if plan.mode == "existing":
        return status.Served(folder=plan.folder, source=plan.source, revision=plan.folder or "/")
    if plan.mode != "fetch":
        return None
    if status.job_finished(job) == "Complete":
        if live_folder == plan.folder and annotations.get(naming.SOURCE_ANNOTATION) == plan.source:
            # Keep what was recorded when this folder was first served (no flapping).
            return status.Served(plan.folder, plan.source, annotations.get(naming.REVISION_ANNOTATION, requested_revision))
        return status.Served(plan.folder, plan.source, _reported_revision(job_pods) or requested_revision)
    if live_folder:
        return status.Served(
            live_folder, annotations.get(naming.SOURCE_ANNOTATION, ""), annotations.get(naming.REVISION_ANNOTATION, "")
        )
    return None


def _reported_revision(job_pods: Sequence[Mapping[str, Any]]) -> str:
    """The commit voice-fetch-checkpoint wrote to its termination message, if any."""
    for pod in job_pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if not message:
                continue
            try:
                return str(json.loads(message).get("revision") or "")
            except (ValueError, AttributeError):
                continue
    return ""


def _requested_revision(s: spec.VoiceServiceSpec) -> str:
    if s.checkpoint is None:
        return ""
    src = s.checkpoint.source
    if src.huggingface is not None:
        return src.huggingface.revision
    if src.s3 is not None:
        return src.s3.uri
    return ""


def reconcile(
    api: kube.Kube,
    snapshot: Snapshot,
    defaults: config.Defaults,
    memory: Memory,
    now: datetime.datetime | None = None,
) -> Result:
    """Bring one VoiceService's children and status in line with its spec."""
    now = now or _now()
    body = snapshot.service
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    generation = int(meta.get("generation", 1))
    result = Result(tally=api.tally)
    if meta.get("deletionTimestamp"):
        return result  # garbage collection takes the children

    owner = (namespace, name)
    previous_status = memory.last_status(owner) or dict(body.get("status") or {})

    try:
        parsed = spec.VoiceServiceSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as err:
        _write_invalid(api, body, generation, spec_errors(err), previous_status, memory, result, now)
        return result

    ctx = common.Context(name=name, namespace=namespace, uid=uid, spec=parsed, defaults=defaults)
    plan = checkpoint.plan(ctx)
    children = {kind: dict(snapshot.children.get(kind, {})) for kind in CHILD_KINDS}
    live_deployment = children["Deployment"].get(naming.deployment(name))
    job = children["Job"].get(plan.job_name) if plan.job_name else None
    job_pods = [p for p in snapshot.pods if (p.get("metadata", {}).get("labels") or {}).get("job-name") == plan.job_name]
    inference_pods = [
        p for p in snapshot.pods if (p.get("metadata", {}).get("labels") or {}).get(naming.COMPONENT_LABEL) == naming.INFERENCE
    ]

    problems: list[status.Problem] = []
    blocked: set[str] = set()  # children held back (a Secret they need is missing)
    previous_reasons = {c.get("reason") for c in previous_status.get("conditions", []) if isinstance(c, Mapping)}
    # Checked once per generation, and again while the last check found a problem (the
    # Secret problems come first, so the Degraded reason names one whenever there was one).
    needs_secret_check = previous_status.get("observedGeneration") != generation or bool(previous_reasons & SECRET_REASONS)
    if needs_secret_check:
        for secret_name, field, child in _referenced_secrets(parsed):
            try:
                found = api.get("Secret", namespace, secret_name, metadata_only=True)
            except kube.KubeError as err:
                if err.status == 403:
                    logger.warning(
                        "not allowed to read Secret %s/%s (%s): the operator's RBAC lacks get on secrets there",
                        namespace, secret_name, field,
                    )
                problems.append(status.Problem("SecretCheckFailed", f"cannot read Secret {secret_name} ({field}): {err.message}"))
                result.retry = True
                continue
            if found is None:
                problems.append(status.Problem("SecretNotFound", f"Secret {secret_name} ({field}) not found in namespace {namespace}"))
                blocked.add(child)
                result.retry = True

    served = _served(plan, job, job_pods, live_deployment, _requested_revision(parsed))

    desired: list[dict[str, Any]] = [service.service(ctx)]
    desired_hash = None
    if plan.mode == "fetch":
        desired.append(checkpoint.claim(ctx))
        desired.append(checkpoint.fetch_job(ctx, plan))
    if plan.mode != "fetch" or served is not None:
        dep = deployment.deployment(ctx, plan, served.folder if served else None)
        if served is not None and plan.mode == "fetch":
            dep["metadata"]["annotations"][naming.SOURCE_ANNOTATION] = served.source
            dep["metadata"]["annotations"][naming.REVISION_ANNOTATION] = served.revision
        desired_hash = dep["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION]
        desired.append(dep)
    if autoscaling.wanted(ctx):
        desired.append(autoscaling.autoscaler(ctx))
    if disruption.wanted(ctx):
        desired.append(disruption.disruption_budget(ctx))

    spec_changed = previous_status.get("observedGeneration") != generation
    wanted_names = {(m["kind"], m["metadata"]["name"]) for m in desired}
    for manifest in desired:
        kind, child_name = manifest["kind"], manifest["metadata"]["name"]
        if kind in blocked:
            continue
        live = children[kind].get(child_name)
        if kind == "Job" and live is not None:
            # A Job's pod template is immutable: a failed Job whose spec changed is replaced
            # (the fix may be in the new spec); a running or finished one is left alone.
            failed = status.job_finished(live) == "Failed"
            changed = not compare.is_subset(manifest["spec"]["template"], live["spec"]["template"])
            if failed and changed and _delete(api, kind, namespace, child_name, live, result, problems):
                result.events.append(status.Event("Normal", "FetchRestarted", f"replacing failed Job {child_name} with the new spec"))
                children[kind].pop(child_name, None)
            continue
        applied = _apply(api, owner, manifest, live, memory, result, problems, spec_changed)
        if applied is not None:
            children[kind][child_name] = applied

    if result.created:
        result.events.append(status.Event("Normal", "Created", "created " + ", ".join(result.created)))

    # Children that are ours but no longer wanted: old fetch Jobs, a disabled HPA or PDB,
    # the fetch claim after switching to an existing one (unless it is retained).
    for kind in ("Job", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PersistentVolumeClaim"):
        for child_name, live in list(children[kind].items()):
            if (kind, child_name) in wanted_names or not _owned_by(live, uid):
                continue
            if _delete(api, kind, namespace, child_name, live, result, problems):
                children[kind].pop(child_name, None)

    claim = None
    if plan.claim_name:
        claim = children["PersistentVolumeClaim"].get(plan.claim_name)
        if claim is None and plan.mode == "existing":
            try:
                claim = api.get("PersistentVolumeClaim", namespace, plan.claim_name)
            except kube.KubeError as err:
                problems.append(status.Problem("ClaimCheckFailed", f"cannot read PersistentVolumeClaim {plan.claim_name}: {err.message}"))
                result.retry = True
        if plan.mode == "existing" and (claim or {}).get("status", {}).get("phase") != "Bound":
            result.retry = True  # not ours, so not watched: look again later, with backoff

    observation = status.Observation(
        ctx=ctx,
        generation=generation,
        plan=plan,
        desired_hash=desired_hash,
        served=served,
        deployment=children["Deployment"].get(naming.deployment(name)),
        pods=inference_pods,
        job=children["Job"].get(plan.job_name) if plan.job_name else None,
        job_pods=job_pods,
        claim=claim,
        problems=problems,
        previous=previous_status,
    )
    new_status, events = status.compute(observation, now)
    result.events.extend(events)
    _write_status(api, body, new_status, previous_status, memory, result)
    _post_events(api, body, result)
    return result


def _owned_by(live: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (live.get("metadata", {}).get("ownerReferences") or []))


def _apply(
    api: kube.Kube,
    owner: tuple[str, str],
    manifest: dict[str, Any],
    live: Mapping[str, Any] | None,
    memory: Memory,
    result: Result,
    problems: list[status.Problem],
    spec_changed: bool,
) -> dict[str, Any] | None:
    kind, meta = manifest["kind"], manifest["metadata"]
    child = (kind, meta["name"])
    desired_hash = naming.stable_hash(manifest)
    live_rv = str((live or {}).get("metadata", {}).get("resourceVersion", ""))
    drift: list[str] = []
    if live is not None:
        if compare.is_subset(manifest, live):
            return None
        if memory.applied_unchanged(owner, child, desired_hash, live_rv):
            return None  # our own write, not yet in the cache (or a value the server normalizes)
        drift = compare.differences(manifest, live, limit=5)
    try:
        applied = api.apply(manifest)
    except kube.KubeError as err:
        problems.append(status.Problem("ApplyFailed", f"{kind} {meta['name']}: {err.message}"))
        result.retry = True
        logger.warning("apply %s %s/%s failed: %s", kind, meta["namespace"], meta["name"], err)
        return None
    result.wrote = True
    new_rv = str(applied.get("metadata", {}).get("resourceVersion", ""))
    memory.remember_apply(owner, child, desired_hash, live_rv, new_rv)
    if live is None:
        metrics.CHILD_WRITES.labels(kind=kind, action="create").inc()
        result.created.append(f"{kind} {meta['name']}")
    elif new_rv != live_rv:
        metrics.CHILD_WRITES.labels(kind=kind, action="update").inc()
        if spec_changed:
            result.events.append(status.Event("Normal", "Updated", f"updated {kind} {meta['name']}: {', '.join(drift)}"))
        else:
            result.events.append(
                status.Event("Warning", "DriftRepaired", f"{kind} {meta['name']} was changed outside the operator; restored {', '.join(drift)}")
            )
    return applied


def _delete(
    api: kube.Kube,
    kind: str,
    namespace: str,
    name: str,
    live: Mapping[str, Any],
    result: Result,
    problems: list[status.Problem],
) -> bool:
    try:
        api.delete(kind, namespace, name, uid=live.get("metadata", {}).get("uid"))
    except kube.KubeError as err:
        problems.append(status.Problem("DeleteFailed", f"{kind} {name}: {err.message}"))
        result.retry = True
        return False
    result.wrote = True
    metrics.CHILD_WRITES.labels(kind=kind, action="delete").inc()
    result.events.append(status.Event("Normal", "Deleted", f"deleted {kind} {name} (no longer wanted)"))
    return True


def _write_status(
    api: kube.Kube,
    body: Mapping[str, Any],
    new_status: dict[str, Any],
    previous: Mapping[str, Any],
    memory: Memory,
    result: Result,
) -> None:
    meta = body["metadata"]
    current = dict(body.get("status") or {})
    if status.same_status(current, new_status) or status.same_status(previous, new_status):
        return
    patch: dict[str, Any] = dict(new_status)
    for key in current:
        if key not in new_status:
            patch[key] = None  # merge patch: remove what no longer applies
    try:
        api.patch_status("VoiceService", meta["namespace"], meta["name"], patch)
    except kube.KubeError as err:
        if err.status != 404:  # a deleted VoiceService needs no status
            logger.warning("status of %s/%s not written: %s", meta["namespace"], meta["name"], err)
            result.retry = True
        return
    result.wrote = True
    memory.remember_status((meta["namespace"], meta["name"]), new_status)


def _write_invalid(
    api: kube.Kube,
    body: Mapping[str, Any],
    generation: int,
    message: str,
    previous: Mapping[str, Any],
    memory: Memory,
    result: Result,
    now: datetime.datetime,
) -> None:
    """A spec the schema let through but the model rejects: say so, change nothing else."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    old = {c.get("type"): c for c in previous.get("conditions", []) if isinstance(c, Mapping)}
    conditions = []
    for kind, st, reason in (
        ("Ready", "False", "InvalidSpec"),
        ("Progressing", "False", "InvalidSpec"),
        ("Degraded", "True", "InvalidSpec"),
    ):
        since = old.get(kind, {}).get("lastTransitionTime") if old.get(kind, {}).get("status") == st else None
        conditions.append({
            "type": kind, "status": st, "reason": reason, "message": message,
            "lastTransitionTime": since or stamp, "observedGeneration": generation,
        })
    for kind in ("CheckpointReady",):
        if kind in old:
            conditions.append(dict(old[kind]))
    new_status = {**{k: v for k, v in previous.items() if k != "conditions"}, "observedGeneration": generation, "conditions": conditions}
    if old.get("Degraded", {}).get("reason") != "InvalidSpec":
        result.events.append(status.Event("Warning", "InvalidSpec", message))
    _write_status(api, body, new_status, previous, memory, result)
    _post_events(api, body, result)


def _post_events(api: kube.Kube, body: Mapping[str, Any], result: Result) -> None:
    involved = {"apiVersion": spec.API_VERSION, "kind": spec.KIND, "metadata": body["metadata"]}
    for event in result.events:
        try:
            api.post_event(involved, type=event.type, reason=event.reason, message=event.message, component=EVENT_COMPONENT)
        except kube.KubeError as err:  # Events are best effort
            logger.info("event %s not posted: %s", event.reason, err)
