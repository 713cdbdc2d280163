"""OpenTelemetry traces and metrics of cost versus latency.

`setup_telemetry(config.telemetry, os.environ)` builds a `Telemetry`: its `hooks` turn the engine's reports into
one SERVER span per request and one CLIENT span per attempt plus metrics; `metrics_text()` serves /metrics;
`shutdown()` flushes the exporters. `gateway traces` reads the JSON-lines span file back (see `traces_report`).
"""

from gateway.telemetry.hooks import TelemetryHooks
from gateway.telemetry.jsonl_exporter import JsonLinesSpanExporter
from gateway.telemetry.otel_env import TelemetrySetupError
from gateway.telemetry.pipeline import Telemetry, setup_telemetry
from gateway.telemetry.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE

__all__ = ["PROMETHEUS_CONTENT_TYPE", "JsonLinesSpanExporter", "Telemetry", "TelemetryHooks",
           "TelemetrySetupError", "setup_telemetry"]
