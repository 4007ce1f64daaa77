"""The S1 Mini codec: building fish-speech's modded DAC from a ``codec.pth``, and decoding it in a stream.

Where it sits: ``s1_mini.S1MiniEngine.load`` calls ``load_codec``; the engine encodes reference
voices with ``encode_reference``; ``s1_stream.AudioWorker`` turns generated frames into audio with
``decode`` and ``decode_indices``.
``s1_random_checkpoint.make_checkpoint`` calls ``build_codec`` to write random-weight codecs.

The codec's shape is read from the weights themselves (``infer_shape``), so the real S1 Mini
codec and our tiny test codec load through the same code, with no extra config file and without
fish-speech's hydra/pyrootutils loader (``fish_speech.models.dac.inference``), which needs a
``.project-root`` marker. Only the model classes of ``fish_speech.models.dac`` are used.

Frame arithmetic: the encoder downsamples by the product of ``encoder_rates`` (512) and the
quantizer by the product of ``downsample_factor`` (4), so one code frame is 2048 samples at
44.1 kHz (21.5 frames per second). The codec is causal, so the audio of frame ``i`` depends only
on frames ``<= i``: decoding a group of new frames with a few earlier frames as left context gives
the same samples as decoding everything at once (up to the transformer's longer reach).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import parametrize

from voice_inference.engines import s1_checkpoint

with warnings.catch_warnings():
    # dac (which modded_dac imports) decorates its activation with torch.jit.script, which torch
    # deprecates with a FutureWarning at every start; the scripted function still runs.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from fish_speech.models.dac import modded_dac, rvq

# Fixed by fish-speech's modded_dac_vq.yaml and its classes; not recoverable from weights.
HEAD_DIM = 64  # every codec transformer uses 64-wide heads (n_head = dim // 64)
QUANTIZER_WINDOW = 128  # attention window of the quantizer's pre/post transformers, in frames
ROPE_BASE = 10000
NORM_EPS = 1e-5


class CodecError(s1_checkpoint.CheckpointError):
    """``codec.pth`` is missing weights, or has a layout this loader does not know."""


@dataclasses.dataclass(frozen=True)
class CodecShape:
    """Everything that sizes a modded DAC; the defaults are S1 Mini's (modded_dac_vq.yaml)."""

    sample_rate: int = 44100
    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    encoder_transformer_layers: tuple[int, ...] = (0, 0, 0, 4)
    encoder_block_size: int = 16384  # RoPE table / causal mask length of the encoder transformer
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    n_codebooks: int = 9  # residual codebooks; the semantic codebook comes on top
    codebook_size: int = 1024
    codebook_dim: int = 8
    semantic_codebook_size: int = 4096
    downsample_factor: tuple[int, ...] = (2, 2)
    quantizer_layers: int = 8  # pre- and post-module transformer layers
    quantizer_heads: int = 16
    quantizer_intermediate_size: int = 3072
    quantizer_block_size: int = 4096

    @property
    def latent_dim(self) -> int:
        return self.encoder_dim * 2 ** len(self.encoder_rates)

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame."""
        return math.prod(self.encoder_rates) * math.prod(self.downsample_factor)


def build_codec(shape: CodecShape) -> modded_dac.DAC:
    """A modded DAC of ``shape`` with fresh (random) weights, in eval mode."""
    with warnings.catch_warnings():
        # dac's VectorQuantize uses the old torch.nn.utils.weight_norm, which warns on every build.
        warnings.simplefilter("ignore", FutureWarning)
        quantizer = rvq.DownsampleResidualVectorQuantize(
            input_dim=shape.latent_dim,
            n_codebooks=shape.n_codebooks,
            codebook_dim=shape.codebook_dim,
            quantizer_dropout=0.0,
            codebook_size=shape.codebook_size,
            semantic_codebook_size=shape.semantic_codebook_size,
            downsample_factor=shape.downsample_factor,
            pre_module=_quantizer_transformer(shape),
            post_module=_quantizer_transformer(shape),
        )
        general = functools.partial(
            modded_dac.ModelArgs,
            block_size=shape.encoder_block_size,
            n_local_heads=-1,
            head_dim=HEAD_DIM,
            rope_base=ROPE_BASE,
            norm_eps=NORM_EPS,
            dropout_rate=0.0,
            attn_dropout_rate=0.0,
            channels_first=True,
        )
        codec = modded_dac.DAC(
            encoder_dim=shape.encoder_dim,
            encoder_rates=list(shape.encoder_rates),
            decoder_dim=shape.decoder_dim,
            decoder_rates=list(shape.decoder_rates),
            quantizer=quantizer,
            sample_rate=shape.sample_rate,
            causal=True,
            encoder_transformer_layers=list(shape.encoder_transformer_layers),
            # The yaml says [4, 0, 0, 0], but DecoderBlock never registers its transformer (the line is
            # commented out upstream), so those layers hold no weights; zeros skip building them.
            decoder_transformer_layers=[0] * len(shape.decoder_rates),
            transformer_general_config=general,
        )
        return codec.eval()


def _quantizer_transformer(shape: CodecShape) -> modded_dac.WindowLimitedTransformer:
    """The quantizer's pre/post module (the yaml's ``*transformer_module``)."""
    config = modded_dac.ModelArgs(
        block_size=shape.quantizer_block_size,
        n_layer=shape.quantizer_layers,
        n_head=shape.quantizer_heads,
        dim=shape.latent_dim,
        intermediate_size=shape.quantizer_intermediate_size,
        head_dim=HEAD_DIM,
        rope_base=ROPE_BASE,
        norm_eps=NORM_EPS,
        dropout_rate=0.0,
        attn_dropout_rate=0.0,
    )
    return modded_dac.WindowLimitedTransformer(
        config, input_dim=shape.latent_dim, window_size=QUANTIZER_WINDOW, causal=True
    )


def normalize_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept the layouts fish-speech's own loader accepts: a Lightning ``state_dict`` wrapper
    and a GAN checkpoint whose codec weights sit under ``generator.``."""
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if any(key.startswith("generator.") for key in state):
        state = {key.removeprefix("generator."): value for key, value in state.items() if key.startswith("generator.")}
    return state


