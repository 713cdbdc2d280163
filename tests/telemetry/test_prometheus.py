"""OpenTelemetry metrics rendered as Prometheus text exposition."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.telemetry.prometheus import render
from tests.telemetry.prom_text import parse


def _rendered(record: Callable[[Meter], None]) -> str:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    record(provider.get_meter("t"))
    text = render(reader.get_metrics_data())
    provider.shutdown()
    return text


def test_names_units_types_and_escaping() -> None:
    def record(m: Meter) -> None:
        m.create_counter("gateway.cost", unit="USD", description="money").add(
            0.25, {"gateway.provider": 'we"ird\\name\nx', "gateway.stream": False})
        m.create_counter("gateway.attempts", unit="{attempt}").add(3)
        m.create_up_down_counter("in.flight").add(-2, {"a": 1})
        m.create_gauge("gateway.breaker.state", unit="{state}").set(2, {"p": "x"})
        h = m.create_histogram("req.duration", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1.0])
        for v in (0.05, 0.5, 0.7, 5.0):
            h.record(v, {"alias": "a"})

    text = _rendered(record)
    expo = parse(text)
    assert expo.types == {"gateway_cost_usd_total": "counter", "gateway_attempts_total": "counter",
                          "in_flight": "gauge", "gateway_breaker_state": "gauge",
                          "req_duration_seconds": "histogram"}
    assert expo.value("gateway_cost_usd_total", gateway_provider='we"ird\\name\nx', gateway_stream="false") == 0.25
    assert expo.value("gateway_attempts_total") == 3
    assert expo.value("in_flight", a="1") == -2
    assert expo.value("gateway_breaker_state", p="x") == 2
    # Buckets are cumulative and end with +Inf == count.
    assert [expo.value("req_duration_seconds_bucket", le=le) for le in ("0.1", "1.0", "+Inf")] == [1, 3, 4]
    assert expo.value("req_duration_seconds_count", alias="a") == 4
    assert expo.value("req_duration_seconds_sum") == 0.05 + 0.5 + 0.7 + 5.0
    assert "# HELP gateway_cost_usd_total money" in text


def test_nothing_recorded_renders_empty() -> None:
    assert _rendered(lambda meter: None) == ""
    assert render(None) == ""
