"""Server settings, read once at start from ``VOICE_*`` environment variables.

Called by ``cli`` (which turns a validation error into a readable message and exit code 2)
and by tests, which pass values directly. The variable names are the contract with the
operator: it renders them into the pod's environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Provider = Literal["s1_mini", "mock"]
Device = Literal["auto", "cuda", "cpu"]
Precision = Literal["auto", "bfloat16", "float16", "float32"]
ReferenceStorage = Literal["local", "huggingface", "s3"]
LogLevel = Literal["debug", "info", "warning", "error"]

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every knob of the inference server; env var = ``VOICE_`` + upper-cased field name."""

    model_config = SettingsConfigDict(env_prefix="VOICE_", extra="ignore", frozen=True)

    # Network
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)

    # Engine
    tts_provider: Provider = "mock"
    s1_checkpoint_path: Path = Path("checkpoints/openaudio-s1-mini")
    s1_device: Device = "auto"
    s1_precision: Precision = "auto"
    s1_compile: bool = False
    warmup: bool = Field(True, description="Run one synthesis before reporting ready.")

    # Mock engine: a per-chunk cost lets tests and benchmarks see realistic timing.
    mock_chunk_cost_ms: float = Field(0.0, ge=0, le=10_000)

    # Reference voices
    reference_storage: ReferenceStorage = "local"
    reference_path: Path = Path("references")
    max_reference_seconds: float = Field(30.0, gt=0, le=600)

    # Scheduler and limits
    queue_size: int = Field(16, ge=1, le=10_000, description="Requests waiting beyond the one in progress.")
    retry_after_seconds: int = Field(1, ge=1, le=3600)
    request_timeout_seconds: float = Field(300.0, gt=0)
    max_text_length: int = Field(2000, ge=1, le=1_000_000)
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)

    # HTTP policy
    cors_allow_origins: CommaList = Field(default_factory=list, description="Empty: CORS off.")
    api_keys: CommaList = Field(default_factory=list, description="Empty (and no file): auth off.")
    api_keys_file: Path | None = Field(None, description="One key per line, e.g. a mounted Secret.")

    log_level: LogLevel = "info"

    @field_validator("cors_allow_origins", "api_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _api_keys_file_exists(self) -> "Settings":
        if self.api_keys_file is not None and not self.api_keys_file.is_file():
            raise ValueError(f"api_keys_file {self.api_keys_file} does not exist or is not a file")
        return self

    def load_api_keys(self) -> frozenset[str]:
        """The accepted keys: the inline list plus non-empty lines of the key file."""
        keys = set(self.api_keys)
        if self.api_keys_file is not None:
            keys.update(line.strip() for line in self.api_keys_file.read_text().splitlines())
        keys.discard("")
        return frozenset(keys)
