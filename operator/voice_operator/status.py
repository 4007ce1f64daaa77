"""The VoiceService status, computed in one place from what the children report.

Called by ``reconcile`` after it has applied the children: ``compute`` takes an
``Observation`` (live Deployment, pods, fetch Job, claim, the problems reconcile met) and
returns the whole status plus the Events that its condition transitions deserve. Pure:
the time is a parameter, nothing is read from the API, so every rule is unit-tested.

Conditions: ``CheckpointReady`` (the desired checkpoint is in its claim), ``Progressing``
(a fetch or rollout is under way), ``Degraded`` (something needs a human: a failed fetch,
a stuck rollout, crash-looping or never-ready pods, a missing Secret, an apply the API
refused) and ``Ready`` (every desired pod runs the current template and is available).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from voice_operator import naming
from voice_operator.builders import checkpoint as checkpoint_builder
from voice_operator.builders import common

TRUE, FALSE = "True", "False"

# Container waiting reasons that will not clear up by waiting.
BAD_WAITING_REASONS = frozenset({
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
})


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something wrong that a condition reports: a machine reason and a human message."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Served:
    """The checkpoint the Deployment's pods are (or will be) given."""

    folder: str
    source: str
    revision: str


@dataclasses.dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Observation:
    """Everything ``compute`` looks at, gathered by ``reconcile``."""

    ctx: common.Context
    generation: int
    plan: checkpoint_builder.Plan
    desired_hash: str | None  # None: no Deployment rendered yet (checkpoint not ready)
    served: Served | None
    deployment: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]] = ()  # the inference pods (reconcile selects them)
    job: Mapping[str, Any] | None = None
    job_pods: Sequence[Mapping[str, Any]] = ()
    claim: Mapping[str, Any] | None = None
    problems: Sequence[Problem] = ()
    previous: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _get(obj: Any, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return default
        obj = obj.get(key)
    return default if obj is None else obj


def _condition(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    for cond in _get(obj, "status", "conditions", default=[]):
        if cond.get("type") == kind:
            return cond
    return None


def _live_pods(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in pods if not _get(p, "metadata", "deletionTimestamp")]


# -- checkpoint --------------------------------------------------------------------------


def job_finished(job: Mapping[str, Any] | None) -> str | None:
    """``Complete``, ``Failed`` or None for a Job still running (or absent)."""
    for kind in ("Complete", "Failed"):
        cond = _condition(job, kind)
        if cond is not None and cond.get("status") == TRUE:
            return kind
    return None


def _termination_message(pods: Iterable[Mapping[str, Any]]) -> str:
    for pod in pods:
        for cs in _get(pod, "status", "containerStatuses", default=[]):
            message = _get(cs, "state", "terminated", "message")
            if message:
                return str(message).strip()
    return ""


def _pod_waiting(pods: Iterable[Mapping[str, Any]]) -> str:
    for pod in _live_pods(pods):
        for cs in _get(pod, "status", "containerStatuses", default=[]):
            waiting = _get(cs, "state", "waiting")
            if waiting and waiting.get("reason") in BAD_WAITING_REASONS:
                return f"pod {pod['metadata']['name']}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    return ""


def _checkpoint(obs: Observation) -> tuple[str, str, str]:
    plan = obs.plan
    if plan.mode == "none":
        return TRUE, "NotRequired", f"engine {obs.ctx.spec.engine.provider} needs no checkpoint"
    claim_phase = _get(obs.claim, "status", "phase")
    if plan.mode == "existing":
        if obs.claim is None:
            return FALSE, "ClaimNotFound", f"PersistentVolumeClaim {plan.claim_name} not found"
        if claim_phase != "Bound":
            return FALSE, "ClaimPending", f"PersistentVolumeClaim {plan.claim_name} is {claim_phase or 'not bound'}"
        return TRUE, "ClaimBound", f"serving {plan.source}"
    finished = job_finished(obs.job)
    if finished == "Complete":
        return TRUE, "Fetched", f"{plan.source} is in {plan.claim_name}/{plan.folder}"
    if finished == "Failed":
        cond = _condition(obs.job, "Failed") or {}
        detail = _termination_message(obs.job_pods) or cond.get("message") or cond.get("reason", "")
        message = (
            f"Job {plan.job_name} could not fetch {plan.source}: {detail}. "
            f"Fix the source (a new Job starts) or delete Job {plan.job_name} to retry."
        )
        return FALSE, "FetchFailed", message
    if obs.claim is not None and claim_phase not in (None, "Bound"):
        return FALSE, "ClaimPending", f"PersistentVolumeClaim {plan.claim_name} is {claim_phase}"
    if obs.job is None:
        return FALSE, "FetchPending", f"starting Job {plan.job_name} to fetch {plan.source}"
    waiting = _pod_waiting(obs.job_pods)
    return FALSE, "Fetching", f"Job {plan.job_name} is fetching {plan.source}" + (f" ({waiting})" if waiting else "")


# -- pods and rollout --------------------------------------------------------------------


def pod_problems(pods: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Pods that will not get better by waiting: crash loops, bad images, failing readiness."""
    problems: list[Problem] = []
    for pod in _live_pods(pods):
        name = pod["metadata"]["name"]
        statuses = _get(pod, "status", "containerStatuses", default=[])
        bad = None
        for cs in statuses:
            waiting = _get(cs, "state", "waiting")
            if waiting and waiting.get("reason") in BAD_WAITING_REASONS:
                restarts = cs.get("restartCount", 0)
                detail = waiting.get("message") or ""
                last = _get(cs, "lastState", "terminated")
                if last:
                    detail = f"last exit {last.get('exitCode')} ({last.get('reason', '')}); {detail}".strip("; ")
                bad = Problem(waiting["reason"], f"pod {name}: container {cs.get('name')} {waiting['reason']} after {restarts} restarts: {detail}".rstrip(": "))
                break
        if bad is None and _get(pod, "status", "phase") == "Running" and statuses:
            started = all(cs.get("started") for cs in statuses)
            ready = all(cs.get("ready") for cs in statuses)
            if started and not ready:
                cond = _condition(pod, "Ready") or {}
                why = cond.get("message") or cond.get("reason") or "readiness probe failing"
                bad = Problem("PodsNotReady", f"pod {name} started but is not ready: {why}")
        if bad is not None:
            problems.append(bad)
    return problems


def unschedulable(pods: Iterable[Mapping[str, Any]]) -> str:
    for pod in _live_pods(pods):
        cond = _condition(pod, "PodScheduled")
        if cond and cond.get("status") == FALSE and cond.get("reason") == "Unschedulable":
            return f"pod {pod['metadata']['name']} cannot be scheduled: {cond.get('message', '')}".rstrip(": ")
    return ""


@dataclasses.dataclass(frozen=True)
class Rollout:
    replicas: int
    ready: int
    updated: int
    available: int
    observed: bool  # the Deployment's status describes its current spec
    serving: bool  # every desired pod runs the current template and is available
    complete: bool  # ...and nothing else is left to do (old or extra pods gone)
    template_changed: bool  # pods of an older template remain (a rollout, not a scale)
    stuck: str  # message when the Deployment reports ProgressDeadlineExceeded


def rollout(obs: Observation) -> Rollout:
    d = obs.deployment
    desired = obs.ctx.spec.replicas
    st = _get(d, "status", default={})
    replicas, ready = int(st.get("replicas", 0)), int(st.get("readyReplicas", 0))
    updated, available = int(st.get("updatedReplicas", 0)), int(st.get("availableReplicas", 0))
    live_hash = _get(d, "metadata", "annotations", naming.TEMPLATE_HASH_ANNOTATION)
    observed = int(st.get("observedGeneration", 0)) >= int(_get(d, "metadata", "generation", default=0))
    old_pods = [
        p for p in _live_pods(obs.pods)
        if _get(p, "metadata", "annotations", naming.TEMPLATE_HASH_ANNOTATION) != obs.desired_hash
    ]
    template_changed = d is not None and (live_hash != obs.desired_hash or bool(old_pods))
    serving = d is not None and observed and not template_changed and updated >= desired and available >= desired
    complete = serving and _get(d, "spec", "replicas", default=desired) == desired and replicas <= desired
    progressing = _condition(d, "Progressing") or {}
    stuck = ""
    if progressing.get("reason") == "ProgressDeadlineExceeded" and not complete:
        stuck = f"Deployment {naming.deployment(obs.ctx.name)}: {progressing.get('message', 'progress deadline exceeded')}"
    return Rollout(replicas, ready, updated, available, observed, serving, complete, template_changed, stuck)


# -- assembling ----------------------------------------------------------------------------


def _stamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compute(obs: Observation, now: datetime.datetime) -> tuple[dict[str, Any], list[Event]]:
    """The full status (camelCase, ready to write) and the Events its transitions warrant."""
    ctx = obs.ctx
    desired = ctx.spec.replicas
    ro = rollout(obs)

    ck_status, ck_reason, ck_message = _checkpoint(obs)

    # Degraded: the first problem names the reason; the message lists up to three.
    problems: list[Problem] = list(obs.problems)
    if ck_reason in ("FetchFailed", "ClaimNotFound"):
        problems.append(Problem({"FetchFailed": "CheckpointFetchFailed"}.get(ck_reason, ck_reason), ck_message))
    if ro.stuck:
        problems.append(Problem("ProgressDeadlineExceeded", ro.stuck))
    problems += pod_problems(obs.pods)
    if problems:
        extra = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        degraded = (TRUE, problems[0].reason, "; ".join(p.message for p in problems[:3]) + extra)
    else:
        degraded = (FALSE, "AsExpected", "no problems found")

    # Progressing.
    fetching = obs.plan.mode == "fetch" and ck_status == FALSE and ck_reason in ("FetchPending", "Fetching", "ClaimPending")
    if ro.stuck:
        progressing = (FALSE, "ProgressDeadlineExceeded", ro.stuck)
    elif obs.deployment is None and obs.desired_hash is None:
        progressing = (TRUE, "FetchingCheckpoint", ck_message) if fetching else (FALSE, "Waiting", ck_message)
    elif obs.deployment is None:
        progressing = (TRUE, "Creating", f"creating Deployment {naming.deployment(ctx.name)}")
    elif not ro.complete and ro.template_changed:
        progressing = (
            TRUE,
            "RollingOut",
            f"{ro.updated} of {desired} pods updated, {ro.available} available" + (f"; {ck_message}" if fetching else ""),
        )
    elif not ro.complete:
        progressing = (TRUE, "Scaling", f"{ro.available} of {desired} pods available, {ro.replicas} exist")
    elif fetching:
        progressing = (TRUE, "FetchingCheckpoint", ck_message)
    else:
        progressing = (FALSE, "RolloutComplete", f"{desired} pod(s) run template {obs.desired_hash}")

    # Ready.
    previous = {c.get("type"): c for c in obs.previous.get("conditions", []) if isinstance(c, Mapping)}
    previous_ready = previous.get("Ready")
    if desired == 0:
        ready = (FALSE, "ScaledToZero", "spec.replicas is 0")
    elif obs.deployment is None:
        ready = (FALSE, "CheckpointNotReady" if obs.desired_hash is None else "Creating", ck_message if obs.desired_hash is None else progressing[2])
    elif ro.serving:
        ready = (TRUE, "Available", f"all {desired} pod(s) ready at {ctx.endpoint}")
    elif not ro.observed and not ro.template_changed and previous_ready is not None and degraded[0] == FALSE:
        # The Deployment has not yet looked at its new spec: its counts are stale, so
        # keep saying what was true rather than flap.
        ready = (previous_ready["status"], previous_ready["reason"], previous_ready.get("message", ""))
    else:
        waiting_on = unschedulable(obs.pods)
        if degraded[0] == TRUE:
            ready = (FALSE, degraded[1], f"{ro.ready}/{desired} pods ready; {degraded[2]}")
        elif waiting_on:
            ready = (FALSE, "Unschedulable", f"{ro.ready}/{desired} pods ready; {waiting_on}")
        else:
            ready = (FALSE, "RollingOut" if ro.updated < desired or ro.replicas > desired else "PodsStarting", f"{ro.ready}/{desired} pods ready")

    conditions = []
    for kind, (st, reason, message) in (
        ("Ready", ready),
        ("Progressing", progressing),
        ("Degraded", degraded),
        ("CheckpointReady", (ck_status, ck_reason, ck_message)),
    ):
        old = previous.get(kind)
        since = old.get("lastTransitionTime") if old and old.get("status") == st else None
        conditions.append({
            "type": kind,
            "status": st,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since or _stamp(now),
            "observedGeneration": obs.generation,
        })

    result: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "conditions": conditions,
        "replicas": ro.replicas,
        "readyReplicas": ro.ready,
        "updatedReplicas": ro.updated,
        "availableReplicas": ro.available,
        "replicaSummary": f"{ro.ready}/{desired}",
        "selector": naming.selector_string(ctx.name),
        "endpoint": ctx.endpoint,
        "templateHash": obs.desired_hash,
    }
    if obs.plan.mode != "none":
        checkpoint: dict[str, Any] = {"source": obs.plan.source, "claimName": obs.plan.claim_name}
        if obs.served is not None:
            checkpoint["source"] = obs.served.source
            checkpoint["revision"] = obs.served.revision
        if obs.plan.job_name:
            checkpoint["jobName"] = obs.plan.job_name
        result["checkpoint"] = checkpoint
    result = {k: v for k, v in result.items() if v is not None}
    return result, transition_events(previous, conditions)


def transition_events(previous: Mapping[str, Mapping[str, Any]], conditions: Sequence[Mapping[str, Any]]) -> list[Event]:
    """Events for conditions whose status or reason changed since the last status."""
    events: list[Event] = []
    for cond in conditions:
        old = previous.get(cond["type"]) or {}
        if old.get("status") == cond["status"] and old.get("reason") == cond["reason"]:
            continue
        kind, st, reason, message = cond["type"], cond["status"], cond["reason"], cond["message"]
        if kind == "Ready" and st == TRUE:
            events.append(Event("Normal", "Ready", message))
        elif kind == "Ready" and old.get("status") == TRUE:
            events.append(Event("Warning", "NotReady", f"{reason}: {message}"))
        elif kind == "Degraded" and st == TRUE:
            events.append(Event("Warning", reason, message))
        elif kind == "Degraded" and old.get("status") == TRUE:
            events.append(Event("Normal", "Recovered", f"no longer degraded ({old.get('reason')})"))
        elif kind == "CheckpointReady" and st == TRUE and reason == "Fetched":
            events.append(Event("Normal", "CheckpointFetched", message))
        elif kind == "Progressing" and st == TRUE and reason == "RollingOut":
            events.append(Event("Normal", "RolloutStarted", message))
        elif kind == "Progressing" and reason == "RolloutComplete" and old.get("reason") == "RollingOut":
            events.append(Event("Normal", "RolloutComplete", message))
    return events


def same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` would change anything (so a no-op reconcile writes nothing)."""
    return dict(old) == dict(new)
