"""Metrics aggregated in place: counters, gauges and explicit-bucket histograms kept as plain numbers.

One OpenTelemetry SDK measurement costs 10-20 µs of CPU (it copies, validates and hashes the attributes every
time, then takes a lock), and a request makes four or more: more than the rest of the telemetry together.
Here a measurement is a dict lookup by a tuple of the label values and a few integer or float operations; the
attribute dicts are built once per series. What OpenTelemetry gets is the same data, built only when it is
read (`collect()`, once per /metrics scrape or OTLP export): `MetricsData` as the SDK's own collection makes
it, with the SDK's semantics for what these instruments are (cumulative temporality):

- a counter is a monotonic `Sum`, a gauge a `Gauge` (the last value set);
- a histogram has `len(bounds) + 1` buckets, a value v falling in the first bucket whose bound is >= v
  (`bisect_left`, as `_ExplicitBucketHistogramAggregation`), plus sum, count, min and max; a negative or
  non-finite value is dropped, as the SDK drops it;
- past 2,000 series in one instrument (the SDK's default cardinality limit) further label sets go to one
  overflow series with the attribute `otel.metric.overflow=true`.

Recording happens on the event loop; `collect()` may run on an exporter's thread. It copies each series under
the GIL (one C-level list copy) and derives the count from the bucket counts, so a histogram's buckets and
count always agree; a sum or extreme may miss the one measurement being recorded at that instant.
"""

from __future__ import annotations

import math
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

    def points(self, start_ns: int, now_ns: int) -> Metric | None:
        raise NotImplementedError


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

    def points(self, start_ns: int, now_ns: int) -> Metric | None:
        points = self._data_points(start_ns, now_ns)
        return Metric(self.name, self.description, self.unit, Sum(
            data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE,
            is_monotonic=True)) if points else None


class LastValue(_Values):
    """A gauge: `set` replaces the value of its label set."""

    __slots__ = ()

    def set(self, key: Key, value: float, build: BuildAttributes) -> None:
        if key not in self._attributes:
            key = self._admit(key, build)
        self._values[key] = value

    def points(self, start_ns: int, now_ns: int) -> Metric | None:
        points = self._data_points(start_ns, now_ns)
        return Metric(self.name, self.description, self.unit, Gauge(data_points=points)) if points else None


class HistogramSeries:
    """One label set of a histogram. Kept by callers that record into the same series often."""

    __slots__ = ("attributes", "bounds", "counts", "max", "min", "sum")

    def __init__(self, bounds: tuple[float, ...], attributes: Attributes) -> None:
        self.bounds = bounds
        self.attributes = attributes
        self.counts = [0] * (len(bounds) + 1)
        self.sum: float = 0  # an int while only ints are recorded, as the SDK's
        self.min = math.inf
        self.max = -math.inf

    def record(self, value: float) -> None:
        if not 0 <= value < math.inf:  # negative, infinite or NaN: dropped, as the SDK drops them
            return
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        if value < self.min:
            self.min = value
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

    def points(self, start_ns: int, now_ns: int) -> Metric | None:
        points = [s.point(start_ns, now_ns) for s in list(self._series.values()) if any(s.counts)]
        return Metric(self.name, self.description, self.unit, Histogram(
            data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE)) if points else None


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

    def collect(self) -> MetricsData | None:
        """Every instrument with something recorded, in the order they were created; None when none has."""
        now = time.time_ns()
        metrics = [m for i in self._instruments if (m := i.points(self.start_ns, now)) is not None]
        if not metrics:
            return None
        return MetricsData(resource_metrics=[ResourceMetrics(
            resource=self.resource, schema_url=self.resource.schema_url,
            scope_metrics=[ScopeMetrics(scope=self.scope, metrics=metrics, schema_url=self.scope.schema_url or "")])])
