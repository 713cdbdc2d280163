"""`python -m loadtest.fit_compare`: the two validations of a fitted scenario, per policy, with their sampling
uncertainty.

    python -m loadtest.fit_compare --original RUN_DIR... --fitted RUN_DIR... [--tune tune.json] [--tolerance 15]

Each RUN_DIR is a load test's output folder (`report.json` and one `traces-POLICY.jsonl` per policy); several
folders of one side (runs with different seeds) are pooled. Printed, as markdown:

1. *Fit then reproduce*: TTFT p50 and p99 of the original runs against the fitted scenario's runs. The pooled
   figures are the gateway's own TTFT of each successful streamed request (`gateway.ttft_ms` on its request
   span: arrival at the gateway to the first token), because those are per-request samples that can be pooled
   and resampled; the load test's client-side figures (report.json: from the scheduled send, so they include
   the load generator's own lag) follow per run, as a cross-check.
2. *Tune against reality*: `gateway tune --json`'s predicted TTFT p99 (the same measure: arrival to first token
   of streamed requests) and extra cost against the fitted runs'.

Uncertainty, two 95% bootstrap percentile intervals for each quantile and each relative difference (the two
sides resampled independently):
- *requests*: the pooled requests resampled as independent draws (10,000 resamples). A resample's nearest-rank
  quantile is drawn directly: the k-th smallest of n indices drawn uniformly from 1..n is ceil(n * U) with
  U ~ Beta(k, n - k + 1), so a resample costs one Beta draw, not a sort.
- *runs*: whole runs resampled (2,000 resamples), the pooled quantile of the runs drawn. The requests of one run
  are not independent: they share the run's schedule (which requests stream) and its policy's state (an
  adaptive delay is a quantile of the run's own earlier answers, and feeds back into them), so the spread
  between runs can be larger than the requests suggest. This interval holds that spread; with a handful of runs
  it is itself rough. The verdict reads it when each side has at least 3 runs, else the requests' interval.
Extra cost: the pooled figure and the value of each run.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.tuning.records import load_recording

REPS = 10_000
RUN_REPS = 2_000
MIN_RUNS = 3  # runs per side for the verdict to read the runs' interval
LEVEL = 0.95


@dataclass(slots=True)
class PolicyRuns:
    """One policy over the runs of one side."""

    streamed_by_run: list[list[float]] = field(default_factory=list)  # gateway TTFT of successful streamed requests
    client: list[dict[str, Any]] = field(default_factory=list)  # report.json's TTFT summary, per run
    cost_usd: list[float] = field(default_factory=list)  # per run
    requests: list[int] = field(default_factory=list)
    extra_cost_pct: list[float | None] = field(default_factory=list)  # per run, as its report says
    extra_upstream_pct: list[float | None] = field(default_factory=list)

    @property
    def streamed(self) -> int:
        return sum(len(run) for run in self.streamed_by_run)


def read_side(dirs: Sequence[Path], alias: str | None = None) -> dict[str, PolicyRuns]:
    """Every policy of the runs in `dirs`, in the first run's order."""
    out: dict[str, PolicyRuns] = {}
    for folder in dirs:
        report = orjson.loads((folder / "report.json").read_bytes())
        for name, summary in report["policies"].items():
            runs = out.setdefault(name, PolicyRuns())
            recording = load_recording([folder / f"traces-{name}.jsonl"])
            chosen = alias or report["settings"]["alias"]
            ttfts = [1000 * r.ttft_s for r in recording.for_alias(chosen)
                     if r.stream and r.status < 400 and r.ttft_s is not None]
            runs.streamed_by_run.append(ttfts)
            runs.client.append(summary["ttft_ms"])
            runs.requests.append(int(summary["requests"]))
            runs.cost_usd.append(float(summary["cost_per_1k_requests_usd"] or 0.0) * summary["requests"] / 1000)
            runs.extra_cost_pct.append(summary["extra_cost_pct"])
            runs.extra_upstream_pct.append(summary["extra_upstream_pct"])
    return out


