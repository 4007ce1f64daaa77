"""The VoiceService status, computed in one place from what the children report.

Called by ``reconcile`` after it has applied the children: ``compute`` takes an
``Observation`` (live Deployment, pods, fetch Job, claim, the problems reconcile met) and
returns the whole status plus the Events that its condition transitions deserve;
``invalid`` is the status of a spec the model rejects. Pure: the time is a parameter,
nothing is read from the API, so every rule is unit-tested.

Conditions: ``CheckpointReady`` (the desired checkpoint is in its claim), ``Progressing``
(a fetch or rollout is under way), ``Degraded`` (something needs a human: a failed fetch,
a stuck rollout, crash-looping or never-ready pods, a missing Secret, an apply the API
refused) and ``Ready`` (every desired pod runs the current template and is available).

The Deployment's counts and the pods' own states reach the watch caches at different
moments, so either may be behind the other. A replica counts as ready only when both
agree: the Deployment counts it and a live pod reports Ready with no problem. So a pod
problem that makes the service Degraded always keeps it from being Ready, whichever
object was seen last.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from voice_operator import checkpoints, naming, objects
from voice_operator.builders import checkpoint as checkpoint_builder
from voice_operator.builders import common
from voice_operator.objects import FALSE, TRUE


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something wrong that a condition reports: a machine reason and a human message."""

    reason: str
    message: str


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
    served: checkpoints.Served | None
    deployment: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]] = ()  # the inference pods (reconcile selects them)
    job: Mapping[str, Any] | None = None
    job_pods: Sequence[Mapping[str, Any]] = ()
    claim: Mapping[str, Any] | None = None
    problems: Sequence[Problem] = ()
    previous: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# -- pods and rollout --------------------------------------------------------------------


def _pod_problem(pod: Mapping[str, Any]) -> Problem | None:
    name = pod["metadata"]["name"]
    stuck = objects.bad_waiting(pod)
    if stuck is not None:
        cs, waiting = stuck
        restarts = cs.get("restartCount", 0)
        detail = waiting.get("message") or ""
        last = objects.get(cs, "lastState", "terminated")
        if last:
            detail = f"last exit {last.get('exitCode')} ({last.get('reason', '')}); {detail}".strip("; ")
        return Problem(waiting["reason"], f"pod {name}: container {cs.get('name')} {waiting['reason']} after {restarts} restarts: {detail}".rstrip(": "))
    statuses = objects.get(pod, "status", "containerStatuses", default=[])
    if objects.get(pod, "status", "phase") == "Running" and statuses:
        started = all(cs.get("started") for cs in statuses)
        ready = all(cs.get("ready") for cs in statuses)
        if started and not ready:
            cond = objects.condition(pod, "Ready") or {}
            why = cond.get("message") or cond.get("reason") or "readiness probe failing"
            return Problem("PodsNotReady", f"pod {name} started but is not ready: {why}")
    return None


