"""Simulated LLM providers: aiohttp servers that speak the OpenAI and Anthropic wire formats.

Used by the demo, the end-to-end tests and the load-test tool as controllable upstreams:
latency distributions, stalls, errors, mid-stream failures, outage windows and hangs, with counters
that show what reached the provider and how each request ended.
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
