"""The standard OpenTelemetry environment variables, read from a mapping the caller passes (not os.environ).

The SDK reads most of these from os.environ by itself; reading them here instead lets `gateway serve` pass
os.environ while tests pass a dict, and turns a bad value into one clear error at startup rather than a
logged warning and a silent fallback. What is not handled here (OTLP timeout, compression, certificates,
batch-processor sizes) the SDK still reads from the process environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.util.re import parse_env_headers

DEFAULT_SERVICE_NAME = "llm-gateway"
SUPPORTED_PROTOCOL = "http/protobuf"  # the OTLP exporter installed; grpc would need another dependency

_FIXED_SAMPLERS: Mapping[str, Sampler] = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF,
                                          "parentbased_always_on": DEFAULT_ON,
                                          "parentbased_always_off": DEFAULT_OFF}


class TelemetrySetupError(ValueError):
    """An OpenTelemetry environment variable has a value this gateway cannot honour."""


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    endpoint: str  # full signal URL, e.g. http://127.0.0.1:4318/v1/traces
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may carry a collector token


def sdk_disabled(env: Mapping[str, str]) -> bool:
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def resource_from_env(env: Mapping[str, str]) -> Resource:
    """service.name defaults to llm-gateway; OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME, override it."""
    attrs: dict[str, str] = {SERVICE_NAME: DEFAULT_SERVICE_NAME}
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attrs[key.strip()] = unquote(value.strip())
    if service := env.get("OTEL_SERVICE_NAME", "").strip():
        attrs[SERVICE_NAME] = service
    # create() adds telemetry.sdk.* and service.instance.id; attributes given here win over its detectors.
    return Resource.create(attrs)


def sampler_from_env(env: Mapping[str, str]) -> Sampler:
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if name in _FIXED_SAMPLERS:
        return _FIXED_SAMPLERS[name]
    if name not in ("traceidratio", "parentbased_traceidratio"):
        raise TelemetrySetupError(f"OTEL_TRACES_SAMPLER={name!r} is not supported; use one of "
                                  f"{', '.join([*_FIXED_SAMPLERS, 'traceidratio', 'parentbased_traceidratio'])}")
    arg = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0"
    try:
        rate = float(arg)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise TelemetrySetupError(f"OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, got {arg!r}")
    return TraceIdRatioBased(rate) if name == "traceidratio" else ParentBasedTraceIdRatio(rate)


def otlp_target(env: Mapping[str, str], signal: str) -> OtlpTarget | None:
    """Where to export `signal` ("traces" or "metrics") over OTLP/HTTP, or None when no endpoint is set.

    OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT is used as it is; OTEL_EXPORTER_OTLP_ENDPOINT is a base URL that
    gets /v1/{signal} appended, as the specification says.
    """
    upper = signal.upper()
    endpoint = env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT", "").strip()
    if not endpoint:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        if not base:
            return None
        endpoint = f"{base.rstrip('/')}/v1/{signal}"
    protocol = (env.get(f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL", "").strip()
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip() or SUPPORTED_PROTOCOL)
    if protocol != SUPPORTED_PROTOCOL:
        raise TelemetrySetupError(f"OTLP protocol {protocol!r} is not supported; this gateway exports "
                                  f"{SUPPORTED_PROTOCOL} (set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)")
    raw_headers = (env.get(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS", "")
                   or env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    return OtlpTarget(endpoint, parse_env_headers(raw_headers, liberal=True) if raw_headers else {})


def metric_export_interval_ms(env: Mapping[str, str]) -> float:
    raw = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip() or "60000"
    try:
        interval = float(raw)
    except ValueError:
        interval = 0.0
    if not interval > 0:
        raise TelemetrySetupError(f"OTEL_METRIC_EXPORT_INTERVAL must be a positive number of ms, got {raw!r}")
    return interval


_TEMPORALITY_PREFERENCES = ("cumulative", "delta", "lowmemory")


def metrics_temporality(env: Mapping[str, str]) -> dict[type, AggregationTemporality]:
    """OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE as the OTLP metric exporter's `preferred_temporality`,
    by the spec's table: `delta` makes counters, histograms and observable counters delta, `lowmemory` counters
    and histograms only; up-down counters stay cumulative either way. Unset or `cumulative`: empty (all
    cumulative)."""
    raw = env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "").strip().lower() or "cumulative"
    if raw not in _TEMPORALITY_PREFERENCES:
        raise TelemetrySetupError(f"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={raw!r} is not supported; "
                                  f"use one of {', '.join(_TEMPORALITY_PREFERENCES)}")
    delta = AggregationTemporality.DELTA
    if raw == "delta":
        return {Counter: delta, Histogram: delta, ObservableCounter: delta}
    if raw == "lowmemory":
        return {Counter: delta, Histogram: delta}
    return {}
