"""The gateway's metrics: created once, recorded from the hooks, aggregated in place (`gateway.telemetry.aggregate`).

Every series is keyed by a tuple of its label values; its attribute dict (the OpenTelemetry attributes, hence
the Prometheus labels) is built from that key the first time it is seen, by the `_*_attributes` functions
below, always with the same keys in the same order (the /metrics merge across workers matches series by text).
"""

from __future__ import annotations

from typing import Final

from opentelemetry.util.types import Attributes, AttributeValue

from gateway.engine.records import Attempt, Outcome
from gateway.telemetry import names as n
from gateway.telemetry.aggregate import BuildAttributes, Key, MetricSet

# The GenAI semantic conventions' advisory buckets, so dashboards built for them fit.
DURATION_BUCKETS_S: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96,
                             81.92)
TTFT_BUCKETS_S: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                         7.5, 10.0)
TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
                        67108864)

BREAKER_STATE_VALUE: Final = {"closed": 0, "half_open": 1, "open": 2}


def _plain(value: object) -> AttributeValue:
    """A label value as OpenTelemetry takes it: enums (StrEnum) as their string."""
    return value if type(value) in (str, bool, int, float) else str(value)  # type: ignore[return-value]


def _request_attributes(key: Key) -> Attributes:
    alias, door, stream, winner, status, error_type = key
    attrs = {n.REQUEST_MODEL: _plain(alias), n.DOOR: _plain(door), n.STREAM: _plain(stream),
             n.HTTP_STATUS: _plain(status)}
    if winner is not None:
        attrs[n.PROVIDER] = _plain(winner)
    if error_type:
        attrs[n.ERROR_TYPE] = _plain(error_type)
    return attrs


def _labels(*names: str) -> BuildAttributes:
    """Attributes named `names`, valued by the key's items in that order."""
    def build(key: Key) -> Attributes:
        return {name: _plain(value) for name, value in zip(names, key, strict=True)}
    return build


_TTFT_ATTRIBUTES = _labels(n.REQUEST_MODEL, n.PROVIDER, n.STREAM)
_TOKEN_ATTRIBUTES = _labels(n.OPERATION, n.PROVIDER_NAME, n.PROVIDER, n.REQUEST_MODEL, n.TOKEN_TYPE)
_ATTEMPT_ATTRIBUTES = _labels(n.REQUEST_MODEL, n.PROVIDER, n.ATTEMPT_LAUNCH, n.ATTEMPT_OUTCOME)
_COST_ATTRIBUTES = _labels(n.REQUEST_MODEL, n.PROVIDER)
_PART_ATTRIBUTES = _labels(n.REQUEST_MODEL, n.PROVIDER, n.COST_PART)
_SKIP_ATTRIBUTES = _labels(n.REQUEST_MODEL, n.HEDGE_SKIP_REASON)
_BREAKER_ATTRIBUTES = _labels(n.PROVIDER)
_TRANSITION_ATTRIBUTES = _labels(n.PROVIDER, n.BREAKER_FROM, n.BREAKER_TO)


class GatewayMetrics:
    def __init__(self, metrics: MetricSet) -> None:
        self.request_duration = metrics.histogram(
            "gateway.request.duration", "s", "Client request duration through the gateway, to the last byte.",
            DURATION_BUCKETS_S)
        self.time_to_first_token = metrics.histogram(
            "gateway.request.time_to_first_token", "s",
            "From the request's arrival to the winning attempt's first content token.", TTFT_BUCKETS_S)
        self.token_usage = metrics.histogram(
            "gen_ai.client.token.usage", "{token}",
            "Input and output tokens billed per attempt (estimated when a provider was cut off).", TOKEN_BUCKETS)
        self.cost = metrics.counter("gateway.cost", "USD", "Cost of every attempt sent, winners and losers.")
        self.wasted_cost = metrics.counter("gateway.wasted_cost", "USD",
                                           "Cost of attempts that did not win: cancelled hedges and failed attempts.")
        self.cost_parts = metrics.counter("gateway.cost.parts", "USD",
                                          "Cost of every attempt sent, by part: uncached input, cache reads, cache "
                                          "writes, output.")
        self.attempts = metrics.counter("gateway.attempts", "{attempt}", "Attempts by launch reason and outcome.")
        self.hedges_skipped = metrics.counter("gateway.hedges.skipped", "{hedge}",
                                              "Hedges not launched because the budget was spent.")
        self.breaker_transitions = metrics.counter("gateway.breaker.transitions", "{transition}",
                                                   "Circuit breaker state changes.")
        self.breaker_state = metrics.gauge("gateway.breaker.state", "{state}",
                                           "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.")

    def request_finished(self, alias: str, door: str, stream: bool, winner: str | None, status: int,
                         error_type: str | None, latency_s: float | None, ttft_s: float | None) -> None:
        if latency_s is not None:
            self.request_duration.record((alias, door, stream, winner, status, error_type), latency_s,
                                         _request_attributes)
        if ttft_s is not None and winner is not None:
            self.time_to_first_token.record((alias, winner, stream), ttft_s, _TTFT_ATTRIBUTES)

    def attempt_finished(self, alias: str, attempt: Attempt, provider_kind: str) -> None:
        provider, outcome = attempt.provider, attempt.outcome
        self.attempts.add((alias, provider, attempt.launch, outcome), 1, _ATTEMPT_ATTRIBUTES)
        if outcome is Outcome.SKIPPED:
            return
        model, operation = attempt.target.model, attempt.operation
        usage = attempt.billed_usage
        tokens = self.token_usage
        tokens.record((operation, provider_kind, provider, model, "input"), usage.input_tokens, _TOKEN_ATTRIBUTES)
        tokens.record((operation, provider_kind, provider, model, "output"), usage.output_tokens, _TOKEN_ATTRIBUTES)
        # The cache and reasoning counts only when there are some: most short requests have none.
        if usage.cache_read_tokens:
            tokens.record((operation, provider_kind, provider, model, "cache_read"), usage.cache_read_tokens,
                          _TOKEN_ATTRIBUTES)
        if usage.cache_write_tokens:
            tokens.record((operation, provider_kind, provider, model, "cache_write"), usage.cache_write_tokens,
                          _TOKEN_ATTRIBUTES)
        if usage.reasoning_tokens:
            tokens.record((operation, provider_kind, provider, model, "reasoning"), usage.reasoning_tokens,
                          _TOKEN_ATTRIBUTES)
        parts = attempt.cost
        key = (alias, provider)
        self.cost.add(key, parts.total_usd, _COST_ATTRIBUTES)
        if outcome is not Outcome.WON:
            self.wasted_cost.add(key, parts.total_usd, _COST_ATTRIBUTES)
        for part, usd in (("input", parts.input_usd), ("cache_read", parts.cache_read_usd),
                          ("cache_write", parts.cache_write_usd), ("output", parts.output_usd)):
            if usd:
                self.cost_parts.add((alias, provider, part), usd, _PART_ATTRIBUTES)

    def hedge_skipped(self, alias: str, reason: str) -> None:
        self.hedges_skipped.add((alias, reason), 1, _SKIP_ATTRIBUTES)

    def breaker_is(self, provider: str, state: str) -> None:
        self.breaker_state.set((provider,), BREAKER_STATE_VALUE.get(state, -1), _BREAKER_ATTRIBUTES)

    def breaker_changed(self, provider: str, old: str, new: str) -> None:
        self.breaker_is(provider, new)
        self.breaker_transitions.add((provider, old, new), 1, _TRANSITION_ATTRIBUTES)
