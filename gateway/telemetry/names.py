"""Span and metric attribute names, in one place so the spans, the metrics and `gateway traces` agree.

GenAI names follow the OpenTelemetry GenAI semantic conventions; `gateway.*` names are this gateway's own
(the conventions have no cost, hedging or breaker attributes).
"""

from __future__ import annotations

from typing import Final

# OpenTelemetry semantic conventions
OPERATION: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
TOKEN_TYPE: Final = "gen_ai.token.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
HTTP_STATUS: Final = "http.response.status_code"

# The gateway's own
DOOR: Final = "gateway.door"
STREAM: Final = "gateway.stream"
ATTEMPTS: Final = "gateway.attempts"
HEDGED: Final = "gateway.hedged"
WINNER: Final = "gateway.winner"
WINNER_LAUNCH: Final = "gateway.winner.launch"
HEDGE_DELAY_MS: Final = "gateway.hedge_delay_ms"
TTFT_MS: Final = "gateway.ttft_ms"
LATENCY_MS: Final = "gateway.latency_ms"
COST_USD: Final = "gateway.cost_usd"
WASTED_COST_USD: Final = "gateway.wasted_cost_usd"
HEDGES_SKIPPED: Final = "gateway.hedges_skipped"
RESUMED: Final = "gateway.resumed"  # a committed stream was continued on another target after a mid-stream fault
RESUMES: Final = "gateway.resumes"
RESUMED_AT_TOKENS: Final = "gateway.resumed.at_output_tokens"  # the client's output tokens at the first resume
CACHE: Final = "gateway.cache"
KEY_NAME: Final = "gateway.key.name"
QUEUE_WAIT_MS: Final = "gateway.attempt.queue_wait_ms"
PROVIDER: Final = "gateway.provider"  # the configured provider name (gen_ai.provider.name is its kind)
ATTEMPT_INDEX: Final = "gateway.attempt.index"
ATTEMPT_LAUNCH: Final = "gateway.attempt.launch"
ATTEMPT_OUTCOME: Final = "gateway.attempt.outcome"
SKIP_REASON: Final = "gateway.attempt.skip_reason"
HEDGE_EXPECTED_COST_USD: Final = "gateway.hedge.expected_cost_usd"  # a hedge's cost estimated before sending it
DROPPED_FIELDS: Final = "gateway.dropped_fields"  # client fields a translated provider could not take
USAGE_ESTIMATED: Final = "gateway.usage.estimated"
CACHE_WRITE_LONG_TOKENS: Final = "gateway.usage.cache_write_1h.input_tokens"  # the writes with the long TTL
# The cost by part (they add up to gateway.cost_usd): uncached input, cache reads, cache writes, output.
COST_INPUT_USD: Final = "gateway.cost.input_usd"
COST_CACHE_READ_USD: Final = "gateway.cost.cache_read_usd"
COST_CACHE_WRITE_USD: Final = "gateway.cost.cache_write_usd"
COST_OUTPUT_USD: Final = "gateway.cost.output_usd"
COST_PART: Final = "gateway.cost.part"  # metric label: input | cache_read | cache_write | output
PRICE_SOURCE: Final = "gateway.price.source"  # config | catalog | config+catalog | none
PRICE_CATALOG: Final = "gateway.price.catalog"  # e.g. "genai-prices 0.2.3", when the catalog priced it
PROMPT_CACHE_EXPECTED: Final = "gateway.prompt_cache.expected"  # warm | cold: the provider's cache, as expected
BREAKER_STATE: Final = "gateway.breaker.state"
BREAKER_FROM: Final = "gateway.breaker.from"
BREAKER_TO: Final = "gateway.breaker.to"
HEDGE_SKIP_REASON: Final = "gateway.hedge.skip_reason"

CHAT: Final = "chat"
