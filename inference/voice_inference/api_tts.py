"""``POST /v1/tts``: Fish Audio's text-to-speech route, so their clients work unchanged.

Reads top to bottom: parse and validate the body, resolve the voice, hand the request to
``synthesis.respond``. ``api_live`` (``/v1/tts/live``) shares ``resolve_references`` and
``engine_request``: a live session's ``start`` carries the same body without its text.
"""

from __future__ import annotations

from aiohttp import web

from voice_inference import parsing, schemas, synthesis, voices
from voice_inference.engines import base


async def tts(request: web.Request) -> web.StreamResponse:
    services = request.app[synthesis.SERVICES]
    body = await parsing.parse_body(request, schemas.TTSRequest)
    text = synthesis.check_text(body.text, services.settings, field="text")
    references = await resolve_references(body, services)
    return await synthesis.respond(
        request, services, engine_request(body, text, references), body.format, streaming=body.streaming,
        gain_db=(body.prosody or schemas.Prosody()).volume, out_rate=body.sample_rate, bit_rate=body.bit_rate(),
    )  # fmt: skip


async def resolve_references(
    body: schemas.TTSRequest, services: synthesis.Services, *, prefix: str = ""
) -> list[base.Reference]:
    """Inline references, else the stored ``reference_id``; ``prefix`` names the fields in errors."""
    if body.reference_id:  # checked even when inline references take precedence
        with synthesis.store_errors(body.reference_id, field=f"{prefix}reference_id"):
            voices.validate_id(body.reference_id)
    references = [
        await synthesis.inline_reference(
            ref.audio, ref.text, services.settings, field=f"{prefix}references.{i}.audio"
        )
        for i, ref in enumerate(body.references)
    ]
    if not references and body.reference_id:
        field = f"{prefix}reference_id"
        references.append(await synthesis.stored_reference(services.store, body.reference_id, field=field))
    return references


def engine_request(
    body: schemas.TTSRequest, text: str, references: list[base.Reference] | tuple[base.Reference, ...]
) -> base.SynthesisRequest:
    return base.SynthesisRequest(
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
        speed=(body.prosody or schemas.Prosody()).speed,
        condition_on_previous=body.condition_on_previous_chunks,
    )
