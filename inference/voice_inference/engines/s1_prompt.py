"""Prompts of the S1 Mini engine: fish-speech's interleaved format, fitted into the context.

Where it sits: ``s1_mini.S1MiniEngine`` builds one prompt per text segment with ``fit``, on a
thread of its own, and ``admit`` calls ``estimate_length`` to refuse a request that can never
fit before it takes a slot. Building a prompt off the stepping thread matters: on the (busy,
shared) development machine it took 7 ms for a text-only segment and 17 ms with a 10 s
reference voice and the previous segment, while a decode step of the tiny checkpoint took 9-25 ms.

A segment's prompt is one speaker turn per reference voice (its transcript, then its codes),
then the previous segment as context (so the voice stays the same across segments), then the
segment's text. When the context does not fit, the previous segment is dropped; when even the
references and the text do not fit, the request is the client's to fix.
"""

from __future__ import annotations

import math

import torch
from fish_speech import content_sequence
from fish_speech.models.text2semantic import llama

from voice_inference.engines import base

Turn = tuple[str, torch.Tensor]  # (transcript, codes (num_codebooks, frames))


def encode(model: llama.DualARTransformer, turns: list[Turn], text: str) -> torch.Tensor:
    """The prompt (num_codebooks + 1, T) of speaker turns followed by ``text``, on the CPU."""
    sequence = content_sequence.ContentSequence(modality="interleave")
    for turn_text, codes in turns:
        sequence.append(
            [content_sequence.TextPart(text=turn_text), content_sequence.VQPart(codes=codes)], add_end=True, speaker=0
        )
    sequence.append([content_sequence.TextPart(text=text)], add_end=False, speaker=0)
    values, _, _ = sequence.encode_for_inference(model.tokenizer, num_codebooks=model.config.num_codebooks)
    return values


def fit(
    model: llama.DualARTransformer, references: list[Turn], previous: Turn | None, segment: str, context: int
) -> tuple[torch.Tensor, int]:
    """The segment's prompt and how many frames fit after it in ``context`` positions."""
    for turns in ([*references, previous], references) if previous else (references,):
        prompt = encode(model, turns, segment)
        room = context - prompt.shape[1] - 1
        if room > 0:
            return prompt, room
    raise too_large(prompt.shape[1], context)


def too_large(length: int, context: int) -> base.RequestTooLarge:
    return base.RequestTooLarge(
        f"the prompt ({length} tokens with its reference voices) leaves no room in the "
        f"model's context of {context} tokens; use shorter references or text"
    )


def estimate_length(
    model: llama.DualARTransformer, references: tuple[base.Reference, ...], segment: str, *, hop: int, sample_rate: int
) -> int:
    """The length of a segment's prompt without context, before the references are encoded:
    each reference becomes about one frame per ``hop`` samples (at the codec's rate)."""
    rows = model.config.num_codebooks
    turns = [
        (ref.text, torch.zeros((rows, math.ceil(ref.audio.size * sample_rate / ref.sample_rate / hop)), dtype=torch.int))
        for ref in references
    ]
    return int(encode(model, turns, segment).shape[1])
