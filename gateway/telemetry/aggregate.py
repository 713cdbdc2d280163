"""Metrics aggregated in place: counters, gauges and explicit-bucket histograms kept as plain numbers.

One OpenTelemetry SDK measurement costs 10-20 µs of CPU (it copies, validates and hashes the attributes every
time, then takes a lock), and a request makes four or more: more than the rest of the telemetry together.
Here a measurement is a dict lookup by a tuple of the label values and a few integer or float operations; the
attribute dicts are built once per series. What OpenTelemetry gets is the same data, built only when it is
read (`collect()`, once per /metrics scrape or OTLP export): `MetricsData` as the SDK's own collection makes
it, with the SDK's semantics for what these instruments are (cumulative temporality, or delta for a reader
that asks for it: `DeltaReading`):

- a counter is a monotonic `Sum`, a gauge a `Gauge` (the last value set);
- a histogram has `len(bounds) + 1` buckets, a value v falling in the first bucket whose bound is >= v
  (`bisect_left`, as `_ExplicitBucketHistogramAggregation`), plus sum, count, min and max; a negative or
  non-finite value is dropped, as the SDK drops it;
- past 2,000 series in one instrument (the SDK's default cardinality limit) further label sets go to one
  overflow series with the attribute `otel.metric.overflow=true`.

Recording happens on the event loop; `collect()` may run on an exporter's thread. It copies each series under
the GIL (one C-level list copy) and derives the count from the bucket counts, so a histogram's buckets and
count always agree; a sum or extreme may miss the one measurement being recorded at that instant.

Delta temporality (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta` or `lowmemory`: what Dynatrace,
for one, requires): the series keep counting from the start, and a `DeltaReading` per reader remembers what it
was given last, so each collection reports what changed since (counters and histograms; gauges stay gauges).
A histogram's extremes cannot be derived that way: each series also keeps the extremes since the last delta
collection, so one delta reader per process is supported (the OTLP exporter; the Prometheus reader is
cumulative).
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Final, TypeVar

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import Attributes

Key = tuple[object, ...]  # a series' label values, in a fixed order per instrument
BuildAttributes = Callable[[Key], Attributes]  # the attributes of a new series, from its key

CARDINALITY_LIMIT: Final = 2000  # the SDK's default per metric stream
OVERFLOW_KEY: Final[Key] = ("otel.metric.overflow",)
OVERFLOW_ATTRIBUTES: Final[Attributes] = {"otel.metric.overflow": True}


class _Instrument:
    __slots__ = ("description", "name", "unit")

    def __init__(self, name: str, unit: str, description: str) -> None:
        self.name, self.unit, self.description = name, unit, description

    def points(self, start_ns: int, now_ns: int, delta: DeltaReading | None) -> Metric | None:
        raise NotImplementedError


class DeltaReading:
    """What one reader asking for delta temporality was given at its last collection: every series' cumulative
    figures then (its next points are the differences), and when that was (their start time)."""

    __slots__ = ("buckets", "counters", "histograms", "last_ns", "lock", "sums")

    def __init__(self, start_ns: int, *, counters: bool, histograms: bool) -> None:
        self.counters, self.histograms = counters, histograms  # which kinds the reader wants as deltas
        self.last_ns = start_ns
        self.sums: dict[tuple[str, Key], float] = {}
        self.buckets: dict[tuple[str, Key], tuple[tuple[int, ...], float]] = {}
        self.lock = threading.Lock()  # a reader may collect from its thread and, on flush, from another


class _Values(_Instrument):
    """A number per label set. A series' attributes are built (by `build(key)`) the first time its key is seen."""

    __slots__ = ("_attributes", "_values")

    def __init__(self, name: str, unit: str, description: str) -> None:
        super().__init__(name, unit, description)
        self._values: dict[Key, float] = {}
        self._attributes: dict[Key, Attributes] = {}

    def _admit(self, key: Key, build: BuildAttributes) -> Key:
        """The key to record under: `key`, or past the cardinality limit the overflow series."""
        if len(self._attributes) >= CARDINALITY_LIMIT:
            key = OVERFLOW_KEY
            if key not in self._attributes:
                self._attributes[key] = OVERFLOW_ATTRIBUTES
            return key
        self._attributes[key] = build(key)
        return key

    def get(self, key: Key) -> float | None:
        return self._values.get(key)

    def _data_points(self, start_ns: int, now_ns: int) -> list[NumberDataPoint]:
        return [NumberDataPoint(attributes=self._attributes[key], start_time_unix_nano=start_ns,
                                time_unix_nano=now_ns, value=value)
                for key, value in list(self._values.items())]


