"""`python -m loadtest fit`: synthetic traces with known distributions, many slow primaries cut by hedges, in;
a scenario whose simulators reproduce those distributions out."""

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
from loadtest.fit import fit_scenario, int_distribution, rate_profile
from loadtest.procs import REPO_ROOT
from loadtest.scenario import load_scenario, parse_scenario
from tests.tuning.synthetic import Target, Traffic, spans, write_jsonl

STALL_S, STALL_P = 2.0, 0.03


def primary_ttft(rng: random.Random) -> float:
    """Lognormal (median 150 ms, sigma 0.8) plus 3% stalls of 2 s: the heavy tail hedging is for."""
    return rng.lognormvariate(math.log(0.150), 0.8) + (STALL_S if rng.random() < STALL_P else 0.0)


PRIMARY = Target("primary", "fast", "openai", primary_ttft, Price(0.5, 1.5))
SECONDARY = Target("secondary", "steady", "anthropic", lambda rng: rng.uniform(0.08, 0.12), Price(0.8, 4.0))
# Most (80%) of the requests slower than 200 ms get a hedge (as a budget would allow), which then nearly always wins:
# those primaries are censored, and they are the slow ones.
TRAFFIC = Traffic(n=6000, rate=40.0, delay_s=0.2, hedge_share=0.8)


def true_quantiles(n: int = 200_000) -> dict[float, float]:
    rng = random.Random(99)
    values = sorted(primary_ttft(rng) for _ in range(n))
    return {q: values[math.ceil(q * n) - 1] for q in (0.5, 0.9, 0.99)}


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("fit") / "traces.jsonl", spans(PRIMARY, SECONDARY, TRAFFIC, seed=11))


def test_kaplan_meier_recovers_the_tail_that_dropping_the_cut_losers_loses(traces: Path) -> None:
    data, _ = fit_scenario(load_recording([traces]))
    fitted = data["source"]["targets"]["primary"]
    assert fitted["ttft_censored"] > 0.05 * fitted["attempts"]  # a real share of the primaries was cut
    truth = true_quantiles()
    assert fitted["ttft_ms"]["p50"] == pytest.approx(1000 * truth[0.5], rel=0.05)
    assert fitted["ttft_ms"]["p90"] == pytest.approx(1000 * truth[0.9], rel=0.07)
    assert fitted["ttft_ms"]["p99"] == pytest.approx(1000 * truth[0.99], rel=0.07)
    # Ignoring the censored samples drops exactly the slow ones: the stalls fall below 1% and p99 with them.
    assert fitted["ttft_p99_ms_dropping_censored"] < 0.6 * 1000 * truth[0.99]


def test_the_fitted_simulator_profile_samples_the_fitted_distribution(traces: Path) -> None:
    data, _ = fit_scenario(load_recording([traces]))
    profile = parse_profile(data["providers"]["primary"]["profile"])
    assert profile.ttft.kind == "quantiles"
    rng = random.Random(5)
    draws = sorted(profile.ttft.sample_ms(rng) for _ in range(100_000))
    fitted = data["source"]["targets"]["primary"]["ttft_ms"]
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert draws[math.ceil(q * len(draws)) - 1] == pytest.approx(fitted[label], rel=0.03), label
    assert profile.per_token.ms == pytest.approx(5.0, rel=0.02)  # the synthetic gap: 5 ms a token
    assert profile.output_tokens == 40  # the longest answer; max_tokens carries the distribution


def test_the_request_mix_prices_and_header(traces: Path) -> None:
    data, _ = fit_scenario(load_recording([traces]), policies={"off": {"hedge": "off"}}, name="synthetic")
    scenario = parse_scenario(data)
    traffic = scenario.traffic
    assert traffic.rate == pytest.approx(40, rel=0.05) and traffic.rates == ()  # constant: no profile
    assert traffic.stream_share == pytest.approx(0.6, abs=0.03)
    assert traffic.anthropic_share == pytest.approx(0.25, abs=0.03)
    assert (traffic.prompt_tokens.low, traffic.prompt_tokens.high) == (100, 500)
    assert traffic.prompt_tokens.mean == pytest.approx(300, rel=0.03)
    assert (traffic.max_tokens.low, traffic.max_tokens.high) == (10, 40)
    assert scenario.provider("primary").price == Price(0.5, 1.5)
    assert scenario.provider("secondary").kind == "anthropic"
    assert scenario.source is not None and scenario.source["requests"] == 6000
    assert scenario.source["span_s"] == pytest.approx(6000 / 40, rel=0.05)


