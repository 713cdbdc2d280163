"""What fitted scenarios add to the traffic: piecewise-constant arrival rates, quantile tables for prompt and
answer sizes, and the `source` block; the old forms are unchanged."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from loadtest.__main__ import apply_overrides
from loadtest.scenario import ScenarioError, parse_scenario
from loadtest.schedule import build_schedule, poisson_arrivals, varying_arrivals
from loadtest.spec import IntRange
from tests.loadtest.test_loadtest_scenario import MINIMAL


def with_traffic(**traffic: object) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    data["traffic"] = {"rate": 20, "duration_s": 10, **traffic}
    return data


def test_piecewise_rates_give_the_right_counts_per_segment() -> None:
    times = varying_arrivals([(0, 10.0), (50, 40.0), (100, 0.0), (120, 20.0)], 150, random.Random(3))
    counts = [sum(lo <= t < hi for t in times) for lo, hi in ((0, 50), (50, 100), (100, 120), (120, 150))]
    assert counts[0] == pytest.approx(500, rel=0.12)
    assert counts[1] == pytest.approx(2000, rel=0.07)
    assert counts[2] == 0
    assert counts[3] == pytest.approx(600, rel=0.12)
    assert times == sorted(times) and max(times) < 150
    assert len(varying_arrivals([(0, 10.0)], 150, random.Random(3), count=7)) == 7


def test_a_constant_rate_profile_is_a_poisson_process() -> None:
    one = varying_arrivals([(0, 25.0)], 200, random.Random(8))
    assert len(one) == pytest.approx(5000, rel=0.05)
    # The same unit exponentials as the constant-rate generator, scaled: the same arrivals, up to rounding.
    assert one[:50] == pytest.approx(poisson_arrivals(25.0, 200, random.Random(8))[:50])


def test_quantile_tables_draw_their_distribution_with_one_draw_each() -> None:
    table = IntRange(10, 1000, ((0.0, 10.0), (0.5, 100.0), (0.9, 200.0), (1.0, 1000.0)))
    rng = random.Random(2)
    draws = sorted(table.draw(rng) for _ in range(20_000))
    assert draws[0] >= 10 and draws[-1] <= 1000
    assert draws[10_000] == pytest.approx(100, rel=0.05)
    assert draws[18_000] == pytest.approx(200, rel=0.05)
    assert table.mean == pytest.approx(0.5 * 55 + 0.4 * 150 + 0.1 * 600)
    a, b = random.Random(1), random.Random(1)
    table.draw(a)
    b.random()
    assert a.random() == b.random()  # one draw, like a uniform range: later draws stay aligned
    assert table.to_json() == {"quantiles": [[0.0, 10.0], [0.5, 100.0], [0.9, 200.0], [1.0, 1000.0]]}


def test_fitted_traffic_parses_and_schedules() -> None:
    scenario = parse_scenario({**with_traffic(rates=[[0, 5], [5, 50]],
                                              prompt_tokens={"quantiles": [[0, 100], [0.5, 300], [1, 900]]},
                                              max_tokens={"quantiles": [[0, 8], [1, 64]]}),
                               "source": {"requests": 123, "span_s": 9.5}})
    traffic = scenario.traffic
    assert traffic.rates == ((0.0, 5.0), (5.0, 50.0))
    assert (traffic.prompt_tokens.low, traffic.prompt_tokens.high) == (100, 900)
    assert scenario.source == {"requests": 123, "span_s": 9.5}
    plan = build_schedule(traffic, seed=1)
    early = sum(r.at_s < 5 for r in plan)
    assert early < 60 and len(plan) - early > 150  # 5/s then 50/s
    assert all(100 <= r.prompt_tokens <= 900 and 8 <= r.max_tokens <= 64 for r in plan)
    constant = apply_overrides(scenario, duration_s=None, rate=30.0, policies=None)
    assert constant.traffic.rates == () and constant.traffic.rate == 30.0  # --rate replaces the profile


@pytest.mark.parametrize(("traffic", "message"), [
    ({"rates": [[1, 5]]}, "traffic.rates[0][0]: the first rate must start at 0"),
    ({"rates": [[0, 5], [0, 6]]}, "traffic.rates[1][0]: starts must increase"),
    ({"rates": [[0, -1]]}, "traffic.rates[0][1]: must be >= 0"),
    ({"rates": [[0, 0]]}, "traffic.rates: at least one rate must be > 0"),
    ({"rates": [5]}, r"traffic.rates\[0\]: must be a pair"),
    ({"prompt_tokens": {"quantiles": [[0, 5], [0.5, 9]]}}, "traffic.prompt_tokens.quantiles: needs"),
    ({"prompt_tokens": {"quantiles": [[0, 5], [0.5, 3], [1, 9]]}}, r"quantiles\[1\]: q must increase and values"),
    ({"max_tokens": {"table": []}}, "traffic.max_tokens.table: unknown key"),
])
def test_fitted_traffic_errors_name_the_field(traffic: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")
                       if "\\" not in message else message):
        parse_scenario(with_traffic(**traffic))