class Counter(_Values):
    """A monotonic sum (`add` with amounts >= 0), exported as the SDK exports a counter."""

    __slots__ = ()

    def add(self, key: Key, amount: float, build: BuildAttributes) -> None:
        values = self._values
        value = values.get(key)
        if value is None:
            if key not in self._attributes:
                key = self._admit(key, build)
            value = values.get(key, 0)
        values[key] = value + amount

    def points(self, start_ns: int, now_ns: int, delta: DeltaReading | None) -> Metric | None:
        if delta is None or not delta.counters:
            points = self._data_points(start_ns, now_ns)
            temporality = AggregationTemporality.CUMULATIVE
        else:
            points, seen, name = [], delta.sums, self.name
            for key, value in list(self._values.items()):
                previous = seen.get((name, key), 0)
                seen[(name, key)] = value
                if value != previous:  # a series without measurements since has no point, as in the SDK
                    points.append(NumberDataPoint(attributes=self._attributes[key], start_time_unix_nano=delta.last_ns,
                                                  time_unix_nano=now_ns, value=value - previous))
            temporality = AggregationTemporality.DELTA
        return Metric(self.name, self.description, self.unit, Sum(
            data_points=points, aggregation_temporality=temporality, is_monotonic=True)) if points else None


class LastValue(_Values):
    """A gauge: `set` replaces the value of its label set."""

    __slots__ = ()

    def set(self, key: Key, value: float, build: BuildAttributes) -> None:
        if key not in self._attributes:
            key = self._admit(key, build)
        self._values[key] = value

    def points(self, start_ns: int, now_ns: int, delta: DeltaReading | None) -> Metric | None:
        points = self._data_points(start_ns, now_ns)  # a gauge is the last value, whatever the temporality
        return Metric(self.name, self.description, self.unit, Gauge(data_points=points)) if points else None


class HistogramSeries:
    """One label set of a histogram. Kept by callers that record into the same series often."""

    __slots__ = ("attributes", "bounds", "counts", "max", "min", "recent_max", "recent_min", "sum")

    def __init__(self, bounds: tuple[float, ...], attributes: Attributes) -> None:
        self.bounds = bounds
        self.attributes = attributes
        self.counts = [0] * (len(bounds) + 1)
        self.sum: float = 0  # an int while only ints are recorded, as the SDK's
        self.min = math.inf
        self.max = -math.inf
        self.recent_min = math.inf  # since the last delta collection (the extremes a delta point reports)
        self.recent_max = -math.inf

    def record(self, value: float) -> None:
        if not 0 <= value < math.inf:  # negative, infinite or NaN: dropped, as the SDK drops them
            return
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        if value < self.recent_min:  # the overall extremes can only move when the recent ones do
            self.recent_min = value
            if value < self.min:
                self.min = value
        if value > self.recent_max:
            self.recent_max = value
            if value > self.max:
                self.max = value

    def point(self, start_ns: int, now_ns: int) -> HistogramDataPoint:
        counts = tuple(self.counts)  # first: the count is derived from these, so they always agree
        return HistogramDataPoint(attributes=self.attributes, start_time_unix_nano=start_ns, time_unix_nano=now_ns,
                                  count=sum(counts), sum=self.sum, bucket_counts=counts,
                                  explicit_bounds=self.bounds, min=self.min, max=self.max)


