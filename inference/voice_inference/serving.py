"""Runs the application on its TCP port until SIGTERM or SIGINT, then shuts down in two steps.

1. Closing (``VOICE_SHUTDOWN_DELAY_SECONDS``): the server goes on listening and serving, but
   readiness answers 503 and every response carries ``Connection: close``. Kube-proxies and
   load balancers take a moment to stop sending to a terminating pod; in that moment new
   connections still succeed, and each client's open keep-alive connection is closed by the
   server after its next answer, so the client knows to reconnect (to another replica). Closing
   an idle keep-alive connection without warning instead races the client's next request on it,
   which then fails with a reset.
2. Draining (``app._drain``, ``VOICE_DRAIN_SECONDS``): the listening socket and the connections
   still idle close, new work is refused with 503, accepted work finishes.

A second signal during the first step goes straight to the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import hdrs, web

from voice_inference.settings import Settings

log = logging.getLogger(__name__)

# Set when shutdown begins; ``app.build_app`` creates it, ``run`` sets it.
CLOSING = web.AppKey("closing", asyncio.Event)

# After the drain deadline (VOICE_DRAIN_SECONDS, 45 s by default) handlers get this long to
# end their streams before aiohttp cancels them; with the shutdown delay the sum stays inside
# the pod's grace period.
SHUTDOWN_MARGIN_SECONDS = 5.0


async def close_connections_when_closing(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: while closing, each response ends its connection (a WebSocket's
    upgrade excepted: the session goes on, and the drain ends it)."""
    if request.app[CLOSING].is_set() and not isinstance(response, web.WebSocketResponse):
        response.force_close()  # the connection ends after this response...
        response.headers[hdrs.CONNECTION] = "close"  # ...and the client is told (the hook runs after aiohttp set its own)


def run(app: web.Application, settings: Settings) -> None:
    asyncio.run(_serve(app, settings))


async def _serve(app: web.Application, settings: Settings) -> None:
    # handler_cancellation: a client that disconnects cancels its handler, which cancels its job.
    # shutdown_timeout: the drain deadline (app._drain ends what is left then) plus a margin.
    runner = web.AppRunner(
        app, handler_cancellation=True, shutdown_timeout=settings.drain_seconds + SHUTDOWN_MARGIN_SECONDS
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        signalled = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, signalled.set)
        await signalled.wait()
        signalled.clear()
        app[CLOSING].set()
        if settings.shutdown_delay_seconds > 0:
            log.info("shutting down: serving on for %g s, closing each connection", settings.shutdown_delay_seconds)
            with contextlib.suppress(TimeoutError):  # the delay is a deadline; a second signal cuts it short
                await asyncio.wait_for(signalled.wait(), settings.shutdown_delay_seconds)
    finally:
        await runner.cleanup()  # stops listening, then app.on_shutdown (the drain) and on_cleanup
