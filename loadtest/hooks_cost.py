"""`python -m loadtest.hooks_cost`: what the observers cost per request, timed in process (no network, no wrk).

The hooks `gateway serve` installs (telemetry, then the request log) are fed the events of one ordinary request
(admitted, one attempt sent and won, finished), as the engine and the server would send them, many times over;
the figure is CPU microseconds per request (process time, best of several rounds, so a busy machine inflates it
less than it does a load test). Arms: every request traced to the span file, traces sampled out (metrics only),
no telemetry at all; each with the request log off (`--log-level WARNING`, as `loadtest perf` runs the
gateway) and on (INFO, JSON lines, written to /dev/null).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from gateway.config.clouds import ProviderKind
from gateway.config.model import Price, ProviderConfig, Target, TelemetryConfig
from gateway.engine import Attempt, AttemptStarted, CompositeHooks, Hooks, Launch, Outcome, RequestStarted
from gateway.engine.hooks import guarded
from gateway.engine.records import RequestSummary
from gateway.logs import RequestLog, make_handler
from gateway.telemetry import Telemetry, TelemetryHooks, setup_telemetry
from gateway.wire import WireFormat

TARGET = Target("sim", "sim-model", Price(0.15, 0.6, cache_read_per_mtok=0.075))
BODY = {"model": "chat", "messages": [{"role": "user", "content": "Hello there, how are you today?"}],
        "max_tokens": 16}


def one_request(hooks: Hooks, request_id: int, stream: bool = False) -> None:
    """The events of one request that hedges nothing: admitted, one attempt sent and won, finished."""
    trace_id = (request_id * 0x9E3779B97F4A7C15) & ((1 << 128) - 1) or 1
    hooks.request_started(RequestStarted(request_id, "chat", WireFormat.OPENAI, "chat", stream, 10.0, trace_id,
                                         {}, BODY))
    hooks.attempt_started(AttemptStarted(request_id, "chat", 0, TARGET, Launch.PRIMARY, 10.0, "closed",
                                         "127.0.0.1", 8080))
    attempt = Attempt(request_id=request_id, alias="chat", index=0, target=TARGET, launch=Launch.PRIMARY,
                      started=10.0, ended=10.002, outcome=Outcome.WON, input_estimate=20, first_token_s=0.001,
                      input_tokens=14, cached_input_tokens=0, output_tokens=16, streamed_chars=64,
                      finish_reason="stop", response_model="sim-model", server_address="127.0.0.1",
                      server_port=8080)
    hooks.attempt_finished(attempt)
    hooks.request_finished(RequestSummary(request_id=request_id, alias="chat", door=WireFormat.OPENAI,
                                          endpoint="chat", stream=stream, started=10.0, latency_s=0.0025,
                                          status=200, trace_id=trace_id, attempts=(attempt,), winner=attempt,
                                          ttft_s=0.0012, hedge_delay_s=0.4))


@contextlib.contextmanager
def request_log(enabled: bool) -> Iterator[Hooks]:
    """The request log as `gateway serve` sets it up, at INFO (JSON lines to a file, as `loadtest perf` sends
    the gateway's stderr to one) or WARNING."""
    logger = logging.getLogger("gateway.request")
    saved = logger.handlers[:], logger.level, logger.propagate
    with tempfile.TemporaryFile("w") as sink:
        handler = make_handler("json", sink)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO if enabled else logging.WARNING)
        try:
            yield RequestLog(logger)
        finally:
            handler.close()
            logger.handlers[:], logger.level, logger.propagate = saved


def cost_us(hooks: Hooks, *, requests: int, rounds: int, stream: bool = False) -> float:
    """CPU microseconds per request (best round) through `hooks`, guarded as the engine guards them."""
    guarded_hooks = guarded(hooks)
    best = float("inf")
    next_id = 1
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(requests):
            one_request(guarded_hooks, next_id, stream)
            next_id += 1
        best = min(best, time.process_time() - start)
    return best / requests * 1e6


def _telemetry(kind: str, folder: Path) -> Telemetry:
    if kind == "none":
        return Telemetry.disabled()
    env = {"OTEL_TRACES_SAMPLER": "always_on" if kind == "traced" else "always_off"}
    telemetry = setup_telemetry(TelemetryConfig(traces_file=str(folder / f"{kind}.jsonl")), env)
    if isinstance(telemetry.hooks, TelemetryHooks):  # the provider kinds, as `Gateway` teaches them
        telemetry.hooks.set_providers({"sim": ProviderConfig(name="sim", kind=ProviderKind.OPENAI, base_url="http://127.0.0.1:1/v1")})
    return telemetry


def measure(*, requests: int = 20_000, rounds: int = 5,
            arms: Sequence[str] = ("traced", "sampled_out", "none")) -> dict[str, dict[str, float]]:
    """On a running event loop, as in the gateway (the span file times its batches with the loop)."""
    async def on_loop() -> dict[str, dict[str, float]]:
        return _measure(requests, rounds, arms)

    return asyncio.run(on_loop())


def _measure(requests: int, rounds: int, arms: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in arms:
            out[kind] = {}
            for log_on in (False, True):
                telemetry = _telemetry(kind, Path(folder))
                try:
                    with request_log(log_on) as log:
                        hooks = CompositeHooks(telemetry.hooks, log)
                        out[kind]["log_on" if log_on else "log_off"] = round(
                            cost_us(hooks, requests=requests, rounds=rounds), 2)
                finally:
                    telemetry.shutdown_blocking()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.hooks_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round (20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is kept (5)")
    args = parser.parse_args(argv)
    figures = measure(requests=args.requests, rounds=args.rounds)
    print("| telemetry | request log off (WARNING) | request log on (INFO) |")
    print("|---|---:|---:|")
    for kind, row in figures.items():
        print(f"| {kind} | {row['log_off']:.1f} µs | {row['log_on']:.1f} µs |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
