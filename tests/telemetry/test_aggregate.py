"""Metrics aggregated in place give exactly what the OpenTelemetry SDK's own instruments give for the same
measurements: the same points (buckets, count, sum, min, max, attributes), the same Prometheus text, and the
same data handed to an OpenTelemetry metric reader."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from gateway.telemetry.aggregate import CARDINALITY_LIMIT, Key, MetricSet
from gateway.telemetry.pipeline import feed_reader
from gateway.telemetry.prometheus import render

BOUNDS = (0.01, 0.1, 1.0, 10.0)
VALUES = (0.0, 0.005, 0.01, 0.010000001, 0.1, 0.5, 1.0, 3.0, 10.0, 10.5, 1e9, -1.0, math.nan, math.inf)


def _attrs(key: Key) -> dict[str, Any]:
    return {"alias": key[0], "stream": key[1]}


def _sdk(record: Callable[[Meter], None]) -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    record(provider.get_meter("t"))
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def _ours() -> MetricSet:
    return MetricSet(Resource.create({}), InstrumentationScope("t"))


def _metrics(data: MetricsData | None) -> dict[str, Metric]:
    assert data is not None
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def _points(metric: Metric) -> dict[frozenset[tuple[str, Any]], tuple[Any, ...]]:
    """Each point's content, without its timestamps (the one thing the two sides cannot share)."""
    out: dict[frozenset[tuple[str, Any]], tuple[Any, ...]] = {}
    for p in metric.data.data_points:
        key = frozenset((p.attributes or {}).items())
        if isinstance(p, HistogramDataPoint):
            out[key] = (p.count, p.sum, tuple(p.bucket_counts), tuple(p.explicit_bounds), p.min, p.max)
        else:
            assert isinstance(p, NumberDataPoint)
            out[key] = (p.value,)
    return out


def test_a_histogram_buckets_sums_and_drops_values_as_the_sdk_does() -> None:
    """Bounds are upper-inclusive (a value equal to a bound is in that bound's bucket); negative, NaN and
    infinite values are dropped; int sums stay ints."""
    series = [(("a", True), VALUES), (("b", False), (1, 2, 3, 16, 17)), (("c", True), (5,))]

    def record_sdk(meter: Meter) -> None:
        h = meter.create_histogram("h", unit="s", description="d", explicit_bucket_boundaries_advisory=BOUNDS)
        for key, values in series:
            for v in values:
                h.record(v, _attrs(key))

    ours = _ours()
    h = ours.histogram("h", "s", "d", BOUNDS)
    for key, values in series:
        for v in values:
            h.record(key, v, _attrs)
    sdk_metric, our_metric = _metrics(_sdk(record_sdk))["h"], _metrics(ours.collect())["h"]
    assert isinstance(our_metric.data, Histogram) and isinstance(sdk_metric.data, Histogram)
    assert our_metric.data.aggregation_temporality == sdk_metric.data.aggregation_temporality
    assert _points(our_metric) == _points(sdk_metric)
    a = _points(our_metric)[frozenset({("alias", "a"), ("stream", True)})]
    assert a[0] == 11 and a[2] == (3, 2, 2, 2, 2)  # 0, .005, .01 | .010000001, .1 | .5, 1 | 3, 10 | 10.5, 1e9
    b = _points(our_metric)[frozenset({("alias", "b"), ("stream", False)})]
    assert b[1] == 39 and isinstance(b[1], int)
    assert (our_metric.unit, our_metric.description) == (sdk_metric.unit, sdk_metric.description)


def test_counters_and_gauges_match_the_sdks_observable_instruments() -> None:
    adds = [(("a", True), 1), (("a", True), 2.5), (("b", False), 0), (("a", True), 3)]
    sets = [(("x", True), 2), (("y", False), 0), (("x", True), 1)]

    def record_sdk(meter: Meter) -> None:
        c = meter.create_counter("c", unit="USD", description="money")
        for key, amount in adds:
            c.add(amount, _attrs(key))
        g = meter.create_gauge("g", unit="{state}")
        for key, value in sets:
            g.set(value, _attrs(key))

    ours = _ours()
    c, g = ours.counter("c", "USD", "money"), ours.gauge("g", "{state}", "")
    for key, amount in adds:
        c.add(key, amount, _attrs)
    for key, value in sets:
        g.set(key, value, _attrs)
    sdk, mine = _metrics(_sdk(record_sdk)), _metrics(ours.collect())
    assert isinstance(mine["c"].data, Sum) and mine["c"].data.is_monotonic
    assert isinstance(mine["g"].data, Gauge)
    assert _points(mine["c"]) == _points(sdk["c"]) and _points(mine["g"]) == _points(sdk["g"])
    assert c.get(("a", True)) == 6.5 and c.get(("z", True)) is None


def test_the_prometheus_text_is_the_sdks() -> None:
    def record_sdk(meter: Meter) -> None:
        meter.create_counter("gateway.cost", unit="USD", description="money").add(0.25, {"p": 'we"ird'})
        meter.create_histogram("req.duration", unit="s", explicit_bucket_boundaries_advisory=BOUNDS).record(
            0.5, {"alias": "a", "stream": False})

    ours = _ours()
    ours.counter("gateway.cost", "USD", "money").add(("we\"ird",), 0.25, lambda key: {"p": key[0]})
    ours.histogram("req.duration", "s", "", BOUNDS).record(("a", False), 0.5, _attrs)
    assert render(ours.collect()) == render(_sdk(record_sdk))


