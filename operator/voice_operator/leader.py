"""Leader election on a coordination.k8s.io Lease, so two operator replicas never fight.

Started by ``controller`` next to its workers; the workers reconcile only while
``is_leader`` is true. Every replica watches and indexes (cheap, read-only); only the
leader writes. The protocol is client-go's: the holder renews ``renewTime`` every
``renew_seconds``; a candidate takes the Lease once it has seen no renewal for
``lease_seconds`` (judged by its own monotonic clock, so clock skew does not matter);
writes use the Lease's resourceVersion, so two candidates cannot both win. On a clean
stop the leader releases the Lease and a standby takes over within ``retry_seconds``.

Why not kopf's peering: replicas of one Deployment share a priority, and kopf pauses
every operator of equal priority; a Lease gives exactly one active replica and fails over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from voice_operator import kube, metrics

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Timing:
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0


def _micro_time(now: datetime.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Holds (or waits for) one Lease; ``on_change(is_leader)`` is called on transitions."""

    def __init__(
        self,
        api: kube.Kube,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing = Timing(),
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.on_change = on_change
        self.is_leader = False
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0

    # -- one attempt (runs in a thread: the API client is synchronous) ---------------------

    def try_acquire_or_renew(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        lease = self.api.get("Lease", self.namespace, self.name)
        if lease is None:
            try:
                self.api.create(self._manifest(None, now, transitions=0))
            except kube.KubeError as err:
                if err.status == 409:
                    return False
                raise
            return True
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime", "")))
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_seconds)
        if holder and holder != self.identity and time.monotonic() - self._observed_at < duration:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        try:
            self.api.replace(self._manifest(lease, now, transitions, keep_acquire=holder == self.identity))
        except kube.KubeError as err:
            if err.status == 409:  # someone else wrote first
                return False
            raise
        return True

    def release(self) -> None:
        """Give the Lease up (clean shutdown), so a standby need not wait for it to expire."""
        if not self.is_leader:
            return
        lease = self.api.get("Lease", self.namespace, self.name)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"] = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
        try:
            self.api.replace(lease)
        except kube.KubeError as err:
            logger.info("lease not released: %s", err)
        self._set(False)

    def _manifest(self, lease: dict[str, Any] | None, now: datetime.datetime, transitions: int, keep_acquire: bool = False) -> dict[str, Any]:
        stamp = _micro_time(now)
        old_spec = (lease or {}).get("spec") or {}
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if lease is not None:
            old_meta = lease["metadata"]
            meta["resourceVersion"] = old_meta["resourceVersion"]
            # A replace drops what it does not carry: keep the labels and annotations that
            # Helm (which creates the chart's Lease) uses to track and uninstall it.
            meta.update({key: old_meta[key] for key in ("labels", "annotations") if old_meta.get(key)})
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.timing.lease_seconds),
                "acquireTime": old_spec.get("acquireTime", stamp) if keep_acquire else stamp,
                "renewTime": stamp,
                "leaseTransitions": transitions,
            },
        }

    # -- the loop --------------------------------------------------------------------------

    def _set(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        metrics.LEADER.set(1 if leader else 0)
        logger.info("%s leadership of Lease %s/%s as %s", "acquired" if leader else "lost", self.namespace, self.name, self.identity)
        if self.on_change is not None:
            self.on_change(leader)

    def _held_by_other(self) -> bool:
        holder = self._observed[0] if self._observed else ""
        return bool(holder) and holder != self.identity

    async def run(self) -> None:
        """Campaign and renew until cancelled; releases the Lease on the way out."""
        try:
            while True:
                try:
                    won = await asyncio.to_thread(self.try_acquire_or_renew)
                except kube.KubeError as err:
                    logger.warning("leader election: %s", err)
                    won = False
                except Exception as err:  # noqa: BLE001 - a network blip must not kill the loop
                    logger.warning("leader election: %s: %s", type(err).__name__, err)
                    won = False
                if won:
                    self._last_renew = time.monotonic()
                    self._set(True)
                elif self.is_leader and (
                    self._held_by_other() or time.monotonic() - self._last_renew > self.timing.renew_deadline_seconds
                ):
                    self._set(False)
                # A leader renews well within the lease; a candidate polls at the retry period.
                await asyncio.sleep(self.timing.retry_seconds if not self.is_leader else self.timing.lease_seconds / 3)
        finally:
            await asyncio.shield(asyncio.to_thread(self.release))
