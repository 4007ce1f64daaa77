"""The scheduler (``voice_inference.scheduler``) with small test engines, on pytest-asyncio.

Covers: chunks arrive in order; admission control (``QueueFull`` once ``max_queue`` jobs
wait); a cancelled waiting job leaves the queue and the depth gauge at once; cancelling a
running job stops the engine at its next chunk; an engine exception fails that job only
(``EngineError``) and the next job works; ``NotReady`` before start, after a failed load and
after close; model code never runs on the event loop thread; close with jobs in flight; the
stream of every cancelled job ends at once, waiting or running, even while the engine is busy.

Test engines block on ``threading`` primitives the test releases, so every assertion is
about order and state, never about timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from voice_inference import metrics as metrics_mod
from voice_inference import scheduler as scheduler_mod
from voice_inference.engines import base

WAIT_S = 10.0  # guard against hangs only; nothing asserts on time


class ScriptedEngine(base.Engine):
    """Yields ``chunks`` chunks per request (chunk i is filled with i), recording what ran where.

    With ``gated``, each chunk waits for one ``step`` release, so a test decides exactly how
    far the engine gets. Text ``"boom"`` raises after ``fail_after`` chunks.
    """

    name = "scripted"
    sample_rate = 16_000

    def __init__(self, chunks: int = 5, *, gated: bool = False, fail_after: int = 0) -> None:
        self.chunks = chunks
        self.gated = gated
        self.fail_after = fail_after
        self.step = threading.Semaphore(0)
        self.started = threading.Event()  # set when a generate() call begins
        self.finished = threading.Event()  # set when a generate() call ends, however it ends
        self.threads: set[int] = set()
        self.seen: list[str] = []
        self.produced = 0
        self.stopped_by_cancel = False
        self.closed = False

    def load(self) -> None:
        self.threads.add(threading.get_ident())

    def warm_up(self) -> None:
        self.threads.add(threading.get_ident())

    def generate(self, request: base.SynthesisRequest, cancelled: threading.Event) -> Iterator[np.ndarray]:
        self.threads.add(threading.get_ident())
        self.seen.append(request.text)
        self.finished.clear()
        self.started.set()
        try:
            for i in range(self.chunks):
                if self.gated:
                    self.step.acquire(timeout=WAIT_S)
                if cancelled.is_set():
                    self.stopped_by_cancel = True
                    return
                if request.text == "boom" and i == self.fail_after:
                    raise RuntimeError("the model exploded")
                if request.text == "too large":
                    raise base.RequestTooLarge("the prompt leaves no room")
                self.produced += 1
                yield np.full(4, i, dtype=np.float32)
        finally:
            self.finished.set()

    def close(self) -> None:
        self.closed = True

    def release(self, steps: int = 10_000) -> None:
        for _ in range(steps):
            self.step.release()


class FailingLoadEngine(ScriptedEngine):
    def load(self) -> None:
        raise FileNotFoundError("no checkpoint at /nowhere")


def gauge(metrics: metrics_mod.Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


async def wait_thread_event(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT_S), "the engine never got there"


async def settles_to(metrics: metrics_mod.Metrics, name: str, value: float) -> None:
    """Wait (bounded) until a gauge reaches ``value``: the worker updates it after the job's
    last chunk is delivered, a few loop turns later."""
    async with asyncio.timeout(WAIT_S):
        while gauge(metrics, name) != value:
            await asyncio.sleep(0.001)


async def collect(job: AsyncIterator[np.ndarray]) -> list[np.ndarray]:
    async with asyncio.timeout(WAIT_S):
        return [chunk async for chunk in job]


async def make_scheduler(
    engine: base.Engine, *, max_queue: int = 8, start: bool = True
) -> tuple[scheduler_mod.Scheduler, metrics_mod.Metrics]:
    metrics = metrics_mod.Metrics()
    scheduler = scheduler_mod.Scheduler(engine, max_queue=max_queue, metrics=metrics)
    if start:
        await scheduler.start()
    return scheduler, metrics


def request(text: str = "hello") -> base.SynthesisRequest:
    return base.SynthesisRequest(text=text)


async def test_chunks_arrive_in_order() -> None:
    engine = ScriptedEngine(chunks=50)
    scheduler, _ = await make_scheduler(engine)
    try:
        chunks = await collect(scheduler.submit(request()))
        assert [int(chunk[0]) for chunk in chunks] == list(range(50))
    finally:
        await scheduler.close()


async def test_jobs_run_one_at_a_time_in_arrival_order() -> None:
    engine = ScriptedEngine(chunks=3)
    scheduler, metrics = await make_scheduler(engine)
    try:
        jobs = [scheduler.submit(request(f"job {i}")) for i in range(5)]
        results = [await collect(job) for job in reversed(jobs)]  # consuming order does not matter
        assert all(len(chunks) == 3 for chunks in results)
        assert engine.seen == [f"job {i}" for i in range(5)]
        assert gauge(metrics, "voice_queue_depth") == 0
    finally:
        await scheduler.close()


async def test_queue_full_when_max_queue_jobs_wait() -> None:
    engine = ScriptedEngine(chunks=2, gated=True)
    scheduler, metrics = await make_scheduler(engine, max_queue=2)
    try:
        running = scheduler.submit(request("running"))
        await wait_thread_event(engine.started)  # the worker took it: the queue is empty again
        waiting = [scheduler.submit(request("a")), scheduler.submit(request("b"))]
        assert gauge(metrics, "voice_queue_depth") == 2
        with pytest.raises(scheduler_mod.QueueFull):
            scheduler.submit(request("refused"))
        assert gauge(metrics, "voice_rejected_requests_total") == 1
        engine.release()
        for job in (running, *waiting):
            assert len(await collect(job)) == 2
        assert "refused" not in engine.seen
        scheduler.submit(request("room again"))  # admitted once the queue drained
    finally:
        engine.release()
        await scheduler.close()


async def test_a_cancelled_waiting_job_leaves_the_queue_at_once() -> None:
    engine = ScriptedEngine(chunks=1, gated=True)
    scheduler, metrics = await make_scheduler(engine)
    try:
        running = scheduler.submit(request("running"))
        await wait_thread_event(engine.started)
        first, second = scheduler.submit(request("first")), scheduler.submit(request("second"))
        consumer = asyncio.create_task(collect(first))  # iterating before the cancel, as a handler would
        assert gauge(metrics, "voice_queue_depth") == 2
        first.cancel()  # no await in between: the gauge must already tell the truth
        assert gauge(metrics, "voice_queue_depth") == 1
        assert await consumer == [], "the cancelled job's stream ends, though the worker never saw it"
        assert not engine.finished.is_set(), "...while the running job still holds the engine"
        engine.release()
        assert len(await collect(running)) == 1
        assert len(await collect(second)) == 1
        assert engine.seen == ["running", "second"], "the cancelled job never reached the engine"
        assert gauge(metrics, "voice_queue_depth") == 0
    finally:
        engine.release()
        await scheduler.close()


async def test_cancelling_a_running_job_stops_the_engine_at_its_next_chunk() -> None:
    engine = ScriptedEngine(chunks=1000, gated=True)
    scheduler, metrics = await make_scheduler(engine)
    try:
        job = scheduler.submit(request("long"))
        iterator = aiter(job)
        engine.release(2)
        async with asyncio.timeout(WAIT_S):
            assert int((await anext(iterator))[0]) == 0
            assert int((await anext(iterator))[0]) == 1
        assert gauge(metrics, "voice_in_flight_requests") == 1
        reader = asyncio.create_task(anext(iterator, None))  # waits for a chunk the engine is not making
        job.cancel()
        async with asyncio.timeout(WAIT_S):
            assert await reader is None, "the job's stream ends at once"
        assert not engine.finished.is_set(), "...while the engine is still inside its step"
        engine.release(1)  # let the engine reach its next chunk
        await wait_thread_event(engine.finished)
        assert engine.stopped_by_cancel
        assert engine.produced == 2
        engine.release()
        # The worker moved on: a new job is served, and the gauges are back to zero after it.
        assert len(await collect(scheduler.submit(request("next")))) == 1000
        await settles_to(metrics, "voice_in_flight_requests", 0)
        assert gauge(metrics, "voice_queue_depth") == 0
    finally:
        engine.release()
        await scheduler.close()


async def test_a_request_too_large_reaches_the_job_as_it_is() -> None:
    scheduler, _ = await make_scheduler(ScriptedEngine(chunks=5))
    try:
        with pytest.raises(base.RequestTooLarge, match="leaves no room"):
            async with asyncio.timeout(WAIT_S):
                await collect(scheduler.submit(request("too large")))
        assert len(await collect(scheduler.submit(request("fine")))) == 5
    finally:
        await scheduler.close()


@pytest.mark.parametrize("fail_after", [0, 3], ids=["before-audio", "mid-stream"])
async def test_an_engine_exception_fails_that_job_only(fail_after: int) -> None:
    engine = ScriptedEngine(chunks=5, fail_after=fail_after)
    scheduler, metrics = await make_scheduler(engine)
    try:
        failing, after = scheduler.submit(request("boom")), scheduler.submit(request("fine"))
        received = []
        with pytest.raises(base.EngineError, match="RuntimeError"):
            async with asyncio.timeout(WAIT_S):
                async for chunk in failing:
                    received.append(chunk)
        assert len(received) == fail_after, "chunks made before the failure are delivered"
        assert [int(chunk[0]) for chunk in await collect(after)] == list(range(5))
        assert scheduler.ready
        await settles_to(metrics, "voice_in_flight_requests", 0)
    finally:
        await scheduler.close()


async def test_submit_before_start_is_not_ready() -> None:
    scheduler, metrics = await make_scheduler(ScriptedEngine(), start=False)
    with pytest.raises(scheduler_mod.NotReady):
        scheduler.submit(request())
    assert gauge(metrics, "voice_engine_ready") == 0
    await scheduler.start()
    try:
        assert gauge(metrics, "voice_engine_ready") == 1
        assert len(await collect(scheduler.submit(request()))) == 5
    finally:
        await scheduler.close()
    assert gauge(metrics, "voice_engine_ready") == 0, "a closing server is not ready"


async def test_a_failed_load_is_reported_and_keeps_refusing() -> None:
    scheduler, metrics = await make_scheduler(FailingLoadEngine(), start=False)
    with pytest.raises(FileNotFoundError):
        await scheduler.start()
    assert not scheduler.ready
    assert gauge(metrics, "voice_engine_ready") == 0
    assert scheduler.load_error is not None and "no checkpoint" in scheduler.load_error
    with pytest.raises(scheduler_mod.NotReady, match="no checkpoint"):
        scheduler.submit(request())
    await scheduler.close()


async def test_model_code_runs_on_one_thread_that_is_not_the_event_loop() -> None:
    engine = ScriptedEngine()
    scheduler, _ = await make_scheduler(engine)
    try:
        await collect(scheduler.submit(request()))
        await collect(scheduler.submit(request()))
    finally:
        await scheduler.close()
    assert threading.get_ident() not in engine.threads
    assert len(engine.threads) == 1, "load, warm-up and every request share the one engine thread"


async def test_close_with_waiting_and_running_jobs() -> None:
    engine = ScriptedEngine(chunks=1000, gated=True)
    scheduler, _ = await make_scheduler(engine)
    running = scheduler.submit(request("running"))
    await wait_thread_event(engine.started)
    waiting = [scheduler.submit(request(f"waiting {i}")) for i in range(3)]
    engine.release(1)
    consumers = [asyncio.create_task(collect(job)) for job in (running, *waiting)]
    closing = asyncio.create_task(scheduler.close())
    # Every consumer's stream ends while the engine is still blocked in its step (close() waits
    # for it): nobody is left waiting on a job that will never run.
    results = await asyncio.gather(*consumers)
    assert all(job.cancelled.is_set() for job in (running, *waiting))
    assert results[1:] == [[], [], []]
    assert len(results[0]) <= 1, "the running job ends with what it had made"
    assert not closing.done()
    engine.release()
    async with asyncio.timeout(WAIT_S):
        await closing
    assert engine.closed
    assert engine.stopped_by_cancel and engine.produced < 1000, "close stops the running job"
    assert engine.seen == ["running"]
    with pytest.raises(scheduler_mod.NotReady):
        scheduler.submit(request())
