"""Cross-cutting request handling, outermost first: metrics, errors, auth.

``app.build_app`` installs them. The error middleware is why no client ever sees a stack
trace: ``ApiError`` and aiohttp's own HTTP exceptions (404 route, 405 method, 413 body) become
JSON in the route's error shape, and so do aiohttp's parse errors of a body it was reading
(chunked framing, ``Content-Encoding``): the client's mistake, a 400 and one log line. Anything
unexpected is logged with its traceback and answered 500 in JSON.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from voice_inference import errors
from voice_inference.errors import ApiError
from voice_inference.metrics import Metrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The status label of a request whose client disconnected first (nginx's convention).
CLIENT_CLOSED = 499

# Probes, scrapes and the API description stay open when keys are required.
OPEN_PATHS = ("/health/", "/metrics", "/openapi.json")

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def route_name(request: web.Request) -> str:
    """The route template (bounded label values), not the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def metrics_middleware(metrics: Metrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            status = CLIENT_CLOSED  # the client went away: not a server error
            raise
        finally:
            route = route_name(request)
            metrics.requests.labels(route, request.method, str(status)).inc()
            metrics.request_seconds.labels(route).observe(time.perf_counter() - started)

    return middleware


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    openai = errors.is_openai_route(request.path)
    try:
        return await handler(request)
    except ApiError as exc:
        return errors.response(exc, openai=openai)
    except ConnectionResetError:
        raise  # the client left mid-response; aiohttp closes quietly, nothing to answer
    except errors.UNPARSEABLE as exc:
        message = errors.unparseable_reason(exc)
        log.info("malformed request body on %s %s: %s", request.method, request.path, message)
        error = ApiError(400, "malformed_body", f"request body is malformed: {message}")
        return errors.response(error, openai=openai)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else f"request body is too large: {exc.text}"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return errors.response(ApiError(exc.status, code, message, headers=headers), openai=openai)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return errors.response(ApiError(500, "internal_error", "internal server error"), openai=openai)


def auth_middleware(keys: frozenset[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Bearer-token check against the configured keys (constant-time compare)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" or request.path.startswith(OPEN_PATHS):
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.strip(), key) for key in keys):
            raise ApiError(
                401, "invalid_api_key", "missing or invalid API key (send 'Authorization: Bearer <key>')",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        return await handler(request)

    return middleware
