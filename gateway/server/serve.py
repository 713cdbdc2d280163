"""Running the gateway: one process, or several sharing a port; reload on SIGHUP; graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.engine.hooks import CompositeHooks
from gateway.logs import RequestLog

log = logging.getLogger("gateway")


async def serve(config: GatewayConfig, host: str, port: int, *, config_path: str | None = None,
                reuse_port: bool = False) -> None:
    from opentelemetry import trace

    from gateway.server.app import build_app, reload_config
    from gateway.server.connections import GatewayRunner
    from gateway.server.gateway import Gateway
    from gateway.telemetry import setup_telemetry

    telemetry = setup_telemetry(config.telemetry, os.environ)
    if telemetry.tracer_provider is not None:
        trace.set_tracer_provider(telemetry.tracer_provider)  # the application may; library code never does
    # The request log first: when the telemetry hooks end the request span they let go of it, and the log line
    # wants its trace id.
    telemetry.hooks = CompositeHooks(RequestLog(), telemetry.hooks)
    gateway = Gateway(config, telemetry=telemetry)  # owns it: flushed and shut down with the app
    app = build_app(gateway, config_path=config_path)
    # handler_cancellation: a client that disconnects cancels its request, and with it every attempt.
    # shutdown_timeout: on SIGTERM, running requests and streams get this long to finish.
    # GatewayRunner: bounds on how long a request's head may take, and on idle keep-alive connections.
    runner = GatewayRunner(app, config.server, handler_cancellation=True, access_log=None,
                           shutdown_timeout=config.server.shutdown_grace_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_port=reuse_port or None)
    await site.start()
    log.info("gateway listening on http://%s:%d (%d models, %d providers, pid %d)", host, port,
             len(config.models), len(config.providers), os.getpid())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[str | None]] = set()

    def on_hup() -> None:
        task = loop.create_task(reload_config(app))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop.wait()
    log.info("draining: no new connections; running requests get up to %g s", config.server.shutdown_grace_s)
    await asyncio.gather(*reloads, return_exceptions=True)
    await runner.cleanup()  # stops listening, waits for running requests, then cancels what remains
    log.info("stopped")


def supervise(workers: int, argv: Sequence[str]) -> int:
    """Run `workers` copies of `gateway serve` on one port (SO_REUSEPORT) and relay signals to them.

    Each worker keeps its own breakers, hedge budgets, latency windows, caches and rate limits.
    """
    cmd = [sys.executable, "-m", "gateway", *argv, "--workers", "1", "--reuse-port"]
    children = [subprocess.Popen(cmd) for _ in range(workers)]

    def relay(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, relay)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
