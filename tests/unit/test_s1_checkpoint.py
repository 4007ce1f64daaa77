"""S1 Mini checkpoints: our generator writes the real file layout, the loader reads it back with
the real loading code, and incomplete or inconsistent checkpoints fail with a clear message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests import s1_support

s1_support.require_engine()

import torch  # noqa: E402
import yaml  # noqa: E402
from fish_speech.tokenizer import FishTokenizer  # noqa: E402
from voice_inference.engines import s1_checkpoint, s1_codec, s1_mini, s1_random_checkpoint  # noqa: E402


pytestmark = pytest.mark.s1


REFERENCE_CONFIG = Path(__file__).resolve().parents[3] / "shared" / "reference" / "openaudio-s1-mini.config.json"


def test_tiny_checkpoint_has_the_s1_mini_layout(tiny_checkpoint: Path) -> None:
    assert sorted(p.name for p in tiny_checkpoint.iterdir()) == sorted(s1_checkpoint.REQUIRED_FILES)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config.keys() == s1_checkpoint.S1_MINI_CONFIG.keys()  # same fields as the real config.json

    tokenizer = FishTokenizer.from_pretrained(str(tiny_checkpoint))
    semantic = tokenizer.semantic_id_to_token_id
    # The facts fish-speech 0.1.0's code relies on:
    assert tokenizer.vocab_size == 256  # byte-level
    assert config["vocab_size"] == 256 + tokenizer.num_special_tokens
    assert len(semantic) == config["codebook_size"]
    assert tokenizer.semantic_end_id == config["vocab_size"] - 1
    assert tokenizer.decode(tokenizer.encode("héllo")) == "héllo"

    shape = s1_codec.infer_shape(torch.load(tiny_checkpoint / "codec.pth", weights_only=True))
    assert shape == s1_random_checkpoint.codec_shape("tiny")
    assert config["num_codebooks"] == shape.n_codebooks + 1
    assert config["codebook_size"] == shape.semantic_codebook_size
    assert shape.hop_length == 2048 and shape.sample_rate == 44_100
    assert config["max_seq_len"] > 2048


def test_same_seed_same_files_other_seed_other_weights(tmp_path: Path, tiny_checkpoint: Path) -> None:
    again = s1_random_checkpoint.make_checkpoint(tmp_path / "again", "tiny", seed=0)
    other = s1_random_checkpoint.make_checkpoint(tmp_path / "other", "tiny", seed=1)
    for name in s1_checkpoint.REQUIRED_FILES:
        assert (again / name).read_bytes() == (tiny_checkpoint / name).read_bytes(), name
    assert (other / "model.pth").read_bytes() != (tiny_checkpoint / "model.pth").read_bytes()


def test_load_round_trip_restores_the_saved_weights(tiny_checkpoint: Path) -> None:
    engine = s1_mini.S1MiniEngine(tiny_checkpoint, device="cpu")
    engine.load()
    saved = torch.load(tiny_checkpoint / "model.pth", weights_only=True)
    loaded = engine.model.state_dict()
    assert saved.keys() <= loaded.keys()
    assert all(torch.equal(saved[key], loaded[key]) for key in saved)

    codec_saved = torch.load(tiny_checkpoint / "codec.pth", weights_only=True)
    # Weight norm is folded into plain weights on load; everything else is as saved.
    key = "quantizer.semantic_quantizer.quantizers.0.codebook.weight"
    assert torch.equal(engine.codec.state_dict()[key], codec_saved[key])
    assert engine.sample_rate == 44_100
    engine.close()


@pytest.mark.parametrize("missing", s1_checkpoint.REQUIRED_FILES)
def test_missing_file_is_named(tmp_path: Path, tiny_checkpoint: Path, missing: str) -> None:
    broken = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / missing).unlink()
    engine = s1_mini.S1MiniEngine(broken, device="cpu")
    with pytest.raises(s1_checkpoint.CheckpointError, match=f"missing {missing}$"):
        engine.load()


def test_missing_directory_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(s1_checkpoint.CheckpointError, match="VOICE_S1_CHECKPOINT_PATH"):
        s1_mini.S1MiniEngine(tmp_path / "nowhere", device="cpu").load()


def test_model_and_codec_that_disagree_are_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    broken = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, broken)
    codec = s1_codec.build_codec(s1_random_checkpoint.codec_shape("tiny").__class__(
        **{**s1_random_checkpoint.codec_shape("tiny").__dict__, "n_codebooks": 2}
    ))  # fmt: skip
    torch.save(codec.state_dict(), broken / "codec.pth")
    with pytest.raises(s1_checkpoint.CheckpointError, match="num_codebooks 4 != codec codebooks 2"):
        s1_mini.S1MiniEngine(broken, device="cpu").load()


def test_truncated_model_weights_are_named(tmp_path: Path, tiny_checkpoint: Path) -> None:
    broken = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, broken)
    state = torch.load(broken / "model.pth", weights_only=True)
    del state["fast_output.weight"]
    torch.save(state, broken / "model.pth")
    with pytest.raises(s1_checkpoint.CheckpointError, match="lacks weights: .*fast_output.weight"):
        s1_mini.S1MiniEngine(broken, device="cpu").load()


def test_s1_mini_codec_shape_matches_fish_speech_config() -> None:
    import fish_speech

    package = Path(next(iter(fish_speech.__path__)))  # a namespace package: no __file__
    config = yaml.safe_load((package / "configs" / "modded_dac_vq.yaml").read_text())
    quantizer = config["quantizer"]
    transformer = quantizer["post_module"]["config"]
    expected = s1_codec.CodecShape(
        sample_rate=config["sample_rate"],
        encoder_dim=config["encoder_dim"],
        encoder_rates=tuple(config["encoder_rates"]),
        encoder_transformer_layers=tuple(config["encoder_transformer_layers"]),
        encoder_block_size=config["transformer_general_config"]["block_size"],
        decoder_dim=config["decoder_dim"],
        decoder_rates=tuple(config["decoder_rates"]),
        n_codebooks=quantizer["n_codebooks"],
        codebook_size=quantizer["codebook_size"],
        codebook_dim=quantizer["codebook_dim"],
        semantic_codebook_size=quantizer["semantic_codebook_size"],
        downsample_factor=tuple(quantizer["downsample_factor"]),
        quantizer_layers=transformer["n_layer"],
        quantizer_heads=transformer["n_head"],
        quantizer_intermediate_size=transformer["intermediate_size"],
        quantizer_block_size=transformer["block_size"],
    )
    assert s1_random_checkpoint.codec_shape("s1-mini") == expected
    assert quantizer["post_module"]["window_size"] == s1_codec.QUANTIZER_WINDOW


def test_shape_is_read_back_from_real_size_weights() -> None:
    """The real S1 Mini codec's shape comes back from its weight shapes (built on the meta device:
    shapes only, no memory)."""
    with torch.device("meta"):
        codec = s1_codec.build_codec(s1_codec.CodecShape())
    assert s1_codec.infer_shape(codec.state_dict()) == s1_codec.CodecShape()


def test_s1_mini_config_is_the_published_one() -> None:
    if not REFERENCE_CONFIG.is_file():
        pytest.skip(f"no reference config at {REFERENCE_CONFIG} (shared/ is beside the repo in CI and dev)")
    assert json.loads(REFERENCE_CONFIG.read_text()) == s1_checkpoint.S1_MINI_CONFIG


def test_s1_mini_vocabulary_fills_the_real_vocab_size(tmp_path: Path) -> None:
    """The s1-mini tokenizer covers all 155776 ids, semantic tokens last, as the real one."""
    config = s1_checkpoint.model_config("s1-mini")
    regular = int(config["vocab_size"]) - len(s1_checkpoint.SPECIAL_TOKENS) - int(config["codebook_size"])
    s1_checkpoint.write_tokenizer(tmp_path, regular, int(config["codebook_size"]))
    tokenizer = FishTokenizer.from_pretrained(str(tmp_path))
    assert tokenizer.vocab_size + tokenizer.num_special_tokens == config["vocab_size"]
    assert tokenizer.semantic_end_id == config["vocab_size"] - 1
    assert tokenizer.decode(tokenizer.encode("Hello, world")) == "Hello, world"
