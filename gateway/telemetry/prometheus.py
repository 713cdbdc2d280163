"""Render OpenTelemetry metrics as Prometheus text exposition (format 0.0.4) for `GET /metrics`.

A few dozen lines instead of the opentelemetry-exporter-prometheus dependency (which pulls in
prometheus_client and its own HTTP server). Names follow the OTel-to-Prometheus compatibility rules:
dots become underscores, the unit becomes a suffix (`s` -> `_seconds`, `USD` -> `_usd`; `{token}`-style
annotations are dropped), monotonic sums get `_total`; attribute keys become label names the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from opentelemetry.sdk.metrics.export import Gauge, Histogram, Metric, MetricsData, Sum

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "USD": "usd"}
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_name(metric: Metric) -> str:
    name = _INVALID_NAME.sub("_", metric.name)
    unit = metric.unit or ""
    if unit and not unit.startswith("{"):
        suffix = _UNIT_SUFFIX.get(unit, _INVALID_NAME.sub("_", unit))
        if suffix and not name.endswith("_" + suffix):
            name = f"{name}_{suffix}"
    if isinstance(metric.data, Sum) and metric.data.is_monotonic and not name.endswith("_total"):
        name += "_total"
    if name[0].isdigit():
        name = "_" + name
    return name


def _label_name(key: str) -> str:
    name = _INVALID_LABEL.sub("_", key)
    return "_" + name if name[0].isdigit() else name


def _escape(value: object) -> str:
    if isinstance(value, bool):  # as OpenTelemetry spells it, not Python's True/False
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(attributes: Mapping[str, object] | None, extra: tuple[str, str] | None = None) -> str:
    pairs = [f'{_label_name(k)}="{_escape(v)}"' for k, v in (attributes or {}).items()]
    if extra is not None:
        pairs.append(f'{extra[0]}="{extra[1]}"')
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _render_metric(metric: Metric, out: list[str]) -> None:
    name = prometheus_name(metric)
    data = metric.data
    if isinstance(data, Sum):
        kind = "counter" if data.is_monotonic else "gauge"
    elif isinstance(data, Gauge):
        kind = "gauge"
    elif isinstance(data, Histogram):
        kind = "histogram"
    else:  # exponential histograms have no classic Prometheus text form; we never create one
        return
    if metric.description:
        out.append(f"# HELP {name} {_escape(metric.description)}")
    out.append(f"# TYPE {name} {kind}")
    if isinstance(data, Histogram):
        for hp in data.data_points:
            cumulative = 0
            for bound, count in zip(hp.explicit_bounds, hp.bucket_counts, strict=False):
                cumulative += count
                out.append(f"{name}_bucket{_labels(hp.attributes, ('le', _number(float(bound))))} {cumulative}")
            out.append(f"{name}_bucket{_labels(hp.attributes, ('le', '+Inf'))} {hp.count}")
            out.append(f"{name}_sum{_labels(hp.attributes)} {_number(hp.sum)}")
            out.append(f"{name}_count{_labels(hp.attributes)} {hp.count}")
    else:
        for np in data.data_points:
            out.append(f"{name}{_labels(np.attributes)} {_number(np.value)}")


def render(data: MetricsData | None) -> str:
    """The whole exposition; an empty string when nothing was recorded yet."""
    out: list[str] = []
    if data is not None:
        for metric in _metrics(data):
            _render_metric(metric, out)
    return "\n".join(out) + "\n" if out else ""


def _metrics(data: MetricsData) -> Iterable[Metric]:
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            yield from sm.metrics
