"""``POST /v1/tts``: Fish Audio's text-to-speech route, so their clients work unchanged.

Reads top to bottom: parse and validate the body, resolve the voice, hand the request to
``synthesis.respond``.
"""

from __future__ import annotations

from aiohttp import web

from voice_inference import parsing, schemas, synthesis, voices
from voice_inference.engines import base


async def tts(request: web.Request) -> web.StreamResponse:
    services = request.app[synthesis.SERVICES]
    body = await parsing.parse_body(request, schemas.TTSRequest)
    text = synthesis.check_text(body.text, services.settings, field="text")

    if body.reference_id:  # checked even when inline references take precedence
        with synthesis.store_errors(body.reference_id, field="reference_id"):
            voices.validate_id(body.reference_id)
    references = [
        await synthesis.inline_reference(ref.audio, ref.text, services.settings, field=f"references.{i}.audio")
        for i, ref in enumerate(body.references)
    ]
    if not references and body.reference_id:
        references.append(await synthesis.stored_reference(services.store, body.reference_id, field="reference_id"))

    prosody = body.prosody or schemas.Prosody()
    engine_request = base.SynthesisRequest(
        text=text,
        references=tuple(references),
        seed=body.seed,
        max_new_tokens=body.max_new_tokens,
        top_p=body.top_p,
        temperature=body.temperature,
        repetition_penalty=body.repetition_penalty,
        chunk_length=body.chunk_length,
        normalize=body.normalize,
        latency=body.latency,
        speed=prosody.speed,
    )
    return await synthesis.respond(
        request, services, engine_request, body.format, streaming=body.streaming, gain_db=prosody.volume
    )
