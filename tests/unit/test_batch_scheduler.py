"""The scheduler driving a batching engine (``scheduler`` + ``batch_loop``), on pytest-asyncio.

A gated stepped engine advances every row of a step together and blocks each step until the
test releases it, so the tests decide exactly how many steps run and assert on order and
state, never on timing. Covers: concurrent requests share steps; a request joins at the next
step and a finished one leaves at once, handing its slot to the oldest waiter; ``QueueFull``
only beyond slots plus queue; cancelling one row leaves the others intact; a failing row
fails alone, a failing step fails its rows only; a reader that falls behind pauses its row
(the others go on) and is ended after the stall timeout; the new metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import numpy as np
import pytest

from voice_inference import batch_loop
from voice_inference import metrics as metrics_mod
from voice_inference import scheduler as scheduler_mod
from voice_inference.engines import base, stepped

WAIT_S = 10.0  # guard against hangs only
RATE = 100  # samples per second: a chunk of 10 samples is 0.1 s of audio
CHUNK = 10


class GatedBatchEngine(stepped.SteppedEngine):
    """Each row makes ``max_new_tokens`` chunks, one per step; chunk i of a row is filled with i.

    A step waits for one ``release()`` permit; ``steps`` records the texts of every step. Text
    ``"boom"`` fails its row at its second step; ``"break step"`` makes the whole step raise;
    ``"not audio"`` hands the scheduler a chunk that is not an array (a broken engine)."""

    name = "gated"
    sample_rate = RATE

    def __init__(self, max_batch_size: int) -> None:
        self.max_batch_size = max_batch_size
        self.gate = threading.Semaphore(0)
        self.at_gate = threading.Event()
        self.steps: list[list[str]] = []
        self.released: list[str] = []
        self.closed = False

    def load(self) -> None:
        pass

    def warm_up(self) -> None:
        pass

    def admit(self, request: base.SynthesisRequest, slot: int) -> stepped.Row:
        if request.text == "too large":
            raise base.RequestTooLarge("the prompt leaves no room")
        return stepped.Row(request, slot, state=0)

    def step(self, rows: Sequence[stepped.Row]) -> None:
        self.at_gate.set()
        assert self.gate.acquire(timeout=WAIT_S), "the test never released this step"
        self.at_gate.clear()
        self.steps.append([row.request.text for row in rows])
        if any(row.request.text == "break step" for row in rows):
            raise RuntimeError("the whole step exploded")
        for row in rows:
            if row.request.text == "boom" and row.state == 1:
                row.fail(RuntimeError("this row exploded"))
                continue
            chunk = np.full(CHUNK, row.state, dtype=np.float32)
            row.chunks.append(chunk.tolist() if row.request.text == "not audio" else chunk)  # type: ignore[arg-type]
            row.state += 1
            row.done = row.state >= row.request.max_new_tokens

    def release(self, row: stepped.Row) -> None:
        self.released.append(row.request.text)

    def close(self) -> None:
        self.closed = True

    def release_steps(self, count: int = 10_000) -> None:
        for _ in range(count):
            self.gate.release()


def request(text: str, chunks: int = 3) -> base.SynthesisRequest:
    return base.SynthesisRequest(text=text, max_new_tokens=chunks)


def sample(metrics: metrics_mod.Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value


async def collect(job: AsyncIterator[np.ndarray]) -> list[int]:
    async with asyncio.timeout(WAIT_S):
        return [int(chunk[0]) for chunk in [c async for c in job]]


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for a condition the engine thread makes true a few loop turns later."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.001)


@contextlib.contextmanager
def together(scheduler: scheduler_mod.Scheduler) -> Iterator[None]:
    """Requests submitted inside are admitted at the same step: the engine thread takes its
    admissions under this (reentrant) lock, so it cannot take the first before the last."""
    with scheduler._batches._cond:
        yield


async def at_gate(engine: GatedBatchEngine) -> None:
    assert await asyncio.to_thread(engine.at_gate.wait, WAIT_S), "the engine never reached a step"


@pytest.fixture
async def make():  # type: ignore[no-untyped-def]
    started: list[scheduler_mod.Scheduler] = []

    async def build(slots: int = 4, *, max_queue: int = 4, **kwargs: float):  # type: ignore[no-untyped-def]
        engine = GatedBatchEngine(slots)
        metrics = metrics_mod.Metrics()
        scheduler = scheduler_mod.Scheduler(engine, max_queue=max_queue, metrics=metrics, **kwargs)
        await scheduler.start()
        started.append(scheduler)
        return scheduler, engine, metrics

    yield build
    for scheduler in started:
        scheduler.engine.release_steps()  # type: ignore[attr-defined]
        await scheduler.close()


async def test_concurrent_requests_share_every_step(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(4)
    with together(scheduler):
        jobs = [scheduler.submit(request(f"r{i}")) for i in range(4)]
    engine.release_steps()
    results = [await collect(job) for job in jobs]
    assert results == [[0, 1, 2]] * 4
    assert engine.steps == [["r0", "r1", "r2", "r3"]] * 3
    assert sample(metrics, "voice_engine_rows_per_step_count") == 3
    assert sample(metrics, "voice_engine_rows_per_step_sum") == 12
    assert sample(metrics, "voice_engine_step_seconds_count") == 3
    assert sample(metrics, "voice_batch_slots") == 4
    await until(lambda: sample(metrics, "voice_in_flight_requests") == 0)


async def test_a_request_joins_at_the_next_step_and_leaves_when_done(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(4)
    first = scheduler.submit(request("first", chunks=3))
    await at_gate(engine)  # step 1 holds only "first"
    second = scheduler.submit(request("second", chunks=1))
    engine.release_steps()
    assert await collect(first) == [0, 1, 2]
    assert await collect(second) == [0]
    assert engine.steps == [["first"], ["first", "second"], ["first"]]
    assert engine.released == ["second", "first"], "each row left at the step it finished"


async def test_a_waiter_takes_the_slot_a_finished_row_frees(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(2, max_queue=2)
    with together(scheduler):
        short, long = scheduler.submit(request("short", 1)), scheduler.submit(request("long", 3))
        waiter = scheduler.submit(request("waiter", 1))
    assert (sample(metrics, "voice_in_flight_requests"), sample(metrics, "voice_queue_depth")) == (2, 1)
    engine.release_steps()
    assert await collect(waiter) == [0]
    assert await collect(short) == [0] and await collect(long) == [0, 1, 2]
    assert engine.steps == [["short", "long"], ["long", "waiter"], ["long"]]
    assert sample(metrics, "voice_queue_wait_seconds_count") == 3, "every request got a slot once"


async def test_queue_full_counts_waiting_beyond_the_slots(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(3, max_queue=2)
    jobs = [scheduler.submit(request(f"r{i}")) for i in range(5)]  # 3 in slots, 2 waiting
    assert sample(metrics, "voice_queue_depth") == 2
    assert sample(metrics, "voice_batch_slot_occupancy") == 1.0
    with pytest.raises(scheduler_mod.QueueFull, match="3 slots are busy"):
        scheduler.submit(request("refused"))
    assert sample(metrics, "voice_rejected_requests_total") == 1
    engine.release_steps()
    assert [await collect(job) for job in jobs] == [[0, 1, 2]] * 5
    assert all("refused" not in step for step in engine.steps)


async def test_cancelling_one_row_leaves_the_others_intact(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(4)
    with together(scheduler):
        jobs = {name: scheduler.submit(request(name, 4)) for name in ("a", "b", "c")}
    iterator = aiter(jobs["b"])
    engine.release_steps(1)
    async with asyncio.timeout(WAIT_S):
        assert int((await anext(iterator))[0]) == 0
    await at_gate(engine)  # inside step 2
    jobs["b"].cancel()
    assert [chunk async for chunk in iterator] == [], "the cancelled stream ends at once"
    engine.release_steps()
    assert await collect(jobs["a"]) == [0, 1, 2, 3]
    assert await collect(jobs["c"]) == [0, 1, 2, 3]
    assert [step.count("b") for step in engine.steps] == [1, 1, 0, 0], "b leaves after the step in progress"
    await until(lambda: sample(metrics, "voice_in_flight_requests") == 0)


async def test_cancelling_drops_audio_made_but_not_read(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(1)
    job = scheduler.submit(request("unread", 100))
    engine.release_steps(2)
    await at_gate(engine)  # step 3 waits: the chunks of steps 1 and 2 were handed over before it
    await asyncio.sleep(0)
    job.cancel()
    assert await collect(job) == [], "nobody reads it any more"
    engine.release_steps()
    await until(lambda: sample(metrics, "voice_in_flight_requests") == 0)


async def test_a_cancelled_waiting_job_ends_its_stream_and_leaves_the_queue(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(1)
    running = scheduler.submit(request("running"))
    waiting = scheduler.submit(request("waiting"))
    assert sample(metrics, "voice_queue_depth") == 1
    waiting.cancel()
    assert sample(metrics, "voice_queue_depth") == 0
    assert await collect(waiting) == []
    engine.release_steps()
    assert await collect(running) == [0, 1, 2]
    assert all("waiting" not in step for step in engine.steps)


async def test_a_failing_row_fails_alone(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, _ = await make(4)
    boom, fine = scheduler.submit(request("boom", 3)), scheduler.submit(request("fine", 3))
    engine.release_steps()
    received: list[int] = []
    with pytest.raises(base.EngineError, match="RuntimeError"):
        async with asyncio.timeout(WAIT_S):
            async for chunk in boom:
                received.append(int(chunk[0]))
    assert received == [0], "audio made before the failure is delivered"
    assert await collect(fine) == [0, 1, 2]


async def test_a_failing_step_fails_its_rows_and_the_server_goes_on(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, _ = await make(4)
    broken, neighbour = scheduler.submit(request("break step")), scheduler.submit(request("neighbour"))
    engine.release_steps()
    for job in (broken, neighbour):
        with pytest.raises(base.EngineError, match="synthesis failed: RuntimeError"):
            await collect(job)
    assert await collect(scheduler.submit(request("after"))) == [0, 1, 2]
    assert scheduler.ready


async def test_a_request_too_large_reaches_its_job_as_it_is(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(1)
    with pytest.raises(base.RequestTooLarge, match="no room"):
        await collect(scheduler.submit(request("too large")))
    engine.release_steps()
    assert await collect(scheduler.submit(request("fine"))) == [0, 1, 2]


async def test_a_slow_reader_pauses_its_row_and_the_others_go_on(make) -> None:  # type: ignore[no-untyped-def]
    # A buffer of 0.2 s is two chunks: the unread row is stepped twice, then waits.
    scheduler, engine, metrics = await make(2, buffer_seconds=0.2, stall_timeout_s=3600)
    with together(scheduler):
        slow, fast = scheduler.submit(request("slow", 6)), scheduler.submit(request("fast", 6))
    engine.release_steps()
    assert await collect(fast) == list(range(6))  # never waits for the slow reader
    assert [step.count("slow") for step in engine.steps] == [1, 1, 0, 0, 0, 0]
    assert sample(metrics, "voice_in_flight_requests") == 1, "the paused row keeps its slot"
    assert await collect(slow) == list(range(6)), "reading resumes the row where it paused"


async def test_a_reader_stalled_past_the_timeout_is_ended_and_frees_its_slot(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(1, buffer_seconds=0.1, stall_timeout_s=0.05)
    stalled = scheduler.submit(request("stalled", 5))
    after = scheduler.submit(request("after", 1))  # waits for the one slot
    engine.release_steps()
    assert await collect(after) == [0], "the slot went to the next request"
    with pytest.raises(batch_loop.StreamStalled, match="read no audio"):
        await collect(stalled)  # the chunk made before the stall, then the error
    assert [step.count("stalled") for step in engine.steps] == [1, 0]


async def test_close_ends_every_stream(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, _ = await make(1)
    running, waiting = scheduler.submit(request("running", 100)), scheduler.submit(request("waiting"))
    await at_gate(engine)
    closing = asyncio.create_task(scheduler.close())
    await asyncio.sleep(0)  # close() has cancelled the jobs by its first await
    engine.release_steps()
    async with asyncio.timeout(WAIT_S):
        await closing
    assert await collect(running) == [] and await collect(waiting) == []
    assert engine.closed and engine.released == ["running"]
    with pytest.raises(scheduler_mod.NotReady):
        scheduler.submit(request("late"))


async def test_a_broken_engine_loop_ends_every_stream_and_turns_not_ready(make) -> None:  # type: ignore[no-untyped-def]
    scheduler, engine, metrics = await make(1)
    broken, waiting = scheduler.submit(request("not audio")), scheduler.submit(request("waiting"))
    engine.release_steps()
    assert await collect(broken) == [] and await collect(waiting) == []
    assert not scheduler.ready and sample(metrics, "voice_engine_ready") == 0
    assert scheduler.load_error is not None and "engine loop failed: AttributeError" in scheduler.load_error
    with pytest.raises(scheduler_mod.NotReady, match="engine loop failed"):
        scheduler.submit(request("late"))


class ShrinkingEngine(GatedBatchEngine):
    """Fits fewer slots at load than it was built for, as S1 Mini does when GPU memory is short."""

    def __init__(self, max_batch_size: int, fits: int) -> None:
        super().__init__(max_batch_size)
        self.fits = fits

    def load(self) -> None:
        self.max_batch_size = self.fits


async def test_the_slot_table_follows_a_smaller_maximum_set_at_load() -> None:
    engine, metrics = ShrinkingEngine(4, fits=2), metrics_mod.Metrics()
    scheduler = scheduler_mod.Scheduler(engine, max_queue=1, metrics=metrics)
    await scheduler.start()
    try:
        assert scheduler.max_batch_size == 2 and sample(metrics, "voice_batch_slots") == 2
        with together(scheduler):
            jobs = [scheduler.submit(request(f"r{i}", 1)) for i in range(3)]  # 2 in slots, 1 waiting
        with pytest.raises(scheduler_mod.QueueFull, match="2 slots are busy"):
            scheduler.submit(request("refused"))
        engine.release_steps()
        assert [await collect(job) for job in jobs] == [[0]] * 3
        assert engine.steps == [["r0", "r1"], ["r2"]], "never more rows in a step than the slots that fit"
    finally:
        engine.release_steps()
        await scheduler.close()
