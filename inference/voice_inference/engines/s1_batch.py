"""One batched decode step of S1 Mini: every active row advances by one frame.

Where it sits: ``s1_mini.S1MiniEngine.step`` calls ``DecodeStep.run`` with the slots of the rows
that decode this step. The batch is padded to a batch bucket (padding rows use the cache's
scratch slot) and attention to a span bucket, so a compiled step (``VOICE_S1_COMPILE``) has one
graph per (batch bucket, span bucket), all captured by ``warm_up`` before the server is ready.

Per step: gather each row's state (``s1_kvcache.SlotState``) -> slow transformer at each row's
own position (``s1_layers``) -> semantic token with the row's own parameters and noise
(``s1_sampling``) -> the fast transformer, batched over rows, one codebook after another ->
write the frame back as each row's next input and into its repetition window. One host copy
of the frames (rows, num_codebooks + 1) per step is the only synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from voice_inference.engines import s1_kvcache, s1_layers, s1_sampling, s1_slots

COMPILE_MODES = {"cuda": "reduce-overhead", "cpu": None}  # reduce-overhead = CUDA graphs


class DecodeStep:
    """The decode step, eager or compiled, with its batch and span buckets."""

    def __init__(
        self,
        layers: s1_layers.BatchedLayers,
        state: s1_kvcache.SlotState,
        *,
        residual_codes: int,
        batch_sizes: list[int],
        span_sizes: list[int],
    ) -> None:
        self.layers = layers
        self.state = state
        self.cache = layers.cache
        self.residual_codes = residual_codes
        self.batch_sizes = batch_sizes
        self.span_sizes = span_sizes
        self.num_codebooks = layers.num_codebooks
        device = state.last.device
        self.device = device
        self.slow_draws = layers.semantic_codes + 1
        self.counters = s1_sampling.draw_counters(self.slow_draws + (self.num_codebooks - 1) * residual_codes, device)
        self._step: Callable[[Tensor, int], Tensor] = self.forward
        self.last_bucket: tuple[int, int] | None = None  # (batch, span) of the last step

    def compile(self, *, backend: str) -> None:
        """One graph per (batch bucket, span bucket): shapes are static (``dynamic=False``), and
        dynamo's per-function graph limit is raised to hold them all."""
        graphs = len(self.batch_sizes) * len(self.span_sizes)
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, graphs + 8)
        self._step = torch.compile(
            self.forward,
            backend=backend,
            mode=COMPILE_MODES[self.device.type] if backend == "inductor" else None,
            fullgraph=True,
            dynamic=False,
        )

    def buckets(self) -> list[tuple[int, int]]:
        return [(batch, span) for batch in self.batch_sizes for span in self.span_sizes]

    def run(self, slots: list[int], span_needed: int) -> Tensor:
        """Frames (len(slots), num_codebooks + 1) on the CPU for the rows in ``slots``, whose
        positions all lie below ``span_needed``."""
        size = s1_slots.bucket(len(slots), self.batch_sizes)
        span = s1_slots.bucket(span_needed, self.span_sizes)
        self.last_bucket = (size, span)
        padded = slots + [self.cache.scratch] * (size - len(slots))
        index = torch.tensor(padded, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            frames = self._step(index, span).clone()
        return frames[: len(slots)].cpu()

    def capture(self, size: int, span: int) -> None:
        """Run the step once on padding rows only: compiles (and records) the bucket's graph."""
        index = torch.full((size,), self.cache.scratch, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            self._step(index, span)

    def forward(self, slots: Tensor, span: int) -> Tensor:
        state, layers = self.state, self.layers
        tokens = state.last.index_select(0, slots)[:, :, None]
        padding = slots == self.cache.scratch
        positions = torch.where(padding, 0, state.position.index_select(0, slots))  # padding stays at 0
        window = state.window.index_select(0, slots)
        valid = state.valid.index_select(0, slots)
        temperature = state.temperature.index_select(0, slots)
        top_p = state.top_p.index_select(0, slots)
        penalty = state.repetition_penalty.index_select(0, slots)
        draws = state.draws.index_select(0, slots)
        noise = s1_sampling.exponential_noise(state.seed.index_select(0, slots), draws, self.counters)

        hidden = layers.slow(tokens, positions[:, None], slots, span)
        logits = s1_sampling.penalize(layers.head(hidden), window[:, 0], valid, penalty)
        choice = s1_sampling.sample(logits, temperature, top_p, noise[:, : self.slow_draws])
        ended = choice == layers.semantic_codes
        code = torch.where(ended, torch.zeros_like(choice), choice)
        token = torch.where(ended, torch.full_like(choice, layers.im_end), choice + layers.semantic_begin)
        fast_noise = noise[:, self.slow_draws :].view(-1, self.num_codebooks - 1, self.residual_codes)

        def pick(codebook: int, fast_logits: Tensor) -> Tensor:
            fast_logits = s1_sampling.penalize(
                fast_logits[:, : self.residual_codes], window[:, codebook + 1], valid, penalty
            )
            return s1_sampling.sample(fast_logits, temperature, top_p, fast_noise[:, codebook - 1])

        residual = layers.fast(hidden, code, pick)
        frame = torch.stack([token, code, *residual], dim=1)  # (rows, num_codebooks + 1)
        remembered = torch.stack([choice, code, *residual], dim=1)  # the window holds head indices
        state.window.index_copy_(0, slots, torch.cat([window[:, :, 1:], remembered[:, :, None]], dim=2))
        state.valid.index_copy_(0, slots, torch.cat([valid[:, 1:], torch.ones_like(valid[:, :1])], dim=1))
        state.last.index_copy_(0, slots, frame)
        state.position.index_copy_(0, slots, positions + 1)
        state.draws.index_copy_(0, slots, draws + 1)
        return frame
