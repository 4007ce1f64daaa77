"""One reconcile against an in-memory API: what gets applied, deleted and written, and
that a reconcile with nothing to do makes no request at all."""

from __future__ import annotations

import copy
import datetime
import itertools
from typing import Any

import pytest
from voice_operator import config, kube, naming, reconcile, writes

from tests import operator_statuses

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _without_removals(patch: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_removals(v) if isinstance(v, dict) else v for k, v in patch.items() if v is not None}


class FakeApi:
    """The subset of ``kube.Kube`` that reconcile uses, over a dict, counting like the real one."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.tally = kube.Tally()
        self.calls: list[tuple[str, str, str]] = []
        self.events: list[dict[str, str]] = []
        self.statuses: list[dict[str, Any]] = []
        self._rv = itertools.count(100)

    def _count(self, verb: str, kind: str, name: str) -> None:
        self.tally.counts[verb] += 1
        self.calls.append((verb, kind, name))

    def get(self, kind: str, namespace: str, name: str, *, metadata_only: bool = False) -> dict[str, Any] | None:
        self._count("get", kind, name)
        return copy.deepcopy(self.objects.get((kind, namespace, name)))

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        self._count("apply", manifest["kind"], meta["name"])
        obj = copy.deepcopy(manifest)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        obj["metadata"]["uid"] = f"uid-{meta['name']}"
        self.objects[(manifest["kind"], meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
        self._count("delete", kind, name)
        return self.objects.pop((kind, namespace, name), None) is not None

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self._count("patch_status", kind, name)
        # What the API server would prune or refuse never passes unnoticed (None: a merge-patch removal).
        assert operator_statuses.schema_errors(_without_removals(status)) == []
        self.statuses.append(status)
        return {}

    def post_event(self, involved: dict[str, Any], *, type: str, reason: str, message: str, component: str) -> None:
        self._count("create", "Event", reason)
        self.events.append({"type": type, "reason": reason, "message": message})

    def children(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (kind, _, name), obj in self.objects.items():
            out.setdefault(kind, {})[name] = copy.deepcopy(obj)
        return out


def voiceservice(spec: dict[str, Any], status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "voice-service.io/v1alpha1", "kind": "VoiceService",
        "metadata": {"name": "tts", "namespace": "ns", "uid": "vs-uid", "generation": generation},
        "spec": spec, "status": status or {},
    }


def run(api: FakeApi, body: dict[str, Any], memory: writes.Memory | None = None, pods: list[Any] = ()) -> writes.Result:
    snapshot = reconcile.Snapshot(service=body, children=api.children(), pods=list(pods))
    return reconcile.reconcile(api, snapshot, config.Defaults(), memory if memory is not None else writes.Memory(), NOW)  # type: ignore[arg-type]


MOCK = {"engine": {"provider": "mock"}, "resources": {"gpu": 0}}


def test_first_reconcile_creates_children_and_status() -> None:
    api = FakeApi()
    result = run(api, voiceservice(MOCK))
    assert result.wrote and not result.retry
    assert ("apply", "Service", "tts") in api.calls and ("apply", "Deployment", "tts") in api.calls
    assert api.statuses[-1]["observedGeneration"] == 1
    assert {"Created"} <= {e["reason"] for e in api.events}
    assert ("Deployment", "ns", "tts") in api.objects
    assert api.objects[("Deployment", "ns", "tts")]["metadata"]["ownerReferences"][0]["uid"] == "vs-uid"


def test_a_reconcile_with_nothing_to_do_makes_no_request() -> None:
    api = FakeApi()
    memory = writes.Memory()
    run(api, voiceservice(MOCK), memory)
    status = api.statuses[-1]
    # The watch caches now show the children and the status written above.
    api.tally = kube.Tally()
    api.calls.clear()
    result = run(api, voiceservice(MOCK, status), writes.Memory())
    assert api.calls == [] and api.tally.total == 0 and not result.wrote


def test_own_write_not_yet_in_the_cache_is_not_repeated() -> None:
    api = FakeApi()
    memory = writes.Memory()
    run(api, voiceservice(MOCK), memory)
    status = api.statuses[-1]
    # Someone scales the Deployment by hand; the watch delivers that, and the reconcile repairs it.
    api.objects[("Deployment", "ns", "tts")]["spec"]["replicas"] = 7
    api.objects[("Deployment", "ns", "tts")]["metadata"]["resourceVersion"] = "999"
    stale = reconcile.Snapshot(service=voiceservice(MOCK, status), children=api.children(), pods=[])
    reconcile.reconcile(api, stale, config.Defaults(), memory, NOW)  # type: ignore[arg-type]
    assert ("apply", "Deployment", "tts") in api.calls
    assert api.objects[("Deployment", "ns", "tts")]["metadata"]["resourceVersion"] != "999"
    # The same stale snapshot again (the watch has not delivered our repair yet): the cache
    # still shows replicas 7 at rv 999, which Memory knows we already wrote over.
    api.calls.clear()
    reconcile.reconcile(api, stale, config.Defaults(), memory, NOW)  # type: ignore[arg-type]
    assert [c for c in api.calls if c[0] != "create"] == []
    # Without that memory the very same snapshot is repaired once more: Memory is what held it back.
    reconcile.reconcile(api, stale, config.Defaults(), writes.Memory(), NOW)  # type: ignore[arg-type]
    assert ("apply", "Deployment", "tts") in api.calls


def test_status_patch_removes_what_no_longer_applies_at_any_depth() -> None:
    # From a fetched checkpoint to an existing claim: no Job any more, and no template hash yet.
    current = {"templateHash": "h1", "replicas": 2, "checkpoint": {"source": "hf://a/b@main", "jobName": "tts-fetch-1", "revision": "abc"}}
    new = {"replicas": 2, "checkpoint": {"source": "pvc://models/", "revision": "/"}}
    assert writes.merge_patch(current, new) == {
        "templateHash": None, "replicas": 2, "checkpoint": {"source": "pvc://models/", "revision": "/", "jobName": None},
    }


def test_drift_is_repaired_with_an_event() -> None:
    api = FakeApi()
    run(api, voiceservice(MOCK))
    status = api.statuses[-1]
    api.objects[("Deployment", "ns", "tts")]["spec"]["replicas"] = 7
    api.objects[("Deployment", "ns", "tts")]["metadata"]["resourceVersion"] = "999"
    api.events.clear()
    api.calls.clear()
    run(api, voiceservice(MOCK, status))
    assert ("apply", "Deployment", "tts") in api.calls
    assert api.objects[("Deployment", "ns", "tts")]["spec"]["replicas"] == 1
    drift = [e for e in api.events if e["reason"] == "DriftRepaired"]
    assert drift and "spec.replicas" in drift[0]["message"]


def test_missing_secret_holds_the_deployment_back() -> None:
    api = FakeApi()
    result = run(api, voiceservice({**MOCK, "apiKeySecret": {"name": "keys", "key": "k"}}))
    assert result.retry
    assert ("apply", "Deployment", "tts") not in api.calls and ("apply", "Service", "tts") in api.calls
    degraded = next(c for c in api.statuses[-1]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "SecretNotFound" and "Secret keys (spec.apiKeySecret)" in degraded["message"]
    api.objects[("Secret", "ns", "keys")] = {"metadata": {"name": "keys"}}
    result = run(api, voiceservice({**MOCK, "apiKeySecret": {"name": "keys", "key": "k"}}, api.statuses[-1]))
    assert not result.retry and ("apply", "Deployment", "tts") in api.calls


def test_spec_the_model_rejects_becomes_a_condition() -> None:
    api = FakeApi()
    result = run(api, voiceservice({"engine": {"provider": "mock", "queueSize": 0}}))
    assert [c for c in api.calls if c[0] == "apply"] == []
    degraded = next(c for c in api.statuses[-1]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec" and "spec.engine.queueSize" in degraded["message"]
    assert not result.retry


def test_disabled_autoscaling_deletes_the_owned_hpa() -> None:
    api = FakeApi()
    run(api, voiceservice({**MOCK, "autoscaling": {"enabled": True, "maxReplicas": 3}}))
    assert ("HorizontalPodAutoscaler", "ns", "tts") in api.objects and ("PodDisruptionBudget", "ns", "tts") in api.objects
    status = api.statuses[-1]
    api.objects[("HorizontalPodAutoscaler", "ns", "tts")]["metadata"]["ownerReferences"][0]["uid"] = "vs-uid"
    run(api, voiceservice(MOCK, status, generation=2))
    assert ("HorizontalPodAutoscaler", "ns", "tts") not in api.objects
    assert ("PodDisruptionBudget", "ns", "tts") not in api.objects


HF = {"checkpoint": {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini"}}}}


def test_checkpoint_fetched_before_any_pod_starts() -> None:
    api = FakeApi()
    run(api, voiceservice(HF))
    kinds = {c[1] for c in api.calls if c[0] == "apply"}
    assert kinds == {"Service", "PersistentVolumeClaim", "Job"}  # no Deployment yet
    job_name = next(n for (k, _, n) in api.objects if k == "Job")
    status = api.statuses[-1]
    assert next(c for c in status["conditions"] if c["type"] == "CheckpointReady")["reason"] in ("FetchPending", "Fetching")
    api.objects[("Job", "ns", job_name)]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    job_pod = {"metadata": {"name": f"{job_name}-x", "labels": {"job-name": job_name}}, "status": {"containerStatuses": [
        {"name": "fetch", "state": {"terminated": {"exitCode": 0, "message": '{"revision": "0123abcd"}'}}}]}}
    run(api, voiceservice(HF, status), pods=[job_pod])
    dep = api.objects[("Deployment", "ns", "tts")]
    folder = dep["metadata"]["annotations"][naming.CHECKPOINT_ANNOTATION]
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VOICE_S1_CHECKPOINT_PATH"] == f"/checkpoints/{folder}"
    assert dep["metadata"]["annotations"][naming.REVISION_ANNOTATION] == "0123abcd"
    assert api.statuses[-1]["checkpoint"]["revision"] == "0123abcd"


def test_new_revision_downloads_beside_the_served_one() -> None:
    api = FakeApi()
    run(api, voiceservice(HF))
    job_name = next(n for (k, _, n) in api.objects if k == "Job")
    api.objects[("Job", "ns", job_name)]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    run(api, voiceservice(HF, api.statuses[-1]))
    served = api.objects[("Deployment", "ns", "tts")]["metadata"]["annotations"][naming.CHECKPOINT_ANNOTATION]
    for (kind, _, _), obj in api.objects.items():
        if kind in ("Job", "PersistentVolumeClaim"):
            obj["metadata"]["ownerReferences"][0]["uid"] = "vs-uid"
    new = {"checkpoint": {"source": {"huggingface": {"repo": "fishaudio/openaudio-s1-mini", "revision": "v2"}}}}
    run(api, voiceservice(new, api.statuses[-1], generation=2))
    jobs = [n for (k, _, n) in api.objects if k == "Job"]
    assert len(jobs) == 1 and jobs[0] != job_name  # the old Job went, the new one runs
    assert api.objects[("Deployment", "ns", "tts")]["metadata"]["annotations"][naming.CHECKPOINT_ANNOTATION] == served
    progressing = next(c for c in api.statuses[-1]["conditions"] if c["type"] == "Progressing")
    assert progressing["status"] == "True"


def test_failed_job_is_replaced_when_its_spec_changes() -> None:
    api = FakeApi()
    body = voiceservice({**HF, "podAnnotations": {"a": "1"}})
    run(api, body)
    job_name = next(n for (k, _, n) in api.objects if k == "Job")
    api.objects[("Job", "ns", job_name)]["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
    run(api, voiceservice({**HF, "podAnnotations": {"a": "1"}}, api.statuses[-1]))
    assert ("delete", "Job", job_name) not in api.calls  # same spec: a human decides
    api.calls.clear()
    run(api, voiceservice({**HF, "podAnnotations": {"a": "2"}}, api.statuses[-1], generation=2))
    assert ("delete", "Job", job_name) in api.calls


def test_memory_is_dropped_with_its_service() -> None:
    memory = writes.Memory()
    for name in ("tts", "other"):
        memory.remember_status(("ns", name), {"a": 1})
        memory.remember_apply(("ns", name), ("Deployment", name), "h", "1", "2")
    assert len(memory) == 2
    memory.forget(("ns", "tts"))
    assert len(memory) == 1
    assert memory.last_status(("ns", "tts")) is None and not memory.applied_unchanged(("ns", "tts"), ("Deployment", "tts"), "h", "2")
    assert memory.last_status(("ns", "other")) == {"a": 1} and memory.applied_unchanged(("ns", "other"), ("Deployment", "other"), "h", "2")


def test_a_refused_secret_check_is_repeated_not_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi()
    spec = {**MOCK, "apiKeySecret": {"name": "keys", "key": "k"}}

    def forbidden(kind: str, namespace: str, name: str, *, metadata_only: bool = False) -> None:
        api._count("get", kind, name)
        raise kube.KubeError(403, "Forbidden", f'secrets "{name}" is forbidden')

    api.get = forbidden  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="voice_operator.secret_refs"):
        result = run(api, voiceservice(spec))
    assert result.retry
    degraded = next(c for c in api.statuses[-1]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "SecretCheckFailed"
    assert [r for r in caplog.records if r.levelname == "WARNING" and "Secret ns/keys" in r.getMessage()]
    # The retry (same generation) must check again rather than report no problem.
    api.calls.clear()
    result = run(api, voiceservice(spec, api.statuses[-1]))
    assert ("get", "Secret", "keys") in api.calls and result.retry
    degraded = next(c for c in api.statuses[-1]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "SecretCheckFailed"