def test_nothing_recorded_collects_nothing() -> None:
    ours = _ours()
    ours.counter("c", "1", "")
    h = ours.histogram("h", "s", "", BOUNDS)
    assert ours.collect() is None
    h.record(("a", True), -1.0, _attrs)  # dropped: the series exists but has no point yet
    assert ours.collect() is None and render(ours.collect()) == ""


def test_past_the_cardinality_limit_series_overflow_into_one() -> None:
    ours = _ours()
    c = ours.counter("c", "1", "")
    h = ours.histogram("h", "s", "", BOUNDS)
    for i in range(CARDINALITY_LIMIT + 5):
        c.add((str(i), True), 1, _attrs)
        h.record((str(i), True), 0.5, _attrs)
    for metric in _metrics(ours.collect()).values():
        points = _points(metric)
        assert len(points) == CARDINALITY_LIMIT + 1
        overflow = points[frozenset({("otel.metric.overflow", True)})]
        assert overflow[0] == 5  # the counter's value, the histogram's count


def test_a_histogram_rejects_bounds_that_are_not_increasing() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        _ours().histogram("h", "s", "", (1.0, 1.0))
    with pytest.raises(ValueError, match="defined twice"):
        m = _ours()
        m.counter("c", "1", "")
        m.counter("c", "1", "")


def test_an_opentelemetry_reader_collects_the_same_data() -> None:
    ours = _ours()
    ours.counter("c", "1", "").add(("a", True), 2, _attrs)
    reader = InMemoryMetricReader()
    feed_reader(reader, ours)
    data = reader.get_metrics_data()
    assert data is not None and _points(_metrics(data)["c"]) == {frozenset({("alias", "a"), ("stream", True)}): (2,)}


def test_a_collection_from_another_thread_sees_buckets_and_count_agree() -> None:
    """The loop records while an exporter thread collects: every point's count is its buckets' sum."""
    ours = _ours()
    h = ours.histogram("h", "s", "", BOUNDS)
    stop = threading.Event()
    seen: list[HistogramDataPoint] = []

    def collect() -> None:
        while not stop.is_set():
            data = ours.collect()
            if data is not None:
                point = _metrics(data)["h"].data.data_points[0]
                assert isinstance(point, HistogramDataPoint)
                seen.append(point)

    thread = threading.Thread(target=collect)
    thread.start()
    try:
        for i in range(200_000):
            h.record(("a", True), (i % 20) / 10, _attrs)
            if i > 1000 and len(seen) > 20:
                break
    finally:
        stop.set()
        thread.join()
    assert seen and all(p.count == sum(p.bucket_counts) for p in seen)


DELTA = {SdkCounter: AggregationTemporality.DELTA, SdkHistogram: AggregationTemporality.DELTA}
ROUNDS: list[list[tuple[Key, float]]] = [  # measurements between one collection and the next
    [(("a", True), 0.5), (("a", True), 3.0), (("b", False), 0.02)],
    [(("a", True), 0.05)],  # b: nothing new, so no point for it
    [],  # nothing at all
    [(("b", False), 12.0), (("a", True), 0.5), (("c", True), 2)],
]


def _rounded(points: dict[Any, tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
    return {k: tuple(round(v, 9) if type(v) is float else v for v in values) for k, values in points.items()}


@pytest.mark.parametrize("preference", ["delta", "cumulative"])
def test_a_reader_that_asks_for_deltas_gets_the_sdks_deltas(preference: str) -> None:
    """Collection after collection, a delta reader gets what the SDK's own instruments give it: each series'
    change since the reader's last collection (counts, sums, the interval's extremes), no point for a series
    without measurements since; a cumulative reader of the same data still gets the totals."""
    wanted = DELTA if preference == "delta" else {}
    sdk_reader = InMemoryMetricReader(preferred_temporality=wanted)  # type: ignore[arg-type]
    provider = MeterProvider(metric_readers=[sdk_reader], shutdown_on_exit=False)
    meter = provider.get_meter("t")
    sdk_counter = meter.create_counter("c", unit="1")
    sdk_histogram = meter.create_histogram("h", unit="s", explicit_bucket_boundaries_advisory=BOUNDS)
    ours = _ours()
    counter, histogram = ours.counter("c", "1", ""), ours.histogram("h", "s", "", BOUNDS)
    our_reader = InMemoryMetricReader(preferred_temporality=wanted)  # type: ignore[arg-type]
    feed_reader(our_reader, ours)
    for measurements in ROUNDS:
        for key, value in measurements:
            sdk_counter.add(value, _attrs(key))
            sdk_histogram.record(value, _attrs(key))
            counter.add(key, value, _attrs)
            histogram.record(key, value, _attrs)
        theirs, mine = sdk_reader.get_metrics_data(), our_reader.get_metrics_data()
        their_metrics = _metrics(theirs) if theirs is not None and theirs.resource_metrics else {}
        my_metrics = _metrics(mine) if mine is not None else {}
        # The SDK reports an empty delta sum or histogram as a metric without points; none is the same.
        their_metrics = {name: m for name, m in their_metrics.items() if m.data.data_points}
        assert my_metrics.keys() == their_metrics.keys(), measurements
        for name, metric in my_metrics.items():
            # A delta of ours is a difference of running sums: equal to the SDK's to the last few bits only.
            assert _rounded(_points(metric)) == _rounded(_points(their_metrics[name])), (name, measurements)
            assert isinstance(metric.data, Sum | Histogram)
            their_data = their_metrics[name].data
            assert isinstance(their_data, Sum | Histogram)
            assert metric.data.aggregation_temporality == their_data.aggregation_temporality
    provider.shutdown()
