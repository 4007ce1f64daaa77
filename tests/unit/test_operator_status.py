"""Status computation: conditions, counts and Events from what the children report."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from voice_operator import checkpoints, naming, status

from tests.operator_statuses import (
    HF,
    MOCK,
    NOW,
    ctx_of,
    job,
    live_deployment,
    observe,
    pod,
    ready_pods,
    template_hash,
)


def conditions(result: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in result["conditions"]}


def test_all_pods_available_is_ready() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    h = template_hash(dep)
    result, events = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h)]), NOW)
    assert conditions(result) == {
        "Ready": ("True", "Available"), "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"), "CheckpointReady": ("True", "NotRequired"),
    }
    assert result["observedGeneration"] == 7 and result["replicaSummary"] == "2/2"
    assert result["endpoint"] == "http://tts.ns.svc.cluster.local"
    assert result["selector"] == naming.selector_string("tts")
    assert [e.reason for e in events] == ["Ready"]
    assert all(c["lastTransitionTime"] == "2026-01-02T03:04:05Z" for c in result["conditions"])


def test_transition_time_kept_while_status_holds() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    pods = ready_pods(dep, 2)
    first, _ = status.compute(observe(ctx, dep, pods), NOW)
    later, events = status.compute(observe(ctx, dep, pods, previous=first), NOW + datetime.timedelta(hours=1))
    assert conditions(first)["Ready"] == ("True", "Available")
    assert later == first and events == []


@pytest.mark.parametrize("counted", [1, 2], ids=["deployment-current", "deployment-behind-the-pods"])
def test_crash_loop_is_degraded_then_recovers(counted: int) -> None:
    # Behind the pods: the pod already reports its crash loop, the Deployment still counts it.
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=counted, updatedReplicas=2, availableReplicas=counted)
    h = template_hash(dep)
    broken, events = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h, ready=False, waiting="CrashLoopBackOff")]), NOW)
    c = conditions(broken)
    assert c["Degraded"] == ("True", "CrashLoopBackOff") and c["Ready"] == ("False", "CrashLoopBackOff")
    assert "pod b" in next(x["message"] for x in broken["conditions"] if x["type"] == "Degraded")
    assert next(x["message"] for x in broken["conditions"] if x["type"] == "Ready").startswith("1/2 pods ready")
    assert broken["readyReplicas"] == broken["availableReplicas"] == 1 and broken["replicaSummary"] == "1/2"
    assert "CrashLoopBackOff" in [e.reason for e in events] and "Ready" not in [e.reason for e in events]
    healthy = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    fixed, events = status.compute(observe(ctx, healthy, [pod("a", h), pod("b", h)], previous=broken), NOW)
    assert conditions(fixed)["Degraded"] == ("False", "AsExpected")
    assert {e.reason for e in events} == {"Recovered", "Ready"}


def test_started_but_unready_pod_is_degraded() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=1, updatedReplicas=2, availableReplicas=1)
    h = template_hash(dep)
    result, _ = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h, ready=False)]), NOW)
    assert conditions(result)["Degraded"] == ("True", "PodsNotReady")
    # A pod still starting (startup probe not passed yet) is not a problem.
    result, _ = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h, ready=False, started=False)]), NOW)
    assert conditions(result)["Degraded"][0] == "False"
    assert conditions(result)["Ready"] == ("False", "PodsStarting")


def test_rollout_in_progress_and_stuck() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=1, availableReplicas=2)
    h = template_hash(dep)
    rolling, events = status.compute(observe(ctx, dep, [pod("a", "old"), pod("b", h)]), NOW)
    assert conditions(rolling)["Progressing"] == ("True", "RollingOut")
    assert conditions(rolling)["Ready"] == ("False", "RollingOut")
    assert "RolloutStarted" in [e.reason for e in events]
    dep["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                    "message": 'ReplicaSet "tts-1" has timed out progressing.'}]
    stuck, events = status.compute(observe(ctx, dep, [pod("a", "old"), pod("b", h, ready=False, started=False)], previous=rolling), NOW)
    assert conditions(stuck)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    assert conditions(stuck)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert "timed out progressing" in next(c["message"] for c in stuck["conditions"] if c["type"] == "Degraded")


def test_stale_deployment_status_keeps_the_previous_ready() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    pods = ready_pods(dep, 2)
    ready, _ = status.compute(observe(ctx, dep, pods), NOW)
    dep["metadata"]["generation"] = 4  # the controller has not seen the new spec yet
    later, events = status.compute(observe(ctx, dep, pods, previous=ready), NOW)
    assert conditions(later)["Ready"] == ("True", "Available") and not [e for e in events if e.reason == "NotReady"]
    # ...but not once the pods no longer bear it out.
    later, events = status.compute(observe(ctx, dep, pods[:1], previous=ready), NOW)
    assert conditions(later)["Ready"][0] == "False" and "NotReady" in [e.reason for e in events]


def test_scaled_to_zero() -> None:
    ctx = ctx_of({**MOCK, "replicas": 0})
    result, _ = status.compute(observe(ctx, live_deployment(ctx)), NOW)
    assert conditions(result)["Ready"] == ("False", "ScaledToZero") and result["replicaSummary"] == "0/0"


def test_checkpoint_fetching_then_fetched() -> None:
    ctx = ctx_of(HF)
    bound = {"status": {"phase": "Bound"}}
    fetching, _ = status.compute(observe(ctx, None, job={"metadata": {"name": "j"}, "status": {}}, claim=bound), NOW)
    c = conditions(fetching)
    assert c["CheckpointReady"] == ("False", "Fetching") and c["Progressing"] == ("True", "FetchingCheckpoint")
    assert c["Ready"] == ("False", "CheckpointNotReady") and c["Degraded"][0] == "False"
    assert fetching["checkpoint"]["source"] == "hf://fishaudio/openaudio-s1-mini@main"
    served = checkpoints.Served("rev-1", "hf://fishaudio/openaudio-s1-mini@main", "abc123")
    dep = live_deployment(ctx, "rev-1", replicas=1, readyReplicas=1, updatedReplicas=1, availableReplicas=1)
    done, events = status.compute(
        observe(ctx, dep, ready_pods(dep, 1), job=job(("Complete", "", "")), claim=bound, served=served, previous=fetching), NOW
    )
    assert conditions(done)["CheckpointReady"] == ("True", "Fetched") and conditions(done)["Ready"][0] == "True"
    assert done["checkpoint"]["revision"] == "abc123"
    assert {"CheckpointFetched", "Ready"} <= {e.reason for e in events}


def test_checkpoint_fetch_failure_is_degraded_with_the_reason() -> None:
    ctx = ctx_of(HF)
    failed_pod = {"metadata": {"name": "j-1"}, "status": {"containerStatuses": [
        {"name": "fetch", "state": {"terminated": {"exitCode": 2, "message": "permanent failure: 404 no such repo"}}}]}}
    result, events = status.compute(
        observe(ctx, None, job=job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")), job_pods=[failed_pod]),
        NOW,
    )
    c = conditions(result)
    assert c["CheckpointReady"] == ("False", "FetchFailed") and c["Degraded"] == ("True", "CheckpointFetchFailed")
    assert "404 no such repo" in next(x["message"] for x in result["conditions"] if x["type"] == "Degraded")
    assert "CheckpointFetchFailed" in [e.reason for e in events]


def test_existing_claim_missing() -> None:
    ctx = ctx_of({"checkpoint": {"source": {"existingClaim": {"name": "models"}}}})
    result, _ = status.compute(observe(ctx, None, desired_hash="h"), NOW)
    assert conditions(result)["CheckpointReady"] == ("False", "ClaimNotFound")
    assert conditions(result)["Degraded"] == ("True", "ClaimNotFound")


def test_reconcile_problems_lead_degraded() -> None:
    ctx = ctx_of(MOCK)
    problem = status.Problem("SecretNotFound", "Secret keys (spec.apiKeySecret) not found in namespace ns")
    result, _ = status.compute(observe(ctx, None, desired_hash="h", problems=[problem]), NOW)
    assert conditions(result)["Degraded"] == ("True", "SecretNotFound")


# -- the Deployment's counts and the pods' states lag each other -----------------------------


def message(result: dict[str, Any], kind: str) -> str:
    return next(c["message"] for c in result["conditions"] if c["type"] == kind)


def test_pods_behind_the_deployment_wait_for_the_pods() -> None:
    # The Deployment counts both pods ready; the pod cache has not yet seen b turn Ready.
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    h = template_hash(dep)
    behind, _ = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h, ready=False, started=False)]), NOW)
    assert conditions(behind)["Ready"] == ("False", "PodsStarting") and conditions(behind)["Degraded"][0] == "False"
    assert behind["replicaSummary"] == "1/2"
    # The pod's event arrives: now both agree.
    caught_up, events = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h)], previous=behind), NOW)
    assert conditions(caught_up)["Ready"] == ("True", "Available") and "Ready" in [e.reason for e in events]
    assert caught_up["replicaSummary"] == "2/2"


@pytest.mark.parametrize("gone", ["deleted", "terminating"])
def test_a_pod_gone_but_still_counted_is_not_ready(gone: str) -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    h = template_hash(dep)
    pods = [pod("a", h)] if gone == "deleted" else [pod("a", h), pod("b", h, deleting=True)]
    result, _ = status.compute(observe(ctx, dep, pods), NOW)
    assert conditions(result)["Ready"] == ("False", "PodsStarting")
    assert result["readyReplicas"] == 1 and result["replicaSummary"] == "1/2"


POD_STATES = {
    "ready": {},
    "starting": {"ready": False, "started": False},
    "unready": {"ready": False},
    "crash": {"ready": False, "waiting": "CrashLoopBackOff"},
    "bad-image": {"ready": False, "started": False, "waiting": "ImagePullBackOff"},
    "terminating": {"deleting": True},
    "absent": None,
}


@pytest.mark.parametrize("counted", [0, 1, 2], ids=lambda n: f"deployment-counts-{n}")
@pytest.mark.parametrize("first", POD_STATES)
@pytest.mark.parametrize("second", POD_STATES)
def test_ready_never_contradicts_degraded_or_the_pods(counted: int, first: str, second: str) -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=counted, updatedReplicas=2, availableReplicas=counted)
    h = template_hash(dep)
    present = [(n, state) for n, state in (("a", first), ("b", second)) if POD_STATES[state] is not None]
    result, _ = status.compute(observe(ctx, dep, [pod(n, h, **POD_STATES[state]) for n, state in present]), NOW)
    c = conditions(result)
    agreeing = sum(1 for _, state in present if state == "ready")  # ready by their own state, and live
    if c["Degraded"][0] == "True":
        assert c["Ready"][0] == "False"
    if c["Ready"][0] == "True":
        assert counted == 2 and agreeing == 2 and message(result, "Ready").startswith("all 2 pod(s) ready")
    assert result["readyReplicas"] == min(counted, agreeing) and result["replicaSummary"] == f"{min(counted, agreeing)}/2"


# -- the other reasons -----------------------------------------------------------------------


def test_unschedulable_pods_say_why() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=1, updatedReplicas=2, availableReplicas=1)
    h = template_hash(dep)
    pending = pod("b", h, ready=False, started=False)
    pending["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes have nvidia.com/gpu"}]}
    result, _ = status.compute(observe(ctx, dep, [pod("a", h), pending]), NOW)
    assert conditions(result)["Ready"] == ("False", "Unschedulable")
    assert message(result, "Ready") == "1/2 pods ready; pod b cannot be scheduled: 0/3 nodes have nvidia.com/gpu"
    assert conditions(result)["Degraded"][0] == "False"  # a node may come (autoscaler): not a problem yet


def test_scaling_up_is_progressing() -> None:
    ctx = ctx_of({**MOCK, "replicas": 3})
    dep = live_deployment(ctx, replicas=3, readyReplicas=2, updatedReplicas=3, availableReplicas=2)
    h = template_hash(dep)
    result, _ = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h), pod("c", h, ready=False, started=False)]), NOW)
    c = conditions(result)
    assert c["Progressing"] == ("True", "Scaling") and message(result, "Progressing") == "2 of 3 pods available, 3 exist"
    assert c["Ready"] == ("False", "PodsStarting")


@pytest.mark.parametrize("manifest, claim_name", [
    ({"checkpoint": {"source": {"existingClaim": {"name": "models"}}}}, "models"),
    (HF, "tts-checkpoints"),
], ids=["existing-claim", "fetch-claim"])
def test_a_claim_not_bound_is_pending(manifest: dict[str, Any], claim_name: str) -> None:
    ctx = ctx_of(manifest)
    pending = {"metadata": {"name": claim_name}, "status": {"phase": "Pending"}}
    fetch_job = {"metadata": {"name": "j"}, "status": {}}
    result, _ = status.compute(observe(ctx, None, desired_hash=None, claim=pending, job=fetch_job), NOW)
    c = conditions(result)
    assert c["CheckpointReady"] == ("False", "ClaimPending")
    assert message(result, "CheckpointReady") == f"PersistentVolumeClaim {claim_name} is Pending"
    assert c["Degraded"][0] == "False" and c["Ready"] == ("False", "CheckpointNotReady")


def test_an_invalid_spec_keeps_what_was_observed() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    ready, _ = status.compute(observe(ctx, dep, ready_pods(dep, 2)), NOW)
    later = NOW + datetime.timedelta(minutes=5)
    result, events = status.invalid(8, "spec.engine.queueSize: too small", ready, later)
    c = conditions(result)
    assert c == {"Ready": ("False", "InvalidSpec"), "Progressing": ("False", "InvalidSpec"),
                 "Degraded": ("True", "InvalidSpec"), "CheckpointReady": ("True", "NotRequired")}
    assert result["observedGeneration"] == 8 and result["endpoint"] == ready["endpoint"] and result["replicas"] == 2
    stamps = {x["type"]: x["lastTransitionTime"] for x in result["conditions"]}
    # Changed conditions carry the new time in the one format; Progressing stayed False.
    assert stamps["Ready"] == stamps["Degraded"] == "2026-01-02T03:09:05Z" and stamps["Progressing"] == "2026-01-02T03:04:05Z"
    assert {(e.type, e.reason) for e in events} == {("Warning", "NotReady"), ("Warning", "InvalidSpec")}
    again, events = status.invalid(8, "spec.engine.queueSize: too small", result, later + datetime.timedelta(hours=1))
    assert again == result and events == []
