"""One reconcile of one VoiceService: render children, apply what differs, write the status.

Called by ``controller`` (in a worker thread) with a ``Snapshot`` taken from kopf's
in-memory indexes, so reading the world costs no API request. The flow:

1. parse the spec (an invalid one becomes a condition, never an exception);
2. plan the checkpoint and find which folder the pods may serve (``checkpoints``);
3. check the Secrets the pods would need (``secret_refs``; a missing one holds back the rollout);
4. render every child with ``builders``; apply only those the live object does not match
   (``writes.apply``), delete the ones no longer wanted (old fetch Jobs, HPA, PDB);
5. compute the status (``status.compute``) and write it only if it changed;
6. post the Events the changes deserve.

A reconcile that finds nothing to do makes no API request at all.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from voice_operator import (
    checkpoints,
    compare,
    config,
    kinds,
    kube,
    naming,
    secret_refs,
    spec,
    status,
    writes,
)
from voice_operator.builders import (
    autoscaling,
    checkpoint,
    common,
    deployment,
    disruption,
    service,
)

Children = dict[str, dict[str, Mapping[str, Any]]]  # kind -> name -> live object


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A VoiceService and its children as the watch caches last saw them."""

    service: Mapping[str, Any]
    children: Mapping[str, Mapping[str, Mapping[str, Any]]]  # kind -> name -> live object
    pods: Sequence[Mapping[str, Any]] = ()


@dataclasses.dataclass(frozen=True)
class Rendered:
    """The children the spec wants now."""

    manifests: list[dict[str, Any]]
    desired_hash: str | None  # of the Deployment's pod template; None: no Deployment yet


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def spec_errors(err: pydantic.ValidationError) -> str:
    """A pydantic error as one readable line: 'spec.engine.queueSize: ...; ...'."""
    parts = []
    for item in err.errors()[:5]:
        where = ".".join(str(p) for p in ("spec", *item["loc"]))
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _labelled(pods: Sequence[Mapping[str, Any]], label: str, value: str | None) -> list[Mapping[str, Any]]:
    return [p for p in pods if (p.get("metadata", {}).get("labels") or {}).get(label) == value]


def _owned_by(live: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (live.get("metadata", {}).get("ownerReferences") or []))


def reconcile(
    api: kube.Kube,
    snapshot: Snapshot,
    defaults: config.Defaults,
    memory: writes.Memory,
    now: datetime.datetime | None = None,
) -> writes.Result:
    """Bring one VoiceService's children and status in line with its spec."""
    now = now or _now()
    body = snapshot.service
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    generation = int(meta.get("generation", 1))
    result = writes.Result(tally=api.tally)
    if meta.get("deletionTimestamp"):
        return result  # garbage collection takes the children
    owner = (namespace, name)
    previous = memory.last_status(owner) or dict(body.get("status") or {})

    # 1. The spec.
    try:
        parsed = spec.VoiceServiceSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as err:
        new_status, events = status.invalid(generation, spec_errors(err), previous, now)
        writes.write_status(api, body, new_status, previous, memory, result)
        writes.post_events(api, body, events)
        return result
    ctx = common.Context(name=name, namespace=namespace, uid=uid, spec=parsed, defaults=defaults)

    # 2. The checkpoint.
    plan = checkpoint.plan(ctx)
    children: Children = {kind.name: dict(snapshot.children.get(kind.name, {})) for kind in kinds.CHILDREN}
    job_pods = _labelled(snapshot.pods, "job-name", plan.job_name)
    served = checkpoints.served(
        plan,
        children[kinds.JOB.name].get(plan.job_name) if plan.job_name else None,
        job_pods,
        children[kinds.DEPLOYMENT.name].get(naming.deployment(name)),
        checkpoints.requested_revision(parsed),
    )

    # 3. The Secrets: once per generation, and again while the last check found a problem
    # (its problems come first, so the Degraded reason names one whenever there was one).
    previous_reasons = {c.get("reason") for c in previous.get("conditions", []) if isinstance(c, Mapping)}
    spec_changed = previous.get("observedGeneration") != generation
    secrets = secret_refs.Check()
    if spec_changed or previous_reasons & secret_refs.REASONS:
        secrets = secret_refs.check(api, namespace, parsed)
    result.problems.extend(secrets.problems)
    result.retry = result.retry or secrets.retry

    # 4. The children.
    rendered = _render(ctx, plan, served)
    _apply_children(api, owner, rendered, children, secrets.blocked, memory, result, spec_changed)
    if result.created:
        result.events.append(status.Event("Normal", "Created", "created " + ", ".join(result.created)))
    _prune(api, namespace, uid, rendered, children, result)

    # 5. The status.
    observation = status.Observation(
        ctx=ctx,
        generation=generation,
        plan=plan,
        desired_hash=rendered.desired_hash,
        served=served,
        deployment=children[kinds.DEPLOYMENT.name].get(naming.deployment(name)),
        pods=_labelled(snapshot.pods, naming.COMPONENT_LABEL, naming.INFERENCE),
        job=children[kinds.JOB.name].get(plan.job_name) if plan.job_name else None,
        job_pods=job_pods,
        claim=_claim(api, namespace, plan, children, result),
        problems=result.problems,
        previous=previous,
    )
    new_status, events = status.compute(observation, now)
    result.events.extend(events)
    writes.write_status(api, body, new_status, previous, memory, result)

    # 6. The Events.
    writes.post_events(api, body, result.events)
    return result


