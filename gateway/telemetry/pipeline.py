"""`setup_telemetry`: the tracer and meter providers, their exporters and the hooks, built from config + env.

Providers are passed around explicitly, never installed as the global ones: a library must not take over
the process's OpenTelemetry setup (`gateway serve` may install them; tests build several side by side).

Metrics have no SDK meter provider: they are aggregated in place (`gateway.telemetry.aggregate`), /metrics
renders their collection, and OpenTelemetry metric readers (the OTLP exporter's periodic reader, any given
by the caller) are fed the same collection when they collect.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from gateway import __version__
from gateway.config.model import GatewayConfig, TelemetryConfig
from gateway.engine.hooks import Hooks
from gateway.telemetry import otel_env, prometheus
from gateway.telemetry.aggregate import DeltaReading, MetricSet
from gateway.telemetry.file_spans import FileSpanHooks
from gateway.telemetry.hooks import GivenTraceIds, TelemetryHooks
from gateway.telemetry.jsonl_exporter import InlineJsonLinesProcessor
from gateway.telemetry.metrics import GatewayMetrics

log = logging.getLogger("gateway.telemetry")

INSTRUMENTATION_NAME = "gateway"


class Telemetry:
    """What the gateway needs from telemetry: `hooks` for the engine, `metrics_text()` for /metrics, shutdown."""

    def __init__(self, *, hooks: Hooks, tracer_provider: TracerProvider | None = None,
                 metrics: MetricSet | None = None, metric_readers: Sequence[MetricReader] = ()) -> None:
        self.hooks = hooks  # replaceable, e.g. by a wrapper that also delegates to these
        self._telemetry_hooks = hooks if isinstance(hooks, TelemetryHooks) else None
        self.tracer_provider = tracer_provider
        self.metrics = metrics
        self.metric_readers = tuple(metric_readers)  # fed from `metrics`; flushed and shut down with this
        if metrics is not None:
            for reader in self.metric_readers:
                feed_reader(reader, metrics)
        self._lock = threading.Lock()  # shutdown may run in a worker thread while /metrics is read
        self._closed = False

    @classmethod
    def disabled(cls) -> Telemetry:
        """No spans, no metrics (OTEL_SDK_DISABLED=true): the engine's no-op hooks, an empty /metrics."""
        return cls(hooks=Hooks())

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    def attach(self, config: GatewayConfig) -> None:
        """Called by each `Gateway` built on this telemetry: learn its providers (kinds, breakers)."""
        if self._telemetry_hooks is not None:
            self._telemetry_hooks.set_providers(config.providers)

    def metrics_text(self) -> str:
        """Every metric, in Prometheus text exposition format 0.0.4."""
        with self._lock:
            if self.metrics is None or self._closed:
                return ""
            return prometheus.render(self.metrics.collect())

    def force_flush_blocking(self, timeout_millis: int = 10_000) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush(timeout_millis)
        for reader in self.metric_readers:
            reader.force_flush(timeout_millis)

    def shutdown_blocking(self) -> None:
        """Export what is buffered and stop the exporters' threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        for reader in self.metric_readers:  # a periodic reader exports one last time
            reader.shutdown()

    # Exporting blocks (OTLP over `requests`, file writes): off the event loop, which may even be serving
    # the collector the export goes to (as in the tests).
    async def force_flush(self) -> None:
        await asyncio.to_thread(self.force_flush_blocking)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.shutdown_blocking)


def setup_telemetry(config: TelemetryConfig, env: Mapping[str, str], *,
                    span_processors: Sequence[SpanProcessor] = (),
                    metric_readers: Sequence[MetricReader] = ()) -> Telemetry:
    """Traces: OTLP/HTTP when an endpoint is set, else JSON lines to `config.traces_file` ("" = none), plus any
    `span_processors` given (tests, embedding applications). Metrics: always readable for /metrics, plus OTLP
    when an endpoint is set, plus any `metric_readers` given. Raises `TelemetrySetupError` on bad env values.
    """
    if otel_env.sdk_disabled(env):
        return Telemetry.disabled()
    resource = otel_env.resource_from_env(env)
    sampler = otel_env.sampler_from_env(env)

    processors = list(span_processors)
    traces = otel_env.otlp_target(env, "traces")
    file_writer: InlineJsonLinesProcessor | None = None
    if traces is not None:
        processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces.endpoint, headers=traces.headers)))
        log.info("exporting traces over OTLP/HTTP to %s", traces.endpoint)
    elif config.traces_file:
        file_writer = InlineJsonLinesProcessor(config.traces_file)
        processors.append(file_writer)
        log.info("writing traces to %s", config.traces_file)
    tracer_provider: TracerProvider | None = None
    trace_ids = GivenTraceIds()  # request spans take the trace id the door chose (the request log names it too)
    if processors:  # no exporter at all: skip span creation entirely rather than build spans nobody reads
        tracer_provider = TracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False,
                                         id_generator=trace_ids)
        for processor in processors:
            tracer_provider.add_span_processor(processor)

    readers = list(metric_readers)
    metrics_target = otel_env.otlp_target(env, "metrics")
    if metrics_target is not None:
        exporter = OTLPMetricExporter(endpoint=metrics_target.endpoint, headers=metrics_target.headers,
                                      preferred_temporality=otel_env.metrics_temporality(env))
        readers.append(PeriodicExportingMetricReader(
            exporter, export_interval_millis=otel_env.metric_export_interval_ms(env)))
        log.info("exporting metrics over OTLP/HTTP to %s", metrics_target.endpoint)
    metric_set = MetricSet(resource, InstrumentationScope(INSTRUMENTATION_NAME, __version__))

    tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, __version__) if tracer_provider else None
    if sampler is ALWAYS_OFF:
        # Every span would be dropped: do not build attributes and non-recording spans per request for nothing.
        tracer = None
    metrics = GatewayMetrics(metric_set)
    hooks: TelemetryHooks
    if file_writer is not None and processors == [file_writer] and tracer is not None:
        # Spans go only to the file: write them straight from the engine's records (the provider stays, so
        # flush and shutdown still reach the writer).
        hooks = FileSpanHooks(file_writer, sampler, str(resource.attributes.get("service.name", "")), metrics,
                              capture_content=config.capture_content)
    else:
        hooks = TelemetryHooks(tracer, metrics, capture_content=config.capture_content, trace_ids=trace_ids)
    return Telemetry(hooks=hooks, tracer_provider=tracer_provider, metrics=metric_set, metric_readers=readers)


def feed_reader(reader: MetricReader, metrics: MetricSet) -> None:
    """Make `reader.collect()` read `metrics`, as a meter provider would make it read the SDK's instruments.

    The SDK has no public way to hand a reader data that is not its own instruments' (no metric producers in
    this version); `_set_collect_callback` is what `MeterProvider` itself calls on every reader it is given.
    A reader that asks for delta temporality for counters or histograms (the OTLP exporter with
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta or lowmemory) gets deltas for them, from a
    `DeltaReading` of its own; any other gets cumulative points.
    """
    # What the SDK's own collection reads, keyed by its instrument classes (private subclasses of the public ones).
    wanted = reader._instrument_class_temporality
    delta_counters = any(issubclass(kind, SdkCounter) and temporality is AggregationTemporality.DELTA
                         for kind, temporality in wanted.items())
    delta_histograms = any(issubclass(kind, SdkHistogram) and temporality is AggregationTemporality.DELTA
                           for kind, temporality in wanted.items())
    reading = DeltaReading(metrics.start_ns, counters=delta_counters, histograms=delta_histograms) \
        if delta_counters or delta_histograms else None

    def collect(_reader: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
        return metrics.collect(reading)

    # The SDK's annotation names the second parameter a temporality; it passes timeout_millis.
    reader._set_collect_callback(collect)  # type: ignore[arg-type]
