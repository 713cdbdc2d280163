"""Builds the aiohttp application around one `Gateway` (config + runtime + engine)."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.config import ConfigError, load_config
from gateway.errors import GatewayError
from gateway.formats.codecs import ANTHROPIC, OPENAI, Codec
from gateway.server import endpoints, handlers, responses
from gateway.server.auth import check_bearer
from gateway.server.gateway import GATEWAY, Gateway, GatewayHolder, current_gateway
from gateway.server.scope import RequestScope
from gateway.telemetry import PROMETHEUS_CONTENT_TYPE

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
        door = codec_for_path(request.path)
        if exc.status == 413:
            message = (f"request body too large (limit {current_gateway(request).config.server.max_body_mb:g} MB)")
        elif exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        else:
            message = exc.reason
        err = GatewayError(exc.status, message)
        # Rejected before any handler ran (no route, wrong method): logged and counted like every request.
        async with RequestScope(current_gateway(request), door, request, endpoint="none") as scope:
            resp = scope.reject(err)
            resp.headers.update(_allow(exc))
            return resp


def codec_for_path(path: str) -> Codec:
    """The door a path belongs to, for errors outside the handlers: Anthropic's under /v1/messages."""
    return ANTHROPIC if path.startswith("/v1/messages") else OPENAI


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition. With `telemetry.metrics_key` set, only for `Authorization: Bearer <key>`."""
    gw = current_gateway(request)
    key = gw.config.telemetry.metrics_key
    if key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = token.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented, key.encode()):
            return web.Response(status=401, text="metrics need 'Authorization: Bearer <telemetry.metrics_key>'\n",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    if gw.telemetry is None:
        raise web.HTTPNotFound(reason="metrics are not enabled on this gateway")
    text = await gw.state_backend.metrics_text(gw.telemetry.metrics_text())  # with --workers N: every worker's, merged
    return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})


CONFIG_PATH: web.AppKey[str] = web.AppKey("config_path", str)


async def reload_config(app: web.Application) -> str | None:
    """Load the config file again and swap it in; None on success, else why it was rejected.

    Requests already running finish on the config they started with. A bad file changes nothing.
    """
    holder = app[GATEWAY]
    path = app.get(CONFIG_PATH)
    if path is None:
        return "this gateway was not started from a config file"
    try:
        config = load_config(path)
    except ConfigError as exc:
        log.error("config reload rejected, still serving the previous config: %s", exc)
        return str(exc)
    old, new = holder.current.config.server, config.server
    # Read once, when the server starts listening (body_timeout_s, read per request, follows a reload).
    at_start = ("host", "port", "max_body_mb", "header_timeout_s", "idle_timeout_s")
    if changed := [name for name in at_start if getattr(new, name) != getattr(old, name)]:
        log.warning("%s: changes take effect at the next restart", ", ".join(f"server.{name}" for name in changed))
    holder.swap(holder.current.successor(config))
    log.info("config reloaded from %s (%d models, %d providers)", path, len(config.models), len(config.providers))
    return None


async def admin_reload(request: web.Request) -> web.Response:
    secret = current_gateway(request).config.server.admin_key
    if not secret:
        raise web.HTTPNotFound()
    try:
        check_bearer(request, secret, "the admin API")
    except GatewayError as denied:
        return web.json_response(OPENAI.error_body(denied), status=denied.status)
    problem = await reload_config(request.app)
    if problem is not None:
        rejected = GatewayError(400, f"reload rejected: {problem}")
        return web.json_response(OPENAI.error_body(rejected), status=400)
    return web.json_response({"status": "reloaded"})


def _process_stats() -> dict[str, int]:
    # Sync on purpose: /proc is served from kernel memory and never blocks. Linux only.
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return {"pid": os.getpid(), "tasks": len(asyncio.all_tasks()),
            "rss_bytes": resident_pages * os.sysconf("SC_PAGE_SIZE"), "open_fds": len(os.listdir("/proc/self/fd")),
            "gc_objects": len(gc.get_objects())}


async def admin_stats(request: web.Request) -> web.Response:
    """What a soak test samples to spot leaks (loadtest/soak.py). gc.get_objects() walks every tracked object
    (milliseconds on a busy heap): fine every few seconds, not for a tight poll."""
    gw = current_gateway(request)
    if not gw.config.server.admin_key:
        raise web.HTTPNotFound()
    try:
        check_bearer(request, gw.config.server.admin_key, "the admin API")
    except GatewayError as denied:
        return web.json_response(OPENAI.error_body(denied), status=denied.status)
    return web.json_response({**_process_stats(), "in_flight": gw.in_flight})


def build_app(gateway: Gateway, *, config_path: str | None = None) -> web.Application:
    app = web.Application(client_max_size=gateway.config.server.max_body_bytes, middlewares=[json_errors])
    app[GATEWAY] = GatewayHolder(gateway, grace_s=gateway.config.server.shutdown_grace_s)
    if config_path is not None:
        app[CONFIG_PATH] = config_path
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_post("/chat/completions", handlers.chat_completions)
    app.router.add_post("/v1/messages", handlers.messages)
    app.router.add_post("/v1/responses", responses.create_response)
    app.router.add_post("/responses", responses.create_response)
    app.router.add_get("/v1/responses/{response_id}", responses.retrieve_response)
    app.router.add_delete("/v1/responses/{response_id}", responses.delete_response)
    app.router.add_get("/v1/responses/{response_id}/input_items", responses.list_input_items)
    app.router.add_post("/v1/messages/count_tokens", endpoints.count_tokens)
    app.router.add_post("/v1/embeddings", endpoints.embeddings)
    app.router.add_post("/embeddings", endpoints.embeddings)
    app.router.add_get("/v1/models", endpoints.models)
    app.router.add_get("/v1/models/{model}", endpoints.model)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/admin/reload", admin_reload)
    app.router.add_get("/admin/stats", admin_stats)

    async def close_gateway(app: web.Application) -> None:
        await app[GATEWAY].aclose()

    app.on_cleanup.append(close_gateway)
    return app
