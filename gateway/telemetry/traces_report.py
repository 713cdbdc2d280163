"""`gateway traces`: read the JSON-lines span file back and summarise cost against latency.

Per alias (from request spans): what clients saw. Per provider (from attempt spans): what each provider
delivered and cost, hedges and losers included. Latency and TTFT percentiles are over successful requests
(alias) or won attempts (provider), so fast failures do not flatter them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.telemetry import names as n

Span = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True, slots=True)
class GroupSummary:
    name: str
    requests: int  # alias: requests; provider: distinct requests it was sent an attempt in
    errors: int  # alias: requests answered with an error; provider: failed attempts
    latency_ms: Percentiles | None
    ttft_ms: Percentiles | None
    hedge_rate: float | None  # alias: share of requests hedged; provider: share of its attempts that were hedges
    hedge_win_rate: float | None  # share of hedged requests (alias) / hedge attempts (provider) the hedge won
    cost_usd: float
    wasted_cost_usd: float

    @property
    def cost_per_1k_usd(self) -> float | None:
        return self.cost_usd / self.requests * 1000 if self.requests else None


@dataclass(slots=True)
class TraceSummary:
    aliases: list[GroupSummary] = field(default_factory=list)
    providers: list[GroupSummary] = field(default_factory=list)
    bad_lines: int = 0


def percentiles(values: list[float]) -> Percentiles | None:
    """Nearest-rank percentiles: every reported value is one that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return Percentiles(rank(50), rank(95), rank(99))


def read_spans(path: str | Path) -> tuple[list[Span], int]:
    """The spans in a JSON-lines file, and how many lines were not spans (e.g. a line cut by a crash)."""
    spans: list[Span] = []
    bad = 0
    with Path(path).open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                span = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad += 1
                continue
            if isinstance(span, dict) and isinstance(span.get("attributes"), dict):
                spans.append(span)
            else:
                bad += 1
    return spans, bad


def _is_request(span: Span) -> bool:
    return n.DOOR in span["attributes"]


def _is_attempt(span: Span) -> bool:
    return n.ATTEMPT_INDEX in span["attributes"]


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _alias_summary(name: str, requests: list[dict[str, Any]]) -> GroupSummary:
    ok = [a for a in requests if a.get(n.HTTP_STATUS, 200) < 400]
    hedged = [a for a in requests if a.get(n.HEDGED)]
    return GroupSummary(
        name=name, requests=len(requests), errors=len(requests) - len(ok),
        latency_ms=percentiles([a[n.LATENCY_MS] for a in ok if n.LATENCY_MS in a]),
        ttft_ms=percentiles([a[n.TTFT_MS] for a in ok if n.TTFT_MS in a]),
        hedge_rate=_rate(len(hedged), len(requests)),
        hedge_win_rate=_rate(sum(1 for a in hedged if a.get(n.WINNER_LAUNCH) == "hedge"), len(hedged)),
        cost_usd=sum(a.get(n.COST_USD, 0.0) for a in requests),
        wasted_cost_usd=sum(a.get(n.WASTED_COST_USD, 0.0) for a in requests))


def _provider_summary(name: str, attempts: list[Span]) -> GroupSummary:
    sent = [s for s in attempts if s["attributes"].get(n.ATTEMPT_OUTCOME) != "skipped"]
    won = [s for s in sent if s["attributes"].get(n.ATTEMPT_OUTCOME) == "won"]
    hedges = [s["attributes"] for s in sent if s["attributes"].get(n.ATTEMPT_LAUNCH) == "hedge"]
    costs = [s["attributes"].get(n.COST_USD, 0.0) for s in attempts]
    return GroupSummary(
        name=name, requests=len({s.get("parent_id") for s in sent}),
        errors=sum(1 for s in sent if s["attributes"].get(n.ATTEMPT_OUTCOME) == "failed"),
        latency_ms=percentiles([(s["end_ns"] - s["start_ns"]) / 1e6 for s in won
                                if s.get("end_ns") is not None and s.get("start_ns") is not None]),
        ttft_ms=percentiles([s["attributes"][n.TIME_TO_FIRST_CHUNK] * 1000 for s in won
                             if n.TIME_TO_FIRST_CHUNK in s["attributes"]]),
        hedge_rate=_rate(len(hedges), len(sent)),
        hedge_win_rate=_rate(sum(1 for a in hedges if a.get(n.ATTEMPT_OUTCOME) == "won"), len(hedges)),
        cost_usd=sum(costs),
        wasted_cost_usd=sum(c for s, c in zip(attempts, costs, strict=True)
                            if s["attributes"].get(n.ATTEMPT_OUTCOME) != "won"))


def summarize(spans: Iterable[Span]) -> TraceSummary:
    by_alias: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_provider: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        if _is_request(span):
            by_alias[str(span["attributes"].get(n.REQUEST_MODEL, "?"))].append(span["attributes"])
        elif _is_attempt(span):
            by_provider[str(span["attributes"].get(n.PROVIDER, "?"))].append(span)
    return TraceSummary(aliases=[_alias_summary(k, v) for k, v in sorted(by_alias.items())],
                        providers=[_provider_summary(k, v) for k, v in sorted(by_provider.items())])


# ---- text ---------------------------------------------------------------------------------------------------

_HEADER = ("requests", "errors", "p50 ms", "p95 ms", "p99 ms", "ttft p50", "ttft p95", "ttft p99", "hedged",
           "hedge won", "cost $", "wasted $", "$ / 1k req")


def _ms(p: Percentiles | None) -> list[str]:
    return [f"{v:.0f}" for v in (p.p50, p.p95, p.p99)] if p is not None else ["-"] * 3


def _pct(value: float | None) -> str:
    return f"{value * 100:.1f}%" if value is not None else "-"


def _row(g: GroupSummary) -> list[str]:
    per_1k = g.cost_per_1k_usd
    return [g.name, str(g.requests), str(g.errors), *_ms(g.latency_ms), *_ms(g.ttft_ms), _pct(g.hedge_rate),
            _pct(g.hedge_win_rate), f"{g.cost_usd:.6f}", f"{g.wasted_cost_usd:.6f}",
            f"{per_1k:.4f}" if per_1k is not None else "-"]


def _table(title: str, first: str, groups: list[GroupSummary]) -> list[str]:
    rows = [[first, *_HEADER], *(_row(g) for g in groups)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return [title, *(line(r) for r in rows)]


def format_summary(summary: TraceSummary) -> str:
    lines = _table("Per alias (request spans: what clients saw)", "alias", summary.aliases)
    lines += ["", *_table("Per provider (attempt spans: latency and TTFT of won attempts, requests = requests it "
                          "was tried in, errors = failed attempts, hedge won = its hedges that won)",
                          "provider", summary.providers)]
    if summary.bad_lines:
        lines += ["", f"({summary.bad_lines} line(s) skipped: not a span)"]
    return "\n".join(lines)


def load_summary(path: str | Path) -> TraceSummary:
    spans, bad = read_spans(path)
    summary = summarize(spans)
    summary.bad_lines = bad
    return summary


def iter_groups(summary: TraceSummary) -> Iterator[tuple[str, GroupSummary]]:
    for g in summary.aliases:
        yield "alias", g
    for g in summary.providers:
        yield "provider", g
