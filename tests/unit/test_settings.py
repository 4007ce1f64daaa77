"""Server settings (``voice_inference.settings``) read from ``VOICE_*`` environment variables.

The variable names are the contract with the operator, so they are tested by name: types are
parsed from strings, comma lists split, bad values raise a ``ValidationError`` that names the
field, and the API key file is loaded (or rejected when missing). Also the ``serve`` command's
one-line-per-field message for a bad setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from voice_inference import cli
from voice_inference.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No VOICE_* variable from the surrounding shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("VOICE_"):
            monkeypatch.delenv(name)


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(part) for part in error["loc"]) for error in exc.errors()}


def test_defaults() -> None:
    settings = Settings()
    assert settings.tts_provider == "s1_mini"
    assert settings.port == 8080
    assert settings.reference_storage == "local"
    assert settings.reference_path == Path("references")
    assert settings.cors_allow_origins == []
    assert settings.api_keys == []
    assert settings.load_api_keys() == frozenset()


def test_every_kind_of_field_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "VOICE_HOST": "127.0.0.1",
        "VOICE_PORT": "9000",
        "VOICE_TTS_PROVIDER": "s1_mini",
        "VOICE_S1_CHECKPOINT_PATH": str(tmp_path / "ckpt"),
        "VOICE_S1_DEVICE": "cuda",
        "VOICE_S1_PRECISION": "bfloat16",
        "VOICE_S1_COMPILE": "true",
        "VOICE_WARMUP": "0",
        "VOICE_MOCK_CHUNK_COST_MS": "12.5",
        "VOICE_REFERENCE_STORAGE": "local",
        "VOICE_REFERENCE_PATH": str(tmp_path / "refs"),
        "VOICE_MAX_REFERENCE_SECONDS": "12",
        "VOICE_QUEUE_SIZE": "256",
        "VOICE_RETRY_AFTER_SECONDS": "7",
        "VOICE_REQUEST_TIMEOUT_SECONDS": "30",
        "VOICE_MAX_TEXT_LENGTH": "500",
        "VOICE_MAX_BODY_BYTES": "4096",
        "VOICE_LOG_LEVEL": "DEBUG",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 9000
    assert settings.tts_provider == "s1_mini"
    assert settings.s1_checkpoint_path == tmp_path / "ckpt"
    assert settings.s1_device == "cuda"
    assert settings.s1_precision == "bfloat16"
    assert settings.s1_compile is True
    assert settings.warmup is False
    assert settings.mock_chunk_cost_ms == 12.5
    assert settings.reference_storage == "local"
    assert settings.reference_path == tmp_path / "refs"
    assert settings.max_reference_seconds == 12.0
    assert settings.queue_size == 256
    assert settings.retry_after_seconds == 7
    assert settings.request_timeout_seconds == 30.0
    assert settings.max_text_length == 500
    assert settings.max_body_bytes == 4096
    assert settings.log_level == "debug", "case-insensitive"


def test_explicit_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_PORT", "9000")
    assert Settings(port=9100).port == 9100


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("key-one", ["key-one"]),
        ("a,b,c", ["a", "b", "c"]),
        (" a , b ,, c ,", ["a", "b", "c"]),
        ("", []),
        (",", []),
    ],
)
def test_api_keys_are_a_comma_list(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    monkeypatch.setenv("VOICE_API_KEYS", raw)
    settings = Settings()
    assert settings.api_keys == expected
    assert settings.load_api_keys() == frozenset(expected)


def test_cors_origins_are_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_CORS_ALLOW_ORIGINS", "https://a.example, http://localhost:3000")
    assert Settings().cors_allow_origins == ["https://a.example", "http://localhost:3000"]


def test_comma_lists_also_accept_python_lists() -> None:
    assert Settings(api_keys=["x", "y"]).api_keys == ["x", "y"]


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("VOICE_PORT", "0", "port"),
        ("VOICE_PORT", "70000", "port"),
        ("VOICE_PORT", "http", "port"),
        ("VOICE_TTS_PROVIDER", "openai", "tts_provider"),
        ("VOICE_S1_DEVICE", "tpu", "s1_device"),
        ("VOICE_S1_COMPILE", "maybe", "s1_compile"),
        ("VOICE_REFERENCE_STORAGE", "ftp", "reference_storage"),
        ("VOICE_QUEUE_SIZE", "0", "queue_size"),
        ("VOICE_QUEUE_SIZE", "-3", "queue_size"),
        ("VOICE_MOCK_CHUNK_COST_MS", "-1", "mock_chunk_cost_ms"),
        ("VOICE_REQUEST_TIMEOUT_SECONDS", "0", "request_timeout_seconds"),
        ("VOICE_MAX_BODY_BYTES", "10", "max_body_bytes"),
        ("VOICE_MAX_REFERENCE_SECONDS", "0", "max_reference_seconds"),
        ("VOICE_LOG_LEVEL", "verbose", "log_level"),
        ("VOICE_API_KEYS_FILE", "/nonexistent/keys.txt", "api_keys_file"),
    ],
)
def test_invalid_values_name_the_field(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert error_fields(caught.value) == {field}


def test_api_keys_file_is_loaded_with_the_inline_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("file-key-1\n\n  file-key-2  \n")
    monkeypatch.setenv("VOICE_API_KEYS_FILE", str(key_file))
    monkeypatch.setenv("VOICE_API_KEYS", "inline-key")
    settings = Settings()
    assert settings.api_keys_file == key_file
    assert settings.load_api_keys() == frozenset({"inline-key", "file-key-1", "file-key-2"})


def test_an_empty_key_file_means_no_keys_from_it(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("\n \n")
    assert Settings(api_keys_file=key_file).load_api_keys() == frozenset()


def test_a_missing_key_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(api_keys_file=tmp_path / "absent")
    assert error_fields(caught.value) == {"api_keys_file"}
    assert "absent" in str(caught.value)


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(api_keys_file=tmp_path)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_unrelated_voice_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_SOMETHING_ELSE", "x")
    assert "something_else" not in Settings().model_dump()


def test_serve_reports_a_bad_setting_by_variable_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("VOICE_QUEUE_SIZE", "zero")
    monkeypatch.setenv("VOICE_API_KEYS_FILE", str(tmp_path / "absent"))
    assert cli.main(["serve"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert any("VOICE_QUEUE_SIZE" in line for line in lines)
    assert any("VOICE_API_KEYS_FILE" in line for line in lines)
