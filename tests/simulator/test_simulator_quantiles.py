"""The `quantiles` latency: a quantile table sampled with linear interpolation (what `loadtest fit` writes)."""

from __future__ import annotations

import random

import pytest

from gateway.simulator import Latency, parse_profile

TABLE = [[0, 0], [0.5, 100], [1, 300]]


class FixedDraw(random.Random):
    """An RNG whose random() returns the given values in turn, counting the draws."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self.values = list(values)
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self.values.pop(0)


@pytest.mark.parametrize("value", [{"quantiles_ms": TABLE}, {"kind": "quantiles", "quantiles_ms": TABLE}])
def test_parses_with_or_without_kind(value: object) -> None:
    latency = parse_profile({"ttft": value}).ttft
    assert latency == Latency.quantiles([(0, 0), (0.5, 100), (1, 300)])
    assert not latency.is_zero
    assert parse_profile({"ttft": latency.to_dict()}).ttft == latency  # round trip


@pytest.mark.parametrize(("u", "expected"), [(0.0, 0.0), (0.25, 50.0), (0.5, 100.0), (0.75, 200.0),
                                             (0.999, 299.6)])
def test_sample_interpolates_linearly_between_points(u: float, expected: float) -> None:
    rng = FixedDraw(u)
    assert Latency.quantiles([(0, 0), (0.5, 100), (1, 300)]).sample_ms(rng) == pytest.approx(expected)
    assert rng.draws == 1  # exactly one draw per sample, so seeds stay aligned with the other kinds


def test_a_flat_step_reproduces_a_point_mass() -> None:
    # 2% of the mass at 3000 ms (a stall): the table holds it as a flat segment.
    latency = Latency.quantiles([(0, 100), (0.98, 200), (0.9800001, 3000), (1, 3000)])
    draws = [latency.sample_ms(random.Random(i)) for i in range(4000)]
    assert sum(d == pytest.approx(3000) for d in draws) / len(draws) == pytest.approx(0.02, abs=0.008)


def test_samples_follow_the_table() -> None:
    latency = Latency.quantiles([(0, 0), (0.5, 100), (1, 300)])
    rng = random.Random(3)
    draws = sorted(latency.sample_ms(rng) for _ in range(20_000))
    assert draws[len(draws) // 2] == pytest.approx(100, rel=0.03)
    assert draws[int(0.9 * len(draws))] == pytest.approx(260, rel=0.03)
    assert draws[0] >= 0 and draws[-1] <= 300


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ([[0, 1]], "ttft.quantiles_ms: needs at least two"),
        ([[0.1, 1], [1, 2]], "ttft.quantiles_ms: the first q must be 0 and the last 1"),
        ([[0, 1], [0.9, 2]], "ttft.quantiles_ms: the first q must be 0 and the last 1"),
        ([[0, 1], [0.5, 3], [0.5, 4], [1, 5]], "ttft.quantiles_ms[2][0]: q must increase"),
        ([[0, 5], [1, 4]], "ttft.quantiles_ms[1][1]: ms must not decrease"),
        ([[0, -1], [1, 4]], "ttft.quantiles_ms[0][1]: must be >= 0"),
        ([[0, 1], [1]], "ttft.quantiles_ms[1]: must be a [q, ms] pair"),
        ([[0, 1], [1, "x"]], "ttft.quantiles_ms[1][1]: must be a number"),
        ("nope", "ttft.quantiles_ms: must be a list of [q, ms] pairs"),
    ],
)
def test_bad_tables_name_the_field(table: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_profile({"ttft": {"quantiles_ms": table}})
