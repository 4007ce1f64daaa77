"""Status computation: conditions, counts and Events from what the children report."""

from __future__ import annotations

import datetime
from typing import Any

from voice_operator import naming, spec, status
from voice_operator.builders import checkpoint, common, deployment

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
MOCK = {"engine": {"provider": "mock"}, "replicas": 2}
HF = {"checkpoint": {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini"}}}}


def ctx_of(manifest: dict[str, Any]) -> common.Context:
    return common.Context("tts", "ns", "uid", spec.VoiceServiceSpec.model_validate(manifest))


def live_deployment(ctx: common.Context, served: str | None = None, **st: int) -> dict[str, Any]:
    dep = deployment.deployment(ctx, checkpoint.plan(ctx), served)
    dep["metadata"]["generation"] = 3
    dep["status"] = {"observedGeneration": 3, **st}
    return dep


def pod(name: str, template_hash: str, *, ready: bool = True, waiting: str | None = None, started: bool = True) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": "inference", "ready": ready, "started": started, "restartCount": 3 if waiting else 0}
    cs["state"] = {"waiting": {"reason": waiting, "message": "back-off"}} if waiting else {"running": {}}
    return {
        "metadata": {"name": name, "labels": {naming.COMPONENT_LABEL: naming.INFERENCE},
                     "annotations": {naming.TEMPLATE_HASH_ANNOTATION: template_hash}},
        "status": {"phase": "Running", "containerStatuses": [cs],
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False", "message": "probe failed"}]},
    }


def observe(ctx: common.Context, dep: dict[str, Any] | None, pods: list[dict[str, Any]] = (), **kw: Any) -> status.Observation:
    desired_hash = dep["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION] if dep else kw.pop("desired_hash", None)
    return status.Observation(ctx=ctx, generation=7, plan=checkpoint.plan(ctx), desired_hash=desired_hash,
                              served=kw.pop("served", None), deployment=dep, pods=pods, **kw)


def conditions(result: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in result["conditions"]}


def test_all_pods_available_is_ready() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    h = dep["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION]
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
    first, _ = status.compute(observe(ctx, dep), NOW)
    later, events = status.compute(observe(ctx, dep, previous=first), NOW + datetime.timedelta(hours=1))
    assert later == first and events == []


def test_crash_loop_is_degraded_then_recovers() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=1, updatedReplicas=2, availableReplicas=1)
    h = dep["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION]
    broken, events = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h, ready=False, waiting="CrashLoopBackOff")]), NOW)
    c = conditions(broken)
    assert c["Degraded"] == ("True", "CrashLoopBackOff") and c["Ready"] == ("False", "CrashLoopBackOff")
    assert "pod b" in next(x["message"] for x in broken["conditions"] if x["type"] == "Degraded")
    assert "CrashLoopBackOff" in [e.reason for e in events]
    healthy = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=2, availableReplicas=2)
    fixed, events = status.compute(observe(ctx, healthy, [pod("a", h), pod("b", h)], previous=broken), NOW)
    assert conditions(fixed)["Degraded"] == ("False", "AsExpected")
    assert {e.reason for e in events} == {"Recovered", "Ready"}


def test_started_but_unready_pod_is_degraded() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=1, updatedReplicas=2, availableReplicas=1)
    h = dep["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION]
    result, _ = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h, ready=False)]), NOW)
    assert conditions(result)["Degraded"] == ("True", "PodsNotReady")
    # A pod still starting (startup probe not passed yet) is not a problem.
    result, _ = status.compute(observe(ctx, dep, [pod("a", h), pod("b", h, ready=False, started=False)]), NOW)
    assert conditions(result)["Degraded"][0] == "False"
    assert conditions(result)["Ready"] == ("False", "PodsStarting")


def test_rollout_in_progress_and_stuck() -> None:
    ctx = ctx_of(MOCK)
    dep = live_deployment(ctx, replicas=2, readyReplicas=2, updatedReplicas=1, availableReplicas=2)
    h = dep["metadata"]["annotations"][naming.TEMPLATE_HASH_ANNOTATION]
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
    ready, _ = status.compute(observe(ctx, dep), NOW)
    dep["metadata"]["generation"] = 4  # the controller has not seen the new spec yet
    later, events = status.compute(observe(ctx, dep, previous=ready), NOW)
    assert conditions(later)["Ready"] == ("True", "Available") and not [e for e in events if e.reason == "NotReady"]


def test_scaled_to_zero() -> None:
    ctx = ctx_of({**MOCK, "replicas": 0})
    result, _ = status.compute(observe(ctx, live_deployment(ctx)), NOW)
    assert conditions(result)["Ready"] == ("False", "ScaledToZero") and result["replicaSummary"] == "0/0"


def job(*conds: tuple[str, str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "j"}, "status": {"conditions": [
        {"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conds]}}


def test_checkpoint_fetching_then_fetched() -> None:
    ctx = ctx_of(HF)
    bound = {"status": {"phase": "Bound"}}
    fetching, _ = status.compute(observe(ctx, None, job={"metadata": {"name": "j"}, "status": {}}, claim=bound), NOW)
    c = conditions(fetching)
    assert c["CheckpointReady"] == ("False", "Fetching") and c["Progressing"] == ("True", "FetchingCheckpoint")
    assert c["Ready"] == ("False", "CheckpointNotReady") and c["Degraded"][0] == "False"
    assert fetching["checkpoint"]["source"] == "hf://fishaudio/openaudio-s1-mini@main"
    served = status.Served("rev-1", "hf://fishaudio/openaudio-s1-mini@main", "abc123")
    dep = live_deployment(ctx, "rev-1", replicas=1, readyReplicas=1, updatedReplicas=1, availableReplicas=1)
    done, events = status.compute(observe(ctx, dep, job=job(("Complete", "", "")), claim=bound, served=served, previous=fetching), NOW)
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