def rank(q: float, n: int) -> int:
    """The nearest rank (1-based) of quantile q among n values, as `loadtest.stats.percentile` takes it."""
    return max(1, math.ceil(q * n - 1e-9))


def quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[rank(q, len(ordered)) - 1]


def bootstrap_quantile(ordered: Sequence[float], q: float, rng: random.Random, reps: int = REPS) -> list[float]:
    """`reps` bootstrap replicates of the nearest-rank q-quantile of the sorted sample `ordered`."""
    n = len(ordered)
    k = rank(q, n)
    return [ordered[min(n, max(1, math.ceil(n * rng.betavariate(k, n - k + 1)))) - 1] for _ in range(reps)]


def interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    ordered = sorted(values)
    tail = (1 - level) / 2
    return ordered[rank(tail, len(ordered)) - 1], ordered[rank(1 - tail, len(ordered)) - 1]


def pooled_quantile(runs: Sequence[Sequence[float]], weights: Sequence[int], q: float,
                    values: Sequence[float] | None = None) -> float:
    """The nearest-rank q-quantile of the runs pooled, run i counted weights[i] times (each run sorted).
    A binary search over the values (sorted, the runs' union) for the smallest one with enough at or below."""
    union = values if values is not None else sorted(set(itertools.chain.from_iterable(runs)))
    k = rank(q, sum(w * len(run) for w, run in zip(weights, runs, strict=True)))
    low, high = 0, len(union) - 1
    while low < high:
        mid = (low + high) // 2
        if sum(w * bisect.bisect_right(run, union[mid]) for w, run in zip(weights, runs, strict=True)) >= k:
            high = mid
        else:
            low = mid + 1
    return union[low]


def bootstrap_runs(runs: Sequence[Sequence[float]], q: float, rng: random.Random, reps: int = RUN_REPS
                   ) -> list[float]:
    """`reps` replicates of the pooled q-quantile with whole runs resampled (each run sorted)."""
    union = sorted(set(itertools.chain.from_iterable(runs)))
    out = []
    for _ in range(reps):
        weights = [0] * len(runs)
        for i in rng.choices(range(len(runs)), k=len(runs)):
            weights[i] += 1
        out.append(pooled_quantile(runs, weights, q, union))
    return out


@dataclass(frozen=True, slots=True)
class Comparison:
    reference: float
    reference_ci: tuple[float, float]  # requests resampled
    other: float
    other_ci: tuple[float, float]
    diff_pct: float
    diff_ci_pct: tuple[float, float]
    reference_runs_ci: tuple[float, float] | None = None  # runs resampled
    other_runs_ci: tuple[float, float] | None = None
    diff_runs_ci_pct: tuple[float, float] | None = None
    runs: tuple[int, int] = (1, 1)  # runs per side

    def verdict(self, tolerance_pct: float) -> str:
        by_runs = self.diff_runs_ci_pct is not None and min(self.runs) >= MIN_RUNS
        low, high = self.diff_runs_ci_pct if by_runs and self.diff_runs_ci_pct else self.diff_ci_pct
        met = abs(self.diff_pct) <= tolerance_pct
        if met and -tolerance_pct <= low and high <= tolerance_pct:
            return "met"
        if not met and (high < -tolerance_pct or low > tolerance_pct):
            return "**not met**"
        return "met (CI crosses the bound)" if met else "**not met** (CI crosses the bound)"


def _diffs(reference: Sequence[float], other: Sequence[float]) -> list[float]:
    return [100 * (y / x - 1) for x, y in zip(reference, other, strict=True) if x > 0]


