"""The slot-major KV cache of the batched S1 Mini engine, and the per-slot state of its rows.

Where it sits: ``s1_mini.S1MiniEngine.load`` sizes the slots (``bytes_per_slot``, and on CUDA
``slots_that_fit`` free memory), then makes one ``SlotKVCache`` and one ``SlotState`` for them; ``s1_layers`` writes and reads the cache at each row's own
positions; ``s1_batch.DecodeStep`` reads and updates the state of the rows it steps.

Layout: each layer's keys and values are (slots + 1, kv_heads, max_seq_len, head_dim). The
extra slot (``scratch``) takes the writes of padding rows, so a batch padded to its bucket
never touches a real row. Both are ``nn.Module`` buffers, so a compiled step sees them as
static (CUDA graphs keep their addresses). Rows at different positions share a step: a row's
attention mask hides every position past its own, so what a slot held before is never read;
``clear`` zeroes a released slot anyway, so a reused slot starts from the same cache as a fresh one.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from voice_inference.engines import base, s1_sampling

log = logging.getLogger(__name__)


def bytes_per_slot(*, layers: int, kv_heads: int, max_seq_len: int, head_dim: int, dtype: torch.dtype) -> int:
    """Keys and values of one slot over the whole context."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return 2 * layers * kv_heads * max_seq_len * head_dim * itemsize


def slots_that_fit(wanted: int, *, slot_bytes: int, free_bytes: int) -> int:
    """As many of ``wanted`` slots as ``free_bytes`` hold: fewer is logged, none is an error."""
    fits = free_bytes // slot_bytes
    if fits < 1:
        raise base.EngineError(
            f"one slot's KV cache needs {slot_bytes / 2**20:.0f} MiB, but only {free_bytes / 2**20:.0f} MiB "
            "of GPU memory is free for it"
        )
    if fits < wanted:
        log.warning(
            "VOICE_MAX_BATCH_SIZE=%d slots need %.1f GiB of KV cache, %.1f GiB is free: using %d slots",
            wanted, wanted * slot_bytes / 2**30, free_bytes / 2**30, fits,
        )  # fmt: skip
        return fits
    return wanted


class LayerCache(torch.nn.Module):
    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("values", torch.zeros(shape, dtype=dtype), persistent=False)


class SlotKVCache(torch.nn.Module):
    """Keys and values of every layer, slot-major; slot ``scratch`` is the padding rows'."""

    def __init__(self, *, layers: int, slots: int, kv_heads: int, max_seq_len: int, head_dim: int, dtype: torch.dtype):
        super().__init__()
        self.scratch = slots
        self.max_seq_len = max_seq_len
        shape = (slots + 1, kv_heads, max_seq_len, head_dim)
        self.layers = torch.nn.ModuleList(LayerCache(shape, dtype) for _ in range(layers))

    def write(self, layer: int, slots: Tensor, positions: Tensor, keys: Tensor, values: Tensor) -> None:
        """Store keys/values (rows, kv_heads, T, head_dim) of rows in ``slots`` (rows,) at their
        own ``positions`` (rows, T)."""
        cache = self.layers[layer]
        index = (slots[:, None], slice(None), positions)  # -> (rows, T, kv_heads, head_dim)
        cache.keys[index] = keys.transpose(1, 2)
        cache.values[index] = values.transpose(1, 2)

    def read(self, layer: int, slots: Tensor, span: int) -> tuple[Tensor, Tensor]:
        """The first ``span`` positions of the rows' keys and values, (rows, kv_heads, span, head_dim)."""
        cache = self.layers[layer]
        return cache.keys[:, :, :span].index_select(0, slots), cache.values[:, :, :span].index_select(0, slots)

    def clear(self, slot: int, used: int) -> None:
        """Zero the first ``used`` positions of a slot (the ones its row wrote)."""
        for cache in self.layers:
            cache.keys[slot, :, :used].zero_()
            cache.values[slot, :, :used].zero_()


class SlotState(torch.nn.Module):
    """What a decode step needs of each slot's row, on the device (one index per slot + scratch).

    ``last`` is the row's input to its next step (its prompt's last token column, then its last
    frame); ``window``/``valid`` its repetition window over the current segment; ``seed`` its
    seed as two 32-bit words; ``draws`` its noise counter; and its sampling parameters."""

    def __init__(self, *, slots: int, rows: int, device: torch.device) -> None:
        super().__init__()
        count = slots + 1
        window = s1_sampling.REPETITION_WINDOW

        def buffer(name: str, shape: tuple[int, ...], dtype: torch.dtype, fill: float = 0) -> None:
            self.register_buffer(name, torch.full(shape, fill, dtype=dtype, device=device), persistent=False)

        buffer("last", (count, rows), torch.int)
        buffer("position", (count,), torch.long)
        buffer("window", (count, rows, window), torch.int)
        buffer("valid", (count, window), torch.bool)
        buffer("seed", (count, 2), torch.long)
        buffer("draws", (count,), torch.long)
        buffer("temperature", (count,), torch.float32, 1.0)
        buffer("top_p", (count,), torch.float32, 1.0)
        buffer("repetition_penalty", (count,), torch.float32, 1.0)

    def admit(self, slot: int, *, seed: int, temperature: float, top_p: float, repetition_penalty: float) -> None:
        self.seed[slot] = torch.tensor(s1_sampling.split_seed(seed))
        self.temperature[slot] = temperature
        self.top_p[slot] = top_p
        self.repetition_penalty[slot] = repetition_penalty

    def start_segment(self, slot: int, *, last_column: Tensor, position: int, draws: int) -> None:
        """A new segment: its prompt's last token goes in first, with an empty repetition window."""
        self.last[slot] = last_column
        self.position[slot] = position
        self.draws[slot] = draws
        self.window[slot] = 0
        self.valid[slot] = False
