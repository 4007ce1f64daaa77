"""Slot bookkeeping (``voice_inference.slots``), the scheduler's state machine, without a model.

Covers: jobs take free slots (lowest first), then wait in arrival order up to ``max_waiting``,
then are refused; a freed slot goes to the oldest waiter; withdrawing a waiting or reserved
job frees its place (a reserved one hands its slot on); a reused slot is handed out again.
"""

from __future__ import annotations

import pytest

from voice_inference import slots


def test_jobs_take_slots_then_wait_then_are_refused() -> None:
    table: slots.SlotTable[str] = slots.SlotTable(2, max_waiting=1)
    assert table.submit("a") and table.submit("b")
    assert not table.submit("c")  # queued
    assert (table.in_use, table.waiting) == (2, 1)
    with pytest.raises(slots.Full, match="2 slots are busy and 1 requests are already waiting"):
        table.submit("d")
    assert table.take_admissions() == [("a", 0), ("b", 1)]
    assert table.take_admissions() == []


def test_a_freed_slot_goes_to_the_oldest_waiter() -> None:
    table: slots.SlotTable[str] = slots.SlotTable(2, max_waiting=5)
    for job in "abcde":
        table.submit(job)
    table.take_admissions()
    assert table.free(1) == ["c"]
    assert table.take_admissions() == [("c", 1)]
    assert table.free(0) == ["d"]
    assert table.free(1) == ["e"]
    assert table.take_admissions() == [("d", 0), ("e", 1)]
    assert table.waiting == 0


def test_a_freed_slot_is_reused_lowest_first() -> None:
    table: slots.SlotTable[str] = slots.SlotTable(4, max_waiting=0)
    for job in "abcd":
        table.submit(job)
    table.take_admissions()
    table.free(2)
    table.free(1)
    table.submit("x")
    table.submit("y")
    assert table.take_admissions() == [("x", 1), ("y", 2)]


def test_withdrawing_a_waiting_job_leaves_the_queue() -> None:
    table: slots.SlotTable[str] = slots.SlotTable(1, max_waiting=3)
    for job in "abc":
        table.submit(job)
    assert table.withdraw("b")
    assert table.waiting == 1
    table.take_admissions()
    assert table.free(0) == ["c"]


def test_withdrawing_a_reserved_job_hands_its_slot_on() -> None:
    table: slots.SlotTable[str] = slots.SlotTable(1, max_waiting=3)
    table.submit("a")  # reserved, not admitted yet
    table.submit("b")
    assert table.withdraw("a")
    assert (table.in_use, table.waiting) == (1, 0)
    assert table.take_admissions() == [("b", 0)]


def test_withdrawing_an_admitted_or_unknown_job_changes_nothing() -> None:
    table: slots.SlotTable[str] = slots.SlotTable(1, max_waiting=1)
    table.submit("a")
    table.take_admissions()
    assert not table.withdraw("a")  # the engine holds it: its release frees the slot
    assert not table.withdraw("nobody")
    assert table.in_use == 1


def test_a_waiter_never_jumps_the_queue_while_others_wait() -> None:
    table: slots.SlotTable[str] = slots.SlotTable(1, max_waiting=2)
    table.submit("a")
    table.submit("b")
    table.take_admissions()
    table.free(0)  # b is promoted and reserved
    assert not table.submit("c"), "no free slot: b holds it"
    assert table.take_admissions() == [("b", 0)]


def test_a_table_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        slots.SlotTable(0, max_waiting=1)
