"""Assembles the aiohttp application: services, middlewares, routes (``routes.ROUTES``), their
OpenAPI document, CORS, lifecycle.

``cli serve`` calls ``build_app`` and runs it; tests and benchmarks do the same with their
own settings. The engine loads in the background after the server starts listening, so
liveness answers at once and readiness turns 200 only when the engine is warmed up. On
SIGTERM the server closes its connections (``serving``), then drains (``_drain``): readiness
503, new work refused, accepted work finishes.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp_cors
from aiohttp import web

from voice_inference import api_system, middlewares, openapi, routes, serving, synthesis, voices
from voice_inference.engines import base, create_engine, stepped
from voice_inference.metrics import Metrics
from voice_inference.scheduler import Scheduler
from voice_inference.settings import Settings

log = logging.getLogger(__name__)

_LOADER = web.AppKey("loader", asyncio.Task)


def build_app(
    settings: Settings,
    *,
    engine: stepped.SteppedEngine | base.Engine | None = None,
    store: voices.VoiceStore | None = None,
) -> web.Application:
    metrics = Metrics()
    scheduler = Scheduler(
        engine or create_engine(settings),
        max_queue=settings.queue_size,
        metrics=metrics,
        buffer_seconds=settings.stream_buffer_seconds,
        stall_timeout_s=settings.stall_timeout_seconds,
    )
    services = synthesis.Services(
        settings=settings,
        scheduler=scheduler,
        store=store or voices.create_store(settings),
        metrics=metrics,
    )
    stack = [middlewares.metrics_middleware(metrics), middlewares.error_middleware]
    keys = settings.load_api_keys()
    if keys:
        stack.append(middlewares.auth_middleware(keys))
    app = web.Application(middlewares=stack, client_max_size=settings.max_body_bytes)
    app[synthesis.SERVICES] = services
    app[serving.CLOSING] = asyncio.Event()
    app.on_response_prepare.append(serving.close_connections_when_closing)

    api_routes = routes.register(app)
    app[api_system.OPENAPI_DOCUMENT] = openapi.document(
        routes.ROUTES, auth=bool(keys), max_text_length=settings.max_text_length
    )

    if settings.cors_allow_origins:
        _enable_cors(app, api_routes, settings.cors_allow_origins)

    app.on_startup.append(_start_engine)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_stop)
    return app


def _enable_cors(app: web.Application, api_routes: list[web.AbstractRoute], origins: list[str]) -> None:
    """Browsers on the listed origins may call the API routes (preflight included)."""
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=False,
        allow_headers=("Authorization", "Content-Type"),
        expose_headers=("Retry-After",),
        allow_methods=("GET", "POST", "DELETE"),
        max_age=600,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in api_routes:
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
    """Shutdown, after ``serving``'s delay: aiohttp has closed the listening socket and idle
    connections; from here new work is refused with 503 while accepted work finishes. At
    ``drain_seconds`` what is left is ended by the scheduler, so handlers return by themselves
    before the runner's shutdown_timeout (``serving``) would cancel them."""
    services = app[synthesis.SERVICES]
    log.info("shutting down: draining accepted requests for up to %g s", services.settings.drain_seconds)
    services.scheduler.drain(services.settings.drain_seconds)


async def _stop(app: web.Application) -> None:
    services = app[synthesis.SERVICES]
    app[_LOADER].cancel()
    await asyncio.gather(app[_LOADER], return_exceptions=True)
    await services.scheduler.close()
    await services.store.close()
