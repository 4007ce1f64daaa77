"""The scheduler: the one owner of the engine, between HTTP handlers and the model.

Handlers call ``submit``; it gives the request one of the engine's batch slots, a place in
the bounded queue behind them, or raises ``QueueFull`` at once (admission control: never
unbounded waiting). The engine runs on a single dedicated thread (``batch_loop.EngineLoop``):
every step advances all rows in slots together, a request joins at the next step and leaves
as soon as it is done, so model code never runs on the event loop. Chunks cross back to the
loop through each job's own queue, bounded by ``buffer_seconds`` of unread audio.

Cancelling a job (client gone, timeout, shutdown) ends its stream at once, whether it was
waiting or running; a running row is released by the engine thread before its next step.

Shutdown (``app``'s hooks on SIGTERM): ``drain`` refuses new work while accepted jobs go on;
``end_drain``, at the drain deadline, ends what is left with ``ShuttingDown``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator

import numpy as np

from voice_inference import batch_loop, slots
from voice_inference import metrics as metrics_mod
from voice_inference.engines import base, stepped

log = logging.getLogger(__name__)

_DONE = object()  # end-of-stream marker on a job's chunk queue


class QueueFull(Exception):
    """Every slot is busy and more requests are waiting than the queue allows."""


class NotReady(Exception):
    """The engine is not loaded and warmed up (yet, or any more), or the server is shutting down."""


class ShuttingDown(base.EngineError):
    """The drain deadline passed while this job was still waiting or running."""


class Job:
    """One admitted request: an async iterator of float32 chunks, cancellable at any time."""

    def __init__(self, request: base.SynthesisRequest, scheduler: "Scheduler", *, buffer_samples: int) -> None:
        self.request = request
        self.cancelled = threading.Event()
        self.submitted = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._chunks: asyncio.Queue[object] = asyncio.Queue()  # bounded by _buffered, not by the queue
        self._buffer_samples = buffer_samples
        self._buffered = 0  # samples delivered and not read yet: the engine thread adds, the reader takes
        self._lock = threading.Lock()
        self._ended = False  # the stream's last item is queued (event loop only)
        self._scheduler = scheduler

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop this job (call from the event loop): its stream ends now, with ``error`` for
        its reader if given, and its slot or place frees."""
        if not self.cancelled.is_set():
            self.cancelled.set()
            while not self._chunks.empty():  # audio not read yet has no reader any more
                self._chunks.get_nowait()
            self._chunks.put_nowait(_DONE if error is None else error)
            self._ended = True  # anything the engine thread still sends is dropped
            self._scheduler._jobs.discard(self)
            self._scheduler._cancelled(self)

    def buffer_full(self) -> bool:
        """The reader is ``buffer_seconds`` behind: the engine does not step this row."""
        return self._buffered >= self._buffer_samples

    # Called on the engine thread.
    def deliver(self, chunk: np.ndarray) -> None:
        with self._lock:
            self._buffered += chunk.shape[0]
        self._send(chunk)

    def finish(self, error: BaseException | None = None) -> None:
        """The last item: an error for the reader, or the end of the stream."""
        self._send(_DONE if error is None else error)

    def _send(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the event loop is closed: nobody is reading any more
            pass

    def _put(self, item: object) -> None:
        if self._ended:  # cancelled: later chunks have no reader
            return
        self._ended = item is _DONE or isinstance(item, BaseException)
        self._chunks.put_nowait(item)
        if self._ended:
            self._scheduler._jobs.discard(self)

    def _taken(self, samples: int) -> None:
        with self._lock:
            was_full = self.buffer_full()
            self._buffered -= samples
            now_full = self.buffer_full()
        if was_full and not now_full:
            self._scheduler._batches.notify()

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[np.ndarray]:
        while True:
            item = await self._chunks.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, np.ndarray)
            self._taken(item.shape[0])
            yield item