class ExplicitHistogram(_Instrument):
    __slots__ = ("_series", "bounds")

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        super().__init__(name, unit, description)
        if any(not math.isfinite(b) for b in bounds) or any(a >= b for a, b in pairwise(bounds)):
            raise ValueError(f"{name}: bucket bounds must be finite and strictly increasing")
        self.bounds = tuple(float(b) for b in bounds)
        self._series: dict[Key, HistogramSeries] = {}

    def series(self, key: Key, build: BuildAttributes) -> HistogramSeries:
        """The series of `key` (created on first use; past the cardinality limit, the overflow series)."""
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= CARDINALITY_LIMIT:
                series = self._series.get(OVERFLOW_KEY)
                if series is None:
                    series = self._series[OVERFLOW_KEY] = HistogramSeries(self.bounds, OVERFLOW_ATTRIBUTES)
                return series
            series = self._series[key] = HistogramSeries(self.bounds, build(key))
        return series

    def record(self, key: Key, value: float, build: BuildAttributes) -> None:
        self.series(key, build).record(value)

    def points(self, start_ns: int, now_ns: int, delta: DeltaReading | None) -> Metric | None:
        if delta is None or not delta.histograms:
            points = [s.point(start_ns, now_ns) for s in list(self._series.values()) if any(s.counts)]
            temporality = AggregationTemporality.CUMULATIVE
        else:
            points, seen, name = [], delta.buckets, self.name
            for key, series in list(self._series.items()):
                counts, total = tuple(series.counts), series.sum
                low, high = series.recent_min, series.recent_max
                series.recent_min, series.recent_max = math.inf, -math.inf
                before, before_sum = seen.get((name, key), (None, 0))
                seen[(name, key)] = counts, total
                changes = counts if before is None else tuple(a - b for a, b in zip(counts, before, strict=True))
                if any(changes):
                    points.append(HistogramDataPoint(
                        attributes=series.attributes, start_time_unix_nano=delta.last_ns, time_unix_nano=now_ns,
                        count=sum(changes), sum=total - before_sum, bucket_counts=changes,
                        explicit_bounds=self.bounds, min=low, max=high))
            temporality = AggregationTemporality.DELTA
        return Metric(self.name, self.description, self.unit, Histogram(
            data_points=points, aggregation_temporality=temporality)) if points else None


_I = TypeVar("_I", bound=_Instrument)


class MetricSet:
    """The instruments of one instrumentation scope, and their collection as OpenTelemetry `MetricsData`."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self.resource = resource
        self.scope = scope
        self.start_ns = time.time_ns()  # cumulative: every point counts from here
        self._instruments: list[_Instrument] = []

    def counter(self, name: str, unit: str, description: str) -> Counter:
        return self._add(Counter(name, unit, description))

    def gauge(self, name: str, unit: str, description: str) -> LastValue:
        return self._add(LastValue(name, unit, description))

    def histogram(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> ExplicitHistogram:
        return self._add(ExplicitHistogram(name, unit, description, bounds))

    def _add(self, instrument: _I) -> _I:
        if any(i.name == instrument.name for i in self._instruments):
            raise ValueError(f"metric {instrument.name!r} defined twice")
        self._instruments.append(instrument)
        return instrument

    def collect(self, delta: DeltaReading | None = None) -> MetricsData | None:
        """Every instrument with something recorded (with `delta`: since that reader's last collection), in the
        order they were created; None when none has."""
        now = time.time_ns()
        if delta is None:
            metrics = [m for i in self._instruments if (m := i.points(self.start_ns, now, None)) is not None]
        else:
            with delta.lock:
                metrics = [m for i in self._instruments if (m := i.points(self.start_ns, now, delta)) is not None]
                delta.last_ns = now
        if not metrics:
            return None
        return MetricsData(resource_metrics=[ResourceMetrics(
            resource=self.resource, schema_url=self.resource.schema_url,
            scope_metrics=[ScopeMetrics(scope=self.scope, metrics=metrics, schema_url=self.scope.schema_url or "")])])
