"""S1 Mini's forward passes for rows at different positions: the only module that reaches into
fish-speech's model internals.

Where it sits: ``s1_batch.DecodeStep`` (the batched decode step) and ``s1_mini.S1MiniEngine``
(chunked prefill) call ``BatchedLayers``. fish-speech's own ``forward_generate`` takes one
``input_pos`` for the whole batch and its ``KVCache.update`` writes every row at the same
positions, so rows that joined at different times cannot share it. Here the same weights run
with per-row positions: per-row rotary embeddings, writes and reads of ``s1_kvcache.SlotKVCache``
at each row's slot, and a mask per row.

What we rely on from ``fish_speech.models.text2semantic.llama`` (0.1.0), by attribute name:
``DualARTransformer.{embeddings, codebook_embeddings, layers, norm, output, freqs_cis,
fast_project_in, fast_embeddings, fast_layers, fast_norm, fast_output, fast_freqs_cis, config,
tokenizer}``, each ``TransformerBlock.{attention, feed_forward, attention_norm, ffn_norm}`` and
each ``Attention.{wqkv, wo, q_norm, k_norm, n_head, n_local_heads, head_dim,
attention_qk_norm}``. Their ``forward`` methods are not used (fish's KV caches are never set up).

Arithmetic: every op here is row-wise (a row's result never mixes in another row's values), so
batching changes a row's result only where a kernel's rounding depends on the batch's size
(matrix multiplications may pick other blockings); tests/unit/test_s1_batching.py checks that a
row's codes are the same alone and in a batch on CPU float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from fish_speech.models.text2semantic import llama
from torch import Tensor

from voice_inference.engines import s1_kvcache


class BatchedLayers:
    """The slow transformer over a ``SlotKVCache`` and the fast transformer, for a batch of rows."""

    def __init__(self, model: llama.DualARTransformer, cache: s1_kvcache.SlotKVCache) -> None:
        self.model = model
        self.cache = cache
        config = model.config
        self.num_codebooks = config.num_codebooks
        self.scale_codebooks = config.scale_codebook_embeddings
        tokenizer = model.tokenizer
        self.semantic_begin = tokenizer.semantic_begin_id
        self.semantic_end = tokenizer.semantic_end_id
        self.im_end = tokenizer.get_token_id("<|im_end|>")
        device = next(model.parameters()).device
        self.codebook_offsets = torch.arange(config.num_codebooks, device=device)[None, :, None] * config.codebook_size
        # The slow head scores only what may follow: the semantic tokens, then <|im_end|>.
        output = model.embeddings.weight if config.tie_word_embeddings else model.output.weight
        rows = torch.cat([output[self.semantic_begin : self.semantic_end + 1], output[self.im_end : self.im_end + 1]])
        self.head_weight = rows.detach().clone()
        # Added to the head's logits. Zeros; benchmarks and tests set the last (<|im_end|>) to -inf
        # with ``never_end``, since random weights would end requests at random frames.
        self.head_bias = torch.zeros(len(rows), device=device)

    @property
    def semantic_codes(self) -> int:
        """Head outputs before <|im_end|>: index i is semantic code i; index ``semantic_codes`` ends."""
        return self.semantic_end - self.semantic_begin + 1

    def embed(self, tokens: Tensor) -> Tensor:
        """Input embeddings (rows, T, dim) of frames (rows, num_codebooks + 1, T), as fish's
        ``forward_generate`` makes them: the token's embedding plus, for semantic tokens, the sum
        of the codebook embeddings (scaled when the config says so)."""
        model = self.model
        codes = model.codebook_embeddings(tokens[:, 1:] + self.codebook_offsets).sum(dim=1)
        token = tokens[:, 0]
        semantic = ((token >= self.semantic_begin) & (token <= self.semantic_end))[..., None]
        x = model.embeddings(token) + torch.where(semantic, codes, torch.zeros_like(codes))
        if self.scale_codebooks:
            x = torch.where(semantic, x / math.sqrt(self.num_codebooks + 1), x)
        return x

    def slow(self, tokens: Tensor, positions: Tensor, slots: Tensor, span: int) -> Tensor:
        """Run the slow transformer on frames (rows, num_codebooks + 1, T) at ``positions``
        (rows, T) of ``slots`` (rows,), attending over the first ``span`` cache positions.
        Writes the keys and values; returns the last position's hidden state (rows, dim), before
        the final norm (what the fast transformer takes)."""
        x = self.embed(tokens)
        freqs = self.model.freqs_cis[positions]  # (rows, T, head_dim / 2, 2)
        visible = torch.arange(span, device=positions.device)[None, None, :] <= positions[:, :, None]
        mask = visible[:, None]  # (rows, 1, T, span)
        for index, layer in enumerate(self.model.layers):
            attention = layer.attention

            def cached(keys: Tensor, values: Tensor, index: int = index) -> tuple[Tensor, Tensor]:
                self.cache.write(index, slots, positions, keys, values)
                return self.cache.read(index, slots, span)

            x = x + _attention(attention, layer.attention_norm(x), freqs, cached, mask)
            x = x + layer.feed_forward(layer.ffn_norm(x))
        return x[:, -1]

    def head(self, hidden: Tensor) -> Tensor:
        """Float32 logits (rows, semantic_codes + 1) of the slow head."""
        return torch.nn.functional.linear(self.model.norm(hidden), self.head_weight).float() + self.head_bias

    def never_end(self, enabled: bool = True) -> None:
        """Keep the end token from being drawn (benchmarks, tests: every request runs to its budget)."""
        self.head_bias[-1] = -float("inf") if enabled else 0.0

    def fast(self, hidden: Tensor, first_code: Tensor, pick: Callable[[int, Tensor], Tensor]) -> list[Tensor]:
        """The fast transformer over a batch: from the slow hidden state (rows, dim) and the
        semantic code (rows,), each residual codebook's logits go to ``pick(codebook, logits)``,
        which returns the chosen codes (rows,) that feed the next. Returns the residual codes."""
        model = self.model
        x = model.fast_project_in(hidden)[:, None]  # (rows, 1, fast_dim)
        caches: list[tuple[list[Tensor], list[Tensor]]] = [([], []) for _ in model.fast_layers]
        codes: list[Tensor] = []
        code = first_code
        for position in range(self.num_codebooks):
            freqs = model.fast_freqs_cis[position][None, None].expand(x.shape[0], 1, -1, -1)
            for layer, (keys, values) in zip(model.fast_layers, caches, strict=True):

                def grow(k: Tensor, v: Tensor, keys: list[Tensor] = keys, values: list[Tensor] = values):
                    keys.append(k)
                    values.append(v)
                    return torch.cat(keys, dim=2), torch.cat(values, dim=2)

                x = x + _attention(layer.attention, layer.attention_norm(x), freqs, grow, None)
                x = x + layer.feed_forward(layer.ffn_norm(x))
            if position > 0:
                logits = model.fast_output(model.fast_norm(x))[:, 0].float()
                code = pick(position, logits)
                codes.append(code)
            if position + 1 < self.num_codebooks:
                x = model.fast_embeddings(code)[:, None]
        return codes


def _attention(
    attention: torch.nn.Module,
    x: Tensor,
    freqs: Tensor,
    cached: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    mask: Tensor | None,
) -> Tensor:
    """fish's ``Attention.forward`` with per-row rotary positions and our own cache (``cached``
    stores this step's keys/values and returns all of them) and mask (rows, 1, T, span), or
    none (every cached position is visible)."""
    rows, length, _ = x.shape
    heads, kv_heads, head_dim = attention.n_head, attention.n_local_heads, attention.head_dim
    q_size, kv_size = heads * head_dim, kv_heads * head_dim
    q, k, v = attention.wqkv(x).split([q_size, kv_size, kv_size], dim=-1)
    q = q.view(rows, length, heads, head_dim)
    k = k.view(rows, length, kv_heads, head_dim)
    v = v.view(rows, length, kv_heads, head_dim)
    if attention.attention_qk_norm:
        q, k = attention.q_norm(q), attention.k_norm(k)
    q, k = _rotary(q, freqs), _rotary(k, freqs)
    keys, values = cached(k.transpose(1, 2), v.transpose(1, 2))  # (rows, kv_heads, S, head_dim)

    # Grouped-query attention without repeating keys: query head h reads kv head h // group.
    group = heads // kv_heads
    q = q.transpose(1, 2).reshape(rows, kv_heads, group * length, head_dim)
    scores = (q @ keys.transpose(-1, -2)).float() * (1.0 / math.sqrt(head_dim))
    if mask is not None:
        mask = mask[:, :, None].expand(rows, 1, group, length, mask.shape[-1]).reshape(rows, 1, group * length, -1)
        scores = scores.masked_fill(~mask, -float("inf"))
    y = torch.softmax(scores, dim=-1).to(values.dtype) @ values  # (rows, kv_heads, group * T, head_dim)
    y = y.view(rows, heads, length, head_dim).transpose(1, 2).reshape(rows, length, q_size)
    return attention.wo(y)


def _rotary(x: Tensor, freqs: Tensor) -> Tensor:
    """fish's ``apply_rotary_emb`` with frequencies per row: x (rows, T, heads, head_dim),
    freqs (rows, T, head_dim / 2, 2)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    freqs = freqs[:, :, None]
    rotated = torch.stack(
        [
            pairs[..., 0] * freqs[..., 0] - pairs[..., 1] * freqs[..., 1],
            pairs[..., 1] * freqs[..., 0] + pairs[..., 0] * freqs[..., 1],
        ],
        -1,
    )
    return rotated.flatten(3).type_as(x)
