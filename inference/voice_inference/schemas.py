"""Request and response models of the HTTP API (pydantic), also the source of the OpenAPI
document (``openapi``). ``TTSRequest`` accepts what Fish Audio's own server and hosted API
accept on ``/v1/tts``; ``SpeechRequest`` is OpenAI's ``/v1/audio/speech`` body. Unknown fields
of those bodies are ignored, as they are there; the upload forms refuse them. The ``Model*`` and ``Fish*`` models are Fish Audio's voice API
on ``/model`` (``api_models``): its form, its query and the objects its SDK reads.

Rules a handler checks itself, with its own status (blank text is a 400, a bad voice id a 400
or 422), are still declared here as annotated types (``SynthesisText``, ``VoiceId``), so the
document states them from the same constants the checks use: ``NON_BLANK`` here,
``voices.base.VOICE_ID`` for ids. Limits that are settings (``VOICE_MAX_TEXT_LENGTH``) are
marked with ``TEXT_LIMIT`` and filled in by the document.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator,
)

from voice_inference import encoders
from voice_inference.voices import base as voice_base

# Text with at least one character that is not whitespace (``str.isspace`` and ``\s`` agree).
NON_BLANK = re.compile(r"\S")
# The document replaces this key with ``maxLength`` from the server's settings.
TEXT_LIMIT = "x-max-length-setting"

# Request bodies: unknown fields ignored (as Fish Audio and OpenAI do); types strict, so a value
# the document calls the wrong type ("1" for a number, true for a float) is a 422, not coerced.
_REQUEST = ConfigDict(extra="ignore", strict=True)

_VOICE_ID_SCHEMA = {"type": "string", "pattern": voice_base.VOICE_ID.pattern, "maxLength": voice_base.VOICE_ID_MAX}

# A stored voice to use, if any: empty or null means none.
OptionalVoiceId = Annotated[
    str | None, WithJsonSchema({"anyOf": [_VOICE_ID_SCHEMA, {"const": ""}, {"type": "null"}]})
]


def _integral(value: Any) -> Any:
    # JSON Schema's integer includes 200.0; strict pydantic would refuse it.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(_integral)]


def _rates(rates: frozenset[int]) -> dict[str, Any]:
    return {"anyOf": [{"type": "integer", "enum": sorted(rates)}, {"type": "null"}]}


# An output rate (``TTSRequest._rate_fits_format``): any of ``encoders.SAMPLE_RATES``, and for
# opus only ``encoders.OPUS_RATES``, which the model schema states as an if/then rule.
SampleRate = Annotated[Integer | None, WithJsonSchema(_rates(encoders.SAMPLE_RATES))]
_OPUS_RATE_RULE = {
    "if": {"properties": {"format": {"const": "opus"}}, "required": ["format"]},
    "then": {"properties": {"sample_rate": _rates(encoders.OPUS_RATES)}},
}

# Text to synthesize: non-blank (``synthesis.check_text``), at most ``VOICE_MAX_TEXT_LENGTH``.
SynthesisText = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": NON_BLANK.pattern, TEXT_LIMIT: "max_text_length"})
]
# A transcript or title: non-blank (``api_voices.create_voice``, ``api_models.create_model``).
Transcript = Annotated[str, WithJsonSchema({"type": "string", "pattern": NON_BLANK.pattern})]
# A stored voice's id (``voices.validate_id``).
VoiceId = Annotated[str, WithJsonSchema(_VOICE_ID_SCHEMA)]
# An audio file: raw bytes in multipart and msgpack; JSON carries it as base64 (``ReferenceAudio``).
AudioFile = Annotated[bytes, WithJsonSchema({"type": "string", "format": "binary", "contentMediaType": "audio/*"})]
Base64Audio = Annotated[
    bytes,
    WithJsonSchema({"type": "string", "format": "byte", "contentEncoding": "base64", "contentMediaType": "audio/*"}),
]


class ReferenceAudio(BaseModel):
    """An inline voice: audio file bytes (base64 in JSON, raw bytes in msgpack) and transcript."""

    model_config = _REQUEST

    audio: Base64Audio
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
    model_config = _REQUEST

    speed: float = Field(1.0, ge=0.5, le=2.0)
    volume: float = Field(0.0, ge=-20.0, le=20.0, description="Gain in dB.")


class TTSRequest(BaseModel):
    """Body of ``POST /v1/tts`` (JSON or msgpack)."""

    model_config = _REQUEST | ConfigDict(json_schema_extra=_OPUS_RATE_RULE)

    text: SynthesisText
    chunk_length: Integer = Field(200, ge=100, le=300, description="Characters per synthesized segment.")
    format: Literal["wav", "pcm", "mp3", "opus", "flac"] = "wav"
    references: list[ReferenceAudio] = Field(default_factory=list)
    reference_id: OptionalVoiceId = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1), BeforeValidator(_integral)] | None = None
    use_memory_cache: Literal["on", "off"] = "off"
    normalize: bool = True
    streaming: bool = False
    max_new_tokens: Integer = Field(1024, ge=0, le=8192, description="0: no limit beyond the model's context.")
    top_p: float = Field(0.8, ge=0.1, le=1.0)
    repetition_penalty: float = Field(1.1, ge=0.9, le=2.0)
    temperature: float = Field(0.8, ge=0.1, le=1.0)
    latency: Literal["normal", "balanced"] = "normal"
    prosody: Prosody | None = None
    sample_rate: SampleRate = Field(
        None, description="Output rate in Hz (resampled); None: the model's (44100; Opus 48000)."
    )
    mp3_bitrate: Literal[64, 128, 192] = Field(128, description="kbps, for mp3.")
    opus_bitrate: Literal[-1000, 24, 32, 48, 64] = Field(64, description="kbps, for opus; -1000: the server's default (64).")
    min_chunk_length: Integer = Field(
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
    model_config = _REQUEST

    id: VoiceId


class SpeechRequest(BaseModel):
    """Body of ``POST /v1/audio/speech``, as the ``openai`` SDK sends it."""

    model_config = _REQUEST

    model: str = Field(min_length=1)
    input: SynthesisText
    voice: Annotated[str, WithJsonSchema({"anyOf": [_VOICE_ID_SCHEMA, VoiceRef.model_json_schema()]})] = Field(
        description="A stored voice id, or 'default' for the model's own voice; or an object with that id."
    )
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


class VoiceUpload(BaseModel):
    """The multipart form of ``POST /v1/voices``: ``api_voices`` reads these fields by name, and
    refuses others (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")

    id: VoiceId
    text: Transcript
    audio: AudioFile


class ModelUpload(BaseModel):
    """The multipart form of ``POST /model``, as Fish Audio's SDK sends it (``voices.create``):
    ``api_models`` reads these fields by name and refuses others. The fields after ``type``
    are accepted and not stored."""

    model_config = ConfigDict(extra="forbid")

    title: Transcript = Field(description="The new voice's id is made from it.")
    voices: list[AudioFile] = Field(min_length=1, description="Audio files, joined in order into one voice.")
    texts: list[Transcript] = Field(
        min_length=1, description="One transcript per file in voices, in order (there is no speech recognition here)."
    )
    type: Literal["tts"] = "tts"
    description: str = ""
    visibility: str = ""
    train_mode: str = ""
    enhance_audio_quality: str = ""
    tags: list[str] = Field(default_factory=list)
    cover_image: Annotated[
        bytes, WithJsonSchema({"type": "string", "format": "binary", "contentMediaType": "image/*"})
    ] = Field(default=b"")


class ModelQuery(BaseModel):
    """The query of ``GET /model`` (Fish Audio's ``voices.list``). Not strict: query values are
    text, so ``page_size=20`` is the integer 20. Fish's other filters (``tag``, ``self``,
    ``author_id``, ``language``, ``title_language``, ``sort_by``) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    page_size: int = Field(10, ge=1, le=100)
    page_number: int = Field(1, ge=1, le=1_000_000)
    title: str = Field("", description="Lists the voices whose id contains it (any case).")


class FishSample(BaseModel):
    title: str
    text: str
    task_id: str
    audio: str


class FishAuthor(BaseModel):
    id: str = Field(alias="_id")
    nickname: str
    avatar: str


class FishModel(BaseModel):
    """A stored voice as Fish Audio's model object (what the SDK reads as ``Voice``): the id is
    also its title; every voice is private, ``trained`` (usable at once), with no tags, no
    languages, zero counters and one author, the server."""

    id: VoiceId = Field(alias="_id")
    type: Literal["tts"] = "tts"
    title: str
    description: str = ""
    cover_image: str = ""
    train_mode: Literal["fast"] = "fast"
    state: Literal["trained"] = "trained"
    tags: list[str] = Field(default_factory=list)
    samples: list[FishSample]
    created_at: str
    updated_at: str
    languages: list[str] = Field(default_factory=list)
    visibility: Literal["private"] = "private"
    lock_visibility: bool = False
    like_count: int = 0
    mark_count: int = 0
    shared_count: int = 0
    task_count: int = 0
    liked: bool = False
    marked: bool = False
    author: FishAuthor = FishAuthor(_id="voice-service", nickname="voice-service", avatar="")


class FishModelPage(BaseModel):
    """``GET /model``: one page of voices, newest first, and how many match in all."""

    total: int
    items: list[FishModel]


class VoiceInfo(BaseModel):
    """A stored voice, as listed by ``GET /v1/voices``."""

    id: VoiceId
    text: str
    sample_rate: int
    duration_seconds: float
    created_at: str
    revision: str


class VoiceList(BaseModel):
    voices: list[VoiceInfo]


class VoiceDeleted(BaseModel):
    id: VoiceId
    deleted: bool


class Readiness(BaseModel):
    """``GET /health/ready``: 200 when ``ready``, 503 while ``loading``, after the engine
    ``failed``, and from SIGTERM on (``draining``)."""

    status: Literal["ready", "loading", "failed", "draining"]
    engine: str
    error: str | None = Field(None, description="Why the engine failed to load.")


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Our error shape, on every route but OpenAI's (``errors.body``)."""

    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIErrorBody(BaseModel):
    """OpenAI's error shape, on ``/v1/audio/*`` (``errors.body``), which the ``openai`` SDK reads."""

    error: OpenAIErrorDetail
