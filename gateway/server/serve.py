"""Running the gateway: one process, or several sharing a port; reload on SIGHUP; graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.config.model import StateConfig
from gateway.engine import CompositeHooks
from gateway.logs import RequestLog
from gateway.state.frames import HUB_ENV, WORKER_ENV

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
    # Observers in any order: the request log and the spans both read the trace id the door chose.
    telemetry.hooks = CompositeHooks(telemetry.hooks, RequestLog())
    gateway = Gateway(config, telemetry=telemetry)  # owns it: flushed and shut down with the app
    # A worker of `--workers N`: the hub asks it for its metrics when another worker is scraped, and it
    # starts serving once its state is shared (or, if the hub is not there within 2 s, on local state).
    gateway.state_backend.serve_metrics(telemetry.metrics_text)
    await gateway.state_backend.ready(2.0)
    app = build_app(gateway, config_path=config_path)
    # handler_cancellation: a client that disconnects cancels its request, and with it every attempt.
    # shutdown_timeout: on SIGTERM, running requests and streams get this long to finish.
    # GatewayRunner: bounds on how long a request's head may take, and on idle keep-alive connections.
    runner = GatewayRunner(app, config.server, handler_cancellation=True, access_log=None,
                           shutdown_timeout=config.server.shutdown_grace_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_port=reuse_port or None)
    await site.start()
    settle_garbage_collector()
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


# Young-generation collections every this many container allocations (CPython's default: 700). A request
# allocates a few thousand objects, nearly all gone when it ends: collecting every 700 only re-walks the
# survivors, and each run promotes work towards the costly full collections.
GC_YOUNG_THRESHOLD = 20_000


def settle_garbage_collector() -> None:
    """Once the gateway is up: everything built at start (config, imported modules, the price catalog's tens of
    thousands of entries) moves out of the collector's way (`gc.freeze`), and young collections run less often.
    Measured with `python -m loadtest perf`-style wrk runs against one pinned worker: full collections walking
    the start-up objects had halved the throughput (987 req/s; 2,159 frozen; 2,397 with the threshold too)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def supervise(workers: int, argv: Sequence[str], state: StateConfig | None = None) -> int:
    """Run `workers` copies of `gateway serve` on one port (SO_REUSEPORT) and relay signals to them.

    With `state.share_workers` (the default), it also runs the workers' hub (`gateway.state.hub`) so that
    the workers behave as one gateway: with `backend: memory`, exact rate limits, one cache with coalescing
    across workers, breaker openings seen by all at once; with either backend, one /metrics for all. With
    `backend: redis` the state itself is shared through Redis, as between replicas. A hub that dies is
    started again; meanwhile the workers serve on their own state.
    """
    hub: HubProcess | None = None
    env = dict(os.environ)
    if state is not None and state.share_workers and workers > 1:
        hub = HubProcess(log_args=_log_args(argv))
        if hub.start():
            env[HUB_ENV] = hub.socket
        else:
            log.warning("the workers' hub did not start: each worker keeps its own state")
            hub.stop()
            hub = None
    cmd = [sys.executable, "-m", "gateway", *argv, "--workers", "1", "--reuse-port"]
    children = [subprocess.Popen(cmd, env=_worker_env(env, number), preexec_fn=die_with_parent)
                for number in range(1, workers + 1)]
    stopping = False

    def relay(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP:
            stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, relay)
    try:
        # The hub outlives the workers' drain (they still use it), and is started again if it dies.
        while any(child.poll() is None for child in children):
            if hub is not None and not stopping:
                hub.restart_if_dead()
            time.sleep(0.1)
    finally:
        if hub is not None:
            hub.stop()
    return max((child.returncode or 0 for child in children), default=0)


def _worker_env(env: dict[str, str], number: int) -> dict[str, str]:
    # The worker's number for its state and logs; and in its OpenTelemetry resource, so that the workers'
    # OTLP metrics (cumulative, each worker its own) stay distinct series instead of overwriting each other.
    attributes = ",".join(a for a in (env.get("OTEL_RESOURCE_ATTRIBUTES", ""), f"gateway.worker={number}") if a)
    return {**env, WORKER_ENV: str(number), "OTEL_RESOURCE_ATTRIBUTES": attributes}


def _log_args(argv: Sequence[str]) -> tuple[str, str]:
    args = list(argv)

    def value(flag: str, default: str) -> str:
        return args[args.index(flag) + 1] if flag in args[:-1] else default

    return value("--log-level", "INFO"), value("--log-format", "json")


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec: get SIGTERM if the supervisor dies (even by SIGKILL), so no orphaned worker
    keeps the port or the hub. Linux only; elsewhere nothing happens."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class HubProcess:
    """The workers' hub as a child process, on a Unix socket in a private temporary directory."""

    START_TIMEOUT_S = 10.0  # imports on a loaded machine

    def __init__(self, *, log_args: tuple[str, str]) -> None:
        self._dir = tempfile.mkdtemp(prefix="gateway-hub-")  # mode 0700: only this user can connect
        self.socket = str(Path(self._dir) / "hub.sock")
        self._log_args = log_args
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0

    def start(self) -> bool:
        """Start it and wait (bounded) until it listens; False if it did not."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        self._started_at = time.monotonic()
        # A session of its own: a Ctrl-C in the terminal reaches the workers (which drain) but not the hub they
        # still use meanwhile; the supervisor stops it after them.
        self._process = subprocess.Popen([sys.executable, "-m", "gateway.state.hub", self.socket, *self._log_args],
                                         preexec_fn=die_with_parent, start_new_session=True)
        deadline = self._started_at + self.START_TIMEOUT_S
        while time.monotonic() < deadline:
            if os.path.exists(self.socket):
                return True
            if self._process.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def restart_if_dead(self) -> None:
        process = self._process
        if process is None or process.poll() is None:
            return
        if time.monotonic() - self._started_at < 1.0:  # at most once a second, should it keep dying
            return
        log.warning("the workers' hub exited (code %s): starting it again; meanwhile each worker serves on its "
                    "own state", process.returncode)
        self.start()

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)
