"""Slot bookkeeping: which jobs hold one of the engine's batch slots, which wait, who is next.

A pure state machine, no threads, no asyncio, no model: ``scheduler.Scheduler`` owns one and
calls it under its lock, from the event loop (``submit``, ``withdraw``) and from the engine
thread (``take_admissions``, ``free``); unit tests drive it directly.

A job moves: submitted -> *reserved* (a slot is its own, the engine admits it at the next
step) or *waiting* (all slots taken; at most ``max_waiting`` of them) -> reserved when a slot
frees, in arrival order -> freed when the engine releases its row. A waiting or reserved job
may be withdrawn (cancelled) at any time, and a reserved one gives its slot to the next waiter.
"""

from __future__ import annotations

import collections
import heapq
from typing import Generic, TypeVar

T = TypeVar("T")


class Full(Exception):
    """Every slot is taken and ``max_waiting`` jobs already wait."""


class SlotTable(Generic[T]):
    def __init__(self, capacity: int, *, max_waiting: int) -> None:
        if capacity < 1:
            raise ValueError("a slot table needs at least one slot")
        self.capacity = capacity
        self.max_waiting = max_waiting
        self._free = list(range(capacity))  # a heap: the lowest free slot is reused first
        self._reserved: dict[T, int] = {}  # slot taken, not yet handed to the engine (arrival order)
        self._waiting: collections.deque[T] = collections.deque()

    @property
    def waiting(self) -> int:
        """Jobs waiting beyond the slots (the queue depth)."""
        return len(self._waiting)

    @property
    def in_use(self) -> int:
        """Slots held: admitted rows plus reservations the engine has not taken yet."""
        return self.capacity - len(self._free)

    def submit(self, job: T) -> bool:
        """Reserve a slot for ``job`` (True) or queue it (False); raise ``Full`` when neither fits."""
        if self._free and not self._waiting:
            self._reserved[job] = heapq.heappop(self._free)
            return True
        if len(self._waiting) >= self.max_waiting:
            raise Full(f"{self.capacity} slots are busy and {len(self._waiting)} requests are already waiting")
        self._waiting.append(job)
        return False

    def withdraw(self, job: T) -> bool:
        """Drop a job that is waiting or reserved (True); False when it is not here (admitted or gone)."""
        if job in self._reserved:
            self._release_slot(self._reserved.pop(job))
            return True
        try:
            self._waiting.remove(job)
        except ValueError:
            return False
        return True

    def take_admissions(self) -> list[tuple[T, int]]:
        """Every reserved job with its slot, oldest first; the engine admits them now."""
        taken = list(self._reserved.items())
        self._reserved.clear()
        return taken

    def free(self, slot: int) -> list[T]:
        """The engine released the row in ``slot``; returns the waiters that now have a slot."""
        return self._release_slot(slot)

    def _release_slot(self, slot: int) -> list[T]:
        heapq.heappush(self._free, slot)
        promoted = []
        while self._free and self._waiting:
            job = self._waiting.popleft()
            self._reserved[job] = heapq.heappop(self._free)
            promoted.append(job)
        return promoted
