"""Simulated LLM providers: aiohttp servers that speak the OpenAI and Anthropic wire formats.

Used by the demo, the end-to-end tests and the load-test tool as controllable upstreams:
latency distributions, stalls, errors, mid-stream failures, outage windows and hangs, with counters
that show what reached the provider and how each request ended (and the last few requests themselves:
path, redacted headers, body; `SimStats.recent`, `GET /_sim/requests`).

Besides chat (text, tool calls steered by the last user message, structured answers generated from the
requested JSON schema: see `answers.py`), it serves `POST /v1/embeddings`, `POST /v1/messages/count_tokens`
and `GET /v1/models[/{id}]`; the first two go through the same profile as chat. It also speaks the clouds'
wire formats (Azure OpenAI, Bedrock's event stream and SigV4, Vertex with a Google token endpoint): see
`cloud_routes.py` and docs/cloud-simulators.md for what they reproduce and what they do not.

A profile in YAML (every field optional; times in ms, outage windows in s since start or last reset):

    ttft: {median_ms: 400, sigma: 0.5}   # or 250 (fixed), or [120, 300, 900] (empirical), or
                                         # {quantiles_ms: [[0, 90], [0.5, 400], [1, 3000]]} (interpolated)
    per_token: 20
    output_tokens: 32
    stall_prob: 0.05
    stall_ms: 8000
    error_rate: 0.01
    error_status: 529
    midstream_error_rate: 0.01
    outages: [[30, 45]]
    require_key: sk-sim-1
    prompt_cache: true                   # bill prompt-cache reads and writes as the APIs do (billing.py)
    reasoning_tokens: 64                 # spent (and billed as output) when a request asks for reasoning
"""

from gateway.simulator.profile import Latency, Outage, SimProfile, load_profile_file, parse_latency, parse_profile
from gateway.simulator.server import SimulatedProvider
from gateway.simulator.stats import SimStats, key_fingerprint, redact_headers

__all__ = [
    "Latency",
    "Outage",
    "SimProfile",
    "SimStats",
    "SimulatedProvider",
    "key_fingerprint",
    "load_profile_file",
    "parse_latency",
    "parse_profile",
    "redact_headers",
]
