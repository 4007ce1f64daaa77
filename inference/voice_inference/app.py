"""Assembles the aiohttp application: services, middlewares, routes, CORS, lifecycle.

``cli serve`` calls ``build_app`` and runs it; tests and benchmarks do the same with their
own settings. The engine loads in the background after the server starts listening, so
liveness answers at once and readiness turns 200 only when the engine is warmed up. On
SIGTERM the server drains (``_drain``): readiness 503, new work refused, accepted work finishes.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp_cors
from aiohttp import web

from voice_inference import api_openai, api_system, api_tts, api_voices, middlewares, synthesis, voices
from voice_inference.engines import base, create_engine
from voice_inference.metrics import Metrics
from voice_inference.scheduler import Scheduler
from voice_inference.settings import Settings

log = logging.getLogger(__name__)

_LOADER = web.AppKey("loader", asyncio.Task)


def build_app(
    settings: Settings, *, engine: base.Engine | None = None, store: voices.VoiceStore | None = None
) -> web.Application:
    metrics = Metrics()
    services = synthesis.Services(
        settings=settings,
        scheduler=Scheduler(engine or create_engine(settings), max_queue=settings.queue_size, metrics=metrics),
        store=store or voices.create_store(settings),
        metrics=metrics,
    )
    stack = [middlewares.metrics_middleware(metrics), middlewares.error_middleware]
    keys = settings.load_api_keys()
    if keys:
        stack.append(middlewares.auth_middleware(keys))
    app = web.Application(middlewares=stack, client_max_size=settings.max_body_bytes)
    app[synthesis.SERVICES] = services

    routes = [
        app.router.add_post("/v1/tts", api_tts.tts),
        app.router.add_post("/v1/audio/speech", api_openai.speech),
        app.router.add_get("/v1/voices", api_voices.list_voices),
        app.router.add_post("/v1/voices", api_voices.create_voice),
        app.router.add_get("/v1/voices/{voice_id}", api_voices.get_voice),
        app.router.add_delete("/v1/voices/{voice_id}", api_voices.delete_voice),
    ]
    app.router.add_get("/health/live", api_system.live)
    app.router.add_get("/health/ready", api_system.ready)
    app.router.add_get("/metrics", api_system.metrics)
    app.router.add_get("/openapi.json", api_system.openapi_document)

    if settings.cors_allow_origins:
        _enable_cors(app, routes, settings.cors_allow_origins)

    app.on_startup.append(_start_engine)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_stop)
    return app


def _enable_cors(app: web.Application, routes: list[web.AbstractRoute], origins: list[str]) -> None:
    """Browsers on the listed origins may call the API routes (preflight included)."""
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=False,
        allow_headers=("Authorization", "Content-Type"),
        expose_headers=("Retry-After",),
        allow_methods=("GET", "POST", "DELETE"),
        max_age=600,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in routes:
        cors.add(route)


async def _start_engine(app: web.Application) -> None:
    services = app[synthesis.SERVICES]

    async def load() -> None:
        try:
            await services.scheduler.start(warm_up=services.settings.warmup)
        except Exception:  # reported by /health/ready; the process stays up for diagnosis
            log.exception("engine failed to load")

    app[_LOADER] = asyncio.create_task(load(), name="engine-loader")


async def _drain(app: web.Application) -> None:
    """SIGTERM: aiohttp has closed the listening socket and idle connections; from here new
    work is refused with 503 while accepted requests finish (up to run_app's shutdown_timeout,
    then their handlers are cancelled and their streams end)."""
    log.info("shutting down: draining accepted requests")
    app[synthesis.SERVICES].scheduler.drain()


async def _stop(app: web.Application) -> None:
    services = app[synthesis.SERVICES]
    app[_LOADER].cancel()
    await asyncio.gather(app[_LOADER], return_exceptions=True)
    await services.scheduler.close()
    await services.store.close()
