"""Checkpoint bookkeeping: which folder the pods may serve, and the CheckpointReady condition.

``builders.checkpoint`` decides what should exist (the claim, the fetch Job, the folder a
source hashes to); this module reads what does: the Job's outcome, the revision its pod
reported, the folder the live Deployment already serves. ``reconcile`` calls ``served``
to render the Deployment; ``status.compute`` calls ``condition``. Pure functions of live
objects (plain dicts from the watch caches).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from voice_operator import naming, objects, spec
from voice_operator.builders import checkpoint as checkpoint_builder
from voice_operator.objects import FALSE, TRUE


@dataclasses.dataclass(frozen=True)
class Served:
    """The checkpoint the Deployment's pods are (or will be) given."""

    folder: str
    source: str
    revision: str


def job_finished(job: Mapping[str, Any] | None) -> str | None:
    """``Complete``, ``Failed`` or None for a Job still running (or absent)."""
    for kind in ("Complete", "Failed"):
        cond = objects.condition(job, kind)
        if cond is not None and cond.get("status") == TRUE:
            return kind
    return None


def requested_revision(s: spec.VoiceServiceSpec) -> str:
    """The revision the spec asks for (a Hub revision, or the S3 URI itself)."""
    if s.checkpoint is None:
        return ""
    src = s.checkpoint.source
    if src.huggingface is not None:
        return src.huggingface.revision
    if src.s3 is not None:
        return src.s3.uri
    return ""


def _termination_messages(pods: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    for pod in pods:
        for cs in objects.get(pod, "status", "containerStatuses", default=[]):
            message = objects.get(cs, "state", "terminated", "message")
            if message:
                yield str(message).strip()


def reported_revision(job_pods: Sequence[Mapping[str, Any]]) -> str:
    """The commit voice-fetch-checkpoint wrote to its termination message, if any."""
    for message in _termination_messages(job_pods):
        try:
            return str(json.loads(message).get("revision") or "")
        except (ValueError, AttributeError):
            continue
    return ""


def served(
    plan: checkpoint_builder.Plan,
    job: Mapping[str, Any] | None,
    job_pods: Sequence[Mapping[str, Any]],
    live_deployment: Mapping[str, Any] | None,
    requested: str,
) -> Served | None:
    """Which checkpoint folder the pods may be given now.

    The desired source's folder once its Job succeeded; until then whatever the live
    Deployment serves (a new revision downloads beside the old one); None when nothing
    has been fetched yet, so no pod starts without its model.
    """
    annotations = objects.get(live_deployment, "metadata", "annotations", default={})
    live_folder = annotations.get(naming.CHECKPOINT_ANNOTATION)
    if plan.mode == "existing":
        return Served(folder=plan.folder, source=plan.source, revision=plan.folder or "/")
    if plan.mode != "fetch":
        return None
    if job_finished(job) == "Complete":
        if live_folder == plan.folder and annotations.get(naming.SOURCE_ANNOTATION) == plan.source:
            # Keep what was recorded when this folder was first served (no flapping).
            return Served(plan.folder, plan.source, annotations.get(naming.REVISION_ANNOTATION, requested))
        return Served(plan.folder, plan.source, reported_revision(job_pods) or requested)
    if live_folder:
        return Served(live_folder, annotations.get(naming.SOURCE_ANNOTATION, ""), annotations.get(naming.REVISION_ANNOTATION, ""))
    return None


def _pod_waiting(pods: Iterable[Mapping[str, Any]]) -> str:
    for pod in objects.live_pods(pods):
        stuck = objects.bad_waiting(pod)
        if stuck is not None:
            waiting = stuck[1]
            return f"pod {pod['metadata']['name']}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    return ""


def condition(
    plan: checkpoint_builder.Plan,
    provider: str,
    job: Mapping[str, Any] | None,
    job_pods: Sequence[Mapping[str, Any]],
    claim: Mapping[str, Any] | None,
) -> tuple[str, str, str]:
    """The CheckpointReady condition: (status, reason, message)."""
    if plan.mode == "none":
        return TRUE, "NotRequired", f"engine {provider} needs no checkpoint"
    claim_phase = objects.get(claim, "status", "phase")
    if plan.mode == "existing":
        if claim is None:
            return FALSE, "ClaimNotFound", f"PersistentVolumeClaim {plan.claim_name} not found"
        if claim_phase != "Bound":
            return FALSE, "ClaimPending", f"PersistentVolumeClaim {plan.claim_name} is {claim_phase or 'not bound'}"
        return TRUE, "ClaimBound", f"serving {plan.source}"
    finished = job_finished(job)
    if finished == "Complete":
        return TRUE, "Fetched", f"{plan.source} is in {plan.claim_name}/{plan.folder}"
    if finished == "Failed":
        cond = objects.condition(job, "Failed") or {}
        detail = next(_termination_messages(job_pods), "") or cond.get("message") or cond.get("reason", "")
        message = (
            f"Job {plan.job_name} could not fetch {plan.source}: {detail}. "
            f"Fix the source (a new Job starts) or delete Job {plan.job_name} to retry."
        )
        return FALSE, "FetchFailed", message
    if claim is not None and claim_phase not in (None, "Bound"):
        return FALSE, "ClaimPending", f"PersistentVolumeClaim {plan.claim_name} is {claim_phase}"
    if job is None:
        return FALSE, "FetchPending", f"starting Job {plan.job_name} to fetch {plan.source}"
    waiting = _pod_waiting(job_pods)
    return FALSE, "Fetching", f"Job {plan.job_name} is fetching {plan.source}" + (f" ({waiting})" if waiting else "")
