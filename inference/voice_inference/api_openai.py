"""``POST /v1/audio/speech``: OpenAI's speech route, so the ``openai`` SDK works with
``base_url`` pointed here. ``voice`` names a stored voice (``default``: the model's own
voice). Audio is always streamed, as OpenAI does. Errors on this route use OpenAI's error shape (see ``errors``).
"""

from __future__ import annotations

from aiohttp import web

from voice_inference import parsing, schemas, synthesis
from voice_inference.engines import base

DEFAULT_VOICE = "default"


async def speech(request: web.Request) -> web.StreamResponse:
    services = request.app[synthesis.SERVICES]
    body = await parsing.parse_body(request, schemas.SpeechRequest, msgpack=False)
    text = synthesis.check_text(body.input, services.settings, field="input")

    references: tuple[base.Reference, ...] = ()
    if body.voice != DEFAULT_VOICE:
        references = (await synthesis.stored_reference(services.store, body.voice, field="voice"),)

    engine_request = base.SynthesisRequest(text=text, references=references, speed=body.speed)
    # Like OpenAI, audio always leaves as it is made (chunked); ``sse`` wraps it in events.
    sse = body.stream_format == "sse"
    return await synthesis.respond(
        request, services, engine_request, body.response_format, streaming=not sse, sse=sse
    )
