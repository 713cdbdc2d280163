"""The gateway's metrics, aggregated in place, expose exactly what they exposed through OpenTelemetry SDK
instruments: the same series (names, labels, label order, buckets, values) for the same requests.

`data/metrics_sdk_reference.prom` is GET /metrics as the SDK-based implementation (synchronous histograms,
observable counters; commit f4f9955) rendered it after `_drive` below. Only the order of the metric families
may differ (the SDK listed histograms in the order they were first recorded; now they are listed as created).
"""

from __future__ import annotations

from pathlib import Path

from gateway.config.clouds import ProviderKind
from gateway.config.model import Price, ProviderConfig, Target, TelemetryConfig
from gateway.engine import Attempt, BreakerChanged, HedgeSkipped, Launch, Outcome, RequestSummary
from gateway.errors import FailureKind, ProviderError
from gateway.telemetry import TelemetryHooks, setup_telemetry
from gateway.wire import WireFormat
from tests.telemetry.prom_text import parse

REFERENCE = Path(__file__).parent / "data" / "metrics_sdk_reference.prom"
P = Target("p", "m1", Price(1, 2, cache_read_per_mtok=0.5, cache_write_per_mtok=1.25))
Q = Target("q", "m2", Price(3, 4))
WON = {"index": 0, "target": P, "launch": Launch.PRIMARY, "started": 0.0, "ended": 0.3, "outcome": Outcome.WON,
       "input_estimate": 10, "first_token_s": 0.04, "input_tokens": 100, "cached_input_tokens": 40,
       "cache_write_tokens": 10, "output_tokens": 20, "finish_reason": "stop", "reasoning_tokens": 5}


def _drive(hooks: TelemetryHooks) -> None:
    """Won, hedged, failed, skipped and rejected requests; hedges refused; a breaker opening."""
    hooks.set_providers({"p": ProviderConfig(name="p", kind=ProviderKind.OPENAI, base_url="http://x"),
                         "q": ProviderConfig(name="q", kind=ProviderKind.ANTHROPIC, base_url="http://y")})
    request_id = 0

    def request(status: int, error: str | None, attempts: list[dict[str, object]], *,
                door: WireFormat = WireFormat.OPENAI, stream: bool = False, ttft: float = 0.05,
                latency: float = 0.3, winner: int | None = 0) -> None:
        nonlocal request_id
        request_id += 1
        done = tuple(Attempt(request_id=request_id, alias="fast", **a) for a in attempts)  # type: ignore[arg-type]
        for attempt in done:
            hooks.attempt_finished(attempt)
        won = done[winner] if winner is not None and done else None
        hooks.request_finished(RequestSummary(
            request_id=request_id, alias="fast", door=door, endpoint="chat", stream=stream, started=0.0,
            latency_s=latency, status=status, trace_id=request_id, attempts=done, winner=won,
            ttft_s=ttft if won else None, error_type=error))

    for i in range(7):  # spread over the duration and TTFT buckets
        request(200, None, [WON], latency=0.001 * 10 ** (i % 5), ttft=0.0005 * 3 ** i)
    request(200, None, [{**WON, "outcome": Outcome.CANCELLED, "input_tokens": None, "output_tokens": None,
                         "streamed_chars": 33}, {**WON, "index": 1, "target": Q, "launch": Launch.HEDGE}],
            winner=1, door=WireFormat.ANTHROPIC, stream=True)
    request(502, "http_500", [{"index": 0, "target": Q, "launch": Launch.PRIMARY, "started": 0.0, "ended": 0.1,
                               "outcome": Outcome.FAILED, "input_estimate": 10,
                               "error": ProviderError(FailureKind.FAULT, "x", status=500, error_type="http_500")}],
            winner=None)
    request(503, "breaker_open", [{"index": 0, "target": Q, "launch": Launch.PRIMARY, "started": 0.0, "ended": 0.0,
                                   "outcome": Outcome.SKIPPED, "input_estimate": 10, "skip_reason": "breaker_open"}],
            winner=None)
    request(400, "invalid_request_error", [], winner=None, latency=0.0)
    hooks.hedge_skipped(HedgeSkipped(1, "fast", "budget"))
    hooks.hedge_skipped(HedgeSkipped(2, "fast", "budget"))
    hooks.breaker_changed(BreakerChanged("q", "closed", "open"))


def test_the_exposition_is_the_one_the_sdk_instruments_gave() -> None:
    telemetry = setup_telemetry(TelemetryConfig(traces_file=""), {})
    assert isinstance(telemetry.hooks, TelemetryHooks)
    _drive(telemetry.hooks)
    text = telemetry.metrics_text()
    telemetry.shutdown_blocking()
    parse(text)  # valid exposition
    reference = REFERENCE.read_text()
    assert sorted(text.splitlines()) == sorted(reference.splitlines())
    # Within each family the series keep the SDK's order (first seen), which the workers' merge relies on.
    def family_lines(t: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in t.splitlines():
            name = line.split()[2] if line.startswith("# ") else line.partition("{")[0].partition(" ")[0]
            base = next((name.removesuffix(s) for s in ("_bucket", "_sum", "_count") if name.endswith(s)), name)
            out.setdefault(base, []).append(line)
        return out
    mine, theirs = family_lines(text), family_lines(reference)
    assert all(mine[k] == theirs[k] for k in theirs)
