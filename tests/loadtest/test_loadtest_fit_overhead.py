"""The measurement path's latency in `python -m loadtest fit`: a known offset in synthetic traces (cut losers
included) is taken out of the fitted TTFT, the calibration's scenario and its reading of the traces, and one
real calibration on loopback."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config.model import Price
from gateway.simulator import parse_profile
from gateway.tuning.records import load_recording
from loadtest.fit import apply_overhead, fit_scenario, header
from loadtest.fit_overhead import (
    Overhead,
    calibration_scenario,
    overhead_from_traces,
    shift_table,
    summarize,
    table_mean,
)
from loadtest.procs import REPO_ROOT
from loadtest.scenario import parse_scenario
from tests.loadtest.test_loadtest_fit import PRIMARY, SECONDARY, TRAFFIC, primary_ttft, true_quantiles
from tests.tuning.synthetic import Target, Traffic, spans, write_jsonl

PATH_S = 0.040  # the offset every recorded TTFT carries: large against the sampling noise, so a miss shows


def with_path(target: Target) -> Target:
    """The same provider seen through a path that adds PATH_S to every time the gateway measures."""
    provider = target.ttft
    return Target(target.provider, target.model, target.kind, lambda rng: provider(rng) + PATH_S, target.price)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The race of tests/tuning/synthetic.py runs on the measured times, as the gateway's does: hedges go at
    # 200 ms of measured time and the slow primaries are cut, censored at measured times too.
    path = tmp_path_factory.mktemp("path") / "traces.jsonl"
    return write_jsonl(path, spans(with_path(PRIMARY), with_path(SECONDARY), TRAFFIC, seed=11))


def test_a_known_path_latency_is_taken_out_of_the_fitted_ttft(recorded: Path) -> None:
    data, _ = fit_scenario(load_recording([recorded]))
    fitted = data["source"]["targets"]["primary"]
    assert fitted["ttft_censored"] > 0.05 * fitted["attempts"]  # censoring is in play
    truth = true_quantiles()
    # As recorded, the distribution is the provider's plus the path ...
    assert fitted["ttft_ms"]["p50"] == pytest.approx(1000 * (truth[0.5] + PATH_S), rel=0.05)
    warnings = apply_overhead(data, {name: Overhead(1000 * PATH_S, "given") for name in data["providers"]})
    assert warnings == []
    # ... and the simulator now waits the provider's own time: the path comes from the run's own loopback.
    profile = parse_profile(data["providers"]["primary"]["profile"])
    rng = random.Random(5)
    draws = sorted(profile.ttft.sample_ms(rng) for _ in range(100_000))
    for q, rel in ((0.5, 0.05), (0.9, 0.07), (0.99, 0.07)):
        assert draws[math.ceil(q * len(draws)) - 1] == pytest.approx(1000 * truth[q], rel=rel), q
    secondary = parse_profile(data["providers"]["secondary"]["profile"])
    rng = random.Random(6)
    lows = sorted(secondary.ttft.sample_ms(rng) for _ in range(20_000))
    assert lows[0] == pytest.approx(80, abs=2) and lows[-1] == pytest.approx(120, abs=2)  # uniform 80-120 ms
    assert fitted["simulator_ttft_ms"]["p50"] == pytest.approx(fitted["ttft_ms"]["p50"] - 40, abs=0.11)
    assert fitted["overhead"] == {"ms": 40.0, "method": "given", "clipped_share": 0.0}
    parse_scenario(data)


def test_the_header_says_what_was_subtracted(recorded: Path) -> None:
    data, _ = fit_scenario(load_recording([recorded]))
    apply_overhead(data, {"primary": Overhead(1.25, "calibrated", samples=400, p10_ms=0.5, p90_ms=2.0,
                                              probe_ms=250.0, rate=40.0, seconds=10.0)})
    text = header(data)
    assert "#   primary: 1.25 ms (calibrated: median over 400 attempts against a fixed 250 ms TTFT at 40.0 req/s " \
           "for 10 s, p10 0.5 ms, p90 2 ms)" in text
    assert "secondary:" not in text.split("measurement path")[1]  # no overhead given: left as recorded


def test_shift_table_clips_at_zero_and_reports_the_clipped_share() -> None:
    table = [[0.0, 2.0], [0.5, 10.0], [1.0, 30.0]]
    shifted, clipped = shift_table(table, 6.0)
    assert shifted == [[0.0, 0], [0.5, 4], [1.0, 24]]
    assert clipped == pytest.approx(0.25)  # 6 ms lies a quarter of the way up, interpolated as sampled
    assert shift_table(table, 0.0) == (table, 0.0)
    assert shift_table(table, 40.0)[1] == 1.0
    assert table_mean(table) == pytest.approx(0.5 * 6 + 0.5 * 20)


def test_a_target_faster_than_the_path_is_warned_about(recorded: Path) -> None:
    data, _ = fit_scenario(load_recording([recorded]))
    warnings = apply_overhead(data, {"secondary": Overhead(200.0, "given")})
    assert len(warnings) == 1 and warnings[0].startswith("secondary: 100.0% of its recorded TTFT is below")


def test_the_calibration_scenario_is_the_fitted_traffic_against_a_known_fixed_ttft(recorded: Path) -> None:
    flaky = Target("primary", "fast", "openai", primary_ttft, Price(0.5, 1.5), error_rate=0.05)
    path = write_jsonl(recorded.parent / "flaky.jsonl", spans(flaky, SECONDARY, Traffic(n=1000, rate=lambda t: (
        10.0 if t < 40 else 40.0)), seed=4))
    data, _ = fit_scenario(load_recording([path]))
    assert data["traffic"]["rates"] and data["providers"]["primary"]["profile"]["error_rate"] > 0
    spec = calibration_scenario(data, seconds=8.0)
    scenario = parse_scenario(spec)
    assert [p.name for p in scenario.policies] == ["via-primary", "via-secondary"]
    assert [p.route for p in scenario.policies] == [{"targets": ["primary"], "hedge": "off"},
                                                    {"targets": ["secondary"], "hedge": "off"}]
    for name in ("primary", "secondary"):
        profile = spec["providers"][name]["profile"]
        fitted = data["providers"][name]["profile"]
        assert profile == {"ttft": pytest.approx(table_mean(fitted["ttft"]["quantiles_ms"]), abs=0.05),
                           "per_token": fitted["per_token"], "output_tokens": fitted["output_tokens"]}
    traffic = scenario.traffic
    assert traffic.rates == () and traffic.duration_s == 8.0
    assert traffic.rate == pytest.approx(max(data["traffic"]["rate"], 200 / 8.0))  # enough samples per target
    assert traffic.stream_share == data["traffic"]["stream_share"]
    assert scenario.provider("primary").price == Price(0.5, 1.5)


def test_the_calibration_reads_recorded_ttft_minus_the_probe(tmp_path: Path) -> None:
    probe_s = 0.250
    offsets = Target("p", "m", "openai", lambda rng: probe_s + rng.uniform(0.001, 0.003), Price(1, 1))
    other = Target("q", "n", "openai", lambda rng: 1.0, Price(1, 1))
    path = write_jsonl(tmp_path / "t.jsonl", spans(offsets, other, Traffic(n=500, delay_s=5.0), seed=2))
    samples = overhead_from_traces(path, "p", "m", 1000 * probe_s)
    assert len(samples) == 500 and min(samples) >= 1.0 - 1e-6 and max(samples) <= 3.0 + 1e-6
    overhead = summarize(samples, probe_ms=250.0, rate=20.0, seconds=25.0)
    assert overhead.ms == pytest.approx(2.0, abs=0.1) and overhead.method == "calibrated"
    assert overhead.p10_ms == pytest.approx(1.2, abs=0.1) and overhead.p90_ms == pytest.approx(2.8, abs=0.1)
    assert overhead_from_traces(path, "q", "n", 1000.0) == []  # never asked: no sample
    with pytest.raises(ValueError, match="no first token"):
        summarize([])


def test_fit_calibrates_the_path_on_loopback_by_default(tmp_path: Path) -> None:
    """The whole command, its calibration a real (short) load test: gateway and simulators on loopback."""
    traces = write_jsonl(tmp_path / "t.jsonl", spans(PRIMARY, SECONDARY, Traffic(n=400, rate=40.0), seed=7))
    out = tmp_path / "fitted.yaml"
    done = subprocess.run([sys.executable, "-m", "loadtest", "fit", str(traces), "-o", str(out),
                           "--calibration-s", "2", "--calibration-out", str(tmp_path / "calibration")],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    source = yaml.safe_load(out.read_text())["source"]
    for name in ("primary", "secondary"):
        overhead = source["targets"][name]["overhead"]
        assert overhead["method"] == "calibrated" and overhead["samples"] >= 150  # 100 req/s for 2 s, minus warm-up
        # The loopback path on a 2-core machine: above 0, far below the provider's own time (bounds that hold loaded).
        assert 0 < overhead["ms"] < 100 and overhead["p10_ms"] <= overhead["ms"] <= overhead["p90_ms"]
    assert (tmp_path / "calibration" / "traces-via-primary.jsonl").exists()
    assert "calibrated: median over" in out.read_text().split("name:")[0]
