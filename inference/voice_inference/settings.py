"""Server settings, read once at start from ``VOICE_*`` environment variables.

Called by ``cli`` (which turns a validation error into a readable message and exit code 2)
and by tests, which pass values directly. The variable names are the contract with the
operator: it renders them into the pod's environment.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Provider = Literal["s1_mini", "mock"]
Device = Literal["auto", "cuda", "cpu"]
Precision = Literal["auto", "bfloat16", "float16", "float32"]
ReferenceStorage = Literal["local", "huggingface", "s3"]
HfRepoType = Literal["dataset", "model"]
S3AddressingStyle = Literal["auto", "path", "virtual"]
LogLevel = Literal["debug", "info", "warning", "error"]

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every knob of the inference server; env var = ``VOICE_`` + upper-cased field name."""

    model_config = SettingsConfigDict(env_prefix="VOICE_", extra="ignore", frozen=True)

    # Network
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)

    # Engine
    tts_provider: Provider = "s1_mini"  # the real model; tests and the demo ask for `mock`
    s1_checkpoint_path: Path = Path("checkpoints/openaudio-s1-mini")
    s1_device: Device = "auto"
    s1_precision: Precision = "auto"
    s1_compile: bool = Field(False, description="torch.compile the decode step (CUDA graphs on GPU).")
    s1_stream_frames: int = Field(
        8, ge=1, le=512, description="Codec frames in the first streamed chunk (21.5 frames = 1 s); later ones grow."
    )
    s1_reference_cache_size: int = Field(
        32, ge=0, le=100_000, description="Encoded reference voices kept in memory (LRU); 0 = none."
    )
    s1_cpu_threads: int = Field(
        0, ge=0, le=1024, description="torch intra-op threads when the model runs on CPU; 0 = half the CPUs."
    )
    s1_slot_context: int = Field(
        0, ge=0, le=1_000_000,
        description="KV-cache positions per batch slot (prompt plus audio); 0 = the model's whole context. "
        "Half the context fits twice the slots in the same GPU memory.",
    )  # fmt: skip
    s1_codec_process: bool = Field(
        True, description="On CPU, decode the streamed audio in a process of its own, out of the stepping thread's GIL."
    )
    warmup: bool = Field(True, description="Run one synthesis before reporting ready.")

    # Mock engine: a per-step cost (one chunk for every row) lets tests and benchmarks see realistic timing.
    mock_chunk_cost_ms: float = Field(0.0, ge=0, le=10_000)

    # Reference voices
    reference_storage: ReferenceStorage = "local"
    reference_path: Path = Path("references")
    max_reference_seconds: float = Field(30.0, gt=0, le=600)
    # Remote voice storage (huggingface, s3): a bounded local cache, and how long to wait on the backend.
    reference_cache_path: Path | None = Field(None, description="Default: <tmp>/voice-service/reference-cache.")
    reference_cache_max_bytes: int = Field(512 * 1024 * 1024, ge=0, description="0: keep nothing on disk.")
    reference_timeout_seconds: float = Field(30.0, gt=0, le=600)
    # VOICE_REFERENCE_STORAGE=huggingface: voices are <id>/<name>.wav + <name>.lab in a Hub repo.
    reference_hf_repo: str | None = Field(None, description="owner/name")
    reference_hf_repo_type: HfRepoType = "dataset"
    reference_hf_revision: str = "main"
    reference_hf_path: str = Field("", description="Folder inside the repo that holds the voices.")
    reference_hf_token: SecretStr | None = None
    reference_hf_token_file: Path | None = Field(None, description="A file holding the token, e.g. a mounted Secret.")
    reference_hf_endpoint: str | None = Field(None, description="Default: huggingface_hub's (HF_ENDPOINT).")
    reference_hf_refresh_seconds: float = Field(30.0, ge=0, description="How often to look for a new commit.")
    # VOICE_REFERENCE_STORAGE=s3: credentials come from the standard AWS chain (env, files, IRSA, IMDS).
    reference_s3_bucket: str | None = None
    reference_s3_prefix: str = ""
    reference_s3_endpoint_url: str | None = Field(None, description="For MinIO and other S3-compatible stores.")
    reference_s3_region: str | None = None
    reference_s3_addressing_style: S3AddressingStyle = "auto"

    # Scheduler and limits
    max_batch_size: int = Field(
        8, ge=1, le=1024, description="Requests the engine decodes together (batch slots); 1 = one at a time."
    )
    queue_size: int = Field(16, ge=1, le=10_000, description="Requests waiting beyond the batch slots.")
    stream_buffer_seconds: float = Field(
        10.0, gt=0, le=3600, description="Audio made ahead of a slow reader; then its request pauses."
    )
    stall_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="A paused request whose reader takes nothing this long is ended."
    )
    retry_after_seconds: int = Field(1, ge=1, le=3600)
    shutdown_delay_seconds: float = Field(
        0.0,
        ge=0,
        le=600,
        description="After SIGTERM, how long the server serves on (readiness 503, each response closing its "
        "connection) before it stops listening and drains: the time load balancers take to stop sending.",
    )
    drain_seconds: float = Field(
        45.0, gt=0, le=3600, description="After SIGTERM, how long accepted work may go on before it is cancelled."
    )
    request_timeout_seconds: float = Field(300.0, gt=0)
    max_text_length: int = Field(2000, ge=1, le=1_000_000)
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    # /v1/tts/live sessions
    live_idle_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="A session with no message and nothing to synthesize this long is closed."
    )
    live_max_text_length: int = Field(20_000, ge=1, le=10_000_000, description="Characters of text per session.")
    live_max_session_seconds: float = Field(900.0, gt=0, description="Longest a session may last.")

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

    @field_validator("api_keys_file", "reference_hf_token_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        # A field validator, so the error names the variable, e.g. VOICE_API_KEYS_FILE (cli prints the field).
        if value is not None and not value.is_file():
            raise ValueError(f"{value} does not exist or is not a file")
        return value

    @field_validator(
        "reference_hf_repo", "reference_hf_endpoint", "reference_hf_token", "reference_s3_bucket",
        "reference_s3_endpoint_url", "reference_s3_region", "reference_hf_token_file", "reference_cache_path",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Rendered manifests often carry VAR="" for "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _reference_storage_complete(self) -> Settings:
        if self.reference_storage == "s3" and not self.reference_s3_bucket:
            raise ValueError("VOICE_REFERENCE_STORAGE=s3 needs VOICE_REFERENCE_S3_BUCKET")
        if self.reference_storage == "huggingface":
            repo = self.reference_hf_repo or ""
            if repo.count("/") != 1 or not all(repo.split("/")):
                raise ValueError("VOICE_REFERENCE_STORAGE=huggingface needs VOICE_REFERENCE_HF_REPO as owner/name")
        if self.reference_hf_token is not None and self.reference_hf_token_file is not None:
            raise ValueError("set VOICE_REFERENCE_HF_TOKEN or VOICE_REFERENCE_HF_TOKEN_FILE, not both")
        return self

    def load_hf_token(self) -> str | None:
        """The Hub token from the setting or its file; None lets huggingface_hub use its own (HF_TOKEN)."""
        if self.reference_hf_token is not None:
            return self.reference_hf_token.get_secret_value().strip() or None
        if self.reference_hf_token_file is not None:
            return self.reference_hf_token_file.read_text(encoding="utf-8").strip() or None
        return None

    def reference_cache_dir(self) -> Path:
        if self.reference_cache_path is not None:
            return self.reference_cache_path
        return Path(tempfile.gettempdir()) / "voice-service" / "reference-cache"

    def load_api_keys(self) -> frozenset[str]:
        """The accepted keys: the inline list plus non-empty lines of the key file."""
        keys = set(self.api_keys)
        if self.api_keys_file is not None:
            keys.update(line.strip() for line in self.api_keys_file.read_text().splitlines())
        keys.discard("")
        return frozenset(keys)
