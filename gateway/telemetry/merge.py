"""Merge the Prometheus text expositions of several workers into one, for `gateway serve --workers N`.

A scrape reaches one worker (SO_REUSEPORT picks it), so each worker's own /metrics would answer with that
worker's counts alone: 9 on one scrape, 10 on the next. The hub collects every worker's exposition and this
merges them into what one process would have answered:

- counters and histograms (every `_bucket`, `_sum`, `_count`) are summed by identical series, that is the
  same metric name and the same label set (the workers render the same attributes in the same order, so
  the series text is the key; a series only some workers have is the sum over those);
- gauges are not summable (a breaker's state, 0 closed / 2 open, summed over workers means nothing), so
  each worker's value is kept with a `worker` label ("1".."N"): `gateway_breaker_state{...,worker="2"} 0`.

A worker that restarts starts its counters from zero, which Prometheus's `rate()` reads as a counter reset
in the sum, as usual. Parses what `gateway.telemetry.prometheus.render` writes (format 0.0.4, no timestamps).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.telemetry.prometheus import _number

_SUMMED = frozenset({"counter", "histogram", "summary"})


@dataclass
class _Family:
    help: str | None = None
    kind: str = "untyped"
    samples: dict[str, float] = field(default_factory=dict)  # series ("name{labels}") -> value, in first-seen order


def _value(text: str) -> float:
    try:
        return int(text)  # counts stay integers, so they print as they came
    except ValueError:
        return float(text)  # also "NaN", "+Inf", "-Inf"


def with_worker(series: str, worker: str) -> str:
    """The series with a `worker` label added (label values in a series never end in an unescaped `}`)."""
    label = f'worker="{worker}"'
    if series.endswith("}"):
        return f"{series[:-1]},{label}}}" if not series.endswith("{}") else f"{series[:-2]}{{{label}}}"
    return f"{series}{{{label}}}"


def merge_expositions(expositions: Iterable[tuple[str, str]]) -> str:
    """One exposition from `(worker, text)` pairs: families in first-seen order, then their series."""
    families: dict[str, _Family] = {}
    for worker, text in expositions:
        current: _Family | None = None
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("# HELP "):
                name, _, _ = line[7:].partition(" ")
                family = families.setdefault(name, _Family())
                family.help = family.help or line
                continue
            if line.startswith("# TYPE "):
                name, _, kind = line[7:].partition(" ")
                current = families.setdefault(name, _Family())
                current.kind = kind.strip()
                continue
            if line.startswith("#"):
                continue
            series, _, raw = line.rpartition(" ")
            if not series:
                continue
            if current is None:  # a sample before any TYPE line: its own untyped family, kept per worker
                current = families.setdefault(series.partition("{")[0], _Family())
            value = _value(raw)
            if current.kind in _SUMMED:
                current.samples[series] = current.samples.get(series, 0) + value
            else:
                current.samples[with_worker(series, worker)] = value
    out: list[str] = []
    for name, family in families.items():
        if family.help is not None:
            out.append(family.help)
        out.append(f"# TYPE {name} {family.kind}")
        out.extend(f"{series} {_number(value)}" for series, value in family.samples.items())
    return "\n".join(out) + "\n" if out else ""
