"""What a policy's traffic cost: from the gateway's trace spans when it writes them, else from the simulators.

Telemetry is the better source: the gateway prices every attempt (partial streams included) as it bills them.
The fallback rebuilds the same figures from the outside: every upstream request that was not refused is
billed its prompt, every token a simulator wrote is billed as output, and the winners' share is priced
from what the client received. Wasted cost is the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from loadtest.client import RequestResult
from loadtest.spec import ProviderSpec

TELEMETRY = "telemetry"
COUNTERS = "simulator counters"


@dataclass(frozen=True, slots=True)
class CostTotals:
    source: str  # TELEMETRY or COUNTERS
    total_usd: float
    winners_usd: float  # what the answers the clients got cost
    wasted_usd: float  # attempts that lost (or failed after being billed)
    hedged_requests: int | None = None  # from telemetry only: requests with at least one hedge launched
    spans: int = 0  # telemetry request spans read
    # From telemetry only: USD by part (input = uncached input, cache_read, cache_write, output), all attempts
    # and the attempts that did not win; the hedges' cost expected before sending and what they cost.
    parts: dict[str, float] | None = None
    wasted_parts: dict[str, float] | None = None
    hedges: int = 0
    hedge_expected_usd: float = 0.0
    hedge_actual_usd: float = 0.0
    warmup_usd: float = 0.0  # the policy's warm-up requests (their own alias), not in total_usd

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PARTS = ("input", "cache_read", "cache_write", "output")


def read_trace_costs(path: Path, alias: str, warm_aliases: Sequence[str] = ()) -> CostTotals | None:
    """Sum the `chat {alias}` request spans of a JSON-lines trace file, and their attempt spans by part; None if
    there are none to read. The warm-up aliases' request spans give the warm-up cost.

    Defensive: the file is another component's output, possibly half-written; lines that are not JSON
    objects, or spans without the attributes, are skipped.
    """
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return None
    name = f"chat {alias}"
    warm_names = {f"chat {a}" for a in warm_aliases}
    total = wasted = warmup = 0.0
    hedged = spans = 0
    requests: set[object] = set()
    attempts: list[tuple[object, dict[str, Any]]] = []
    for line in lines:
        try:
            span = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(span, dict):
            continue
        attrs = _attributes(span.get("attributes"))
        # Attempt spans are named `chat {model}`: when a target's model equals the alias they share the name.
        if span.get("kind") == "CLIENT" or "gateway.attempt.index" in attrs:
            attempts.append((span.get("parent_id"), attrs))
            continue
        cost = attrs.get("gateway.cost_usd")
        if not isinstance(cost, int | float) or isinstance(cost, bool):
            continue
        if span.get("name") in warm_names:
            warmup += float(cost)
            continue
        if span.get("name") != name:
            continue
        requests.add(span.get("span_id"))
        spans += 1
        total += float(cost)
        waste = attrs.get("gateway.wasted_cost_usd")
        wasted += float(waste) if isinstance(waste, int | float) else 0.0
        hedged += attrs.get("gateway.hedged") is True
    if spans == 0:
        return None
    parts = dict.fromkeys(PARTS, 0.0)
    wasted_parts = dict.fromkeys(PARTS, 0.0)
    hedges, expected, actual = 0, 0.0, 0.0
    for parent, attrs in attempts:
        if parent not in requests:
            continue
        lost = attrs.get("gateway.attempt.outcome") != "won"
        for part in PARTS:
            usd = _number(attrs.get(f"gateway.cost.{part}_usd"))
            parts[part] += usd
            if lost:
                wasted_parts[part] += usd
        if "gateway.hedge.expected_cost_usd" in attrs:
            hedges += 1
            expected += _number(attrs["gateway.hedge.expected_cost_usd"])
            actual += _number(attrs.get("gateway.cost_usd"))
    return CostTotals(source=TELEMETRY, total_usd=total, winners_usd=total - wasted, wasted_usd=wasted,
                      hedged_requests=hedged, spans=spans, parts=parts, wasted_parts=wasted_parts, hedges=hedges,
                      hedge_expected_usd=expected, hedge_actual_usd=actual, warmup_usd=warmup)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _attributes(raw: object) -> dict[str, Any]:
    """A span's attributes as a plain dict: accepts a dict, or OTLP's list of {key, value: {xValue: v}}."""
    if isinstance(raw, dict):
        return raw
    out: dict[str, Any] = {}
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                value = item.get("value")
                if isinstance(value, dict) and len(value) == 1:
                    value = next(iter(value.values()))
                out[item["key"]] = value
    return out


def counter_costs(providers: Sequence[ProviderSpec], upstream: Mapping[str, Mapping[str, Any]],
                  results: Sequence[RequestResult]) -> CostTotals:
    """Rebuild the costs from the simulators' counters and the answers the client received."""
    prices = {p.name: p.price for p in providers}
    mean_prompt = sum(r.input_tokens for r in results) / len(results) if results else 0.0
    total = 0.0
    for name, counters in upstream.items():
        price = prices[name]
        # Refused (error) requests are not billed; completed and cancelled ones are billed their prompt.
        billed_prompts = int(counters.get("completed", 0)) + int(counters.get("disconnected", 0))
        total += price.cost_usd(0, int(counters.get("tokens_sent", 0)))
        total += billed_prompts * mean_prompt * price.input_per_mtok / 1_000_000
    winners = sum(prices[r.provider].cost_usd(r.input_tokens, r.output_tokens)
                  for r in results if r.ok and r.provider in prices)
    return CostTotals(source=COUNTERS, total_usd=total, winners_usd=winners, wasted_usd=max(0.0, total - winners))