class Scheduler:
    def __init__(
        self,
        engine: stepped.SteppedEngine | base.Engine,
        *,
        max_queue: int,
        metrics: metrics_mod.Metrics,
        buffer_seconds: float = 10.0,
        stall_timeout_s: float = 30.0,
    ) -> None:
        # An engine that can only generate one request at a time takes its turns in one slot.
        self.engine = stepped.Sequential(engine) if isinstance(engine, base.Engine) else engine
        self.max_queue = max_queue
        self.metrics = metrics
        self.buffer_seconds = buffer_seconds
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._batches = batch_loop.EngineLoop(self.engine, max_queue=max_queue, stall_timeout_s=stall_timeout_s, metrics=metrics)
        self._running: asyncio.Future[None] | None = None
        self._jobs: set[Job] = set()  # streams not ended yet, for close()
        self.ready = False
        self.draining = False  # SIGTERM came: only work already accepted goes on
        self.drain_ended = asyncio.Event()  # the drain deadline passed: what is left was cancelled
        self._closed = False
        self._drain_deadline: asyncio.TimerHandle | None = None
        self.load_error: str | None = None
        metrics.ready.set_function(lambda: float(self.ready))  # the gauge reads the flag: never out of step

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    @property
    def max_batch_size(self) -> int:
        return self.engine.max_batch_size

    async def start(self, *, warm_up: bool = True) -> None:
        """Load (and warm up) the engine on its thread, then start stepping it there."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.engine.load)
            if warm_up:
                await loop.run_in_executor(self._executor, self.engine.warm_up)
        except Exception as exc:
            self.load_error = f"{exc.__class__.__name__}: {exc}"
            log.error("engine %s failed to start: %s", self.engine.name, self.load_error)
            raise
        if self.engine.max_batch_size != self._batches.table_size:  # load may fit fewer slots in GPU memory
            self._batches = batch_loop.EngineLoop(
                self.engine, max_queue=self._batches.max_queue, stall_timeout_s=self._batches.stall_timeout_s,
                metrics=self.metrics,
            )
        self._running = loop.run_in_executor(self._executor, self._batches.run)
        self._running.add_done_callback(self._loop_ended)
        self.ready = True
        log.info("engine %s ready (%d batch slots)", self.engine.name, self.engine.max_batch_size)

    def drain(self, deadline_seconds: float | None = None) -> None:
        """Shutdown has begun: refuse new work (NotReady, so readiness turns 503 at once) while
        the jobs already admitted, in slots or waiting, go on to their end, or to
        ``end_drain`` after ``deadline_seconds`` (call from the event loop)."""
        self.draining = True
        self.ready = False
        if deadline_seconds is not None:
            self._drain_deadline = asyncio.get_running_loop().call_later(deadline_seconds, self.end_drain)

    def end_drain(self) -> None:
        """The drain deadline passed: every job still held ends now with ``ShuttingDown`` (its
        slot or place frees), and live sessions waiting on ``drain_ended`` finish."""
        self.drain_ended.set()
        for job in list(self._jobs):
            job.cancel(ShuttingDown("the server is shutting down: the request ran past the drain deadline"))

    async def close(self) -> None:
        self.ready = False
        if self._drain_deadline is not None:
            self._drain_deadline.cancel()
        if self._closed:
            return
        self._closed = True
        for job in list(self._jobs):
            job.cancel()
        self._batches.stop()
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.engine.close)
        self._executor.shutdown(wait=True)

    def submit(self, request: base.SynthesisRequest, *, accepted_before_drain: bool = False) -> Job:
        """Admit a request or raise ``NotReady`` / ``QueueFull`` straight away.

        ``accepted_before_drain``: the next part of work accepted before SIGTERM (a live
        session's next segment), admitted while draining until the drain deadline."""
        if self.drain_ended.is_set() or (self.draining and not accepted_before_drain):
            raise NotReady("the server is shutting down")
        loop_serves = self._running is not None and self.load_error is None  # drain set ready False; the loop runs on
        if not (self.ready or (self.draining and loop_serves)):
            raise NotReady(self.load_error or "the engine is still loading")
        job = Job(request, self, buffer_samples=max(1, round(self.buffer_seconds * self.sample_rate)))
        try:
            self._batches.submit(job)
        except slots.Full as exc:
            self.metrics.rejected.inc()
            raise QueueFull(str(exc)) from None
        self._jobs.add(job)
        return job

    def _loop_ended(self, running: asyncio.Future[None]) -> None:
        """The engine loop ends only at close, unless a bug broke it: then stop taking work."""
        if running.cancelled() or running.exception() is None:
            return
        error = running.exception()
        self.ready = False
        self.load_error = f"the engine loop failed: {error.__class__.__name__}: {error}"
        log.error("%s", self.load_error, exc_info=error)
        for job in list(self._jobs):  # their streams end; nothing would step them any more
            job.cancel()

    def _cancelled(self, job: Job) -> None:
        self._batches.withdraw(job)