def compare(reference_runs: Sequence[Sequence[float]], other_runs: Sequence[Sequence[float]], q: float,
            seed: int = 1) -> Comparison:
    """Quantile q of the pooled runs of two sides, each with its intervals, and other/reference - 1 with its own."""
    a_runs, b_runs = [sorted(r) for r in reference_runs if r], [sorted(r) for r in other_runs if r]
    a, b = sorted(itertools.chain.from_iterable(a_runs)), sorted(itertools.chain.from_iterable(b_runs))
    rng = random.Random(seed)
    boot_a, boot_b = bootstrap_quantile(a, q, rng), bootstrap_quantile(b, q, rng)
    runs_a, runs_b = bootstrap_runs(a_runs, q, rng), bootstrap_runs(b_runs, q, rng)
    qa, qb = quantile(a, q), quantile(b, q)
    return Comparison(qa, interval(boot_a), qb, interval(boot_b), 100 * (qb / qa - 1), interval(_diffs(boot_a, boot_b)),
                      interval(runs_a), interval(runs_b), interval(_diffs(runs_a, runs_b)),
                      (len(a_runs), len(b_runs)))


def compare_point(predicted: float, measured_runs: Sequence[Sequence[float]], q: float, seed: int = 1
                  ) -> Comparison:
    """A prediction (no sampling error of its own here) against the measured runs' pooled quantile q."""
    b_runs = [sorted(r) for r in measured_runs if r]
    b = sorted(itertools.chain.from_iterable(b_runs))
    rng = random.Random(seed)
    boot, runs = bootstrap_quantile(b, q, rng), bootstrap_runs(b_runs, q, rng)
    qb = quantile(b, q)
    point = [predicted] * len(boot)
    return Comparison(qb, interval(boot), predicted, (predicted, predicted), 100 * (predicted / qb - 1),
                      interval(_diffs(boot, point)), interval(runs), (predicted, predicted),
                      interval(_diffs(runs, point[:len(runs)])), (len(b_runs), len(b_runs)))


def pooled_extra_cost(runs: PolicyRuns, base: PolicyRuns) -> float | None:
    """Extra cost per request over all runs pooled: total cost per request against the baseline's, minus 1."""
    cost, base_cost = sum(runs.cost_usd) / sum(runs.requests), sum(base.cost_usd) / sum(base.requests)
    return None if base_cost <= 0 else 100 * (cost / base_cost - 1)


def _ci(c: tuple[float, float], digits: int = 0) -> str:
    return f"[{c[0]:.{digits}f}, {c[1]:.{digits}f}]"


def _signed_ci(c: tuple[float, float]) -> str:
    return f"[{c[0]:+.1f}, {c[1]:+.1f}]"


def render_reproduce(original: Mapping[str, PolicyRuns], fitted: Mapping[str, PolicyRuns], tolerance: float
                     ) -> list[str]:
    lines = ["### Fit then reproduce: gateway TTFT of streamed requests, runs pooled (ms; 95% bootstrap intervals, "
             "requests resampled / runs resampled)", "",
             "| policy | q | original (requests, runs) | fitted scenario (requests, runs) | diff | within "
             f"{tolerance:g}% |", "|---|---|---:|---:|---:|---|"]
    for name, orig in original.items():
        fit = fitted.get(name)
        if fit is None or not orig.streamed or not fit.streamed:
            continue
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            c = compare(orig.streamed_by_run, fit.streamed_by_run, q)
            lines.append(f"| {name} | {label} | {_cell(c.reference, c.reference_ci, c.reference_runs_ci)} "
                         f"({orig.streamed}, {c.runs[0]}) | {_cell(c.other, c.other_ci, c.other_runs_ci)} "
                         f"({fit.streamed}, {c.runs[1]}) | {_diff_cell(c)} | {c.verdict(tolerance)} |")
    lines += ["", "Per run (the spread over seeds), p50 / p99: gateway streamed TTFT; the load test's client-side "
                  "streamed TTFT (report.json)", "",
              "| policy | side | gateway p50 per run | gateway p99 per run | client p50 per run | client p99 per run |",
              "|---|---|---|---|---|---|"]
    for name, orig in original.items():
        for side, runs in (("original", orig), ("fitted", fitted.get(name))):
            if runs is None:
                continue
            per_run = [sorted(x) for x in runs.streamed_by_run if x]
            lines.append(f"| {name} | {side} | {_join(quantile(x, 0.5) for x in per_run)} | "
                         f"{_join(quantile(x, 0.99) for x in per_run)} | {_join(c['p50'] for c in runs.client)} | "
                         f"{_join(c['p99'] for c in runs.client)} |")
    return lines


