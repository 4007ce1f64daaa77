"""The scheduler: the one owner of the engine, between HTTP handlers and the model.

Handlers call ``submit``; it admits the request or raises ``QueueFull`` at once (admission
control: a bounded queue, never unbounded waiting). One worker task takes jobs in arrival
order and runs the engine on a single dedicated thread, so model code never runs on the event
loop and never sees two requests at once. Chunks cross back to the loop through each job's
own asyncio queue. A job cancelled while waiting is dropped; one cancelled while running stops
at the engine's next chunk (the engine checks the job's ``cancelled`` event).

Batching later: the worker is the only place that decides what runs next, so it can take
several waiting jobs and hand them to a batched engine call without changing handlers.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from collections.abc import AsyncIterator

import numpy as np

from voice_inference import metrics as metrics_mod
from voice_inference.engines import base

log = logging.getLogger(__name__)

_DONE = object()  # end-of-stream marker on a job's chunk queue


class QueueFull(Exception):
    """More requests are waiting than the queue allows."""


class NotReady(Exception):
    """The engine is not loaded and warmed up (yet, or any more)."""


class Job:
    """One admitted request: an async iterator of float32 chunks, cancellable at any time."""

    def __init__(self, request: base.SynthesisRequest, scheduler: "Scheduler") -> None:
        self.request = request
        self.cancelled = threading.Event()
        self._scheduler = scheduler
        self._loop = asyncio.get_running_loop()
        self._chunks: asyncio.Queue[object] = asyncio.Queue()

    def cancel(self) -> None:
        """Stop this job (call from the event loop): dropped if waiting, stopped if running."""
        if not self.cancelled.is_set():
            self.cancelled.set()
            self._scheduler._forget(self)

    # Called on the worker thread.
    def _emit(self, item: object) -> None:
        self._loop.call_soon_threadsafe(self._chunks.put_nowait, item)

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[np.ndarray]:
        while True:
            item = await self._chunks.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]


class Scheduler:
    def __init__(self, engine: base.Engine, *, max_queue: int, metrics: metrics_mod.Metrics) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self.metrics = metrics
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._waiting: collections.deque[Job] = collections.deque()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._running: Job | None = None
        self.ready = False
        self.draining = False
        self.load_error: str | None = None
        metrics.ready.set_function(lambda: float(self.ready))  # the gauge reads the flag: never out of step

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    async def start(self, *, warm_up: bool = True) -> None:
        """Load (and warm up) the engine on its thread, then start taking jobs."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.engine.load)
            if warm_up:
                await loop.run_in_executor(self._executor, self.engine.warm_up)
        except Exception as exc:
            self.load_error = f"{exc.__class__.__name__}: {exc}"
            log.error("engine %s failed to start: %s", self.engine.name, self.load_error)
            raise
        self._worker = asyncio.create_task(self._run(), name="scheduler")
        self.ready = True
        log.info("engine %s ready", self.engine.name)

    def drain(self) -> None:
        """Shutdown has begun: refuse new work (NotReady, so readiness turns 503 at once) while
        the jobs already admitted, waiting or running, go on to their end."""
        self.draining = True
        self.ready = False

    async def close(self) -> None:
        self.ready = False
        for job in list(self._waiting):  # cancel() removes the job from the deque
            job.cancel()
        if self._running is not None:  # stop the engine at its next chunk, not the job's end
            self._running.cancel()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.engine.close)
        self._executor.shutdown(wait=True)

    def submit(self, request: base.SynthesisRequest) -> Job:
        """Admit a request or raise ``NotReady`` / ``QueueFull`` straight away."""
        if self.draining:
            raise NotReady("the server is shutting down")
        if not self.ready:
            raise NotReady(self.load_error or "the engine is still loading")
        if len(self._waiting) >= self.max_queue:
            self.metrics.rejected.inc()
            raise QueueFull(f"{len(self._waiting)} requests are already waiting")
        job = Job(request, self)
        self._waiting.append(job)
        self.metrics.queue_depth.set(len(self._waiting))
        self._wakeup.set()
        return job

    def _forget(self, job: Job) -> None:
        """A cancelled job leaves the queue at once, so the depth gauge tells the truth."""
        if job in self._waiting:
            self._waiting.remove(job)
            self.metrics.queue_depth.set(len(self._waiting))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            job = self._waiting.popleft()
            self.metrics.queue_depth.set(len(self._waiting))
            self.metrics.in_flight.inc()
            self._running = job
            try:
                await loop.run_in_executor(self._executor, self._generate, job)
            finally:
                self._running = None
                self.metrics.in_flight.dec()

    def _generate(self, job: Job) -> None:
        """Runs on the engine thread: feed the job's chunks back to the loop."""
        try:
            for chunk in self.engine.generate(job.request, job.cancelled):
                if job.cancelled.is_set():
                    break
                job._emit(chunk)
        except base.RequestTooLarge as exc:  # the client's input, not a model failure: its message is theirs
            job._emit(exc)
        except Exception as exc:  # a model failure fails this request, not the server
            log.exception("engine failed on a request")
            job._emit(base.EngineError(f"synthesis failed: {exc.__class__.__name__}"))
        finally:
            job._emit(_DONE)
