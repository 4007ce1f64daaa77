"""The batched S1 engine's slot bookkeeping (engines.s1_slots), without a model or torch: phases,
budgets, chunked prefill, chunk schedules, buckets and slot booking."""

from __future__ import annotations

import itertools

import pytest
from voice_inference.engines import s1_slots

Phase = s1_slots.Phase


def test_buckets_double_up_to_the_largest() -> None:
    assert s1_slots.bucket_sizes(1, 8) == [1, 2, 4, 8]
    assert s1_slots.bucket_sizes(1, 12) == [1, 2, 4, 8, 12]
    assert s1_slots.bucket_sizes(1024, 2560) == [1024, 2048, 2560]
    sizes = s1_slots.bucket_sizes(1, 12)
    assert [s1_slots.bucket(n, sizes) for n in (1, 2, 3, 5, 9, 12)] == [1, 2, 4, 8, 12, 12]


def test_a_slot_is_booked_once_and_freed() -> None:
    table = s1_slots.SlotTable(2)
    table.take(0)
    with pytest.raises(ValueError, match="already holds"):
        table.take(0)
    with pytest.raises(ValueError, match="out of range"):
        table.take(2)
    table.take(1)
    assert table.in_use == 2
    table.free(0)
    table.take(0)  # reused at once


def test_chunk_schedule_starts_small_and_doubles_to_its_limit() -> None:
    schedule = s1_slots.ChunkSchedule(first=2, then=16, largest=64)
    assert list(itertools.islice(schedule.sizes(), 6)) == [2, 16, 32, 64, 64, 64]
    assert schedule.longest == 64
    wide = s1_slots.ChunkSchedule(first=100, then=80, largest=64)  # a first chunk or step past the limit
    assert wide.longest == max(itertools.islice(wide.sizes(), 6)) == 100


def test_a_row_prefills_in_chunks_then_decodes_to_its_room() -> None:
    row = s1_slots.RowProgress(["one", "two"], budget=None, prefill_chunk=4)
    assert row.phase == Phase.PROMPT
    row.start_segment(prompt_length=10, room=3)
    chunks = []
    while row.phase == Phase.PREFILL:
        start, end = row.next_prefill()
        chunks.append((start, end))
        row.prefilled_to(end)
    assert chunks == [(0, 4), (4, 8), (8, 9)]  # the last prompt token is the first decode step's input
    assert (row.phase, row.position) == (Phase.DECODE, 9)
    assert [row.frame(end=False) for _ in range(3)] == [True, True, True]
    assert (row.phase, row.text, row.draws) == (Phase.PROMPT, "one", 3)  # room used up: the next segment
    row.start_segment(prompt_length=1, room=100)
    assert row.phase == Phase.DECODE  # nothing to prefill
    assert row.frame(end=True) is False  # the end token is no frame, but it used a draw
    assert (row.phase, row.draws) == (Phase.DRAIN, 4)


def test_the_budget_bounds_the_whole_request() -> None:
    row = s1_slots.RowProgress(["a", "b", "c"], budget=5, prefill_chunk=64)
    row.start_segment(prompt_length=2, room=100)
    assert row.room == 5
    row.prefilled_to(1)
    for _ in range(5):
        row.frame(end=False)
    assert row.phase == Phase.DRAIN  # budget spent: no further segment


def test_a_row_with_nothing_to_say_drains_at_once() -> None:
    assert s1_slots.RowProgress([], budget=None, prefill_chunk=8).phase == Phase.DRAIN
    assert s1_slots.RowProgress(["text"], budget=0, prefill_chunk=8).phase == Phase.DRAIN
