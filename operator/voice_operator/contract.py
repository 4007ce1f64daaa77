"""The contract between the operator and the inference pods, written down once.

The lowest layer of the operator: imported by the manifest builders (``builders``) and by
the tests that check it against ``voice_inference.settings.Settings``. The operator never
imports the inference package; these names are what both sides agree on: the port, the
health and metrics paths, and the ``VOICE_*`` environment variables (``VOICE_`` plus the
upper-cased name of a ``Settings`` field).
"""

from __future__ import annotations

from typing import Final

# -- network ----------------------------------------------------------------------------
PORT: Final = 8080
PORT_NAME: Final = "http"
LIVE_PATH: Final = "/health/live"
READY_PATH: Final = "/health/ready"  # 503 until the model is loaded and warmed up
METRICS_PATH: Final = "/metrics"

# -- environment variables --------------------------------------------------------------
ENV_PREFIX: Final = "VOICE_"


def env_name(field: str) -> str:
    """The variable the inference server reads for one of its settings fields."""
    return ENV_PREFIX + field.upper()


HOST: Final = env_name("host")
PORT_ENV: Final = env_name("port")
TTS_PROVIDER: Final = env_name("tts_provider")
S1_CHECKPOINT_PATH: Final = env_name("s1_checkpoint_path")
S1_DEVICE: Final = env_name("s1_device")
S1_PRECISION: Final = env_name("s1_precision")
S1_COMPILE: Final = env_name("s1_compile")
S1_STREAM_FRAMES: Final = env_name("s1_stream_frames")
S1_REFERENCE_CACHE_SIZE: Final = env_name("s1_reference_cache_size")
S1_CPU_THREADS: Final = env_name("s1_cpu_threads")
MAX_BATCH_SIZE: Final = env_name("max_batch_size")
QUEUE_SIZE: Final = env_name("queue_size")
MAX_TEXT_LENGTH: Final = env_name("max_text_length")
LOG_LEVEL: Final = env_name("log_level")
SHUTDOWN_DELAY: Final = env_name("shutdown_delay_seconds")
CORS_ALLOW_ORIGINS: Final = env_name("cors_allow_origins")  # comma-separated list
API_KEYS_FILE: Final = env_name("api_keys_file")  # one key per line
REFERENCE_STORAGE: Final = env_name("reference_storage")
REFERENCE_PATH: Final = env_name("reference_path")
REFERENCE_CACHE_PATH: Final = env_name("reference_cache_path")
REFERENCE_HF_REPO: Final = env_name("reference_hf_repo")
REFERENCE_HF_REPO_TYPE: Final = env_name("reference_hf_repo_type")
REFERENCE_HF_REVISION: Final = env_name("reference_hf_revision")
REFERENCE_HF_PATH: Final = env_name("reference_hf_path")
REFERENCE_HF_TOKEN_FILE: Final = env_name("reference_hf_token_file")
REFERENCE_HF_ENDPOINT: Final = env_name("reference_hf_endpoint")
REFERENCE_S3_BUCKET: Final = env_name("reference_s3_bucket")
REFERENCE_S3_PREFIX: Final = env_name("reference_s3_prefix")
REFERENCE_S3_ENDPOINT_URL: Final = env_name("reference_s3_endpoint_url")
REFERENCE_S3_REGION: Final = env_name("reference_s3_region")
REFERENCE_S3_ADDRESSING_STYLE: Final = env_name("reference_s3_addressing_style")

# Every VOICE_* name the builders may render; a unit test checks each is a Settings field.
ALL_ENV: Final = (
    HOST,
    PORT_ENV,
    TTS_PROVIDER,
    S1_CHECKPOINT_PATH,
    S1_DEVICE,
    S1_PRECISION,
    S1_COMPILE,
    S1_STREAM_FRAMES,
    S1_REFERENCE_CACHE_SIZE,
    S1_CPU_THREADS,
    MAX_BATCH_SIZE,
    QUEUE_SIZE,
    MAX_TEXT_LENGTH,
    LOG_LEVEL,
    SHUTDOWN_DELAY,
    CORS_ALLOW_ORIGINS,
    API_KEYS_FILE,
    REFERENCE_STORAGE,
    REFERENCE_PATH,
    REFERENCE_CACHE_PATH,
    REFERENCE_HF_REPO,
    REFERENCE_HF_REPO_TYPE,
    REFERENCE_HF_REVISION,
    REFERENCE_HF_PATH,
    REFERENCE_HF_TOKEN_FILE,
    REFERENCE_HF_ENDPOINT,
    REFERENCE_S3_BUCKET,
    REFERENCE_S3_PREFIX,
    REFERENCE_S3_ENDPOINT_URL,
    REFERENCE_S3_REGION,
    REFERENCE_S3_ADDRESSING_STYLE,
)

# -- filesystem layout inside the pod ---------------------------------------------------
CHECKPOINTS_MOUNT: Final = "/checkpoints"  # the checkpoint PVC, read-only
REFERENCES_MOUNT: Final = "/references"  # reference voices (writable: POST /v1/voices)
API_KEYS_MOUNT: Final = "/etc/voice-service/api-keys"
HF_TOKEN_MOUNT: Final = "/etc/voice-service/hf-token"
CACHE_MOUNT: Final = "/cache"  # torch.compile / triton caches
TMP_MOUNT: Final = "/tmp"  # the root filesystem is read-only

# Non-VOICE variables the pods need; they belong to torch/triton/HF, not to Settings.
CACHE_ENV: Final = {
    "HOME": TMP_MOUNT,
    "XDG_CACHE_HOME": CACHE_MOUNT,
    "TORCHINDUCTOR_CACHE_DIR": f"{CACHE_MOUNT}/torchinductor",
    "TRITON_CACHE_DIR": f"{CACHE_MOUNT}/triton",
}

# The uid/gid the images run as (Dockerfile.inference creates this user).
RUN_AS_USER: Final = 10001