def _cell(point: float, requests: tuple[float, float], runs: tuple[float, float] | None) -> str:
    return f"{point:.0f} {_ci(requests)}" + (f" {_ci(runs)}" if runs is not None else "")


def _diff_cell(c: Comparison) -> str:
    runs = f" {_signed_ci(c.diff_runs_ci_pct)}" if c.diff_runs_ci_pct is not None else ""
    return f"{c.diff_pct:+.1f}% {_signed_ci(c.diff_ci_pct)}{runs}"


def _join(values: Any) -> str:
    return " / ".join("-" if v is None else f"{v:.0f}" for v in values)


def render_tune(tune: Mapping[str, Any], fitted: Mapping[str, PolicyRuns], baseline: str, tolerance: float
                ) -> list[str]:
    candidates = {c["name"]: c for c in tune["candidates"]}
    base = fitted.get(baseline)
    lines = ["### Tune against reality: `gateway tune` against the fitted scenario's runs (gateway TTFT of streamed "
             "requests; 95% intervals, requests resampled / runs resampled)", "",
             f"| policy | tune TTFT p99 | fitted runs p99 | diff | within {tolerance:g}% | "
             "tune extra cost % | fitted runs, pooled (per run) | diff | within |",
             "|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for name, runs in fitted.items():
        cand = candidates.get(name)
        if cand is None or not runs.streamed:
            continue
        c = compare_point(float(cand["ttft_ms"]["p99"]), runs.streamed_by_run, 0.99)
        extra = pooled_extra_cost(runs, base) if base is not None else None
        predicted = cand["extra_cost_pct"]
        if name == baseline or extra is None or predicted is None:
            cost_cells = f"{_num(predicted)} | {_num(extra)} | (baseline) | -"
        else:
            diff = 100 * (predicted / extra - 1) if extra else math.inf
            cost_cells = (f"{predicted:.1f} | {extra:.1f} ({_join1(runs.extra_cost_pct)}) | {diff:+.1f}% | "
                          f"{'met' if abs(diff) <= tolerance else '**not met**'}")
        lines.append(f"| {name} | {c.other:.0f} | {_cell(c.reference, c.reference_ci, c.reference_runs_ci)} | "
                     f"{_diff_cell(c)} | {c.verdict(tolerance)} | {cost_cells} |")
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _join1(values: Sequence[float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.1f}" for v in values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.fit_compare", description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, nargs="+", required=True, help="the original runs' folders")
    parser.add_argument("--fitted", type=Path, nargs="+", required=True, help="the fitted scenario's runs' folders")
    parser.add_argument("--tune", type=Path, help="`gateway tune --json` output on the original runs' traces")
    parser.add_argument("--alias", help="the alias (default: the runs' own)")
    parser.add_argument("--baseline", default="no-hedge", help="the policy extra cost is relative to (no-hedge)")
    parser.add_argument("--tolerance", type=float, default=15.0, help="percent (15)")
    args = parser.parse_args(argv)
    try:
        original, fitted = read_side(args.original, args.alias), read_side(args.fitted, args.alias)
        tune = orjson.loads(args.tune.read_bytes()) if args.tune else None
    except (OSError, KeyError, orjson.JSONDecodeError) as exc:
        print(f"cannot read the runs: {exc}", file=sys.stderr)
        return 1
    lines = render_reproduce(original, fitted, args.tolerance)
    if tune is not None:
        aliases = tune["aliases"]
        alias = args.alias or next(iter(aliases))
        lines += ["", *render_tune(aliases[alias], fitted, args.baseline, args.tolerance)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
