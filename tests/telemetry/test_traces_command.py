"""`gateway traces`: the summary of a small span file whose numbers are known, and the cost/latency plot."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli import main
from gateway.telemetry.traces_report import load_summary, percentiles

_ids = itertools.count(1)
MS = 1_000_000


def request(alias: str, latency_ms: float, *, cost: float, wasted: float = 0.0, ttft_ms: float | None = None,
            hedged: bool = False, winner_launch: str = "primary", status: int = 200) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.request.model": alias, "gateway.door": "openai", "gateway.latency_ms": latency_ms,
                             "gateway.hedged": hedged, "gateway.cost_usd": cost, "gateway.wasted_cost_usd": wasted,
                             "http.response.status_code": status, "gateway.winner.launch": winner_launch}
    if ttft_ms is not None:
        attrs["gateway.ttft_ms"] = ttft_ms
    return {"name": f"chat {alias}", "kind": "SERVER", "span_id": f"{next(_ids):016x}", "parent_id": None,
            "start_ns": 0, "end_ns": int(latency_ms * MS), "attributes": attrs}


def attempt(parent: dict[str, Any], provider: str, outcome: str, *, launch: str = "primary", cost: float = 0.0,
            duration_ms: float = 10, ttfc_s: float | None = None) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gateway.provider": provider, "gateway.attempt.index": 0,
                             "gateway.attempt.outcome": outcome, "gateway.attempt.launch": launch,
                             "gateway.cost_usd": cost}
    if ttfc_s is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = ttfc_s
    return {"name": "chat m", "kind": "CLIENT", "span_id": f"{next(_ids):016x}", "parent_id": parent["span_id"],
            "start_ns": 5 * MS, "end_ns": int((5 + duration_ms) * MS), "attributes": attrs}


@pytest.fixture
def span_file(tmp_path: Path) -> Path:
    r1 = request("a", 100, cost=0.001, ttft_ms=50)
    r2 = request("a", 200, cost=0.003, wasted=0.001, ttft_ms=60, hedged=True, winner_launch="hedge")
    r3 = request("a", 300, cost=0.002, wasted=0.0005, ttft_ms=70, hedged=True)
    r4 = request("a", 400, cost=0.001)
    r5 = request("a", 5000, cost=0.0, status=502)
    spans = [r1, r2, r3, r4, r5,
             attempt(r1, "p1", "won", cost=0.001, duration_ms=100, ttfc_s=0.05),
             attempt(r2, "p1", "cancelled", cost=0.001),
             attempt(r5, "p1", "failed"),
             attempt(r4, "p1", "skipped"),
             attempt(r2, "p2", "won", launch="hedge", cost=0.002, duration_ms=150, ttfc_s=0.04),
             attempt(r3, "p2", "cancelled", launch="hedge", cost=0.0005)]
    path = tmp_path / "spans.jsonl"
    path.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in spans) + b'{"cut off mid-wri\n\n')
    return path


def test_percentiles_are_nearest_rank() -> None:
    p = percentiles([400, 100, 300, 200])
    assert p is not None and (p.p50, p.p95, p.p99) == (200, 400, 400)
    assert percentiles([]) is None


def test_summary_per_alias_and_per_provider(span_file: Path) -> None:
    summary = load_summary(span_file)
    assert summary.bad_lines == 1
    (a,) = summary.aliases
    assert (a.name, a.requests, a.errors) == ("a", 5, 1)
    assert a.latency_ms is not None and (a.latency_ms.p50, a.latency_ms.p95, a.latency_ms.p99) == (200, 400, 400)
    assert a.ttft_ms is not None and (a.ttft_ms.p50, a.ttft_ms.p99) == (60, 70)
    assert a.hedge_rate == pytest.approx(0.4) and a.hedge_win_rate == pytest.approx(0.5)
    assert a.cost_usd == pytest.approx(0.007) and a.wasted_cost_usd == pytest.approx(0.0015)
    assert a.cost_per_1k_usd == pytest.approx(1.4)
    p1, p2 = summary.providers
    assert (p1.name, p1.requests, p1.errors) == ("p1", 3, 1)  # the skipped attempt was never sent
    assert p1.latency_ms is not None and p1.latency_ms.p50 == 100
    assert p1.hedge_rate == 0 and p1.hedge_win_rate is None
    assert p1.cost_usd == pytest.approx(0.002) and p1.wasted_cost_usd == pytest.approx(0.001)
    assert (p2.name, p2.requests, p2.errors) == ("p2", 2, 0)
    assert p2.ttft_ms is not None and p2.ttft_ms.p50 == pytest.approx(40)
    assert p2.hedge_rate == 1 and p2.hedge_win_rate == pytest.approx(0.5)
    assert p2.cost_per_1k_usd == pytest.approx(1.25)


def test_command_prints_the_tables_and_plots(span_file: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "tradeoff.png"
    assert main(["traces", str(span_file), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    alias_row = next(line for line in lines if line.startswith("a "))
    assert alias_row.split() == ["a", "5", "1", "200", "400", "400", "60", "70", "70", "40.0%", "50.0%",
                                 "0.007000", "0.001500", "1.4000"]
    p1_row = next(line for line in lines if line.startswith("p1 "))
    assert p1_row.split()[:4] == ["p1", "3", "1", "100"] and p1_row.split()[10] == "-"
    assert "1 line(s) skipped" in out and "plot:" in out and "(3 points)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_reports_a_missing_or_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", str(tmp_path / "nope.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["traces", str(empty)]) == 1
