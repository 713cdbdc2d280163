"""Percentiles and latency summaries."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# The percentiles every report shows, by label.
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least a share `q` of the values at or below it.

    Nearest rank, not interpolation: every figure is a latency some request really had, and with few samples
    a high percentile is honestly the maximum rather than a blend of the two slowest.
    """
    return percentiles(values, [q])[0]


def percentiles(values: Iterable[float], qs: Sequence[float]) -> list[float]:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    out: list[float] = []
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be between 0 and 1, got {q}")
        # The epsilon keeps q * n from rounding up past an exact rank (0.999 * 1000 = 999.0000000000001).
        rank = max(1, math.ceil(q * len(ordered) - 1e-9))
        out.append(ordered[rank - 1])
    return out


def summarize_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, max and the report percentiles, in milliseconds (None when there are no values)."""
    labels = [label for label, _ in PERCENTILES]
    if not seconds:
        return {"count": 0, "mean": None, "max": None, **dict.fromkeys(labels)}
    values = percentiles(seconds, [q for _, q in PERCENTILES])
    summary: dict[str, float | int | None] = {"count": len(seconds),
                                              "mean": round(1000 * sum(seconds) / len(seconds), 3),
                                              "max": round(1000 * max(seconds), 3)}
    summary.update({label: round(1000 * v, 3) for label, v in zip(labels, values, strict=True)})
    return summary
