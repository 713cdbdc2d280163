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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_trace_costs(path: Path, alias: str) -> CostTotals | None:
    """Sum the `chat {alias}` request spans of a JSON-lines trace file; None if there are none to read.

    Defensive: the file is another component's output, possibly half-written; lines that are not JSON
    objects, or spans without the attributes, are skipped.
    """
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return None
    name = f"chat {alias}"
    total = wasted = 0.0
    hedged = spans = 0
    for line in lines:
        try:
            span = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(span, dict) or span.get("name") != name:
            continue
        attrs = _attributes(span.get("attributes"))
        # Attempt spans are named `chat {model}`: when a target's model equals the alias they share the name.
        if span.get("kind") == "CLIENT" or "gateway.attempt.index" in attrs:
            continue
        cost = attrs.get("gateway.cost_usd")
        if not isinstance(cost, int | float) or isinstance(cost, bool):
            continue
        spans += 1
        total += float(cost)
        waste = attrs.get("gateway.wasted_cost_usd")
        wasted += float(waste) if isinstance(waste, int | float) else 0.0
        hedged += attrs.get("gateway.hedged") is True
    if spans == 0:
        return None
    return CostTotals(source=TELEMETRY, total_usd=total, winners_usd=total - wasted, wasted_usd=wasted,
                      hedged_requests=hedged, spans=spans)


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
