"""Command line: `gateway serve`, `gateway check-config`, `gateway traces`, `gateway tune`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.config.clouds import AzureOptions, BedrockOptions, VertexOptions
from gateway.config.model import ProviderConfig
from gateway.logs import setup_logging
from gateway.pricing.catalog import catalog_name, unpriced_warnings
from gateway.pricing.catalog import describe as describe_price
from gateway.server.serve import serve, supervise
from gateway.telemetry import TelemetrySetupError

log = logging.getLogger("gateway")


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional: plain asyncio works, a little slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def describe_auth(p: ProviderConfig) -> str:
    """How a provider authenticates, in a few words (never a credential)."""
    cloud = p.cloud
    if isinstance(cloud, AzureOptions):
        return f"auth {cloud.auth}, {'v1 URLs' if cloud.v1 else f'api-version {cloud.api_version}'}"
    if isinstance(cloud, BedrockOptions):
        source = ("configured keys" if cloud.access_key_id else f"profile {cloud.aws_profile}" if cloud.aws_profile
                  else "default credential chain")
        return f"region {cloud.region}, " + ("Bedrock API key" if cloud.auth == "api-key" else f"SigV4, {source}")
    if isinstance(cloud, VertexOptions):
        return (f"project {cloud.project}, region {cloud.region}, "
                + ("service-account file" if cloud.credentials_file else "application-default credentials"))
    return f"key {'set' if p.api_key else 'none'}"


def describe(config: GatewayConfig) -> str:
    lines = [f"server: http://{config.server.host}:{config.server.port} "
             f"({'keys required' if config.server.api_keys else 'no gateway keys: open'})",
             f"state: {config.state.backend}" + (" (rate limits, cache and breaker openings shared through Redis)"
                                                 if config.state.backend == "redis" else " (this process only)"),
             "providers:"]
    for p in config.providers.values():
        lines.append(f"  {p.name}: {p.kind} at {p.base_url} (timeout {p.timeout_s:g} s, breaker "
                     f"{p.breaker.fail_max} failures / {p.breaker.reset_timeout_s:g} s, "
                     f"{describe_auth(p)})")
    lines.append("routes:")
    for route in config.models.values():
        lines.append(f"  {route.alias}: hedge {route.hedge.describe()}; deadline {config.deadline_s(route):g} s")
        for i, t in enumerate(route.targets):
            role = "primary" if i == 0 else f"backup {i}"
            lines.append(f"    {i + 1}. {t.provider} / {t.model} ({role}; {describe_price(t.price)})")
    lines.append(f"prices: configured, else the {catalog_name()} catalog (bundled, never fetched)")
    lines.extend(f"  warning: {warning}" for warning in unpriced_warnings(config))
    return "\n".join(lines)


def traces(path: str, plot: str | None) -> int:
    from gateway.telemetry.traces_report import format_summary, load_summary

    try:
        summary = load_summary(path)
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if not summary.aliases and not summary.providers:
        print(f"{path}: no gateway spans")
        return 1
    print(format_summary(summary))
    if plot:
        from gateway.telemetry.traces_plot import plot_cost_latency

        points = plot_cost_latency(summary, plot)
        print(f"\nplot: {plot} ({points} points)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description="A hedging LLM gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the gateway")
    p_serve.add_argument("--config", required=True, help="path to the YAML config")
    p_serve.add_argument("--host", help="override server.host")
    p_serve.add_argument("--port", type=int, help="override server.port")
    p_serve.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                         help="worker processes sharing the port (default: one per core, %(default)s here)")
    p_serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    p_serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default: %(default)s)")
    p_serve.add_argument("--log-format", choices=("json", "text"), default="json")
    p_check = sub.add_parser("check-config", help="validate a config and print the resolved routes")
    p_check.add_argument("path")
    p_traces = sub.add_parser("traces", help="summarise a JSON-lines span file: latency, hedging, cost")
    p_traces.add_argument("file", nargs="?", default="gateway-traces.jsonl",
                          help="span file written by the gateway (default: %(default)s)")
    p_traces.add_argument("--plot", metavar="FILE.png", help="also draw cost against latency to this image")
    from gateway.tuning import command as tune_command

    p_tune = sub.add_parser("tune", help="replay recorded traces through candidate hedge policies, offline")
    tune_command.add_arguments(p_tune)
    args = parser.parse_args(argv)
    if args.command == "traces":
        return traces(args.file, args.plot)
    if args.command == "tune":
        return tune_command.run(args)

    setup_logging(getattr(args, "log_level", "INFO"), getattr(args, "log_format", "text"))
    path = args.config if args.command == "serve" else args.path
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        print(f"{path}: OK")
        print(describe(config))
        return 0
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        return supervise(args.workers, ["serve", "--config", path, "--host", args.host or config.server.host,
                                        "--port", str(args.port or config.server.port), "--log-level",
                                        args.log_level, "--log-format", args.log_format], config.state)
    _install_uvloop()
    try:
        asyncio.run(serve(config, args.host or config.server.host, args.port or config.server.port,
                          config_path=path, reuse_port=args.reuse_port))
    except TelemetrySetupError as exc:
        print(f"telemetry error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0
