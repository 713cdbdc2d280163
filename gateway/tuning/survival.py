"""Kaplan-Meier estimates of a latency distribution from right-censored samples.

A hedged race cuts its losers: a cancelled attempt says only "its first token would have come after t". Dropping
those samples keeps the fast ones and loses exactly the slow ones, so the tail comes out too light; counting the
cut time as the latency makes it lighter still. The Kaplan-Meier product-limit estimate uses each censored sample
for what it says: it was still waiting at t.

    S(t) = prod over event times t_i <= t of (1 - d_i / n_i)

with d_i the samples observed at t_i and n_i those still at risk just before t_i. Ties: a sample censored at t_i
is still at risk at t_i (censored after the events of the same time), the usual convention.

The tail beyond the last observed sample (a documented choice): when the longest samples are censored, S never
reaches 0; the mass left, S(t_last), lies somewhere after the last observed value, and the traces do not say
where. It is spread evenly between the last observed value and the longest censored wait, never beyond: the
estimate claims nothing slower than what some attempt was really seen waiting for. That is a lower bound of the
true tail; `tail_mass` says how much of the distribution it holds, so callers can warn when it is not small.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The quantile grid of a table written to a simulator profile: every 1% to p90, then finer where the tail is.
TABLE_GRID: tuple[float, ...] = (
    *(i / 100 for i in range(91)),
    *(0.9 + i / 200 for i in range(1, 19)),
    *(0.99 + i / 1000 for i in range(1, 10)),
    0.9995, 1.0,
)


@dataclass(frozen=True, slots=True)
class Sample:
    value: float
    observed: bool = True  # False: right-censored, the true value is larger than `value`


class SurvivalCurve:
    """The Kaplan-Meier estimate of one distribution, with the tail rule of the module docstring."""

    __slots__ = ("_cdf", "_times", "censored", "longest_wait", "observed", "tail_mass")

    def __init__(self, samples: Iterable[Sample]) -> None:
        ordered = sorted(samples, key=lambda s: (s.value, not s.observed))
        if not any(s.observed for s in ordered):
            raise ValueError("no observed sample: a distribution needs at least one uncensored value")
        self.observed = sum(1 for s in ordered if s.observed)
        self.censored = len(ordered) - self.observed
        times: list[float] = []
        cdf: list[float] = []
        at_risk = len(ordered)
        survival = 1.0
        i = 0
        while i < len(ordered):
            t = ordered[i].value
            events = leaving = 0
            while i < len(ordered) and ordered[i].value == t:
                events += ordered[i].observed
                leaving += 1
                i += 1
            if events:
                survival *= 1.0 - events / at_risk
                times.append(t)
                cdf.append(1.0 - survival)
            at_risk -= leaving
        self._times = tuple(times)
        self._cdf = tuple(cdf)
        self.tail_mass = max(0.0, survival)  # mass beyond the last observed value
        self.longest_wait = max(ordered[-1].value, times[-1])

    @property
    def last_observed(self) -> float:
        return self._times[-1]

    def cdf(self, t: float) -> float:
        """F(t) = P(T <= t): the KM step function, and the even spread of the tail mass after the last event."""
        if t < self._times[0]:
            return 0.0
        if t >= self.last_observed and self.tail_mass > 0:
            if t >= self.longest_wait:
                return 1.0
            share = (t - self.last_observed) / (self.longest_wait - self.last_observed)
            return 1.0 - self.tail_mass * (1.0 - share)
        return self._cdf[bisect.bisect_right(self._times, t) - 1]

    def quantile(self, u: float) -> float:
        """The smallest t with F(t) >= u, for u in [0, 1]: an observed value, or one in the spread tail."""
        if not 0.0 <= u <= 1.0:
            raise ValueError(f"u must be in [0, 1], got {u}")
        body_end = 1.0 - self.tail_mass
        if u > body_end and self.tail_mass > 0:
            share = (u - body_end) / self.tail_mass
            return self.last_observed + share * (self.longest_wait - self.last_observed)
        # The epsilon keeps float noise in the running product from skipping a step (0.5 vs 0.49999999).
        i = bisect.bisect_left(self._cdf, u - 1e-12)
        return self._times[min(i, len(self._times) - 1)]

    def conditional_quantile(self, above: float, v: float) -> float:
        """The v-quantile (v in [0, 1)) of the distribution given T > `above`: how to draw a censored sample's
        true value. Beyond the longest wait nothing is known: the wait itself is returned."""
        low = self.cdf(above)
        if low >= 1.0:
            return max(above, self.longest_wait)
        return max(above, self.quantile(low + v * (1.0 - low)))

    def table(self, grid: Sequence[float] = TABLE_GRID, *, scale: float = 1.0, digits: int = 1
              ) -> list[tuple[float, float]]:
        """(q, value * scale) points of the quantile function on `grid` (which must run from 0 to 1), for a
        `quantiles` latency: interpolated linearly between the points, it reproduces this distribution's
        quantiles at the grid's points."""
        if not grid or grid[0] != 0.0 or grid[-1] != 1.0:
            raise ValueError("the grid must start at 0 and end at 1")
        points: list[tuple[float, float]] = []
        for q in grid:
            value = round(self.quantile(q) * scale, digits)
            if points and value < points[-1][1]:
                value = points[-1][1]  # rounding must not make the table decrease
            points.append((round(q, 6), value))
        return points


def survival_summary(curve: SurvivalCurve, scale: float = 1.0, digits: int = 1) -> dict[str, float]:
    """p50/p90/p99/p99.9 of a curve, times `scale` (e.g. 1000: seconds to ms), for reports."""
    return {label: round(curve.quantile(q) * scale, digits)
            for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))}


def is_finite_sample(value: float) -> bool:
    return math.isfinite(value) and value >= 0.0
