"""The gateway's configuration as plain frozen data. Parsing and validation live in `load`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.config.clouds import CloudOptions, ProviderKind
from gateway.policies.breaker import BreakerOptions
from gateway.policies.budget import BudgetOptions
from gateway.policies.bulkhead import BulkheadOptions
from gateway.policies.cache import CacheOptions
from gateway.policies.latency import AdaptiveDelayOptions
from gateway.policies.ratelimit import RateLimitOptions
from gateway.wire import WireFormat

MAX_ATTEMPTS_CAP = 5


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A gateway key. Logs and traces show its `name`, never the key."""

    key: str = field(repr=False)
    name: str
    limits: RateLimitOptions | None = None  # None: the server-wide `server.limits`


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    keys: tuple[ApiKey, ...] = ()
    max_body_mb: float = 16.0
    # A client may shorten (never lengthen) the request deadline with this header, in seconds.
    deadline_header: str = "x-gateway-timeout-s"
    limits: RateLimitOptions = RateLimitOptions()  # per gateway key, unless the key has its own
    shutdown_grace_s: float = 30.0  # SIGTERM: in-flight requests and streams get this long to finish
    admin_key: str = field(default="", repr=False)  # non-empty: enables POST /admin/reload with this bearer key
    # Time bounds on reading a request, so a slow or silent client cannot hold a connection (and, for a body,
    # a slot in the in-flight count that reload retirement and the drain wait for) forever.
    header_timeout_s: float = 10.0  # from connect, or a keep-alive request's first byte, to its complete head
    body_timeout_s: float = 60.0  # to read the whole body, once the head is in
    idle_timeout_s: float = 75.0  # a keep-alive connection with no new request is closed after this long

    @property
    def api_keys(self) -> tuple[str, ...]:
        return tuple(k.key for k in self.keys)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: ProviderKind  # see gateway.config.clouds; `wire` is the wire format it speaks
    base_url: str
    api_key: str = field(default="", repr=False)
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_connections: int = 256
    pool_timeout_s: float = 10.0  # longest wait for one of the max_connections: local overload, not a fault
    breaker: BreakerOptions = BreakerOptions()
    anthropic_version: str = "2023-06-01"
    bulkhead: BulkheadOptions = BulkheadOptions()  # bound on concurrent attempts to this provider
    responses: bool = False  # OpenAI kind: the server also speaks the Responses API (`{base_url}/responses`)
    # How the provider continues a trailing assistant message (a resumed stream's prefill): None takes the
    # kind's default (Anthropic: natively; OpenAI-compatible: never), "off" never, "continue_final_message"
    # (vLLM, Hugging Face chat templates) or "prefix" (DeepSeek, Mistral: `prefix: true` on the message).
    prefill: str | None = None
    cloud: CloudOptions | None = None  # the settings of the cloud kinds (azure-openai, bedrock, vertex)

    @property
    def wire(self) -> WireFormat:
        return ProviderKind(self.kind).wire


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. A cache price left None is billed as plain input (a provider that does not
    discount cached tokens); a long-TTL write without its own price as a write. `gateway.pricing` turns a
    usage into a cost with it; see `gateway.pricing.catalog` for prices the config leaves out."""

    input_per_mtok: float = 0.0  # uncached prompt tokens
    output_per_mtok: float = 0.0  # reasoning included
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    cache_write_long_per_mtok: float | None = None  # Anthropic's 1 h TTL (2x input where 5 min is 1.25x)
    # Long-context tiers, from the catalog: (start, prices) in ascending order; a prompt of more than `start`
    # tokens (cache reads and writes included) is billed wholly at those prices, as the providers do.
    tiers: tuple[tuple[int, Price], ...] = ()
    source: str = "config"  # "config", "catalog", "config+catalog" (the config's fields win) or "none"

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Uncached input and output only (embeddings, rough estimates); `gateway.pricing.cost` prices a usage
        with its cache reads and writes."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000

    def at(self, prompt_tokens: int) -> Price:
        """The prices that apply to a request of `prompt_tokens` prompt tokens."""
        chosen = self
        for start, tier in self.tiers:
            if prompt_tokens > start:
                chosen = tier
        return chosen


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str
    price: Price = Price()

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    """How one alias hedges. `max_attempts == 1` is plain failover (errors still fall through the targets)."""

    max_attempts: int = 2
    delay_ms: float = 400.0  # fixed delay; 0 races every attempt at once
    adaptive: AdaptiveDelayOptions | None = None  # set when delay_ms was given as "pNN"
    budget: BudgetOptions = BudgetOptions()
    # A hedge the budget refuses is checked again when the request's wait reaches 2, 4, 8... delays (never
    # queued): the budget goes to the requests still waiting, which are the ones most likely stalled.
    rearm: bool = True
    budget_usd_per_hour: float | None = None  # ceiling on the expected cost of this alias's hedges

    @property
    def enabled(self) -> bool:
        return self.max_attempts > 1

    def describe(self) -> str:
        if not self.enabled:
            return "off (failover only)"
        if self.adaptive is not None:
            q = self.adaptive.quantile * 100
            delay = (f"p{q:g} of primary latency, clamped {self.adaptive.min_delay_ms:g}-"
                     f"{self.adaptive.max_delay_ms:g} ms, {self.adaptive.fallback_ms:g} ms until "
                     f"{self.adaptive.min_samples} samples")
        elif self.delay_ms == 0:
            delay = "0 ms (race all)"
        else:
            delay = f"{self.delay_ms:g} ms"
        return f"delay {delay}, max {self.max_attempts} attempts, budget {self.budget.percent:g}%"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    alias: str
    targets: tuple[Target, ...]
    hedge: HedgeConfig = HedgeConfig()
    timeout_s: float | None = None  # whole-request deadline; None: the primary provider's timeout_s
    default_max_tokens: int = 4096  # Anthropic requires max_tokens; used when an OpenAI client sent none
    cache: CacheOptions | None = None  # exact-match response cache for deterministic requests
    # A committed stream silent for this long is a failed attempt (None: only the provider's timeout_s bounds it).
    stream_stall_ms: float | None = None
    resume_max: int = 0  # resumes of a failed or stalled committed stream per request; 0: resume off

    @property
    def resumes(self) -> bool:
        return self.resume_max > 0


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    traces_file: str = "gateway-traces.jsonl"  # used when no OTLP endpoint is configured; "" disables
    capture_content: bool = False
    metrics_key: str = field(default="", repr=False)  # non-empty: GET /metrics needs it as a bearer key


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where rate limits, cached answers and breaker openings live: in this process only (memory), or in a
    Redis that several replicas share (redis). With redis, this process's memory is still the fallback."""

    backend: Literal["memory", "redis"] = "memory"
    url: str = field(default="redis://127.0.0.1:6379/0", repr=False)  # repr=False: it may hold a password
    key_prefix: str = "gw:"  # every key this gateway writes starts with it, so deployments can share a Redis
    timeout_ms: float = 100.0  # per Redis (or hub) call; past it the call falls back to local state
    # With backend memory and `--workers N` > 1: the workers share rate limits, cache, coalescing, breaker
    # openings and /metrics through a hub in the supervisor (False: each worker keeps its own).
    share_workers: bool = True
    # With redis (between replicas) or the workers' hub (between workers): the targets' latency windows, which
    # the adaptive hedge delays and the deadline rule read, are shared as mergeable sketches (False: each
    # process learns alone).
    share_latency: bool = True


@dataclass(frozen=True, slots=True)
class ResponsesConfig:
    """The Responses door's conversation store: each stored response's input and output, kept by the gateway
    (never upstream) so that `previous_response_id` works whichever provider runs the next turn. In this
    process (bounded in entries and bytes), or in Redis with `state.backend: redis` (bounded by the TTL)."""

    ttl_s: float = 3600.0
    max_entries: int = 10_000
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    server: ServerConfig
    providers: Mapping[str, ProviderConfig]
    models: Mapping[str, ModelRoute]
    telemetry: TelemetryConfig = TelemetryConfig()
    state: StateConfig = StateConfig()  # a change takes effect at the next restart, not on reload
    responses: ResponsesConfig = ResponsesConfig()  # a change takes effect at the next restart, like `state`

    def deadline_s(self, route: ModelRoute) -> float:
        if route.timeout_s is not None:
            return route.timeout_s
        return self.providers[route.targets[0].provider].timeout_s
