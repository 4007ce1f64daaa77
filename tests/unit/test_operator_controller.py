"""The work queue and leader election, with reconcile and the API replaced by fakes."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from voice_operator import config, controller, kinds, kube, leader, reconcile, writes


class FakeIndex(dict):
    """A kopf index: key -> store (an iterable of values)."""


Key = tuple[str, str]


class FakeReconcile:
    """Stands in for ``reconcile.reconcile``: records each attempt (key, monotonic time) and
    answers with the next of ``retries`` (True: ask for a retry), then with success."""

    def __init__(self, retries: list[bool] | None = None, gate: threading.Event | None = None) -> None:
        self.calls: list[Key] = []
        self.times: list[float] = []
        self.retries = list(retries or [])
        self.gate = gate
        self.started = threading.Event()

    def __call__(self, api: Any, snapshot: reconcile.Snapshot, defaults: Any, memory: Any) -> writes.Result:
        meta = snapshot.service["metadata"]
        self.calls.append((meta["namespace"], meta["name"]))
        self.times.append(time.monotonic())
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        return writes.Result(retry=self.retries.pop(0) if self.retries else False)


def make_controller(
    monkeypatch: pytest.MonkeyPatch, fake: FakeReconcile, **options: float
) -> tuple[controller.Controller, list[float]]:
    """A controller over fake indexes of two VoiceServices, and the retry delays it asks for."""
    monkeypatch.setattr(controller.reconcile, "reconcile", fake)
    options = {"backoff_base": 0.01, **options}
    ctl = controller.Controller(kube.Kube(None, "test"), config.Defaults(), workers=2, resync_seconds=0, **options)  # type: ignore[arg-type]
    services = FakeIndex({("ns", "a"): [{"metadata": {"name": "a", "namespace": "ns"}}],
                          ("ns", "b"): [{"metadata": {"name": "b", "namespace": "ns"}}]})
    ctl.attach({controller.SERVICES_INDEX: services, controller.PODS_INDEX: FakeIndex(),
                **{child.plural: FakeIndex() for child in kinds.CHILDREN}})
    ctl.mark_indexed()
    delays: list[float] = []
    schedule = ctl.enqueue_after

    def recorded(key: Key, delay: float) -> None:
        delays.append(delay)
        schedule(key, delay)

    monkeypatch.setattr(ctl, "enqueue_after", recorded)
    return ctl, delays


async def until(what: str, condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait for ``condition`` (checked between event-loop turns); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(ctl: controller.Controller, elector: Any = None) -> AsyncIterator[None]:
    task = asyncio.create_task(ctl.run(elector))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_bursts_coalesce(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeReconcile()
    ctl, _ = make_controller(monkeypatch, fake)
    for _ in range(10):
        ctl.enqueue(("ns", "a"))
    ctl.enqueue(("ns", "b"))
    async with running(ctl):
        await until("the queue drained", lambda: ctl.idle)
    assert sorted(fake.calls) == [("ns", "a"), ("ns", "b")]


async def test_event_during_a_reconcile_causes_exactly_one_more(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    fake = FakeReconcile(gate=gate)
    ctl, _ = make_controller(monkeypatch, fake)
    async with running(ctl):
        ctl.enqueue(("ns", "a"))
        await until("the reconcile of a running", fake.started.is_set)
        for _ in range(5):
            ctl.enqueue(("ns", "a"))
        assert fake.calls == [("ns", "a")]  # never two at once
        gate.set()
        await until("the queue drained", lambda: ctl.idle)
    assert fake.calls == [("ns", "a"), ("ns", "a")]


async def test_retries_back_off_exponentially_and_reset_after_a_success(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeReconcile(retries=[True, True, True, True, True, False])
    ctl, delays = make_controller(monkeypatch, fake, backoff_base=0.01, backoff_max=0.1)
    async with running(ctl):
        ctl.enqueue(("ns", "a"))
        await until("the sixth attempt succeeded", lambda: len(fake.calls) == 6 and ctl.idle)
        assert delays == [0.01, 0.02, 0.04, 0.08, 0.1]  # doubling, capped at backoff_max
        # A timer never fires early: each attempt came at least its delay after the one before.
        gaps = [later - earlier for earlier, later in itertools.pairwise(fake.times)]
        assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=True)), (gaps, delays)
        # A success forgets the failures: the next failure starts again at the base delay.
        fake.retries = [True, False]
        ctl.enqueue(("ns", "a"))
        await until("two more attempts", lambda: len(fake.calls) == 8 and ctl.idle)
    assert delays[5:] == [0.01]


async def test_an_earlier_retry_is_kept_and_a_deleted_service_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeReconcile()
    ctl, _ = make_controller(monkeypatch, fake)
    async with running(ctl):
        loop = asyncio.get_running_loop()
        ctl.enqueue_after(("ns", "a"), 30)
        due = ctl._timers[("ns", "a")].when()
        ctl.enqueue_after(("ns", "a"), 60)  # later: the earlier retry stands
        assert ctl._timers[("ns", "a")].when() == due
        ctl.enqueue_after(("ns", "a"), 20)  # earlier: replaces it
        assert ctl._timers[("ns", "a")].when() < due and ctl._timers[("ns", "a")].when() <= loop.time() + 20
        ctl._failures[("ns", "a")] = 3
        ctl.forget(("ns", "a"))
        assert ("ns", "a") not in ctl._failures and ("ns", "a") not in ctl._timers
        assert ctl.idle  # the cancelled timer can never start a reconcile
    assert fake.calls == []


async def test_standby_does_not_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeReconcile()
    ctl, _ = make_controller(monkeypatch, fake)

    class Standby:
        is_leader = False
        on_change = None

        async def run(self) -> None:
            await asyncio.Event().wait()

    ctl.enqueue(("ns", "a"))
    async with running(ctl, Standby()):
        await until("the standby took the key off its queue", lambda: ctl.idle)
    assert fake.calls == []


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
