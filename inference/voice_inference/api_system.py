"""Probes, metrics and the API description: ``/health/live``, ``/health/ready``,
``/metrics``, ``/openapi.json``. Always open, even when API keys are required.

Live means the process serves HTTP; ready means the engine is loaded and warmed up (a
kubelet sends traffic only then), so ``/health/ready`` answers 503 until that moment, and
again from the moment shutdown begins (``draining``: SIGTERM, while the server still serves).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voice_inference import schemas, serving, synthesis

# Built once by ``app.build_app`` (``openapi.document``): it depends on the settings (API keys, limits).
OPENAPI_DOCUMENT = web.AppKey("openapi_document", dict)


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    scheduler = request.app[synthesis.SERVICES].scheduler
    closing = request.app[serving.CLOSING].is_set()
    status = (
        "draining" if closing or scheduler.draining
        else "failed" if scheduler.load_error
        else "ready" if scheduler.ready
        else "loading"
    )  # fmt: skip
    body = schemas.Readiness(status=status, engine=scheduler.engine.name, error=scheduler.load_error or None)
    return web.json_response(body.model_dump(exclude_none=True), status=200 if status == "ready" else 503)


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[synthesis.SERVICES].metrics.registry
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_DOCUMENT])
