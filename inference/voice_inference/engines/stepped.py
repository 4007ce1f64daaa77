"""The stepped engine interface: what the batching scheduler drives, one iteration at a time.

Where it sits: the scheduler (``voice_inference.scheduler``) owns one ``SteppedEngine`` and calls
it only from its single engine thread. Each admitted request becomes a ``Row`` in one of
``max_batch_size`` slots. The scheduler's loop is:

    admit waiting requests into free slots  ->  step(every active row)  ->
    hand each row's new ``chunks`` to its job  ->  release rows that are done, failed,
    cancelled or timed out (their slots are free for the next step)

so a request joins at the next step and leaves as soon as it is finished. An engine that
batches (S1 Mini, mock) advances all rows of a step together; ``Sequential`` adapts an
``engines.base.Engine`` that can only ``generate`` one request at a time, and ``OneAtATime``
the other way round: a stepped engine behind ``generate``, for callers that take an ``Engine``.

Rules an implementation keeps:
- ``step`` does a bounded amount of work (one frame per row for a batched model), so a
  joining request never stalls the running ones for long; slow per-row work (prefill,
  reference encoding) is split across steps or done off the stepping thread.
- A failure that belongs to one row goes to that row's ``error`` (and ends it); an exception
  out of ``step`` itself fails every row of the step.
- Rows keep their own state: sampling parameters, seed, position, segments. Which other rows
  share a step never changes a row's output.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice_inference.engines import base


@dataclass(eq=False)
class Row:
    """One admitted request in one slot. ``chunks`` is filled by the engine, drained by the scheduler."""

    request: base.SynthesisRequest
    slot: int
    chunks: list[np.ndarray] = field(default_factory=list)  # float32 mono audio made since the last drain
    done: bool = False  # no more audio will come
    error: BaseException | None = None  # this row failed (``done`` is set too)
    state: Any = None  # the engine's own per-request state

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done = True


class SteppedEngine(abc.ABC):
    """A model the scheduler advances one iteration at a time over up to ``max_batch_size`` rows."""

    name: str
    sample_rate: int
    max_batch_size: int

    @abc.abstractmethod
    def load(self) -> None:
        """Load weights; raise with a clear message when something is missing."""

    def warm_up(self) -> None:
        """Run a short synthesis (and capture compiled graphs) before the server reports ready."""
        row = self.admit(base.SynthesisRequest(text="Warm up.", max_new_tokens=32), slot=0)
        try:
            while not row.done:
                self.step([row])
                row.chunks.clear()
            if row.error is not None:
                raise row.error
        finally:
            self.release(row)

    @abc.abstractmethod
    def admit(self, request: base.SynthesisRequest, slot: int) -> Row:
        """Take a request into ``slot`` (free, ``0 <= slot < max_batch_size``); cheap, no model work.

        Raises ``base.RequestTooLarge`` for a request that can never fit."""

    @abc.abstractmethod
    def step(self, rows: Sequence[Row]) -> None:
        """Advance every given row (all admitted, none done) by one iteration."""

    @abc.abstractmethod
    def release(self, row: Row) -> None:
        """Forget a row (finished, failed, cancelled or timed out); its slot may be reused at once."""

    def close(self) -> None:
        """Release resources held by the model."""


class Sequential(SteppedEngine):
    """An ``Engine`` that cannot batch, stepped one chunk at a time: the batch-1 path.

    With ``slots`` > 1 its requests take turns chunk by chunk (fair, but no faster in total)."""

    def __init__(self, engine: base.Engine, *, slots: int = 1) -> None:
        self.engine = engine
        self.name = engine.name
        self.max_batch_size = slots

    @property
    def sample_rate(self) -> int:  # type: ignore[override]  # the engine sets its own on load
        return self.engine.sample_rate

    def load(self) -> None:
        self.engine.load()

    def warm_up(self) -> None:
        self.engine.warm_up()

    def admit(self, request: base.SynthesisRequest, slot: int) -> Row:
        cancelled = threading.Event()
        return Row(request, slot, state=(self.engine.generate(request, cancelled), cancelled))

    def step(self, rows: Sequence[Row]) -> None:
        for row in rows:
            chunks: Iterator[np.ndarray] = row.state[0]
            try:
                row.chunks.append(next(chunks))
            except StopIteration:
                row.done = True
            except Exception as exc:  # this request's failure, not the others'
                row.fail(exc)

    def release(self, row: Row) -> None:
        chunks, cancelled = row.state
        cancelled.set()
        chunks.close()

    def close(self) -> None:
        self.engine.close()


class OneAtATime(base.Engine):
    """A ``SteppedEngine`` driven one request at a time through ``generate``: for callers that
    take an ``engines.base.Engine`` (tests, benchmarks, a scheduler that does not batch yet)."""

    def __init__(self, engine: SteppedEngine) -> None:
        self.stepped = engine
        self.name = engine.name

    @property
    def sample_rate(self) -> int:  # type: ignore[override]  # the engine sets its own on load
        return self.stepped.sample_rate

    def load(self) -> None:
        self.stepped.load()

    def warm_up(self) -> None:
        self.stepped.warm_up()

    def generate(self, request: base.SynthesisRequest, cancelled: threading.Event) -> Iterator[np.ndarray]:
        row = self.stepped.admit(request, slot=0)
        try:
            while not row.done and not cancelled.is_set():
                self.stepped.step([row])
                chunks, row.chunks = row.chunks, []
                yield from chunks
            if row.error is not None:
                raise row.error
        finally:
            self.stepped.release(row)

    def close(self) -> None:
        self.stepped.close()
