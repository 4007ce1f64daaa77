"""The engine thread's loop: admit, step, deliver, release, over the engine's batch slots.

``scheduler.Scheduler`` starts one ``EngineLoop.run`` on its single engine thread after the
engine is warmed up, and talks to it only through ``submit``, ``withdraw``, ``notify`` and
``stop`` (from the event loop, under the loop's lock). Everything that touches the model runs
here, never on the event loop. One iteration:

    take the jobs that got a slot and ``engine.admit`` them     (a request joins at the next step)
    release rows whose job was cancelled (client gone, timeout) or whose reader stalled too long
    ``engine.step`` every row whose reader keeps up              (one step for all of them)
    hand each row's new chunks to its job; release rows that are done or failed (at once)

Backpressure: a job buffers at most ``buffer_seconds`` of audio its reader has not taken. A
row whose buffer is full is not stepped: it keeps its slot but costs the batch nothing. If it
stays full for ``stall_timeout_s`` the job fails with ``StreamStalled`` and the slot frees.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from voice_inference import metrics as metrics_mod
from voice_inference import slots
from voice_inference.engines import base, stepped

if TYPE_CHECKING:  # the scheduler imports this module; the job type is only annotated here
    from voice_inference.scheduler import Job

log = logging.getLogger(__name__)


class StreamStalled(base.EngineError):
    """The reader took no audio for too long while its buffer was full; its slot went to others."""


class EngineLoop:
    def __init__(
        self,
        engine: stepped.SteppedEngine,
        *,
        max_queue: int,
        stall_timeout_s: float,
        metrics: metrics_mod.Metrics,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.stall_timeout_s = stall_timeout_s
        self.max_queue = max_queue
        self.table_size = engine.max_batch_size
        self.table: slots.SlotTable[Job] = slots.SlotTable(engine.max_batch_size, max_waiting=max_queue)
        self._cond = threading.Condition()
        self._dirty = False  # something changed since the engine thread last looked (no lost wake-ups)
        self._stopping = False
        self._rows: dict[int, tuple[Job, stepped.Row]] = {}  # by slot; engine thread only
        self._full_since: dict[int, float] = {}  # slot -> when its reader's buffer filled up
        metrics.batch_slots.set(engine.max_batch_size)
        self._publish()

    # -- the event loop's side (any thread; short, under the lock) --------------------------

    def submit(self, job: Job) -> None:
        """Give the job a slot or a place in the queue; raise ``slots.Full`` when neither is left."""
        with self._cond:
            if self.table.submit(job):
                self._waited([job])
            self._publish()
            self._wake()

    def withdraw(self, job: Job) -> None:
        """A job was cancelled: drop it from the queue at once, or have its row released."""
        with self._cond:
            self.table.withdraw(job)
            self._publish()
            self._wake()

    def notify(self) -> None:
        """A reader made room in its buffer: its row may be stepped again."""
        with self._cond:
            self._wake()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._wake()

    def _wake(self) -> None:
        self._dirty = True
        self._cond.notify()

    def _waited(self, jobs: Sequence[Job]) -> None:
        """These jobs just got a slot: how long they waited for it."""
        now = time.monotonic()
        for job in jobs:
            self.metrics.queue_wait.observe(now - job.submitted)

    def _publish(self) -> None:
        self.metrics.in_flight.set(self.table.in_use)
        self.metrics.slot_occupancy.set(self.table.in_use / self.table.capacity)
        self.metrics.queue_depth.set(self.table.waiting)

    # -- the engine thread ------------------------------------------------------------------

    def run(self) -> None:
        """Serve until ``stop``; then end every row still held."""
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    self._dirty = False
                    admissions = self.table.take_admissions()
                for job, slot in admissions:
                    self._admit(job, slot)
                self._drop_cancelled_and_stalled()
                ready = [(job, row) for job, row in self._rows.values() if not job.buffer_full()]
                if ready:
                    self._step(ready)
                    continue
                with self._cond:
                    if not self._dirty and not self._stopping:
                        self._cond.wait(timeout=self._next_stall_deadline())
        finally:
            for slot in list(self._rows):
                self._release(slot, None)

    def _admit(self, job: Job, slot: int) -> None:
        if job.cancelled.is_set():  # cancelled between its reservation and now
            self._free(slot)
            return
        try:
            row = self.engine.admit(job.request, slot)
        except Exception as exc:
            self._free(slot)
            job.finish(_for_client(exc))
            return
        self._rows[slot] = (job, row)

    def _drop_cancelled_and_stalled(self) -> None:
        now = time.monotonic()
        for slot, (job, _) in list(self._rows.items()):
            if job.cancelled.is_set():
                self._release(slot, None)
            elif not job.buffer_full():
                self._full_since.pop(slot, None)
            elif now - self._full_since.setdefault(slot, now) >= self.stall_timeout_s:
                log.warning("a stream's reader stalled for %g s; its request is ended", self.stall_timeout_s)
                self._release(slot, StreamStalled(f"the client read no audio for {self.stall_timeout_s:g} s"))

    def _next_stall_deadline(self) -> float | None:
        """Seconds until the first stalled row times out (None: sleep until notified)."""
        if not self._full_since:
            return None
        return max(0.0, min(self._full_since.values()) + self.stall_timeout_s - time.monotonic())

    def _step(self, ready: list[tuple[Job, stepped.Row]]) -> None:
        started = time.perf_counter()
        try:
            self.engine.step([row for _, row in ready])
        except Exception as exc:  # the step itself failed: every row in it fails, the server goes on
            for _, row in ready:
                row.fail(exc)
        self.metrics.step_seconds.observe(time.perf_counter() - started)
        self.metrics.rows_per_step.observe(len(ready))
        for job, row in ready:
            for chunk in row.chunks:
                job.deliver(chunk)
            row.chunks.clear()
            if row.done:
                self._release(row.slot, _for_client(row.error) if row.error is not None else None)

    def _release(self, slot: int, error: BaseException | None) -> None:
        """The row leaves its slot now: the engine forgets it, its job's stream ends."""
        job, row = self._rows.pop(slot)
        self._full_since.pop(slot, None)
        try:
            self.engine.release(row)
        except Exception:
            log.exception("engine failed to release a row")
        self._free(slot)  # before the stream ends, so a reader at its end sees the slot free
        job.finish(error)

    def _free(self, slot: int) -> None:
        with self._cond:
            promoted = self.table.free(slot)
            self._waited(promoted)
            self._dirty = self._dirty or bool(promoted)  # the engine thread admits them before it sleeps
            self._publish()


def _for_client(exc: BaseException) -> BaseException:
    """What a job's reader sees: a request that cannot fit as it is, anything else as an EngineError."""
    if isinstance(exc, (base.RequestTooLarge, StreamStalled)):
        return exc
    log.error("engine failed on a request", exc_info=exc)
    return base.EngineError(f"synthesis failed: {exc.__class__.__name__}")
