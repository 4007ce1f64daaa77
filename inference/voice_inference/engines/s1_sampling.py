"""Batched sampling for S1 Mini: per-row parameters, per-row repetition windows, per-row noise.

Where it sits: ``s1_batch.DecodeStep`` calls these once per decode step for every row of the
batch (the slow head's semantic token, then each residual codebook). Everything here is
shape-static and free of host synchronisation, so the step can be ``torch.compile``d.

The sampling follows fish-speech 0.1.0's (top-p on the raw distribution, then temperature, a
repetition penalty over a window of the last 16 tokens, the exponential-race draw), with these
serving changes:
- the slow head only scores what the codec can render: the semantic tokens and ``<|im_end|>``
  (``s1_layers`` computes just those logits), so a stray text token can never be drawn;
- residual codes are drawn from the codec's real codebook size, and the repetition window is
  read per codebook (0.1.0 indexes a column by mistake);
- randomness is counter-based (``exponential_noise``).

Determinism contract: the Exp(1) draws of a row at one frame are a pure function of
(request seed, frame index within the request, draw index): a hash, not a stateful generator.
So a row's draws never depend on which rows share its batch, on the batch's order or size, or
on the global RNG (which is never touched). A seeded request therefore gives the same codes
alone or in any batch, as far as the model's arithmetic does (see ``s1_layers``).
"""

from __future__ import annotations

import torch
from torch import Tensor

REPETITION_WINDOW = 16  # frames; as fish-speech

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(value: Tensor, constant: int) -> Tensor:
    """``value * constant mod 2**32`` for int64 tensors holding 32-bit values, without overflowing int64."""
    low = value * (constant & 0xFFFF)
    high = ((value * (constant >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK32


def mix32(value: Tensor) -> Tensor:
    """MurmurHash3's 32-bit finalizer (a bijection with full avalanche) on int64 tensors of 32-bit values."""
    value = value ^ (value >> 16)
    value = _mul32(value, 0x85EBCA6B)
    value = value ^ (value >> 13)
    value = _mul32(value, 0xC2B2AE35)
    return value ^ (value >> 16)


def split_seed(seed: int) -> tuple[int, int]:
    """A 63-bit request seed as two 32-bit words (the hash works on 32-bit values)."""
    return seed & _MASK32, (seed >> 32) & _MASK32


def draw_counters(size: int, device: torch.device) -> Tensor:
    """The per-draw half of the noise hash, (size,) int64: made once, shared by every row."""
    return mix32(_mul32(torch.arange(size, dtype=torch.int64, device=device), _GOLDEN))


def exponential_noise(seed_words: Tensor, frames: Tensor, counters: Tensor) -> Tensor:
    """Exp(1) draws (rows, len(counters)) float32 for each row's (seed, frame).

    ``seed_words`` (rows, 2) int64 from ``split_seed``; ``frames`` (rows,) int64. Two rounds of
    ``mix32`` key the shared counters by the row; the top 24 bits become a uniform in (0, 1)
    (never 0 or 1, so no draw is 0 or infinite)."""
    key = mix32(seed_words[:, 0] ^ mix32((seed_words[:, 1] + _mul32(frames & _MASK32, _GOLDEN)) & _MASK32))
    second = mix32((key + 0x27D4EB2F) & _MASK32)
    bits = mix32((mix32(counters[None, :] ^ key[:, None]) + second[:, None]) & _MASK32)
    uniform = ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))
    return -torch.log(uniform)


def penalize(logits: Tensor, previous: Tensor, valid: Tensor, penalty: Tensor) -> Tensor:
    """Scale down each row's logits (rows, V) of tokens seen in its window (rows, W); ``valid``
    (rows, W) marks filled window slots, ``penalty`` is (rows,)."""
    seen = torch.zeros_like(logits).scatter_add_(1, previous.long(), valid.to(logits.dtype)) > 0
    penalty = penalty[:, None]
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def sample(logits: Tensor, temperature: Tensor, top_p: Tensor, noise: Tensor) -> Tensor:
    """Top-p, then temperature, then an exponential race per row: ``argmax(p / E)`` with
    ``E ~ Exp(1)`` is a draw from ``p`` that needs no host sync. (rows, V) -> (rows,) int."""
    sorted_logits, sorted_indices = torch.sort(logits, dim=-1, descending=True)
    cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    remove_sorted = cumulative > top_p[:, None]
    remove_sorted[:, 0] = False  # always keep the most likely token
    remove = remove_sorted.scatter(1, sorted_indices, remove_sorted)
    logits = logits.masked_fill(remove, -float("inf")) / torch.clamp(temperature, min=1e-5)[:, None]
    probs = torch.softmax(logits, dim=-1)
    return torch.argmax(probs / noise, dim=-1).to(torch.int)
