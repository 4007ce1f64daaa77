"""One decode step of S1 Mini: slow transformer -> semantic token -> fast transformer -> residual codes.

Where it sits: ``s1_mini.S1MiniEngine`` calls ``FrameSampler`` once for the prompt (prefill) and
once per generated frame; with ``VOICE_S1_COMPILE`` the per-frame call is ``torch.compile``d
(CUDA graphs on GPU), so everything here is shape-static and free of host synchronisation.

The sampling follows fish-speech 0.1.0's (top-p on the raw distribution, then temperature, a
repetition penalty over a window of the last 16 tokens, the exponential-race draw), with three
serving changes:
- randomness comes in as tensors (``noise_*``), drawn by the caller from the request's own
  ``torch.Generator``, so a seed reproduces its request and never touches global RNG state;
- the slow transformer may only pick a semantic token or ``<|im_end|>`` (the codec can only
  render semantic codes; a stray text token would become silence or a crash);
- residual codes are drawn from the codec's real codebook size, not a hard-coded 1024, and the
  repetition window is read per codebook (0.1.0 indexes a column by mistake).
"""

from __future__ import annotations

import dataclasses

import torch
from fish_speech.models.text2semantic import llama
from torch import Tensor

REPETITION_WINDOW = 16  # frames; as fish-speech


@dataclasses.dataclass(frozen=True)
class SamplingTensors:
    """A request's sampling parameters as 0-dim device tensors (so new values never recompile)."""

    temperature: Tensor
    top_p: Tensor
    repetition_penalty: Tensor

    @classmethod
    def create(
        cls, *, temperature: float, top_p: float, repetition_penalty: float, device: torch.device
    ) -> SamplingTensors:
        def scalar(value: float) -> Tensor:
            return torch.tensor(value, device=device, dtype=torch.float32)

        return cls(scalar(temperature), scalar(top_p), scalar(repetition_penalty))


def penalize(logits: Tensor, previous: Tensor, valid: Tensor, penalty: Tensor) -> Tensor:
    """Scale down the logits of tokens seen in the window (``valid`` marks filled slots)."""
    seen = torch.zeros_like(logits).scatter_add_(0, previous.long(), valid.to(logits.dtype)) > 0
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def sample(logits: Tensor, temperature: Tensor, top_p: Tensor, noise: Tensor) -> Tensor:
    """Top-p, then temperature, then an exponential race: ``argmax(p / E)`` with ``E ~ Exp(1)``
    is a draw from ``p`` that needs no host sync (as fish-speech's multinomial_sample_one_no_sync)."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    remove_sorted = cumulative > top_p
    remove_sorted[0] = False  # always keep the most likely token
    remove = remove_sorted.scatter(0, sorted_indices, remove_sorted)
    logits = logits.masked_fill(remove, -float("inf")) / torch.clamp(temperature, min=1e-5)
    probs = torch.softmax(logits, dim=-1)
    return torch.argmax(probs / noise, dim=-1, keepdim=True).to(torch.int)


class FrameSampler:
    """Samples one frame: ``[token, semantic code, residual codes...]`` (num_codebooks + 1 ints).

    ``x`` is the model input (1, num_codebooks + 1, T) at positions ``input_pos`` (T of them:
    the whole prompt for prefill, one for a decode step). ``window`` (num_codebooks + 1,
    REPETITION_WINDOW) holds the last frames, ``valid`` which of its columns are filled.
    """

    def __init__(self, model: llama.DualARTransformer, *, residual_codes: int) -> None:
        self.model = model
        self.num_codebooks = model.config.num_codebooks
        self.residual_codes = residual_codes
        self.semantic_begin = model.tokenizer.semantic_begin_id
        self.im_end = model.tokenizer.get_token_id("<|im_end|>")
        device = next(model.parameters()).device
        vocab = model.config.vocab_size
        allowed = torch.full((vocab,), -float("inf"), device=device)
        allowed[self.semantic_begin : model.tokenizer.semantic_end_id + 1] = 0.0
        allowed[self.im_end] = 0.0
        self.allowed_bias = allowed
        self.fast_positions = torch.arange(self.num_codebooks, device=device, dtype=torch.long)

    def noise_sizes(self) -> tuple[int, int]:
        """Numbers of Exp(1) draws per frame for the slow token and for all residual codes."""
        return self.model.config.vocab_size, (self.num_codebooks - 1) * self.residual_codes

    def __call__(
        self,
        x: Tensor,
        input_pos: Tensor,
        temperature: Tensor,
        top_p: Tensor,
        repetition_penalty: Tensor,
        window: Tensor,
        valid: Tensor,
        noise_slow: Tensor,
        noise_fast: Tensor,
    ) -> Tensor:
        model = self.model
        result = model.forward_generate(x, input_pos)
        logits = result.logits[0, -1].float() + self.allowed_bias
        logits = penalize(logits, window[0], valid, repetition_penalty)
        token = sample(logits, temperature, top_p, noise_slow)

        code = torch.clamp(token - self.semantic_begin, min=0)
        model.forward_generate_fast(result.hidden_states[:, -1:], self.fast_positions[0:1])
        hidden = model.fast_embeddings(code)
        frame = [token, code]
        noise_fast = noise_fast.view(self.num_codebooks - 1, self.residual_codes)
        for index in range(1, self.num_codebooks):
            fast_logits = model.forward_generate_fast(hidden, self.fast_positions[index : index + 1])
            fast_logits = fast_logits[0, -1, : self.residual_codes].float()
            fast_logits = penalize(fast_logits, window[index + 1], valid, repetition_penalty)
            code = sample(fast_logits, temperature, top_p, noise_fast[index - 1])
            hidden = model.fast_embeddings(code)
            frame.append(code)
        return torch.cat(frame)