def infer_shape(state: dict[str, torch.Tensor]) -> CodecShape:
    """Read a ``CodecShape`` off the weight shapes of a modded DAC state dict."""
    encoder_dim = _conv_weight(state, "encoder.block.0.conv").shape[0]

    encoder_rates: list[int] = []
    encoder_layers: list[int] = []
    encoder_block_size = CodecShape.encoder_block_size
    index = 1
    while _has_conv(state, f"encoder.block.{index}.block.4.conv"):
        kernel = _conv_weight(state, f"encoder.block.{index}.block.4.conv").shape[-1]
        encoder_rates.append(kernel // 2)  # EncoderBlock's stride conv has kernel_size = 2 * stride
        prefix = f"encoder.block.{index}.block.5"
        encoder_layers.append(_count_layers(state, prefix))
        if f"{prefix}.freqs_cis" in state:
            encoder_block_size = state[f"{prefix}.freqs_cis"].shape[0]
        index += 1

    decoder_dim = _conv_weight(state, "decoder.model.0.conv").shape[0]
    decoder_rates: list[int] = []
    index = 1
    while _has_conv(state, f"decoder.model.{index}.block.1.conv"):
        decoder_rates.append(_conv_weight(state, f"decoder.model.{index}.block.1.conv").shape[-1] // 2)
        index += 1

    codebook = _require(state, "quantizer.quantizer.quantizers.0.codebook.weight")
    semantic = _require(state, "quantizer.semantic_quantizer.quantizers.0.codebook.weight")
    n_codebooks = 0
    while f"quantizer.quantizer.quantizers.{n_codebooks}.codebook.weight" in state:
        n_codebooks += 1
    downsample: list[int] = []
    while f"quantizer.downsample.{len(downsample)}.0.conv.weight" in state:
        downsample.append(state[f"quantizer.downsample.{len(downsample)}.0.conv.weight"].shape[-1])

    post = "quantizer.post_module"
    quantizer_layers = _count_layers(state, post)
    if quantizer_layers == 0 or _count_layers(state, "quantizer.pre_module") != quantizer_layers:
        raise CodecError("codec.pth: expected quantizer pre/post transformers of equal depth (modded DAC layout)")
    wqkv = _require(state, f"{post}.layers.0.attention.wqkv.weight")
    shape = CodecShape(
        encoder_dim=encoder_dim,
        encoder_rates=tuple(encoder_rates),
        encoder_transformer_layers=tuple(encoder_layers),
        encoder_block_size=encoder_block_size,
        decoder_dim=decoder_dim,
        decoder_rates=tuple(decoder_rates),
        n_codebooks=n_codebooks,
        codebook_size=codebook.shape[0],
        codebook_dim=codebook.shape[1],
        semantic_codebook_size=semantic.shape[0],
        downsample_factor=tuple(downsample),
        quantizer_layers=quantizer_layers,
        quantizer_heads=wqkv.shape[0] // (3 * HEAD_DIM),
        quantizer_intermediate_size=_require(state, f"{post}.layers.0.feed_forward.w1.weight").shape[0],
        quantizer_block_size=_require(state, f"{post}.freqs_cis").shape[0],
    )
    if not encoder_rates or not decoder_rates:
        raise CodecError("codec.pth: no encoder or decoder blocks found (not a modded DAC?)")
    return shape


def load_codec(path: Path, device: torch.device) -> modded_dac.DAC:
    """Build the codec that ``path`` describes, load its weights strictly, ready for inference."""
    state = normalize_state_dict(torch.load(path, map_location="cpu", mmap=True, weights_only=True))
    shape = infer_shape(state)
    codec = build_codec(shape)
    missing, unexpected = codec.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CodecError(
            f"{path} does not match a modded DAC of shape {shape}: "
            f"missing {describe_keys(missing)}, unexpected {describe_keys(unexpected)}"
        )
    _remove_weight_norm(codec)
    return codec.to(device).eval()


@torch.inference_mode()
def encode_reference(codec: modded_dac.DAC, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
    """Codes (num_codebooks x frames, int, on CPU) of mono float audio at any sample rate."""
    if audio.size == 0:
        raise ValueError("reference audio is empty")
    device = next(codec.parameters()).device
    wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(device)
    if sample_rate != codec.sample_rate:
        import torchaudio  # deferred: only references at other rates need it

        wave = torchaudio.functional.resample(wave, sample_rate, codec.sample_rate)
    lengths = torch.tensor([wave.shape[-1]], device=device, dtype=torch.long)
    with _conv_backend(device):
        indices, frames = codec.encode(wave[None, None], lengths)
    return indices[0, :, : int(frames[0])].to("cpu", torch.int)


def audio_digest(audio: np.ndarray, sample_rate: int) -> str:
    """A content hash of reference audio, so a changed voice under the same id is re-encoded."""
    digest = hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    digest.update(str(sample_rate).encode())
    return digest.hexdigest()


def decode(codec: modded_dac.DAC, codes: torch.Tensor, *, autocast_dtype: torch.dtype | None = None) -> np.ndarray:
    """Audio (float32, mono) of codes (num_codebooks, frames): 2048 samples per frame."""
    return decode_indices(codec, codes[None], autocast_dtype=autocast_dtype)[0]


@torch.inference_mode()
def decode_indices(
    codec: modded_dac.DAC, indices: torch.Tensor, *, autocast_dtype: torch.dtype | None = None, onednn: bool = False
) -> np.ndarray:
    """Audio (rows, samples) float32 of a batch of codes (rows, num_codebooks, frames).

    ``onednn``: on CPU, convolve with oneDNN, for callers that keep to a few input shapes (its
    first call at each shape builds kernels; see ``_conv_backend``)."""
    device = next(codec.parameters()).device
    indices = indices.to(device).long()
    lengths = torch.full((indices.shape[0],), indices.shape[-1], device=device)
    with (
        _conv_backend(device, onednn=onednn),
        torch.autocast(device_type=device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None),
    ):
        audio, _ = codec.decode(indices, lengths)
    return audio[:, 0].float().cpu().numpy()


def _conv_backend(device: torch.device, *, onednn: bool = False) -> contextlib.AbstractContextManager[object]:
    """On CPU, by default run the codec's convolutions without oneDNN: it builds kernels at
    every new input shape (0.05-0.5 s each on the tiny codec), and a reference voice has any
    length. Once built, oneDNN's kernels take 25-45% less time per frame than PyTorch's own, so
    the streamed decode, which pads its windows to a few lengths warmed up at load, uses them."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    # allow_tf32=None leaves oneDNN's TF32 setting alone: setting it (the default, True) warns
    # on every call on builds without Intel GPU support.
    return torch.backends.mkldnn.flags(enabled=onednn, allow_tf32=None)


# A convolution's weight under each layout: parametrized weight norm, the old weight_norm, none.
_CONV_WEIGHT_SUFFIXES = (".parametrizations.weight.original1", ".weight_v", ".weight")


def _conv_weight(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    for suffix in _CONV_WEIGHT_SUFFIXES:
        if prefix + suffix in state:
            return state[prefix + suffix]
    raise CodecError(f"codec.pth has no weights for {prefix} (not a modded DAC codec?)")


def _has_conv(state: dict[str, torch.Tensor], prefix: str) -> bool:
    return any(prefix + suffix in state for suffix in _CONV_WEIGHT_SUFFIXES)


def _count_layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    count = 0
    while f"{prefix}.layers.{count}.attention.wqkv.weight" in state:
        count += 1
    return count


def _require(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise CodecError(f"codec.pth has no {key} (not a modded DAC codec?)")
    return state[key]


def describe_keys(keys: list[str], limit: int = 5) -> str:
    """The first few of a list of state-dict keys, and how many there are, for error messages."""
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)})"


def _remove_weight_norm(codec: torch.nn.Module) -> None:
    """Fold weight norm into plain weights: inference never changes them, and recomputing
    them on every forward pass costs time on each streamed chunk."""
    for module in codec.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight")
        elif hasattr(module, "weight_g") and hasattr(module, "weight_v"):
            torch.nn.utils.remove_weight_norm(module)
