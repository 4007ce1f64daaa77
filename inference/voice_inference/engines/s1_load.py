"""Loading S1 Mini: where it runs (device, precision), the model's weights, and the checks that a
checkpoint's model and codec belong together.

Where it sits: ``s1_mini.S1MiniEngine.load`` calls ``select_device``, ``select_precision``,
``load_model`` and ``check_agreement``; the benchmark scripts call the first two.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from fish_speech.models.text2semantic import llama
from fish_speech.tokenizer import FishTokenizer

from voice_inference.engines import base, s1_checkpoint, s1_codec

log = logging.getLogger(__name__)

PRECISIONS = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def select_device(setting: str) -> torch.device:
    """``auto`` is CUDA when present; asking for CUDA without it is an error, not a fallback."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise base.EngineError("VOICE_S1_DEVICE=cuda, but CUDA is not available (torch sees no GPU)")
    if setting not in ("cuda", "cpu"):
        raise base.EngineError(f"unknown VOICE_S1_DEVICE {setting!r}")
    return torch.device(setting)


def select_precision(setting: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on GPUs that support it (float16 on older ones), float32 on CPU."""
    if setting == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if setting not in PRECISIONS:
        raise base.EngineError(f"unknown VOICE_S1_PRECISION {setting!r}")
    return PRECISIONS[setting]


def load_model(path: Path, device: torch.device, dtype: torch.dtype) -> llama.DualARTransformer:
    """The text-to-semantic model of a checkpoint, on ``device`` in ``dtype``, in eval mode."""
    try:
        args = llama.BaseModelArgs.from_pretrained(str(path / "config.json"))
        tokenizer = FishTokenizer.from_pretrained(str(path))
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        raise s1_checkpoint.CheckpointError(f"{path}: unreadable config.json or tokenizer: {exc}") from exc
    if not isinstance(args, llama.DualARModelArgs):
        raise s1_checkpoint.CheckpointError(
            f"{path}/config.json: model_type must be dual_ar, got {args.model_type}"
        )
    with torch.device(device):  # random init on the target device is fast; weights replace it
        model = llama.DualARTransformer(args, tokenizer=tokenizer)
    state = torch.load(path / "model.pth", map_location="cpu", mmap=True, weights_only=True)
    state = normalize_model_state(state)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise s1_checkpoint.CheckpointError(f"{path}/model.pth does not fit config.json: {exc}") from exc
    if missing:
        raise s1_checkpoint.CheckpointError(f"{path}/model.pth lacks weights: {s1_codec.describe_keys(missing)}")
    if unexpected:
        log.warning("model.pth has weights the model does not use: %s", s1_codec.describe_keys(unexpected))
    return model.to(device=device, dtype=dtype).eval()


def normalize_model_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The layouts fish-speech's loader accepts: a Lightning wrapper, a ``model.`` prefix, and
    audio-projector weights the text-to-semantic model does not use."""
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if next(iter(state), "").startswith("model."):
        state = {key.removeprefix("model."): value for key, value in state.items()}
    return {key: value for key, value in state.items() if "audio_" not in key}


def check_agreement(model: llama.DualARTransformer, codec: torch.nn.Module, path: Path) -> None:
    """The model and codec of one checkpoint must agree on codes, or generation fails later."""
    config = model.config
    quantizer = codec.quantizer
    problems = []
    if config.num_codebooks != quantizer.quantizer.n_codebooks + 1:
        problems.append(
            f"num_codebooks {config.num_codebooks} != codec codebooks {quantizer.quantizer.n_codebooks} + 1"
        )
    if config.codebook_size != quantizer.semantic_quantizer.codebook_size:
        semantic_size = quantizer.semantic_quantizer.codebook_size
        problems.append(f"codebook_size {config.codebook_size} != codec semantic codebook {semantic_size}")
    semantic_tokens = len(model.tokenizer.semantic_id_to_token_id)
    if semantic_tokens > config.codebook_size:
        problems.append(f"{semantic_tokens} semantic tokens but codebook_size {config.codebook_size}")
    if model.tokenizer.semantic_end_id >= config.vocab_size:
        problems.append(
            f"semantic token ids reach {model.tokenizer.semantic_end_id}, beyond vocab_size {config.vocab_size}"
        )
    if problems:
        raise s1_checkpoint.CheckpointError(f"{path}: model and codec disagree: {'; '.join(problems)}")
