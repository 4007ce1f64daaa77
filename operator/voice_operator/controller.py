"""The work queue between kopf's watch events and ``reconcile``.

``handlers`` feeds it: every event on a VoiceService or on one of its children enqueues
the VoiceService's key; kopf's indexes (watch caches) hold the objects. Workers take keys
one at a time per VoiceService (never two reconciles of one object at once), coalesce
bursts (ten pod events while a reconcile runs cause one more reconcile, not ten), run
``reconcile.reconcile`` in a thread (the Kubernetes client is synchronous), and retry
failures with exponential backoff. Workers act only while ``leader`` says this replica
leads; a standby keeps its caches warm and takes over with a full resync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from voice_operator import config, kinds, kube, leader, metrics, reconcile, writes

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, VoiceService name)

# kopf index ids (``handlers`` registers them): one per watched kind, named by its plural.
SERVICES_INDEX = kinds.VOICE_SERVICE.plural
PODS_INDEX = kinds.POD.plural


class Controller:
    """Queue, workers and leadership of one operator process."""

    def __init__(
        self,
        api: kube.Kube,
        defaults: config.Defaults,
        *,
        workers: int = 4,
        resync_seconds: float = 300.0,
        backoff_base: float = 2.0,
        backoff_max: float = 300.0,
    ) -> None:
        self.api = api
        self.defaults = defaults
        self.workers = workers
        self.resync_seconds = resync_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.memory = writes.Memory()
        self.elector: leader.LeaderElector | None = None
        self.indices: dict[str, Any] = {}
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._indexed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.reconciles = 0

    # -- wiring ------------------------------------------------------------------------------

    def attach(self, indices: Mapping[str, Any]) -> None:
        """Take kopf's live index objects (passed to the startup handler by id)."""
        self.indices = {name: indices[name] for name in (SERVICES_INDEX, PODS_INDEX, *(child.plural for child in kinds.CHILDREN))}

    def mark_indexed(self) -> None:
        """Called on the first watch event: kopf delivers events only once every index is listed."""
        self._indexed.set()

    @property
    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    @property
    def idle(self) -> bool:
        """Nothing queued, running or scheduled for a retry: no reconcile can start until an event."""
        return not (self._queued or self._active or self._dirty or self._timers)

    def _on_leadership(self, is_leader: bool) -> None:
        if is_leader:
            self.enqueue_all()

    # -- queue -------------------------------------------------------------------------------

    def enqueue(self, key: Key) -> None:
        if key in self._queued:
            return
        if key in self._active:
            self._dirty.add(key)  # reconcile again once the running one ends
            return
        self._queued.add(key)
        self._queue.put_nowait(key)
        metrics.QUEUE_DEPTH.set(len(self._queued))

    def enqueue_after(self, key: Key, delay: float) -> None:
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None and existing.when() <= loop.time() + delay:
            return  # an earlier retry is already due
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    def enqueue_all(self) -> None:
        for key in list(self.indices.get(SERVICES_INDEX, {}) or {}):
            self.enqueue(key)

    def forget(self, key: Key) -> None:
        """The VoiceService is gone: drop its retries and memory (bounded memory)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)
        self.memory.forget(key)

    # -- snapshot ----------------------------------------------------------------------------

    def snapshot(self, key: Key) -> reconcile.Snapshot | None:
        services = self.indices.get(SERVICES_INDEX)
        if services is None or key not in services:
            return None
        bodies = list(services[key])
        if not bodies:
            return None
        children: dict[str, dict[str, Mapping[str, Any]]] = {}
        for child in kinds.CHILDREN:
            index = self.indices.get(child.plural)
            found = list(index[key]) if index is not None and key in index else []
            children[child.name] = {obj["metadata"]["name"]: obj for obj in found}
        pods_index = self.indices.get(PODS_INDEX)
        pods = list(pods_index[key]) if pods_index is not None and key in pods_index else []
        return reconcile.Snapshot(service=bodies[0], children=children, pods=pods)

    # -- running -----------------------------------------------------------------------------

    async def run(self, elector: leader.LeaderElector | None = None) -> None:
        """Run workers (and the elector) until cancelled."""
        self.elector = elector
        if elector is not None:
            elector.on_change = self._on_leadership
            self._tasks.append(asyncio.create_task(elector.run(), name="leader election"))
        for n in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"reconcile worker {n}"))
        if self.resync_seconds > 0:
            self._tasks.append(asyncio.create_task(self._resync(), name="resync"))
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()

    async def _resync(self) -> None:
        # A safety net for anything a watch missed; a reconcile with nothing to do is free.
        while True:
            await asyncio.sleep(self.resync_seconds)
            if self.is_leader and self._indexed.is_set():
                self.enqueue_all()

    async def _worker(self) -> None:
        # Wait before taking a key, not after: a key taken is active at once, so a second
        # worker can never start on the same VoiceService.
        await self._indexed.wait()
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            metrics.QUEUE_DEPTH.set(len(self._queued))
            if not self.is_leader:
                continue  # the leader has its own queue; we resync when we win
            self._active.add(key)
            metrics.RECONCILES_RUNNING.set(len(self._active))
            try:
                await self._process(key)
            finally:
                self._active.discard(key)
                metrics.RECONCILES_RUNNING.set(len(self._active))
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.enqueue(key)

    async def _process(self, key: Key) -> None:
        snapshot = self.snapshot(key)
        metrics.SERVICES.set(len(self.indices.get(SERVICES_INDEX, {}) or {}))
        if snapshot is None:
            self.forget(key)
            return
        api = self.api.with_tally(kube.Tally())
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(reconcile.reconcile, api, snapshot, self.defaults, self.memory)
        except Exception:
            logger.exception("reconcile of %s/%s failed", *key)
            metrics.RECONCILES.labels(result="error").inc()
            self._retry(key)
            return
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            self.reconciles += 1
        metrics.RECONCILES.labels(result="retry" if result.retry else ("write" if result.wrote else "noop")).inc()
        if result.wrote:
            logger.info(
                "reconciled %s/%s: %d API requests (%s)", key[0], key[1], api.tally.total,
                ", ".join(f"{verb} {n}" for verb, n in sorted(api.tally.counts.items())),
            )
        if result.retry:
            self._retry(key)
        else:
            self._failures.pop(key, None)

    def _retry(self, key: Key) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
        logger.info("retrying %s/%s in %.0fs (attempt %d)", key[0], key[1], delay, failures + 1)
        self.enqueue_after(key, delay)
