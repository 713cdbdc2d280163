"""`python -m loadtest.fit_compare`: quantiles with bootstrap intervals drawn by the Beta shortcut (checked
against plain resampling), the verdicts, and the tables read from run folders."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config.model import Price
from loadtest.fit_compare import (
    Comparison,
    bootstrap_quantile,
    bootstrap_runs,
    compare,
    compare_point,
    main,
    pooled_quantile,
    quantile,
    rank,
    read_side,
)
from tests.tuning.synthetic import Target, Traffic, spans, write_jsonl


def lognormal(n: int, seed: int, scale: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [scale * rng.lognormvariate(math.log(150), 1.0) for _ in range(n)]


def test_the_beta_shortcut_draws_what_resampling_draws() -> None:
    sample = sorted(lognormal(40, 1))
    reps = 20_000
    shortcut = Counter(bootstrap_quantile(sample, 0.9, random.Random(2), reps))
    rng = random.Random(3)
    plain = Counter(quantile(sorted(rng.choices(sample, k=len(sample))), 0.9) for _ in range(reps))
    for value in set(shortcut) | set(plain):  # the same distribution over the order statistics, within noise
        assert shortcut[value] / reps == pytest.approx(plain[value] / reps, abs=0.012), value
    assert rank(0.99, 512) == 507 and rank(0.5, 4) == 2 and rank(0.999, 1000) == 999


def test_an_interval_covers_the_true_quantile_about_95_times_in_100() -> None:
    true_p99 = 150 * math.exp(2.3263)
    covered = 0
    for trial in range(100):
        c = compare_point(1.0, [lognormal(2000, 100 + trial)], 0.99, seed=trial)
        covered += c.reference_ci[0] <= true_p99 <= c.reference_ci[1]
    assert 88 <= covered <= 100


def test_same_distribution_versus_a_shifted_one() -> None:
    base = lognormal(5000, 7)
    same = compare([base], [lognormal(5000, 8)], 0.99)
    assert same.diff_ci_pct[0] < 0 < same.diff_ci_pct[1]
    assert same.reference_ci[0] <= same.reference <= same.reference_ci[1]
    slower = compare([base], [lognormal(5000, 9, scale=1.3)], 0.5)
    assert slower.diff_pct == pytest.approx(30, abs=5)
    assert 20 < slower.diff_ci_pct[0] < slower.diff_pct < slower.diff_ci_pct[1] < 40
    assert slower.verdict(15) == "**not met**"


def test_the_pooled_quantile_of_weighted_runs() -> None:
    runs = [sorted(lognormal(n, seed)) for n, seed in ((300, 1), (500, 2), (80, 3))]
    for weights in ([1, 1, 1], [2, 0, 1], [0, 3, 0], [1, 0, 0]):
        pooled = sorted(v for w, run in zip(weights, runs, strict=True) for _ in range(w) for v in run)
        for q in (0.01, 0.5, 0.99, 1.0):
            assert pooled_quantile(runs, weights, q) == quantile(pooled, q), (weights, q)


def test_runs_resampled_hold_the_spread_between_runs_that_requests_resampled_miss() -> None:
    # Six runs, each with its own luck (a run-wide factor, like an adaptive delay that drifted): the requests
    # look like one big sample, the runs do not.
    runs = [lognormal(1500, seed, scale=factor) for seed, factor in enumerate((0.8, 1.0, 1.25, 0.9, 1.1, 1.2))]
    c = compare(runs, runs, 0.99)
    request_width = c.diff_ci_pct[1] - c.diff_ci_pct[0]
    assert c.diff_runs_ci_pct is not None and c.runs == (6, 6)
    assert c.diff_runs_ci_pct[1] - c.diff_runs_ci_pct[0] > 1.5 * request_width
    boot = bootstrap_runs([sorted(r) for r in runs], 0.5, random.Random(1), reps=500)
    assert len(boot) == 500 and min(boot) < quantile(sorted(v for r in runs for v in r), 0.5) < max(boot)


@pytest.mark.parametrize(("diff", "ci", "verdict"), [
    (4.0, (-2.0, 9.0), "met"),
    (12.0, (3.0, 21.0), "met (CI crosses the bound)"),
    (20.0, (11.0, 28.0), "**not met** (CI crosses the bound)"),
    (-26.0, (-35.0, -17.0), "**not met**"),
])
def test_verdicts(diff: float, ci: tuple[float, float], verdict: str) -> None:
    assert Comparison(1, (1, 1), 1, (1, 1), diff, ci).verdict(15) == verdict


def test_the_verdict_reads_the_runs_interval_once_each_side_has_three_runs() -> None:
    wide = Comparison(1, (1, 1), 1, (1, 1), 4.0, (-2.0, 9.0), diff_runs_ci_pct=(-20.0, 30.0), runs=(3, 3))
    assert wide.verdict(15) == "met (CI crosses the bound)"
    assert Comparison(1, (1, 1), 1, (1, 1), 4.0, (-2.0, 9.0), diff_runs_ci_pct=(-20.0, 30.0),
                      runs=(2, 3)).verdict(15) == "met"


def _run(folder: Path, seed: int, policies: dict[str, float]) -> Path:
    """A run folder as the load test writes it: report.json and one trace file per policy."""
    folder.mkdir()
    summaries: dict[str, Any] = {}
    for i, (name, cost) in enumerate(policies.items()):
        primary = Target("primary", "fast", "openai", lambda rng: rng.lognormvariate(math.log(0.15), 1.0),
                         Price(0.5, 1.5))
        secondary = Target("secondary", "steady", "openai", lambda rng: 0.1, Price(0.5, 1.5))
        write_jsonl(folder / f"traces-{name}.jsonl",
                    spans(primary, secondary, Traffic(n=1000, delay_s=10.0), seed=seed * 10 + i))
        summaries[name] = {"ttft_ms": {"p50": 150.0, "p99": 1500.0}, "requests": 1000,
                           "cost_per_1k_requests_usd": cost, "extra_cost_pct": None, "extra_upstream_pct": 0.0}
    (folder / "report.json").write_bytes(orjson.dumps({"settings": {"alias": "chat"}, "policies": summaries}))
    return folder


def test_run_folders_are_pooled_and_rendered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    originals = [_run(tmp_path / f"o{s}", s, {"no-hedge": 1.0, "race": 2.0}) for s in (1, 2)]
    fitted = [_run(tmp_path / "f1", 3, {"no-hedge": 1.0, "race": 2.2})]
    side = read_side(originals)
    assert list(side) == ["no-hedge", "race"]
    assert len(side["race"].streamed_by_run) == 2
    assert side["race"].streamed == pytest.approx(1200, rel=0.1)  # 60% of 2 x 1000 requests stream
    tune = {"aliases": {"chat": {"candidates": [
        {"name": "no-hedge", "ttft_ms": {"p99": 1500.0}, "extra_cost_pct": 0.0},
        {"name": "race", "ttft_ms": {"p99": 1500.0}, "extra_cost_pct": 100.0}]}}}
    (tmp_path / "tune.json").write_bytes(orjson.dumps(tune))
    assert main(["--original", *map(str, originals), "--fitted", *map(str, fitted),
                 "--tune", str(tmp_path / "tune.json")]) == 0
    text = capsys.readouterr().out
    assert "| race | p99 |" in text and "| no-hedge | p50 |" in text
    assert "| race | original | " in text and " / " in text.split("| race | original | ")[1].split("\n")[0]
    # Extra cost pooled over the fitted runs (2.2 against 1.0 per request: +120%) against tune's +100%.
    assert "| 100.0 | 120.0 (-) | -16.7% | **not met** |" in text
    assert "| 0.0 | 0.0 | (baseline) | - |" in text
