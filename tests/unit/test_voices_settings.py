"""Voice-storage settings: validation with clear messages, and ``create_store`` picking the backend."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
from voice_inference import voices
from voice_inference.settings import Settings
from voice_inference.voices import huggingface, s3


def test_s3_needs_a_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_REFERENCE_STORAGE", "s3")
    monkeypatch.setenv("VOICE_REFERENCE_S3_BUCKET", "")  # rendered-but-empty counts as unset
    with pytest.raises(pydantic.ValidationError, match="VOICE_REFERENCE_S3_BUCKET"):
        Settings()


@pytest.mark.parametrize("repo", [None, "", "justaname", "a/b/c", "/name"])
def test_huggingface_needs_an_owner_and_name(repo: str | None) -> None:
    with pytest.raises(pydantic.ValidationError, match="VOICE_REFERENCE_HF_REPO"):
        Settings(reference_storage="huggingface", reference_hf_repo=repo)


def test_hf_token_from_setting_or_file_but_not_both(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("hf_secret\n", encoding="utf-8")
    assert Settings(reference_hf_token_file=token_file).load_hf_token() == "hf_secret"
    assert Settings(reference_hf_token="hf_inline").load_hf_token() == "hf_inline"
    assert Settings().load_hf_token() is None
    with pytest.raises(pydantic.ValidationError, match="not both"):
        Settings(reference_hf_token="x", reference_hf_token_file=token_file)
    with pytest.raises(pydantic.ValidationError, match="does not exist"):
        Settings(reference_hf_token_file=tmp_path / "missing")


def test_the_token_is_not_printed() -> None:
    assert "hf_inline" not in repr(Settings(reference_hf_token="hf_inline"))


def test_create_store_picks_the_backend_without_network(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    local = voices.create_store(Settings(reference_path=tmp_path / "refs"))
    assert isinstance(local, voices.LocalVoiceStore) and not local.read_only

    bucket = voices.create_store(
        Settings(
            reference_storage="s3", reference_s3_bucket="team-voices", reference_s3_prefix="/prod/voices/",
            reference_s3_endpoint_url="http://127.0.0.1:9", reference_cache_path=cache_dir,
        )
    )  # fmt: skip
    assert isinstance(bucket, s3.S3VoiceStore) and not bucket.read_only
    assert (bucket.bucket, bucket.prefix) == ("team-voices", "prod/voices/")
    assert bucket.cache.root == cache_dir

    hub = voices.create_store(
        Settings(
            reference_storage="huggingface", reference_hf_repo="acme/voices", reference_hf_repo_type="model",
            reference_hf_endpoint="http://127.0.0.1:9/", reference_cache_path=cache_dir,
        )
    )  # fmt: skip
    assert isinstance(hub, huggingface.HfVoiceStore) and hub.read_only
    assert "model acme/voices@main at http://127.0.0.1:9" in hub.location
