"""S1 Mini checkpoint directories: their layout, the check for missing files, and random-weight ones.

Where it sits: ``s1_mini.S1MiniEngine.load`` calls ``require_files`` before reading anything;
``s1_random_checkpoint.make_checkpoint`` writes random-weight checkpoints from the configs and the
tokenizer writer here. This module needs no torch and imports no other s1 module, so the codec
(``s1_codec``) can use its errors without an import cycle.

A checkpoint is what Fish Audio publishes for OpenAudio S1 Mini:

    model.pth            DualARTransformer state dict (fish_speech.models.text2semantic.llama)
    codec.pth            modded DAC state dict (fish_speech.models.dac.modded_dac)
    config.json          DualARModelArgs
    tokenizer.tiktoken   base64 token + rank per line (FishTokenizer)
    special_tokens.json  {token: id}, including one <|semantic:i|> per semantic code

``s1_random_checkpoint.make_checkpoint`` writes that same layout with random weights: ``tiny`` is small enough for
CPU tests; ``s1-mini`` has the real model's shape (so its speed is the real model's speed; its
codec.pth is the real one's size, 1.87 GB). The constraints of fish-speech 0.1.0's code that
both respect: ``vocab_size`` = the regular tokens + the special tokens + the semantic tokens
(fish's sampler draws from all of it; tiny: 256 bytes + 16 + 128, s1-mini: bytes, then byte
pairs and triples as filler merges up to the real 155776, semantic tokens last);
``num_codebooks`` = codec ``n_codebooks`` + 1 (the semantic code); ``codebook_size`` = the codec's
``semantic_codebook_size``; ``max_seq_len`` > 2048 + the prompt (fish's own generate_long
reserves 2048); encoder rates multiply to 512 and the quantizer downsamples by [2, 2].
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from voice_inference.engines import base

REQUIRED_FILES = ("model.pth", "codec.pth", "config.json", "tokenizer.tiktoken", "special_tokens.json")

Size = Literal["tiny", "s1-mini"]
SIZES: tuple[Size, ...] = ("tiny", "s1-mini")

# The special tokens of fish_speech.tokenizer (0.1.0) other than the semantic ones, in order.
SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|pad|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|phoneme_start|>",
    "<|phoneme_end|>",
    "<|tool_call_start|>",
    "<|tool_call_end|>",
    "<|text|>",
    "<|voice|>",
    "<|interleave|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio|>",
    "<|speaker:0|>",  # the prompt format's speaker tag; a single token in the real vocabulary too
)
BYTE_TOKENS = 256

# OpenAudio S1 Mini's config.json (shared/reference/openaudio-s1-mini.config.json).
S1_MINI_CONFIG: dict[str, object] = {
    "attention_o_bias": False,
    "attention_qk_norm": True,
    "attention_qkv_bias": False,
    "codebook_size": 4096,
    "dim": 1024,
    "dropout": 0.0,
    "fast_attention_o_bias": False,
    "fast_attention_qk_norm": False,
    "fast_attention_qkv_bias": False,
    "fast_dim": 1024,
    "fast_head_dim": 64,
    "fast_intermediate_size": 3072,
    "fast_n_head": 16,
    "fast_n_local_heads": 8,
    "head_dim": 128,
    "initializer_range": 0.03125,
    "intermediate_size": 3072,
    "max_seq_len": 8192,
    "model_type": "dual_ar",
    "n_fast_layer": 4,
    "n_head": 16,
    "n_layer": 28,
    "n_local_heads": 8,
    "norm_eps": 1e-06,
    "num_codebooks": 10,
    "rope_base": 1000000,
    "scale_codebook_embeddings": True,
    "tie_word_embeddings": False,
    "use_gradient_checkpointing": True,
    "vocab_size": 155776,
}

# The tiny model: the real structure (GQA, qk-norm, separate fast transformer) at toy width.
TINY_SEMANTIC_CODES = 128
TINY_CODEC_CODEBOOKS = 3
TINY_CONFIG: dict[str, object] = {
    **S1_MINI_CONFIG,
    "codebook_size": TINY_SEMANTIC_CODES,
    "dim": 64,
    "fast_dim": 64,
    "fast_head_dim": 16,
    "fast_intermediate_size": 128,
    "fast_n_head": 4,
    "fast_n_local_heads": 2,
    "head_dim": 16,
    "initializer_range": 0.02,
    "intermediate_size": 128,
    "max_seq_len": 2560,  # > 2048 + a short prompt, as fish's generate_long demands
    "n_fast_layer": 1,
    "n_head": 4,
    "n_layer": 2,
    "n_local_heads": 2,
    "num_codebooks": TINY_CODEC_CODEBOOKS + 1,
    "vocab_size": BYTE_TOKENS + len(SPECIAL_TOKENS) + TINY_SEMANTIC_CODES,
}


class CheckpointError(base.EngineError):
    """A checkpoint directory is missing files or its files disagree with each other."""


def require_files(path: Path) -> None:
    """Raise ``CheckpointError`` naming every missing file (or the missing directory)."""
    if not path.is_dir():
        raise CheckpointError(
            f"S1 Mini checkpoint directory {path} does not exist (VOICE_S1_CHECKPOINT_PATH); "
            f"it must hold {', '.join(REQUIRED_FILES)}"
        )
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"S1 Mini checkpoint {path} is incomplete: missing {', '.join(missing)}")


def model_config(size: Size) -> dict[str, object]:
    if size == "tiny":
        return dict(TINY_CONFIG)
    if size == "s1-mini":
        return dict(S1_MINI_CONFIG)
    raise ValueError(f"unknown checkpoint size {size!r}; choose one of {', '.join(SIZES)}")


def write_tokenizer(out: Path, regular_tokens: int, semantic_codes: int) -> None:
    """A tiktoken vocabulary: the 256 single bytes (a byte-level tokenizer), then, when the shape
    asks for a bigger vocabulary, byte pairs and triples as filler merges, then special tokens
    and the semantic tokens last, as in the real vocabulary."""
    if regular_tokens < BYTE_TOKENS:
        raise ValueError(f"a vocabulary needs at least {BYTE_TOKENS} regular tokens, got {regular_tokens}")
    with open(out / "tokenizer.tiktoken", "w", encoding="utf-8") as file:
        for rank, token in enumerate(_regular_tokens(regular_tokens)):
            file.write(f"{base64.b64encode(token).decode()} {rank}\n")
    names = [*SPECIAL_TOKENS, *(f"<|semantic:{i}|>" for i in range(semantic_codes))]
    special = {name: regular_tokens + index for index, name in enumerate(names)}
    (out / "special_tokens.json").write_text(json.dumps(special, indent=2, ensure_ascii=False))


def _regular_tokens(count: int) -> Iterator[bytes]:
    for width in (1, 2, 3):
        for token in itertools.product(range(256), repeat=width):
            if count == 0:
                return
            yield bytes(token)
            count -= 1
    raise ValueError("vocabulary too large for byte, pair and triple tokens")
