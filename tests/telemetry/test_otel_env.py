"""The standard OTEL_* environment, read from the mapping given to setup_telemetry."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON, ParentBasedTraceIdRatio, TraceIdRatioBased

from gateway.config.model import TelemetryConfig
from gateway.telemetry import TelemetrySetupError, setup_telemetry
from gateway.telemetry.otel_env import (
    metric_export_interval_ms,
    metrics_temporality,
    otlp_target,
    resource_from_env,
    sampler_from_env,
)


def test_service_name_defaults_and_overrides() -> None:
    assert resource_from_env({}).attributes["service.name"] == "llm-gateway"
    res = resource_from_env({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs, team=a%20b,broken",
                             "OTEL_SERVICE_NAME": ""})
    assert res.attributes["service.name"] == "from-attrs" and res.attributes["team"] == "a b"
    assert resource_from_env({"OTEL_RESOURCE_ATTRIBUTES": "service.name=x",
                              "OTEL_SERVICE_NAME": "wins"}).attributes["service.name"] == "wins"


def test_sampler() -> None:
    assert sampler_from_env({}) is DEFAULT_ON
    assert sampler_from_env({"OTEL_TRACES_SAMPLER": "ALWAYS_OFF"}) is ALWAYS_OFF
    ratio = sampler_from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert isinstance(ratio, TraceIdRatioBased) and ratio.rate == 0.25
    assert isinstance(sampler_from_env({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}), ParentBasedTraceIdRatio)
    for bad in ({"OTEL_TRACES_SAMPLER": "jaeger_remote"},
                {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
                {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}):
        with pytest.raises(TelemetrySetupError):
            sampler_from_env(bad)


def test_otlp_endpoints_per_signal() -> None:
    assert otlp_target({}, "traces") is None
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}
    traces = otlp_target(base, "traces")
    assert traces is not None and traces.endpoint == "http://127.0.0.1:4318/v1/traces"
    metrics = otlp_target(base, "metrics")
    assert metrics is not None and metrics.endpoint == "http://127.0.0.1:4318/v1/metrics"
    only_traces = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9999/custom",
                   "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20tok,x-team=a"}
    traces = otlp_target(only_traces, "traces")
    assert traces is not None and traces.endpoint == "http://127.0.0.1:9999/custom"  # used as it is
    assert traces.headers == {"authorization": "Bearer tok", "x-team": "a"}
    assert "tok" not in repr(traces)  # a collector token stays out of logs
    assert otlp_target(only_traces, "metrics") is None


@pytest.mark.parametrize("env", [
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRIC_EXPORT_INTERVAL": "0"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "x"},
])
def test_unsupported_settings_fail_at_setup(env: dict[str, str]) -> None:
    with pytest.raises(TelemetrySetupError):
        setup_telemetry(TelemetryConfig(traces_file=""), env)


def test_metrics_temporality_follows_the_specs_table() -> None:
    delta = AggregationTemporality.DELTA
    assert metrics_temporality({}) == {} == metrics_temporality({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE":
                                                                 "Cumulative"})
    assert metrics_temporality({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}) == {
        Counter: delta, Histogram: delta, ObservableCounter: delta}
    assert metrics_temporality({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "lowmemory"}) == {
        Counter: delta, Histogram: delta}


def test_metric_interval() -> None:
    assert metric_export_interval_ms({}) == 60000
    assert metric_export_interval_ms({"OTEL_METRIC_EXPORT_INTERVAL": "500"}) == 500


def test_no_exporter_means_no_tracer_but_metrics_still_work() -> None:
    tel = setup_telemetry(TelemetryConfig(traces_file=""), {})
    assert tel.tracer_provider is None and not tel.tracing
    assert tel.metrics_text() == ""  # nothing recorded yet
    tel.shutdown_blocking()
    tel.shutdown_blocking()  # idempotent
    assert tel.metrics_text() == ""
