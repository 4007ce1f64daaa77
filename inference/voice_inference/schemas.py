"""Request and response models of the HTTP API (pydantic), also the source of the OpenAPI
document. ``TTSRequest`` accepts what Fish Audio's own server and hosted API accept on
``/v1/tts``; ``SpeechRequest`` is OpenAI's ``/v1/audio/speech`` body. Unknown fields are
ignored, as they are there. Pure data: limits that depend on settings are checked by the
handlers (``synthesis.check_text``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from voice_inference import encoders


class ReferenceAudio(BaseModel):
    """An inline voice: audio file bytes (base64 in JSON, raw bytes in msgpack) and transcript."""

    model_config = ConfigDict(extra="ignore")

    audio: bytes
    text: str

    @field_validator("audio", mode="before")
    @classmethod
    def _decode_base64(cls, value: Any) -> Any:
        # JSON cannot carry bytes: clients send base64 there. msgpack sends real bytes.
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("audio must be base64 encoded in JSON") from exc
        return value


class Prosody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    speed: float = Field(1.0, ge=0.5, le=2.0)
    volume: float = Field(0.0, ge=-20.0, le=20.0, description="Gain in dB.")


class TTSRequest(BaseModel):
    """Body of ``POST /v1/tts`` (JSON or msgpack)."""

    model_config = ConfigDict(extra="ignore")

    text: str
    chunk_length: int = Field(200, ge=100, le=300, description="Characters per synthesized segment.")
    format: Literal["wav", "pcm", "mp3", "opus", "flac"] = "wav"
    references: list[ReferenceAudio] = Field(default_factory=list)
    reference_id: str | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    use_memory_cache: Literal["on", "off"] = "off"
    normalize: bool = True
    streaming: bool = False
    max_new_tokens: int = Field(1024, ge=0, le=8192, description="0: no limit beyond the model's context.")
    top_p: float = Field(0.8, ge=0.1, le=1.0)
    repetition_penalty: float = Field(1.1, ge=0.9, le=2.0)
    temperature: float = Field(0.8, ge=0.1, le=1.0)
    latency: Literal["normal", "balanced"] = "normal"
    prosody: Prosody | None = None
    sample_rate: int | None = Field(
        None, description="Output rate in Hz (resampled); None: the model's (44100; Opus 48000)."
    )
    mp3_bitrate: Literal[64, 128, 192] = Field(128, description="kbps, for mp3.")
    opus_bitrate: Literal[-1000, 24, 32, 48, 64] = Field(64, description="kbps, for opus; -1000: the server's default (64).")
    min_chunk_length: int = Field(
        50, ge=0, le=300, description="/v1/tts/live: shortest segment a sentence end may close. Unused on /v1/tts."
    )
    condition_on_previous_chunks: bool = Field(
        True, description="Each segment of long text (or of a live session) continues from the previous one's audio."
    )
    early_stop_threshold: float = Field(1.0, description="Accepted for compatibility; not used.")

    @field_validator("sample_rate")
    @classmethod
    def _rate_fits_format(cls, rate: int | None, info: ValidationInfo) -> int | None:
        fmt = info.data.get("format")  # declared before sample_rate, so already validated (or absent)
        rates = encoders.OPUS_RATES if fmt == "opus" else encoders.SAMPLE_RATES
        if rate is not None and rate not in rates:
            raise ValueError(f"for {fmt} it must be one of {', '.join(str(r) for r in sorted(rates))}")
        return rate

    def bit_rate(self) -> int | None:
        """The codec bit rate in bit/s for this request's format (None: the encoder's default)."""
        if self.format == "mp3":
            return self.mp3_bitrate * 1000
        if self.format == "opus" and self.opus_bitrate > 0:
            return self.opus_bitrate * 1000
        return None


class VoiceRef(BaseModel):
    id: str


class SpeechRequest(BaseModel):
    """Body of ``POST /v1/audio/speech``, as the ``openai`` SDK sends it."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str
    voice: str = Field(description="A stored voice id, or 'default' for the model's own voice.")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(None, description="Accepted for compatibility; not used.")

    @model_validator(mode="before")
    @classmethod
    def _voice_object(cls, data: Any) -> Any:
        # Newer SDKs may send ``voice`` as ``{"id": "..."}``.
        if isinstance(data, dict) and isinstance(data.get("voice"), dict):
            data = {**data, "voice": VoiceRef.model_validate(data["voice"]).id}
        return data


class VoiceInfo(BaseModel):
    """A stored voice, as listed by ``GET /v1/voices``."""

    id: str
    text: str
    sample_rate: int
    duration_seconds: float
    created_at: str
    revision: str


class VoiceList(BaseModel):
    voices: list[VoiceInfo]


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
