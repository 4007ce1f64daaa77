"""``GET /v1/tts/live``: Fish Audio's realtime WebSocket, text streamed in, speech streamed out.

The protocol of Fish Audio's hosted API and official SDK (``tts.stream_websocket``): every
message is msgpack in a binary frame. The client sends ``start`` (``{"event": "start",
"request": <the /v1/tts body; its text optional>}``), then ``text`` events (``{"text": ...}``),
``flush`` and ``stop``. The server sends ``audio`` events (``{"audio": <bytes>}``) and ends with
one ``finish`` event: reason ``stop``, or ``error`` with the HTTP error body's fields (status,
code, message, field).

Reads top to bottom: the upgrade (behind the same middlewares as every route, auth included),
the ``start`` event, then a session of two tasks: the reader cuts incoming text into segments
(``textstream``), the writer synthesizes them in order through the scheduler like any request,
each continuing from the previous segment's audio, and streams the audio of all segments as
one encoded stream (one WAV header, one Ogg or MP3 stream). The writer waits on the socket
when the client reads slowly, and text is bounded per session, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from typing import Any

import numpy as np
import ormsgpack
from aiohttp import web

from voice_inference import api_tts, audio, encoders, errors, parsing, scheduler, schemas, synthesis, textstream
from voice_inference.engines import base
from voice_inference.errors import ApiError

log = logging.getLogger(__name__)

# Audio events stay well under the SDK's default message limit (httpx-ws: 64 KiB); an even
# size keeps PCM samples whole in every event.
AUDIO_EVENT_BYTES = 32 * 1024

_SESSION_IDS = itertools.count(1)


class Disconnected(Exception):
    """The client closed the socket or the connection broke."""


async def live(request: web.Request) -> web.WebSocketResponse:
    services = request.app[synthesis.SERVICES]
    ws = web.WebSocketResponse(max_msg_size=services.settings.max_body_bytes)
    if not ws.can_prepare(request).ok:
        raise ApiError(
            426, "websocket_required", "/v1/tts/live is a WebSocket: connect with an Upgrade request",
            headers={"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
        )  # fmt: skip
    await ws.prepare(request)
    services.metrics.live_sessions.inc()
    try:
        async with asyncio.timeout(services.settings.live_max_session_seconds):
            body = await _start(ws, services)
            if services.scheduler.draining:  # work accepted from here on would outlive the drain
                raise ApiError(503, "not_ready", "the server is shutting down: connect to another replica")
            references = await api_tts.resolve_references(body, services, prefix="request.")
            await Session(ws, services, body, references).run()
    except ApiError as exc:
        await _finish_error(ws, exc)
    except TimeoutError:
        seconds = services.settings.live_max_session_seconds
        await _finish_error(ws, ApiError(408, "session_too_long", f"session exceeded its limit of {seconds:g} s"))
    except (Disconnected, ConnectionResetError):
        log.debug("live session client disconnected")
    finally:
        services.metrics.live_sessions.dec()
        await ws.close()
    return ws


async def _start(ws: web.WebSocketResponse, services: synthesis.Services) -> schemas.TTSRequest:
    """The first message must be ``start``; its request is validated as a ``/v1/tts`` body."""
    event = await receive_event(ws, timeout=services.settings.live_idle_timeout_seconds)
    if event is None:
        raise _idle(services.settings.live_idle_timeout_seconds)
    if event.get("event") != "start":
        raise ApiError(400, "start_expected", f"the first event must be 'start', not {event.get('event')!r}")
    fields = event.get("request")
    if not isinstance(fields, dict):
        raise ApiError(422, "invalid_field", "request: the start event needs a request object", field="request")
    try:
        return parsing.validate(schemas.TTSRequest, {**fields, "text": fields.get("text") or ""})
    except ApiError as exc:
        field = f"request.{exc.field}" if exc.field else "request"
        raise ApiError(exc.status, exc.code, f"request.{exc.message}", field=field) from None


async def receive_event(ws: web.WebSocketResponse, *, timeout: float) -> dict[str, Any] | None:
    """The next event as a dict; None when nothing came within ``timeout`` seconds."""
    try:
        message = await ws.receive(timeout=timeout)
    except TimeoutError:
        return None
    if message.type in (web.WSMsgType.CLOSE, web.WSMsgType.CLOSING, web.WSMsgType.CLOSED, web.WSMsgType.ERROR):
        raise Disconnected()
    if message.type != web.WSMsgType.BINARY:
        raise ApiError(400, "malformed_event", "events are msgpack maps in binary frames")
    try:
        event = ormsgpack.unpackb(message.data)
    except ormsgpack.MsgpackDecodeError as exc:
        raise ApiError(400, "malformed_event", f"event is not valid msgpack: {exc}") from None
    if not isinstance(event, dict):
        raise ApiError(400, "malformed_event", "an event must be a msgpack map with an 'event' key")
    return event


class Session:
    """One started session: the reader and writer tasks and what they share."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        services: synthesis.Services,
        body: schemas.TTSRequest,
        references: list[base.Reference],
    ) -> None:
        self.ws = ws
        self.services = services
        self.body = body
        self.references = tuple(references)
        self.id = next(_SESSION_IDS)
        self.segmenter = textstream.Segmenter(max_chars=body.chunk_length, min_chars=body.min_chunk_length)
        self.segments: asyncio.Queue[str | None] = asyncio.Queue()  # None: the client said stop
        self.characters = 0
        self.busy = False  # the writer is synthesizing a segment
        self.last_activity = time.monotonic()
        self.first_audio_sent = False

    async def run(self) -> None:
        if self.body.text:
            self._add_text(self.body.text)
        reader = asyncio.create_task(self._read(), name=f"live-{self.id}-read")
        writer = asyncio.create_task(self._write(), name=f"live-{self.id}-write")
        # A session waiting for text at the drain deadline ends then too (a running segment's
        # job ends with ShuttingDown, which the writer reports).
        deadline = asyncio.create_task(self.services.scheduler.drain_ended.wait(), name=f"live-{self.id}-drain")
        tasks = (reader, writer, deadline)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if writer in done:
                writer.result()
            elif reader in done:
                reader.result()  # it only ends by raising: a disconnect or a bad event
            else:
                ended = scheduler.ShuttingDown("the server is shutting down: the session ran past the drain deadline")
                raise synthesis.engine_error(ended)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # Reader --------------------------------------------------------------------------------

    async def _read(self) -> None:
        stopped = False
        idle = self.services.settings.live_idle_timeout_seconds
        while True:
            waiting = self.busy or not self.segments.empty() or stopped
            left = idle if waiting else idle - (time.monotonic() - self.last_activity)
            if left <= 0:
                raise _idle(idle)
            event = await receive_event(self.ws, timeout=left)
            if event is None:
                continue  # the loop decides whether that was idle
            self.last_activity = time.monotonic()
            if stopped:
                continue  # after stop only a disconnect matters
            kind = event.get("event")
            if kind == "text":
                text = event.get("text")
                if not isinstance(text, str):
                    raise ApiError(422, "invalid_field", "text: a text event needs a string 'text'", field="text")
                self._add_text(text)
            elif kind == "flush":
                self._queue(self.segmenter.flush())
            elif kind == "stop":
                self._queue(self.segmenter.flush())
                self.segments.put_nowait(None)
                stopped = True
            elif kind == "start":
                raise ApiError(400, "already_started", "this session has started; send text, flush or stop")
            else:
                raise ApiError(400, "unknown_event", f"unknown event {kind!r}; expected text, flush or stop")

    def _add_text(self, text: str) -> None:
        self.characters += len(text)
        limit = self.services.settings.live_max_text_length
        if self.characters > limit:
            raise ApiError(413, "text_too_long", f"the session's text passed its limit of {limit} characters")
        self._queue(self.segmenter.feed(text))

    def _queue(self, segments: list[str]) -> None:
        for segment in segments:
            self.segments.put_nowait(segment)

    # Writer --------------------------------------------------------------------------------

    async def _write(self) -> None:
        services, body = self.services, self.body
        rate = services.scheduler.sample_rate
        encoder = encoders.create(body.format, rate, streaming=True, out_rate=body.sample_rate, bit_rate=body.bit_rate())
        gain_db = (body.prosody or schemas.Prosody()).volume
        previous: base.Reference | None = None
        try:
            while (segment := await self.segments.get()) is not None:
                self.busy = True
                context = (previous,) if previous is not None and body.condition_on_previous_chunks else ()
                samples = await self._synthesize(segment, self.references + context, encoder, gain_db, rate)
                if samples.size:  # keyed by content, as inline references are: caches stay correct
                    key = "live:" + hashlib.sha256(samples.tobytes() + segment.encode()).hexdigest()[:24]
                    previous = base.Reference(key=key, audio=samples, sample_rate=rate, text=segment)
                self.busy = False
                self.last_activity = time.monotonic()
            await self._send_audio(await synthesis.encode(encoder))
        finally:  # a session that ends early never finishes its encoder: an unclosed muxer crashes FFmpeg
            encoder.close()
        await self.ws.send_bytes(ormsgpack.packb({"event": "finish", "reason": "stop"}))

    async def _synthesize(
        self, segment: str, references: tuple[base.Reference, ...], encoder: encoders.Encoder, gain_db: float, rate: int
    ) -> np.ndarray:
        """One segment through the scheduler, its audio sent as it comes; returns its samples."""
        metrics = self.services.metrics
        started = time.perf_counter()
        # accepted_before_drain: the session was started before any drain (``live`` checks), so
        # its next segments are work already accepted and go on while the server drains.
        job = synthesis.submit(
            self.services, api_tts.engine_request(self.body, segment, references), accepted_before_drain=True
        )
        metrics.live_segments.inc()
        parts: list[np.ndarray] = []
        try:
            async for chunk in job:
                parts.append(chunk)
                await self._send_audio(await synthesis.encode(encoder, audio.gain(chunk, gain_db)))
                if not self.first_audio_sent:
                    self.first_audio_sent = True
                    metrics.live_ttfa.observe(time.perf_counter() - started)
        except base.EngineError as exc:
            raise synthesis.engine_error(exc) from None
        finally:
            job.cancel()  # no-op when finished; stops the engine when the client left
        samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        metrics.audio_seconds.inc(samples.size / rate)
        return samples

    async def _send_audio(self, data: bytes) -> None:
        for start in range(0, len(data), AUDIO_EVENT_BYTES):
            await self.ws.send_bytes(ormsgpack.packb({"event": "audio", "audio": data[start : start + AUDIO_EVENT_BYTES]}))


def _idle(seconds: float) -> ApiError:
    return ApiError(408, "idle_timeout", f"no text for {seconds:g} s and nothing left to synthesize; session closed")


async def _finish_error(ws: web.WebSocketResponse, error: ApiError) -> None:
    """The ``finish`` event with reason ``error`` and the error's fields, unless the client left."""
    if error.status >= 500:
        log.warning("live session failed: %s", error.message)
    if ws.closed:
        return
    event = {"event": "finish", "reason": "error", **errors.body(error, openai=False)["error"]}
    try:
        await ws.send_bytes(ormsgpack.packb(event))
    except ConnectionResetError:
        pass
