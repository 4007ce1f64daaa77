"""Random-weight S1 Mini checkpoints in the real file layout, for tests, the demo and benchmarks.

Where it sits: ``voice-inference make-checkpoint OUT --size tiny|s1-mini`` (``cli``), the s1 test
fixtures (``tests/s1_support.py``) and the benchmark scripts call ``make_checkpoint``. It builds
on ``s1_checkpoint`` (layout, configs, tokenizer) and ``s1_codec`` (the codec's classes); neither
imports this module, which keeps the two free of an import cycle.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from fish_speech.models.text2semantic import llama
from fish_speech.tokenizer import FishTokenizer

from voice_inference.engines import s1_checkpoint, s1_codec


def codec_shape(size: s1_checkpoint.Size) -> s1_codec.CodecShape:
    if size == "tiny":
        return s1_codec.CodecShape(
            encoder_dim=8,  # latent 8 * 2**4 = 128
            encoder_transformer_layers=(0, 0, 0, 1),
            encoder_block_size=4096,  # ~47 s of reference audio; keeps the saved causal mask small
            decoder_dim=32,
            n_codebooks=s1_checkpoint.TINY_CODEC_CODEBOOKS,
            codebook_size=s1_checkpoint.TINY_SEMANTIC_CODES,
            semantic_codebook_size=s1_checkpoint.TINY_SEMANTIC_CODES,
            quantizer_layers=1,
            quantizer_heads=2,
            quantizer_intermediate_size=256,
            quantizer_block_size=1024,
        )
    if size == "s1-mini":
        return s1_codec.CodecShape()
    raise ValueError(f"unknown checkpoint size {size!r}; choose one of {', '.join(s1_checkpoint.SIZES)}")


def make_checkpoint(out: Path, size: s1_checkpoint.Size = "tiny", seed: int = 0) -> Path:
    """Write a random-weight checkpoint of ``size`` into ``out``; the same seed, the same files."""
    config = s1_checkpoint.model_config(size)
    shape = codec_shape(size)
    semantic_codes = int(config["codebook_size"])  # type: ignore[call-overload]
    regular_tokens = int(config["vocab_size"]) - len(s1_checkpoint.SPECIAL_TOKENS) - semantic_codes  # type: ignore[call-overload]
    out.mkdir(parents=True, exist_ok=True)
    s1_checkpoint.write_tokenizer(out, regular_tokens, semantic_codes)
    (out / "config.json").write_text(json.dumps(config, indent=4, sort_keys=True))

    # Seeded in a forked RNG so writing a checkpoint never disturbs the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        args = llama.BaseModelArgs.from_pretrained(str(out / "config.json"))
        tokenizer = FishTokenizer.from_pretrained(str(out))
        # The real weights ship in bfloat16; the tiny model stays float32 for exact CPU tests.
        dtype = torch.bfloat16 if size == "s1-mini" else torch.float32
        model = llama.DualARTransformer(args, tokenizer=tokenizer)
        torch.save({key: value.to(dtype) for key, value in model.state_dict().items()}, out / "model.pth")
        del model
        codec = s1_codec.build_codec(shape)
        torch.save(codec.state_dict(), out / "codec.pth")
    return out
