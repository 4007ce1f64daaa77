"""Running one synthesis for an HTTP handler: limits, references, the scheduler, the response.

Both dialects (``api_tts`` for Fish Audio's ``/v1/tts``, ``api_openai`` for OpenAI's
``/v1/audio/speech``) turn their body into an ``engines.base.SynthesisRequest`` and call
``respond``. This module owns what they share: text limits, reference voices, admission
(429/503), whole vs streamed responses, timeouts, cancellation when the client goes away, and
the synthesis metrics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import numpy as np
from aiohttp import web

from voice_inference import audio, encoders, schemas, voices
from voice_inference.engines import base
from voice_inference.errors import ApiError
from voice_inference.metrics import Metrics
from voice_inference.scheduler import Job, NotReady, QueueFull, Scheduler, ShuttingDown
from voice_inference.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What handlers need, built once by ``app.build_app`` and kept on the app."""

    settings: Settings
    scheduler: Scheduler
    store: voices.VoiceStore
    metrics: Metrics


SERVICES = web.AppKey("services", Services)


def check_text(text: str, settings: Settings, *, field: str) -> str:
    """The rules of ``schemas.SynthesisText``: non-blank (400), at most ``max_text_length`` (413)."""
    if not schemas.NON_BLANK.search(text):
        raise ApiError(400, "empty_text", f"{field} is empty or only whitespace", field=field)
    if len(text) > settings.max_text_length:
        raise ApiError(
            413, "text_too_long",
            f"{field} has {len(text)} characters; the limit is {settings.max_text_length}", field=field,
        )  # fmt: skip
    return text


async def inline_reference(data: bytes, text: str, settings: Settings, *, field: str) -> base.Reference:
    """Decode an inline reference (off the event loop) and check its length."""
    try:
        samples, rate = await asyncio.to_thread(audio.decode, data)
    except audio.AudioDecodeError as exc:
        raise ApiError(400, "invalid_audio", f"{field}: {exc}", field=field) from None
    check_reference_length(samples, rate, settings, field=field)
    key = "inline:" + hashlib.sha256(data + b"\0" + text.encode()).hexdigest()[:24]
    return base.Reference(key=key, audio=samples, sample_rate=rate, text=text)


def check_reference_length(samples: np.ndarray, rate: int, settings: Settings, *, field: str) -> None:
    seconds = audio.duration_seconds(samples, rate)
    if seconds > settings.max_reference_seconds:
        raise ApiError(
            413, "reference_too_long",
            f"{field} is {seconds:.1f} s long; the limit is {settings.max_reference_seconds:g} s", field=field,
        )  # fmt: skip


async def stored_reference(store: voices.VoiceStore, voice_id: str, *, field: str) -> base.Reference:
    """A stored voice by id; an unknown id is a 404, never a silent fallback voice."""
    voice = await get_voice(store, voice_id, field=field)
    return base.Reference(
        key=f"voice:{voice.id}:{voice.revision}", audio=voice.samples, sample_rate=voice.sample_rate, text=voice.text
    )


async def get_voice(store: voices.VoiceStore, voice_id: str, *, field: str) -> voices.StoredVoice:
    with store_errors(voice_id, field=field):
        return await store.get(voice_id)


@contextlib.contextmanager
def store_errors(voice_id: str | None, *, field: str | None) -> Iterator[None]:
    """Voice-store exceptions as API errors. A backend failure fails this request only."""
    try:
        yield
    except voices.InvalidVoice as exc:
        raise ApiError(400, "invalid_voice", str(exc), field=field) from None
    except voices.VoiceNotFound:
        raise ApiError(404, "voice_not_found", f"voice {voice_id!r} does not exist", field=field) from None
    except voices.ReadOnlyStore:
        raise ApiError(405, "read_only_storage", "voice storage is read-only", headers={"Allow": "GET"}) from None
    except Exception as exc:
        log.warning("voice store failed (voice %r): %s", voice_id, exc)
        raise ApiError(503, "voice_storage_unavailable", f"voice storage failed: {exc}") from None


def engine_error(exc: base.EngineError) -> ApiError:
    """How a job's failure reaches a client whose response has not started."""
    if isinstance(exc, base.RequestTooLarge):
        return ApiError(413, "request_too_large", str(exc))
    if isinstance(exc, ShuttingDown):  # the drain deadline passed: another replica can serve it
        return ApiError(503, "shutting_down", str(exc), headers={"Retry-After": "1"})
    return ApiError(500, "synthesis_failed", str(exc))


def submit(services: Services, request: base.SynthesisRequest, *, accepted_before_drain: bool = False) -> Job:
    try:
        return services.scheduler.submit(request, accepted_before_drain=accepted_before_drain)
    except QueueFull as exc:
        retry = str(services.settings.retry_after_seconds)
        raise ApiError(429, "queue_full", f"server is busy: {exc}; retry later", headers={"Retry-After": retry}) from None
    except NotReady as exc:
        raise ApiError(503, "not_ready", f"engine is not ready: {exc}", headers={"Retry-After": "5"}) from None


