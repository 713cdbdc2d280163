"""Builds the aiohttp application around one `Gateway` (config + runtime + engine)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.server import handlers
from gateway.server.doors import door_for_path
from gateway.server.state import GATEWAY, Gateway
from gateway.telemetry import PROMETHEUS_CONTENT_TYPE
from gateway.types import GatewayError

log = logging.getLogger("gateway.server")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths, wrong methods and oversized bodies answer in the door's JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        door = door_for_path(request.path)
        if exc.status == 413:
            message = (f"request body too large (limit {request.app[GATEWAY].config.server.max_body_mb:g} MB)")
        elif exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        else:
            message = exc.reason
        err = GatewayError(exc.status, message)
        return web.json_response(door.error_body(err), status=exc.status, headers=_allow(exc))


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition. With `telemetry.metrics_key` set, only for `Authorization: Bearer <key>`."""
    gw = request.app[GATEWAY]
    key = gw.config.telemetry.metrics_key
    if key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            return web.Response(status=401, text="metrics need 'Authorization: Bearer <telemetry.metrics_key>'\n",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    if gw.telemetry is None:
        raise web.HTTPNotFound(reason="metrics are not enabled on this gateway")
    return web.Response(body=gw.telemetry.metrics_text().encode(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(client_max_size=gateway.config.server.max_body_bytes, middlewares=[json_errors])
    app[GATEWAY] = gateway
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_post("/chat/completions", handlers.chat_completions)
    app.router.add_post("/v1/messages", handlers.messages)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/metrics", metrics)

    async def close_gateway(app: web.Application) -> None:
        await app[GATEWAY].aclose()

    app.on_cleanup.append(close_gateway)
    return app
