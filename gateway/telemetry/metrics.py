"""The gateway's OpenTelemetry instruments: created once, recorded from the hooks.

One SDK measurement costs 10-15 us of CPU (it validates and hashes the attributes every time), more than the
rest of the gateway's work on a request. So counters and gauges are kept here as plain sums in dicts (well
under a microsecond) and handed to OpenTelemetry through observable instruments, read once per collection
(a /metrics scrape or an OTLP export). Only the histograms, which the SDK must bucket itself, are
synchronous: per request that is duration and TTFT, plus input and output tokens per attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.util.types import Attributes

from gateway.engine.records import Attempt, Outcome
from gateway.telemetry import names as n

# The GenAI semantic conventions' advisory buckets, so dashboards built for them fit.
DURATION_BUCKETS_S: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96,
                             81.92)
TTFT_BUCKETS_S: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                         7.5, 10.0)
TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
                        67108864)

BREAKER_STATE_VALUE: Final = {"closed": 0, "half_open": 1, "open": 2}

# Histogram attribute combinations are bounded by the config (aliases x providers x a few enums), but error
# types come from upstream: past this many cached dicts the cache starts over rather than grow.
_MAX_CACHED_ATTRIBUTES = 4096

Key = tuple[object, ...]


class ObservedValues:
    """Values by attribute set, kept on the event loop and reported by an observable instrument's callback.

    `add` sums (counters), `set` replaces (gauges). The callback may run on an exporter thread: `list()` of a
    dict's items is one C call under the GIL, so it never sees the dict change size mid-iteration.
    """

    __slots__ = ("_attributes", "_values")

    def __init__(self) -> None:
        self._values: dict[Key, float] = {}
        self._attributes: dict[Key, Attributes] = {}

    def add(self, key: Key, amount: float, build: Callable[[], Attributes]) -> None:
        value = self._values.get(key)
        if value is None:
            self._attributes[key] = build()
            value = 0
        self._values[key] = value + amount

    def set(self, key: Key, value: float, build: Callable[[], Attributes]) -> None:
        if key not in self._attributes:
            self._attributes[key] = build()
        self._values[key] = value

    def get(self, key: Key) -> float | None:
        return self._values.get(key)

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, self._attributes[key]) for key, value in list(self._values.items())]


class GatewayMetrics:
    def __init__(self, meter: Meter) -> None:
        self.request_duration = meter.create_histogram(
            "gateway.request.duration", unit="s",
            description="Client request duration through the gateway, to the last byte.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S)
        self.time_to_first_token = meter.create_histogram(
            "gateway.request.time_to_first_token", unit="s",
            description="From the request's arrival to the winning attempt's first content token.",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS_S)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Input and output tokens billed per attempt (estimated when a provider was cut off).",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)
        self.cost = self._counter(meter, "gateway.cost", "USD", "Cost of every attempt sent, winners and losers.")
        self.wasted_cost = self._counter(meter, "gateway.wasted_cost", "USD",
                                         "Cost of attempts that did not win: cancelled hedges and failed attempts.")
        self.cost_parts = self._counter(meter, "gateway.cost.parts", "USD",
                                        "Cost of every attempt sent, by part: uncached input, cache reads, cache "
                                        "writes, output.")
        self.attempts = self._counter(meter, "gateway.attempts", "{attempt}", "Attempts by launch reason and outcome.")
        self.hedges_skipped = self._counter(meter, "gateway.hedges.skipped", "{hedge}",
                                            "Hedges not launched because the budget was spent.")
        self.breaker_transitions = self._counter(meter, "gateway.breaker.transitions", "{transition}",
                                                 "Circuit breaker state changes.")
        self.breaker_state = ObservedValues()
        meter.create_observable_gauge(
            "gateway.breaker.state", callbacks=[self.breaker_state.observe], unit="{state}",
            description="Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.")
        self._attributes: dict[Key, Attributes] = {}

    @staticmethod
    def _counter(meter: Meter, name: str, unit: str, description: str) -> ObservedValues:
        values = ObservedValues()
        meter.create_observable_counter(name, callbacks=[values.observe], unit=unit, description=description)
        return values

    def _cached(self, key: Key, build: Callable[[], Attributes]) -> Attributes:
        attrs = self._attributes.get(key)
        if attrs is None:
            if len(self._attributes) >= _MAX_CACHED_ATTRIBUTES:
                self._attributes.clear()
            attrs = self._attributes[key] = build()
        return attrs

    def request_finished(self, alias: str, door: str, stream: bool, winner: str | None, status: int,
                         error_type: str | None, latency_s: float | None, ttft_s: float | None) -> None:
        def build() -> Attributes:
            attrs: dict[str, str | bool | int] = {n.REQUEST_MODEL: alias, n.DOOR: door, n.STREAM: stream,
                                                  n.HTTP_STATUS: status}
            if winner is not None:
                attrs[n.PROVIDER] = winner
            if error_type:
                attrs[n.ERROR_TYPE] = error_type
            return attrs

        if latency_s is not None:
            self.request_duration.record(
                latency_s, self._cached(("request", alias, door, stream, winner, status, error_type), build))
        if ttft_s is not None and winner is not None:
            self.time_to_first_token.record(ttft_s, self._cached(("ttft", alias, winner, stream), lambda: {
                n.REQUEST_MODEL: alias, n.PROVIDER: winner, n.STREAM: stream}))

    def attempt_finished(self, alias: str, attempt: Attempt, provider_kind: str) -> None:
        provider, launch, outcome = attempt.provider, str(attempt.launch), str(attempt.outcome)
        self.attempts.add((alias, provider, launch, outcome), 1, lambda: {
            n.REQUEST_MODEL: alias, n.PROVIDER: provider, n.ATTEMPT_LAUNCH: launch, n.ATTEMPT_OUTCOME: outcome})
        if attempt.outcome is Outcome.SKIPPED:
            return
        model = attempt.target.model
        usage = attempt.billed_usage
        # The cache and reasoning counts only when there are some: each measurement costs 10-15 us, and most
        # short requests have none.
        counts = [("input", usage.input_tokens), ("output", usage.output_tokens)]
        counts.extend((token_type, count) for token_type, count in (
            ("cache_read", usage.cache_read_tokens), ("cache_write", usage.cache_write_tokens),
            ("reasoning", usage.reasoning_tokens)) if count)
        for token_type, count in counts:
            self.token_usage.record(count, self._cached(
                ("tokens", provider, model, token_type, attempt.operation),
                _token_attributes(attempt.operation, provider_kind, provider, model, token_type)))
        parts = attempt.cost
        cost = parts.total_usd

        def cost_attributes() -> Attributes:
            return {n.REQUEST_MODEL: alias, n.PROVIDER: provider}

        self.cost.add((alias, provider), cost, cost_attributes)
        if attempt.outcome is not Outcome.WON:
            self.wasted_cost.add((alias, provider), cost, cost_attributes)
        for part, usd in (("input", parts.input_usd), ("cache_read", parts.cache_read_usd),
                          ("cache_write", parts.cache_write_usd), ("output", parts.output_usd)):
            if usd:
                self.cost_parts.add((alias, provider, part), usd, _part_attributes(alias, provider, part))

    def hedge_skipped(self, alias: str, reason: str) -> None:
        self.hedges_skipped.add((alias, reason), 1, lambda: {n.REQUEST_MODEL: alias, n.HEDGE_SKIP_REASON: reason})

    def breaker_is(self, provider: str, state: str) -> None:
        self.breaker_state.set((provider,), BREAKER_STATE_VALUE.get(state, -1), lambda: {n.PROVIDER: provider})

    def breaker_changed(self, provider: str, old: str, new: str) -> None:
        self.breaker_is(provider, new)
        self.breaker_transitions.add((provider, old, new), 1, lambda: {
            n.PROVIDER: provider, n.BREAKER_FROM: old, n.BREAKER_TO: new})


def _token_attributes(operation: str, provider_kind: str, provider: str, model: str,
                      token_type: str) -> Callable[[], Attributes]:
    return lambda: {n.OPERATION: operation, n.PROVIDER_NAME: provider_kind, n.PROVIDER: provider,
                    n.REQUEST_MODEL: model, n.TOKEN_TYPE: token_type}


def _part_attributes(alias: str, provider: str, part: str) -> Callable[[], Attributes]:
    return lambda: {n.REQUEST_MODEL: alias, n.PROVIDER: provider, n.COST_PART: part}
