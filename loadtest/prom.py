"""Reading a gateway's `/metrics` (Prometheus text exposition) and the difference a load made to it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# name{labels} value [timestamp]; label values may hold escaped quotes.
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Samples:
    values: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def total(self, name: str, **labels: str) -> float:
        """Sum of every sample called `name` whose labels include `labels`."""
        return sum(v for (n, lab), v in self.values.items()
                   if n == name and all((k, x) in lab for k, x in labels.items()))

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """Sums of `name` grouped by one label's value."""
        out: dict[str, float] = {}
        for (n, lab), v in self.values.items():
            if n == name and all((k, x) in lab for k, x in labels.items()):
                key = dict(lab).get(label, "")
                out[key] = out.get(key, 0.0) + v
        return out


def parse(text: str) -> Samples:
    """Every sample of the exposition; lines that do not parse (comments, garbage) are skipped."""
    samples = Samples()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        labels = tuple(sorted((k, v.replace('\\"', '"').replace("\\\\", "\\"))
                              for k, v in _LABEL.findall(match.group(2) or "")))
        if math.isfinite(value):
            samples.values[(match.group(1), labels)] = value
    return samples


def delta(before: Samples, after: Samples) -> Samples:
    """after - before, sample by sample (a sample new in `after` counts from 0)."""
    out = Samples()
    for key, value in after.values.items():
        out.values[key] = value - before.values.get(key, 0.0)
    return out


def gateway_summary(change: Samples, alias: str) -> Mapping[str, object]:
    """What the load did to the gateway, by its own counters: requests by status, attempts by launch and
    outcome, cost and wasted cost, hedges skipped."""
    model = {"gen_ai_request_model": alias}
    attempts = change.by("gateway_attempts_total", "gateway_attempt_outcome", **model)
    return {
        "requests_by_status": {k: int(v) for k, v in change.by(
            "gateway_request_duration_seconds_count", "http_response_status_code", **model).items() if v},
        "attempts_by_outcome": {k: int(v) for k, v in attempts.items() if v},
        "attempts_by_launch": {k: int(v) for k, v in change.by(
            "gateway_attempts_total", "gateway_attempt_launch", **model).items() if v},
        "attempts_sent": int(sum(v for k, v in attempts.items() if k != "skipped")),
        "cost_usd": round(change.total("gateway_cost_usd_total", **model), 8),
        "wasted_cost_usd": round(change.total("gateway_wasted_cost_usd_total", **model), 8),
        "hedges_skipped": int(change.total("gateway_hedges_skipped_total", **model)),
    }
