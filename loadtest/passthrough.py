"""The least a proxy can do: forward each POST to one upstream and stream the answer back, byte for byte.

The overhead benchmark's yardstick: what any aiohttp proxy costs on this machine, so the gateway's own
overhead (parsing, hedging, translation, accounting) can be told apart from the price of a hop.

    python -m loadtest.passthrough --upstream http://127.0.0.1:9001 --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import aiohttp
from aiohttp import web

UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
# Hop-by-hop or recomputed headers: never copied across the proxy.
_DROP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


async def forward(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
    async with session.post(request.app[UPSTREAM] + request.path_qs, data=body, headers=headers) as upstream:
        resp = web.StreamResponse(status=upstream.status, headers={
            k: v for k, v in upstream.headers.items() if k.lower() not in _DROP and k.lower() != "content-encoding"})
        await resp.prepare(request)
        async for chunk in upstream.content.iter_any():  # as it arrives: SSE stays live
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def proxy_app(upstream: str, *, auto_decompress: bool) -> web.Application:
    """An app with `UPSTREAM`, a pooled `SESSION` to it and `/healthz`: what `loadtest.floor` shares."""
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        # No connection cap: the same footing as the gateway's provider pools.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=auto_decompress,
                                             timeout=aiohttp.ClientTimeout(total=None))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_context)
    app.router.add_get("/healthz", healthz)
    return app


def build_app(upstream: str) -> web.Application:
    app = proxy_app(upstream, auto_decompress=False)  # bytes forwarded as they came, compressed or not
    app.router.add_post("/{tail:.*}", forward)
    return app


async def serve_app(app: web.Application, port: int, *, reuse_port: bool = False) -> None:
    """Serve `app` on 127.0.0.1 (its URL printed on stdout) until SIGINT or SIGTERM."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    # reuse_port: several processes on one port, the kernel spreading connections (as `gateway serve --workers`).
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024, reuse_port=reuse_port or None)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop when it is installed: the gateway runs on it, so like is compared with like."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.passthrough", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="base URL requests are forwarded to (path kept)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reuse-port", action="store_true", help="share the port with other processes")
    args = parser.parse_args(argv)
    run(serve_app(build_app(args.upstream), args.port, reuse_port=args.reuse_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