async def respond(
    http_request: web.Request,
    services: Services,
    request: base.SynthesisRequest,
    fmt: encoders.AudioFormat,
    *,
    streaming: bool,
    sse: bool = False,
    gain_db: float = 0.0,
    out_rate: int | None = None,
    bit_rate: int | None = None,
) -> web.StreamResponse:
    """Synthesize and answer: one whole file, a streamed body, or (OpenAI) server-sent events.

    ``out_rate`` and ``bit_rate``: the response's sample rate and codec bit rate, when asked."""
    started = time.perf_counter()
    job = submit(services, request)
    sample_rate = services.scheduler.sample_rate
    encoder = encoders.create(fmt, sample_rate, streaming=streaming or sse, out_rate=out_rate, bit_rate=bit_rate)
    stats = _Stats(services.metrics, started, sample_rate)
    content_type = "text/event-stream" if sse else encoder.content_type
    response = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-store"})
    try:
        async with asyncio.timeout(services.settings.request_timeout_seconds):
            chunks = _gained(_counted(job, stats), gain_db)
            if streaming or sse:
                return await _stream(http_request, response, chunks, encoder, stats, sse=sse)
            body = b"".join([await encode(encoder, chunk) async for chunk in chunks]) + await encode(encoder)
            if not stats.samples:
                raise _no_audio()
            stats.first_bytes()
            return web.Response(body=body, content_type=encoder.content_type)
    except (TimeoutError, base.EngineError) as exc:
        if response.prepared:
            # Headers and audio are out: the status cannot change. Cut the connection so the
            # client sees a broken stream rather than a clean, silently truncated one.
            log.warning("stream aborted after it started: %s", exc or "timeout")
            if http_request.transport is not None:
                http_request.transport.close()
            return response
        if isinstance(exc, TimeoutError):
            raise ApiError(504, "timeout", "synthesis took longer than the request timeout") from None
        raise engine_error(exc) from None
    finally:
        job.cancel()  # no-op when finished; stops the engine when the client left or we failed
        encoder.close()  # an unfinished FFmpeg muxer crashes the process when collected
        stats.done()


async def _stream(
    http_request: web.Request,
    response: web.StreamResponse,
    chunks: AsyncIterator[np.ndarray],
    encoder: encoders.Encoder,
    stats: "_Stats",
    *,
    sse: bool,
) -> web.StreamResponse:
    """Audio as it is encoded: raw bytes in a chunked body, or (OpenAI's ``stream_format:
    sse``) base64 audio delta events followed by a done event."""

    async def event(body: dict[str, object]) -> None:
        await response.write(f"data: {json.dumps(body)}\n\n".encode())

    async def emit(data: bytes) -> None:
        if not data:
            return
        if sse:
            await event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
        else:
            await response.write(data)
        stats.first_bytes()

    if not sse:
        response.enable_chunked_encoding()
    # Wait for the first audio before sending headers, so an early failure (or no audio at all)
    # is still a JSON error.
    iterator = aiter(chunks)
    first = await anext(iterator, None)
    if first is None:
        raise _no_audio()
    await response.prepare(http_request)
    await emit(await encode(encoder, first))
    async for chunk in iterator:
        await emit(await encode(encoder, chunk))
    await emit(await encode(encoder))
    if sse:
        await event({"type": "speech.audio.done", "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}})
    await response.write_eof()
    return response


async def encode(encoder: encoders.Encoder, chunk: np.ndarray | None = None) -> bytes:
    """``encoder.encode(chunk)``, or ``finish()`` without a chunk, on a worker thread: MP3 and AAC
    cost about 1 % of the audio's duration in CPU, which would otherwise stall the event loop."""
    if chunk is None:
        return await asyncio.to_thread(encoder.finish)
    return await asyncio.to_thread(encoder.encode, chunk)


def _no_audio() -> ApiError:
    """The engine ended without a sample: an error, never a 200 whose body is empty (mp3, opus
    and aac would be zero bytes) or a file that only looks like audio."""
    return ApiError(422, "no_audio", "the engine produced no audio for this text: nothing in it to speak")


async def _counted(job: AsyncIterator[np.ndarray], stats: "_Stats") -> AsyncIterator[np.ndarray]:
    """The job's chunks, counted; empty ones (an engine may end a segment with one) are dropped."""
    async for chunk in job:
        if chunk.size:
            stats.samples += chunk.shape[0]
            yield chunk


async def _gained(chunks: AsyncIterator[np.ndarray], gain_db: float) -> AsyncIterator[np.ndarray]:
    async for chunk in chunks:
        yield audio.gain(chunk, gain_db)


class _Stats:
    """Time to first audio byte, audio produced and real-time factor of one response."""

    def __init__(self, metrics: Metrics, started: float, sample_rate: int) -> None:
        self.metrics = metrics
        self.started = started
        self.sample_rate = sample_rate
        self.samples = 0
        self._first_sent = False

    def first_bytes(self) -> None:
        if not self._first_sent:
            self._first_sent = True
            self.metrics.ttfb.observe(time.perf_counter() - self.started)

    def done(self) -> None:
        seconds = self.samples / self.sample_rate
        if seconds > 0:
            self.metrics.audio_seconds.inc(seconds)
            self.metrics.rtf.observe((time.perf_counter() - self.started) / seconds)
