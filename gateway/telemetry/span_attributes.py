"""The attributes of the request span (SERVER) and the attempt spans (CLIENT), built from the engine's records.

Only numbers, names and enums: never a key, and never prompt or completion text (that is `content_attributes`,
called only when `telemetry.capture_content` is on).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.engine import Attempt, AttemptStarted, Outcome, RequestStarted, RequestSummary
from gateway.pricing.catalog import catalog_name
from gateway.pricing.usage import Cost
from gateway.telemetry import names as n
from gateway.wire import Json

Attrs = dict[str, Any]


def request_start(event: RequestStarted) -> Attrs:
    return {n.OPERATION: event.endpoint, n.REQUEST_MODEL: event.alias, n.DOOR: str(event.door),
            n.STREAM: event.stream}


def request_end(record: RequestSummary) -> Attrs:
    cost = record.cost
    attrs: Attrs = {
        n.ATTEMPTS: record.sent_attempts,
        n.HEDGED: record.hedged,
        n.HEDGES_SKIPPED: record.hedges_skipped,
        n.COST_USD: cost.total_usd,
        n.WASTED_COST_USD: record.wasted_cost_usd,
        n.HTTP_STATUS: record.status,
        n.RESUMED: record.resumed,
    }
    _cost_parts(attrs, cost)
    if record.resumed:
        attrs[n.RESUMES] = record.resumes
        if record.resumed_at_tokens is not None:
            attrs[n.RESUMED_AT_TOKENS] = record.resumed_at_tokens
    attrs[n.LATENCY_MS] = record.latency_s * 1000
    if record.ttft_s is not None:
        attrs[n.TTFT_MS] = record.ttft_s * 1000
    if record.hedge_delay_s is not None:
        attrs[n.HEDGE_DELAY_MS] = record.hedge_delay_s * 1000
    winner = record.winner
    if winner is not None:
        attrs[n.WINNER] = winner.provider
        attrs[n.WINNER_LAUNCH] = str(winner.launch)
    if record.error_type:
        attrs[n.ERROR_TYPE] = record.error_type
    if record.cache is not None:
        attrs[n.CACHE] = record.cache
    if record.key_name is not None:
        attrs[n.KEY_NAME] = record.key_name
    return attrs


def content(body: Json) -> Attrs:
    """Opt-in only: the client's messages (and Anthropic's top-level system prompt) as JSON strings."""
    attrs: Attrs = {n.INPUT_MESSAGES: orjson.dumps(body.get("messages", [])).decode()}
    system = body.get("system")
    if system is not None:
        attrs[n.SYSTEM_INSTRUCTIONS] = orjson.dumps(system).decode()
    return attrs


def attempt_start(attempt: AttemptStarted | Attempt, provider_kind: str) -> Attrs:
    target = attempt.target
    attrs: Attrs = {
        n.OPERATION: attempt.operation,
        n.PROVIDER_NAME: provider_kind,
        n.PROVIDER: target.provider,
        n.REQUEST_MODEL: target.model,
        n.ATTEMPT_INDEX: attempt.index,
        n.ATTEMPT_LAUNCH: str(attempt.launch),
        n.BREAKER_STATE: attempt.breaker_state,
    }
    if attempt.server_address:
        attrs[n.SERVER_ADDRESS] = attempt.server_address
        attrs[n.SERVER_PORT] = attempt.server_port
    if isinstance(attempt, AttemptStarted):  # known when it is sent (a skipped attempt sent nothing)
        if attempt.dropped_fields:
            attrs[n.DROPPED_FIELDS] = attempt.dropped_fields
        if attempt.expected_cost_usd is not None:
            attrs[n.HEDGE_EXPECTED_COST_USD] = attempt.expected_cost_usd
    return attrs


def _cost_parts(attrs: Attrs, cost: Cost) -> None:
    attrs[n.COST_INPUT_USD] = cost.input_usd
    attrs[n.COST_CACHE_READ_USD] = cost.cache_read_usd
    attrs[n.COST_CACHE_WRITE_USD] = cost.cache_write_usd
    attrs[n.COST_OUTPUT_USD] = cost.output_usd


def attempt_end(attempt: Attempt) -> Attrs:
    if attempt.outcome is Outcome.SKIPPED:
        return {n.ATTEMPT_OUTCOME: str(attempt.outcome), n.COST_USD: 0.0,
                n.SKIP_REASON: attempt.skip_reason or "unknown", n.BREAKER_STATE: attempt.breaker_state}
    cost = attempt.cost
    usage = attempt.billed_usage
    attrs: Attrs = {n.ATTEMPT_OUTCOME: str(attempt.outcome), n.COST_USD: cost.total_usd}
    _cost_parts(attrs, cost)
    source = attempt.target.price.source
    attrs[n.PRICE_SOURCE] = source
    if "catalog" in source:
        attrs[n.PRICE_CATALOG] = catalog_name()
    if attempt.queue_wait_s:
        attrs[n.QUEUE_WAIT_MS] = attempt.queue_wait_s * 1000
    attrs[n.INPUT_TOKENS] = usage.input_tokens
    attrs[n.OUTPUT_TOKENS] = usage.output_tokens
    attrs[n.USAGE_ESTIMATED] = attempt.usage_estimated
    # As billed: the provider's figures, or for an attempt cut before its usage the expected split.
    if attempt.cached_input_tokens is not None or usage.cache_read_tokens:
        attrs[n.CACHE_READ_TOKENS] = usage.cache_read_tokens
    if attempt.cache_write_tokens is not None or usage.cache_write_tokens:
        attrs[n.CACHE_WRITE_TOKENS] = usage.cache_write_tokens
    if usage.cache_write_long_tokens:
        attrs[n.CACHE_WRITE_LONG_TOKENS] = usage.cache_write_long_tokens
    if attempt.reasoning_tokens is not None:
        attrs[n.REASONING_TOKENS] = attempt.reasoning_tokens
    if attempt.expected is not None and attempt.expected.cache != "none":
        attrs[n.PROMPT_CACHE_EXPECTED] = attempt.expected.cache
    if attempt.response_model is not None:
        attrs[n.RESPONSE_MODEL] = attempt.response_model
    if attempt.finish_reason is not None:
        attrs[n.FINISH_REASONS] = (attempt.finish_reason,)
    if attempt.first_token_s is not None:
        attrs[n.TIME_TO_FIRST_CHUNK] = attempt.first_token_s
    if attempt.error is not None:
        attrs[n.ERROR_TYPE] = attempt.error.error_type or "error"
    return attrs
