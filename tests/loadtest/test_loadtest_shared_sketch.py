"""`python -m loadtest shared-sketch`'s reading of the trace files and its table (the run itself is a benchmark)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from loadtest.__main__ import main
from loadtest.shared_sketch import Span, render, request_spans, summarize


def span(name: str, start_ns: int, delay_ms: float | None, kind: str = "SERVER") -> bytes:
    attributes = {} if delay_ms is None else {"gateway.hedge_delay_ms": delay_ms}
    return orjson.dumps({"name": name, "kind": kind, "start_ns": start_ns, "attributes": attributes})


def test_request_spans_are_the_aliases_in_start_order(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b"\n".join([span("chat chat", 30, 700.0), span("chat chat", 10, 600.0), b"{half",
                                 span("chat sim-a", 20, 650.0, kind="CLIENT"), span("chat other", 5, 1.0),
                                 span("chat chat", 40, None)]))
    assert request_spans(path, "chat") == [Span(10, 600.0), Span(30, 700.0)]
    assert request_spans(tmp_path / "missing.jsonl", "chat") == []


def test_b_and_c_first_requests_against_a_over_the_same_time() -> None:
    spans = {"A": [Span(t, 640.0) for t in range(0, 100, 10)],
             "B": [Span(40, 650.0), Span(50, 640.0), Span(60, 630.0), Span(95, 1.0)],
             "C": [Span(45, 600.0), Span(55, 600.0), Span(65, 700.0)]}
    rows = summarize(spans, requests=3, fallback_ms=600.0)
    assert rows["A"] == {"requests": 3, "min_ms": 640.0, "median_ms": 640.0, "max_ms": 640.0, "at_fallback": 0,
                         "first_learned": 1, "median_vs_a": 1.0}  # A's requests started from 40 to 65
    assert rows["B"]["median_ms"] == 640.0 and rows["B"]["at_fallback"] == 0 and rows["B"]["first_learned"] == 1
    assert rows["C"]["at_fallback"] == 2 and rows["C"]["first_learned"] == 3
    assert rows["C"]["median_vs_a"] == pytest.approx(600 / 640, abs=1e-3)
    table = render({"replicas": rows, "fallback_ms": 600.0, "requests": 3, "warmup_s": 20.0, "policy": "adaptive-p95",
                    "min_samples": 20})
    assert "| C (new, a fresh window) | memory | 3 | 600.0 | 600.0 | 700.0 | 2 | #3 | 0.938 |" in table


def test_an_unknown_policy_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shared-sketch", "--policy", "no-hedge", "--out", str(tmp_path)]) == 1
    assert "not an adaptive policy" in capsys.readouterr().err