def pod_problems(pods: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Pods that will not get better by waiting: crash loops, bad images, failing readiness."""
    return [problem for pod in objects.live_pods(pods) if (problem := _pod_problem(pod)) is not None]


def pods_ready(pods: Iterable[Mapping[str, Any]]) -> int:
    """Live pods that report Ready themselves and show no problem (what a replica must be to count)."""
    return sum(
        1 for pod in objects.live_pods(pods)
        if (objects.condition(pod, "Ready") or {}).get("status") == TRUE and _pod_problem(pod) is None
    )


def unschedulable(pods: Iterable[Mapping[str, Any]]) -> str:
    for pod in objects.live_pods(pods):
        cond = objects.condition(pod, "PodScheduled")
        if cond and cond.get("status") == FALSE and cond.get("reason") == "Unschedulable":
            return f"pod {pod['metadata']['name']} cannot be scheduled: {cond.get('message', '')}".rstrip(": ")
    return ""


@dataclasses.dataclass(frozen=True)
class Rollout:
    replicas: int  # the Deployment's
    ready: int  # counted: ready by the Deployment and by the pods' own states
    updated: int  # the Deployment's
    available: int  # counted: available by the Deployment and ready by the pods' own states
    observed: bool  # the Deployment's status describes its current spec
    serving: bool  # every desired pod runs the current template and is available (counted)
    complete: bool  # the Deployment finished: current template everywhere, old or extra pods gone
    template_changed: bool  # pods of an older template remain (a rollout, not a scale)
    stuck: str  # message when the Deployment reports ProgressDeadlineExceeded


def rollout(obs: Observation) -> Rollout:
    d = obs.deployment
    desired = obs.ctx.spec.replicas
    st = objects.get(d, "status", default={})
    replicas, updated = int(st.get("replicas", 0)), int(st.get("updatedReplicas", 0))
    agreeing = pods_ready(obs.pods)
    ready = min(int(st.get("readyReplicas", 0)), agreeing)
    available = min(int(st.get("availableReplicas", 0)), agreeing)
    live_hash = objects.get(d, "metadata", "annotations", naming.TEMPLATE_HASH_ANNOTATION)
    observed = int(st.get("observedGeneration", 0)) >= int(objects.get(d, "metadata", "generation", default=0))
    old_pods = [
        p for p in objects.live_pods(obs.pods)
        if objects.get(p, "metadata", "annotations", naming.TEMPLATE_HASH_ANNOTATION) != obs.desired_hash
    ]
    template_changed = d is not None and (live_hash != obs.desired_hash or bool(old_pods))
    rolled_out = (
        d is not None and observed and not template_changed
        and updated >= desired and int(st.get("availableReplicas", 0)) >= desired
    )
    serving = rolled_out and available >= desired
    complete = rolled_out and objects.get(d, "spec", "replicas", default=desired) == desired and replicas <= desired
    progressing = objects.condition(d, "Progressing") or {}
    stuck = ""
    if progressing.get("reason") == "ProgressDeadlineExceeded" and not complete:
        stuck = f"Deployment {naming.deployment(obs.ctx.name)}: {progressing.get('message', 'progress deadline exceeded')}"
    return Rollout(replicas, ready, updated, available, observed, serving, complete, template_changed, stuck)


# -- assembling ----------------------------------------------------------------------------


def _stamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _by_type(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type"): c for c in status.get("conditions", []) if isinstance(c, Mapping)}


def _conditions(
    wanted: Sequence[tuple[str, str, str, str]],
    previous: Mapping[str, Mapping[str, Any]],
    generation: int,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """Conditions from (type, status, reason, message); a status that holds keeps its transition time."""
    out = []
    for kind, st, reason, message in wanted:
        old = previous.get(kind)
        since = old.get("lastTransitionTime") if old and old.get("status") == st else None
        out.append({
            "type": kind,
            "status": st,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since or _stamp(now),
            "observedGeneration": generation,
        })
    return out


def compute(obs: Observation, now: datetime.datetime) -> tuple[dict[str, Any], list[Event]]:
    """The full status (camelCase, ready to write) and the Events its transitions warrant."""
    ctx = obs.ctx
    desired = ctx.spec.replicas
    ro = rollout(obs)

    ck_status, ck_reason, ck_message = checkpoints.condition(obs.plan, ctx.spec.engine.provider, obs.job, obs.job_pods, obs.claim)

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

    # Ready: counted replicas only (see the module docstring).
    previous = _by_type(obs.previous)
    previous_ready = previous.get("Ready")
    if desired == 0:
        ready = (FALSE, "ScaledToZero", "spec.replicas is 0")
    elif obs.deployment is None:
        ready = (FALSE, "CheckpointNotReady" if obs.desired_hash is None else "Creating", ck_message if obs.desired_hash is None else progressing[2])
    elif ro.serving:
        ready = (TRUE, "Available", f"all {desired} pod(s) ready at {ctx.endpoint}")
    elif (
        not ro.observed and not ro.template_changed and previous_ready is not None and degraded[0] == FALSE
        and ro.ready >= int(obs.previous.get("readyReplicas", 0))
    ):
        # The Deployment has not yet looked at its new spec: its counts are stale, so keep
        # saying what was true rather than flap (as long as the pods still bear it out).
        ready = (previous_ready["status"], previous_ready["reason"], previous_ready.get("message", ""))
    else:
        waiting_on = unschedulable(obs.pods)
        if degraded[0] == TRUE:
            ready = (FALSE, degraded[1], f"{ro.ready}/{desired} pods ready; {degraded[2]}")
        elif waiting_on:
            ready = (FALSE, "Unschedulable", f"{ro.ready}/{desired} pods ready; {waiting_on}")
        else:
            ready = (FALSE, "RollingOut" if ro.updated < desired or ro.replicas > desired else "PodsStarting", f"{ro.ready}/{desired} pods ready")

    conditions = _conditions(
        [("Ready", *ready), ("Progressing", *progressing), ("Degraded", *degraded), ("CheckpointReady", ck_status, ck_reason, ck_message)],
        previous, obs.generation, now,
    )

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


def invalid(generation: int, message: str, previous: Mapping[str, Any], now: datetime.datetime) -> tuple[dict[str, Any], list[Event]]:
    """The status of a spec the schema let through but the model rejects: the conditions say
    so; the rest (counts, endpoint, checkpoint) stays as last observed, since nothing changes."""
    old = _by_type(previous)
    conditions = _conditions(
        [("Ready", FALSE, "InvalidSpec", message), ("Progressing", FALSE, "InvalidSpec", message), ("Degraded", TRUE, "InvalidSpec", message)],
        old, generation, now,
    )
    if "CheckpointReady" in old:
        conditions.append(dict(old["CheckpointReady"]))
    new_status = {**{k: v for k, v in previous.items() if k != "conditions"}, "observedGeneration": generation, "conditions": conditions}
    return new_status, transition_events(old, conditions)


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