def test_errors_and_bursts_become_error_rates_and_outages(tmp_path: Path) -> None:
    flaky = Target("primary", "fast", "openai", lambda rng: rng.uniform(0.05, 0.1), Price(0.5, 1.5),
                   error_rate=0.04, outage=(30.0, 40.0))
    path = write_jsonl(tmp_path / "t.jsonl", spans(flaky, SECONDARY, Traffic(n=3000, rate=40.0), seed=3))
    data, _ = fit_scenario(load_recording([path]))
    profile = data["providers"]["primary"]["profile"]
    assert profile["error_rate"] == pytest.approx(0.04, abs=0.01) and profile["error_status"] == 503
    ((start, end),) = profile["outages"]
    assert start == pytest.approx(30.0, abs=0.2) and end == pytest.approx(40.0, abs=0.2)
    assert profile["outage_status"] == 503


def test_a_varying_rate_becomes_a_rate_profile(tmp_path: Path) -> None:
    varying = Traffic(n=2400, rate=lambda t: 10.0 if t < 60 else 40.0)
    data, _ = fit_scenario(load_recording([write_jsonl(tmp_path / "t.jsonl", spans(PRIMARY, SECONDARY, varying))]))
    rates = data["traffic"]["rates"]
    early = [r for start, r in rates if start + 10 < 60]
    late = [r for start, r in rates if start > 70]
    assert sum(early) / len(early) == pytest.approx(10, rel=0.2)
    assert sum(late) / len(late) == pytest.approx(40, rel=0.15)
    assert rate_profile([i / 40 for i in range(2400)], 60.0) is None  # even arrivals: nothing to profile


def test_int_distribution() -> None:
    assert int_distribution([24] * 10) == 24
    table = int_distribution(list(range(1, 101)))
    assert isinstance(table, dict)
    assert table["quantiles"][0] == [0.0, 1] and table["quantiles"][-1] == [1.0, 100]


def test_command_line_writes_a_loadable_scenario(traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "fitted.yaml"
    done = subprocess.run([sys.executable, "-m", "loadtest", "fit", str(traces), "-o", str(out), "--policies",
                           str(REPO_ROOT / "loadtest/scenarios/heavy-tail.yaml"), "--overhead-ms", "1.5"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("# Fitted by `python -m loadtest fit` from 1 trace file(s): 6000 requests of alias chat")
    scenario = load_scenario(out)
    assert scenario.name == "fitted"
    assert [p.name for p in scenario.policies] == ["no-hedge", "fixed-200ms", "adaptive-p95", "race-all"]
    assert scenario.baseline == "no-hedge"
    fitted = yaml.safe_load(text)["source"]["targets"]["primary"]
    assert fitted["ttft_observed"] > 0
    assert fitted["overhead"] == {"ms": 1.5, "method": "given", "clipped_share": 0.0}
    assert "#   primary: 1.5 ms (given (--overhead-ms))" in text
    bad = subprocess.run([sys.executable, "-m", "loadtest", "fit", str(traces), "-o", str(out), "--alias", "nope"],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert bad.returncode == 2 and "no recorded requests for alias 'nope'" in bad.stderr
    negative = subprocess.run([sys.executable, "-m", "loadtest", "fit", str(traces), "-o", str(out),
                               "--overhead-ms", "-3"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert negative.returncode == 2 and "--overhead-ms: must be >= 0, got -3" in negative.stderr


def test_the_reference_fitted_scenario_loads_and_samples_what_its_header_says() -> None:
    scenario = load_scenario(REPO_ROOT / "loadtest/reference/heavy-tail-fitted.yaml")
    assert scenario.source is not None and scenario.source["requests"] == 28844
    profile = parse_profile(scenario.provider("primary").profile)
    rng = random.Random(1)
    draws = sorted(profile.ttft.sample_ms(rng) for _ in range(50_000))
    target = scenario.source["targets"]["primary"]
    simulated, recorded, overhead = target["simulator_ttft_ms"], target["ttft_ms"], target["overhead"]["ms"]
    assert overhead > 0 and target["overhead"]["method"] == "calibrated"
    assert simulated["p50"] == pytest.approx(recorded["p50"] - overhead, abs=0.11)
    assert draws[25_000] == pytest.approx(simulated["p50"], rel=0.03)
    assert draws[49_500] == pytest.approx(simulated["p99"], rel=0.03)
