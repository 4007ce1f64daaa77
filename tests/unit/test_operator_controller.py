"""The work queue and leader election, with reconcile and the API replaced by fakes."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import pytest
from voice_operator import config, controller, kinds, kube, leader, reconcile, writes


class FakeIndex(dict):
    """A kopf index: key -> store (an iterable of values)."""


def make_controller(monkeypatch: pytest.MonkeyPatch, outcome: dict[str, Any]) -> tuple[controller.Controller, list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []

    def fake_reconcile(api: Any, snapshot: reconcile.Snapshot, defaults: Any, memory: Any) -> writes.Result:
        meta = snapshot.service["metadata"]
        calls.append((meta["namespace"], meta["name"]))
        if outcome.get("block"):
            outcome["block"].wait(5)
        return writes.Result(retry=outcome.get("retry", False))

    monkeypatch.setattr(controller.reconcile, "reconcile", fake_reconcile)
    ctl = controller.Controller(kube.Kube(None, "test"), config.Defaults(), workers=2, resync_seconds=0, backoff_base=0.05)  # type: ignore[arg-type]
    services = FakeIndex({("ns", "a"): [{"metadata": {"name": "a", "namespace": "ns"}}],
                          ("ns", "b"): [{"metadata": {"name": "b", "namespace": "ns"}}]})
    ctl.attach({controller.SERVICES_INDEX: services, controller.PODS_INDEX: FakeIndex(),
                **{child.plural: FakeIndex() for child in kinds.CHILDREN}})
    ctl.mark_indexed()
    return ctl, calls


async def _run_for(ctl: controller.Controller, seconds: float) -> None:
    task = asyncio.create_task(ctl.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_bursts_coalesce(monkeypatch: pytest.MonkeyPatch) -> None:
    ctl, calls = make_controller(monkeypatch, {})
    for _ in range(10):
        ctl.enqueue(("ns", "a"))
    ctl.enqueue(("ns", "b"))
    await _run_for(ctl, 0.3)
    assert sorted(calls) == [("ns", "a"), ("ns", "b")]


async def test_event_during_a_reconcile_causes_exactly_one_more(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    gate = threading.Event()
    ctl, calls = make_controller(monkeypatch, {"block": gate})
    task = asyncio.create_task(ctl.run())
    ctl.enqueue(("ns", "a"))
    await asyncio.sleep(0.1)  # reconcile of a is running (blocked)
    for _ in range(5):
        ctl.enqueue(("ns", "a"))
    gate.set()
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert calls == [("ns", "a"), ("ns", "a")]


async def test_retries_back_off_and_a_deleted_service_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    ctl, calls = make_controller(monkeypatch, {"retry": True})
    ctl.enqueue(("ns", "a"))
    await _run_for(ctl, 0.5)  # 0.05, 0.1, 0.2 ... apart
    assert 3 <= len(calls) <= 5
    ctl.forget(("ns", "a"))
    assert ("ns", "a") not in ctl._failures and ("ns", "a") not in ctl._timers


async def test_standby_does_not_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    ctl, calls = make_controller(monkeypatch, {})

    class Standby:
        is_leader = False
        on_change = None

        async def run(self) -> None:
            await asyncio.sleep(3600)

    task = asyncio.create_task(ctl.run(Standby()))  # type: ignore[arg-type]
    ctl.enqueue(("ns", "a"))
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert calls == []


class LeaseStore:
    """A Lease API with resourceVersion conflicts, shared by two electors."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = itertools.count(1)

    def api(self) -> Any:
        store = self

        class Api:
            def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
                return copy.deepcopy(store.lease)

            def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
                if store.lease is not None:
                    raise kube.KubeError(409, "AlreadyExists", "exists")
                store.lease = copy.deepcopy(manifest)
                store.lease["metadata"]["resourceVersion"] = str(next(store.rv))
                return store.lease

            def replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
                assert store.lease is not None
                if manifest["metadata"]["resourceVersion"] != store.lease["metadata"]["resourceVersion"]:
                    raise kube.KubeError(409, "Conflict", "the object has been modified")
                store.lease = copy.deepcopy(manifest)
                store.lease["metadata"]["resourceVersion"] = str(next(store.rv))
                return store.lease

        return Api()


def test_one_leader_then_takeover_after_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(leader.time, "monotonic", lambda: clock[0])
    store = LeaseStore()
    timing = leader.Timing(lease_seconds=15)
    a = leader.LeaderElector(store.api(), "ns", "lease", "a", timing)
    b = leader.LeaderElector(store.api(), "ns", "lease", "b", timing)
    assert a.try_acquire_or_renew() is True
    a.is_leader = True
    assert b.try_acquire_or_renew() is False
    clock[0] += 10
    assert a.try_acquire_or_renew() is True  # renewed: b sees a new renewTime
    assert b.try_acquire_or_renew() is False
    clock[0] += 14
    assert b.try_acquire_or_renew() is False  # 14 s since b saw a renewal
    clock[0] += 2
    assert b.try_acquire_or_renew() is True  # a stopped renewing: b takes over
    assert store.lease["spec"]["holderIdentity"] == "b" and store.lease["spec"]["leaseTransitions"] == 1


def test_release_hands_over_at_once() -> None:
    store = LeaseStore()
    a = leader.LeaderElector(store.api(), "ns", "lease", "a")
    b = leader.LeaderElector(store.api(), "ns", "lease", "b")
    assert a.try_acquire_or_renew()
    a.is_leader = True
    a.release()
    assert not a.is_leader and store.lease["spec"]["holderIdentity"] == ""
    assert b.try_acquire_or_renew() is True


def test_renewals_keep_the_leases_labels_and_annotations() -> None:
    # The chart creates the Lease with Helm's labels; a renewal must not strip them.
    store = LeaseStore()
    store.lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "lease", "namespace": "ns", "resourceVersion": "0",
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "voice-operator"},
        },
        "spec": {},
    }  # fmt: skip
    a = leader.LeaderElector(store.api(), "ns", "lease", "a")
    assert a.try_acquire_or_renew() is True
    assert a.try_acquire_or_renew() is True
    assert store.lease["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "Helm"}
    assert store.lease["metadata"]["annotations"] == {"meta.helm.sh/release-name": "voice-operator"}
    assert store.lease["spec"]["holderIdentity"] == "a"