def _render(ctx: common.Context, plan: checkpoint.Plan, served: checkpoints.Served | None) -> Rendered:
    """Every child the spec wants; the Deployment only once its checkpoint can be served."""
    manifests: list[dict[str, Any]] = [service.service(ctx)]
    desired_hash = None
    if plan.mode == "fetch":
        manifests.append(checkpoint.claim(ctx))
        manifests.append(checkpoint.fetch_job(ctx, plan))
    if plan.mode != "fetch" or served is not None:
        dep = deployment.deployment(ctx, plan, served.folder if served else None)
        if served is not None and plan.mode == "fetch":
            dep["metadata"]["annotations"][naming.SOURCE_ANNOTATION] = served.source
            dep["metadata"]["annotations"][naming.REVISION_ANNOTATION] = served.revision
        desired_hash = dep["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION]
        manifests.append(dep)
    if autoscaling.wanted(ctx):
        manifests.append(autoscaling.autoscaler(ctx))
    if disruption.wanted(ctx):
        manifests.append(disruption.disruption_budget(ctx))
    return Rendered(manifests, desired_hash)


def _apply_children(
    api: kube.Kube,
    owner: writes.Owner,
    rendered: Rendered,
    children: Children,
    blocked: set[str],
    memory: writes.Memory,
    result: writes.Result,
    spec_changed: bool,
) -> None:
    """Apply what differs from the live objects; ``children`` then shows what was written."""
    namespace = owner[0]
    for manifest in rendered.manifests:
        kind, child_name = manifest["kind"], manifest["metadata"]["name"]
        if kind in blocked:
            continue
        live = children[kind].get(child_name)
        if kind == kinds.JOB.name and live is not None:
            # A Job's pod template is immutable: a failed Job whose spec changed is replaced
            # (the fix may be in the new spec); a running or finished one is left alone.
            failed = checkpoints.job_finished(live) == "Failed"
            changed = not compare.is_subset(manifest["spec"]["template"], live["spec"]["template"])
            if failed and changed and writes.delete(api, kind, namespace, child_name, live, result):
                result.events.append(status.Event("Normal", "FetchRestarted", f"replacing failed Job {child_name} with the new spec"))
                children[kind].pop(child_name, None)
            continue
        applied = writes.apply(api, owner, manifest, live, memory, result, spec_changed)
        if applied is not None:
            children[kind][child_name] = applied


def _prune(api: kube.Kube, namespace: str, uid: str, rendered: Rendered, children: Children, result: writes.Result) -> None:
    """Delete children that are ours but no longer wanted: old fetch Jobs, a disabled HPA or
    PDB, the fetch claim after switching to an existing one (unless it is retained)."""
    wanted = {(m["kind"], m["metadata"]["name"]) for m in rendered.manifests}
    for kind in (k.name for k in kinds.CHILDREN if k.pruned):
        for child_name, live in list(children[kind].items()):
            if (kind, child_name) in wanted or not _owned_by(live, uid):
                continue
            if writes.delete(api, kind, namespace, child_name, live, result):
                children[kind].pop(child_name, None)


def _claim(api: kube.Kube, namespace: str, plan: checkpoint.Plan, children: Children, result: writes.Result) -> Mapping[str, Any] | None:
    """The checkpoint claim: ours from the cache; an existing one (not ours, so not watched) read."""
    if not plan.claim_name:
        return None
    claim = children[kinds.CLAIM.name].get(plan.claim_name)
    if claim is None and plan.mode == "existing":
        try:
            claim = api.get(kinds.CLAIM.name, namespace, plan.claim_name)
        except kube.KubeError as err:
            result.problems.append(
                status.Problem("ClaimCheckFailed", f"cannot read PersistentVolumeClaim {plan.claim_name}: {err.message}")
            )
            result.retry = True
    if plan.mode == "existing" and (claim or {}).get("status", {}).get("phase") != "Bound":
        result.retry = True  # look again later, with backoff
    return claim
