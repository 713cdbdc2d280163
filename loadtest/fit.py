"""`python -m loadtest fit TRACES.jsonl ... -o scenario.yaml`: a scenario whose simulated providers reproduce the
recorded ones.

Per target (provider, model), from `gateway.tuning.model` (cut losers as censored samples, Kaplan-Meier):
- time to first token: the KM curve as a `quantiles` latency table (stalls included: they are part of the
  distribution, not a separate knob), the tail beyond the last observed value as `gateway/tuning/survival.py`
  documents;
- time between tokens: the median gap of complete answers, fixed (the simulator draws a gap per token, so a
  per-token distribution would average out over an answer anyway);
- output length: the target answers at most its longest recorded answer, and each request's `max_tokens` is
  drawn from the recorded answers' lengths, so the lengths come out as recorded (a recorded request's own
  `max_tokens` is not in the traces);
- errors: the background rate and the most common status of failures before the first token, mid-stream
  failures, and bursts as outage windows on the recording's timeline.

Traffic: the arrival rate (piecewise constant when it varied beyond Poisson noise), the door and streaming
shares, and the prompt sizes as a quantile table.

The measurement path: a recorded TTFT is the provider's time plus the path between the gateway and it; run on
loopback, the fitted simulator gets the loopback path added once more. `apply_overhead` takes each target's
share of the path out of its TTFT table, measured by `loadtest.fit_overhead.calibrate` (the default) or given.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.tuning.model import TargetModel, fit_targets, latency_samples
from gateway.tuning.records import RecordedRequest, Recording, load_recording
from gateway.tuning.survival import Sample, SurvivalCurve, survival_summary
from loadtest.fit_overhead import CALIBRATION_S, Overhead, calibrate, shift_table
from loadtest.scenario import ScenarioError, parse_scenario

DEFAULT_POLICIES: dict[str, Any] = {
    "no-hedge": {"hedge": "off"},
    "adaptive-p95": {"hedge": {"delay_ms": "p95", "budget_percent": 10}},
    "race-all": {"hedge": {"delay_ms": 0, "max_attempts": 2, "budget_percent": 100}},
}
MIN_BIN_S = 5.0  # rate-profile bins are at least this wide, and at most 30 over the recording
TAIL_WARNING = 0.01  # warn when this much of a TTFT distribution lies beyond its last observed value
CLIP_WARNING = 0.05  # warn when this much of a TTFT distribution lies below the measurement path's latency


def fit_scenario(recording: Recording, *, alias: str | None = None, name: str = "fitted",
                 policies: Mapping[str, Any] | None = None, baseline: str | None = None,
                 config: GatewayConfig | None = None, seed: int = 1) -> tuple[dict[str, Any], list[str]]:
    """The scenario mapping, and warnings worth printing."""
    if not recording.requests:
        raise ValueError("no request spans with attempts in the traces")
    alias = alias or recording.aliases()[0][0]
    requests = recording.for_alias(alias)
    if not requests:
        raise ValueError(f"no recorded requests for alias {alias!r} (recorded: "
                         f"{', '.join(a for a, _ in recording.aliases())})")
    models = [m for m in fit_targets(requests) if m.ttft is not None]
    if not models:
        raise ValueError(f"alias {alias!r}: no target ever produced a first token")
    names = _provider_names(models)
    warnings = [f"{names[i]}: {100 * m.ttft.tail_mass:.1f}% of its TTFT distribution lies beyond the last observed "
                f"value ({1000 * m.ttft.last_observed:.0f} ms); it is spread up to the longest wait "
                f"({1000 * m.ttft.longest_wait:.0f} ms), a lower bound"
                for i, m in enumerate(models) if m.ttft is not None and m.ttft.tail_mass > TAIL_WARNING]
    chosen = dict(policies) if policies is not None else DEFAULT_POLICIES
    data: dict[str, Any] = {
        "name": name,
        "description": f"Fitted from {len(requests)} recorded requests of alias {alias} "
                       f"({recording.span_s:.1f} s of traffic).",
        "seed": seed,
        "alias": alias,
        "source": _source(recording, alias, requests, models, names),
        "providers": {names[i]: _provider(m, requests, config) for i, m in enumerate(models)},
        "traffic": _traffic(requests, recording.span_s),
        "policies": chosen,
    }
    if baseline is not None:
        data["baseline"] = baseline
    parse_scenario(data)  # what is written must load: fail here, naming the field, rather than at run time
    return data, warnings


def _provider_names(models: Sequence[TargetModel]) -> list[str]:
    """Scenario provider names: the gateway's provider names, made unique by the model where they repeat."""
    counts = Counter(m.provider for m in models)
    raw = [m.provider if counts[m.provider] == 1 else f"{m.provider}-{m.model}" for m in models]
    return ["".join(c if c.isalnum() or c in "._-" else "-" for c in name).lstrip("._-") or f"target{i}"
            for i, name in enumerate(raw)]


def _provider(m: TargetModel, requests: Sequence[RecordedRequest], config: GatewayConfig | None) -> dict[str, Any]:
    assert m.ttft is not None
    profile: dict[str, Any] = {
        "ttft": {"quantiles_ms": compress(m.ttft.table(scale=1000.0))},
        "per_token": round(1000 * m.gap_s, 3),
        "output_tokens": max(m.output_tokens) if m.output_tokens else _max_output(requests),
    }
    if m.error_rate > 0:
        profile.update(error_rate=round(m.error_rate, 5), error_status=m.error_status)
    if m.midstream_rate > 0:
        profile["midstream_error_rate"] = round(m.midstream_rate, 5)
    if m.outages:
        profile["outages"] = [[w.start_s, w.end_s] for w in m.outages]
        profile["outage_status"] = Counter(w.status for w in m.outages).most_common(1)[0][0]
    spec: dict[str, Any] = {"kind": m.kind if m.kind in ("openai", "anthropic") else "openai", "model": m.model,
                            "price": {"input_per_mtok": m.price.input_per_mtok,
                                      "output_per_mtok": m.price.output_per_mtok},
                            "profile": profile}
    provider = config.providers.get(m.provider) if config is not None else None
    if provider is not None:
        spec["timeout_s"] = provider.timeout_s
        spec["breaker"] = {"fail_max": provider.breaker.fail_max,
                           "reset_timeout_s": provider.breaker.reset_timeout_s}
    elif (timeouts := [a.duration_s for r in requests for a in r.attempts
                       if a.target == (m.provider, m.model) and a.error_type == "timeout"]):
        spec["timeout_s"] = float(math.ceil(max(timeouts)))  # what the gateway waited before giving up
    return spec


def _max_output(requests: Sequence[RecordedRequest]) -> int:
    return max((r.output_tokens or 1 for r in requests), default=1)


def _traffic(requests: Sequence[RecordedRequest], span_s: float) -> dict[str, Any]:
    n = len(requests)
    span = max(span_s, 1e-3)
    traffic: dict[str, Any] = {"rate": round(n / span, 4), "duration_s": round(span, 3)}
    rates = rate_profile([r.at_s for r in requests], span)
    if rates:
        traffic["rates"] = rates
    traffic["stream_share"] = round(sum(r.stream for r in requests) / n, 4)
    traffic["anthropic_share"] = round(sum(r.door == "anthropic" for r in requests) / n, 4)
    traffic["prompt_tokens"] = int_distribution([r.input_tokens for r in requests if r.input_tokens])
    traffic["max_tokens"] = int_distribution([r.output_tokens for r in requests if r.output_tokens])
    slowest = max((r.latency_s or 0.0 for r in requests), default=0.0)
    traffic["request_timeout_s"] = max(30.0, float(math.ceil(1.5 * slowest)))
    return traffic


def rate_profile(arrivals: Sequence[float], span_s: float) -> list[list[float]] | None:
    """Per-bin rates when the counts vary beyond Poisson noise (chi-square past its mean + 3 sd), else None."""
    bins = max(1, min(30, int(span_s // MIN_BIN_S)))
    if bins < 3:
        return None
    width = span_s / bins
    counts = [0] * bins
    for t in arrivals:
        counts[min(bins - 1, int(t / width))] += 1
    expected = len(arrivals) / bins
    if expected <= 0:
        return None
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    dof = bins - 1
    if chi2 <= dof + 3 * math.sqrt(2 * dof):
        return None
    return [[round(i * width, 3), round(c / width, 4)] for i, c in enumerate(counts)]


def int_distribution(values: Sequence[int]) -> int | dict[str, list[list[float]]]:
    """A fixed number when every value is the same, else the values' quantile table."""
    if not values:
        return 1
    if min(values) == max(values):
        return values[0]
    curve = SurvivalCurve(Sample(float(v)) for v in values)
    return {"quantiles": compress(curve.table(digits=0))}


def compress(table: Sequence[tuple[float, float]]) -> list[list[float]]:
    """Drop the inner points of runs of equal values: linear interpolation between the kept ends is the same."""
    out: list[list[float]] = []
    for i, (q, v) in enumerate(table):
        inner = 0 < i < len(table) - 1 and table[i - 1][1] == v == table[i + 1][1]
        if not inner:
            out.append([q, int(v) if float(v).is_integer() else v])
    return out


def _source(recording: Recording, alias: str, requests: Sequence[RecordedRequest], models: Sequence[TargetModel],
            names: Sequence[str]) -> dict[str, Any]:
    firsts = [f.first_ns for f in recording.files if f.first_ns is not None]
    lasts = [f.last_ns for f in recording.files if f.last_ns is not None]
    return {
        "fitted_by": "python -m loadtest fit",
        "traces": [{"path": f.path, "requests": f.requests, "span_s": round(f.span_s, 3),
                    "first_request_utc": _utc(f.first_ns), "last_request_utc": _utc(f.last_ns)}
                   for f in recording.files],
        "alias": alias,
        "requests": len(requests),
        "requests_without_attempts": recording.without_attempts,  # cache hits, rejections: not in the mix
        "span_s": round(recording.span_s, 3),
        "first_request_utc": _utc(min(firsts) if firsts else None),
        "last_request_utc": _utc(max(lasts) if lasts else None),
        "targets": {names[i]: target_summary(m, requests) for i, m in enumerate(models)},
    }


def target_summary(m: TargetModel, requests: Sequence[RecordedRequest]) -> dict[str, Any]:
    """What was fitted for one target, for the scenario's header and `source` block."""
    assert m.ttft is not None
    ttft_samples, _ = latency_samples(a for r in requests for a in r.attempts
                                      if a.target == (m.provider, m.model) and a.sent)
    dropped = sorted(s.value for s in ttft_samples if s.observed)  # what ignoring the censored samples gives
    outputs = list(m.output_tokens)
    return {
        "target": m.name, "kind": m.kind, "attempts": m.attempts,
        "ttft_ms": survival_summary(m.ttft, 1000.0),
        "ttft_observed": m.ttft.observed, "ttft_censored": m.ttft.censored,
        "ttft_tail_mass": round(m.ttft.tail_mass, 5),
        "ttft_p99_ms_dropping_censored": round(1000 * dropped[max(0, math.ceil(0.99 * len(dropped)) - 1)], 1),
        "duration_ms": survival_summary(m.duration, 1000.0) if m.duration is not None else None,
        "per_token_ms": round(1000 * m.gap_s, 3),
        "output_tokens": {"p50": outputs[len(outputs) // 2], "max": outputs[-1]} if outputs else None,
        "errors": m.errors, "error_rate": round(m.error_rate, 5), "midstream_error_rate": round(m.midstream_rate, 5),
        "outages": [{"start_s": w.start_s, "end_s": w.end_s, "status": w.status, "failures": w.failures}
                    for w in m.outages],
        "price": {"input_per_mtok": m.price.input_per_mtok, "output_per_mtok": m.price.output_per_mtok},
    }


def apply_overhead(data: dict[str, Any], overheads: Mapping[str, Overhead]) -> list[str]:
    """Shift each provider's fitted TTFT table down by its measurement-path overhead (in place; clipped at 0),
    record it in `source`, and return warnings. `source.targets.*.ttft_ms` stays as recorded; what the
    simulator now waits is `simulator_ttft_ms`. Duration needs no shift of its own: the simulator's duration is
    its TTFT plus the gaps between tokens, and a gap (a difference of two times on the same path) has none."""
    warnings: list[str] = []
    for name, spec in data["providers"].items():
        overhead = overheads.get(name)
        if overhead is None:
            continue
        ttft = spec["profile"]["ttft"]
        shifted, clipped = shift_table(ttft["quantiles_ms"], overhead.ms)
        ttft["quantiles_ms"] = compress([(q, v) for q, v in shifted])
        target = data["source"]["targets"][name]
        target["overhead"] = {**overhead.as_dict(), "clipped_share": round(clipped, 4)}
        target["simulator_ttft_ms"] = {label: round(max(0.0, value - overhead.ms), 1)
                                       for label, value in target["ttft_ms"].items()}
        if clipped > CLIP_WARNING:
            warnings.append(f"{name}: {100 * clipped:.1f}% of its recorded TTFT is below the measurement path's "
                            f"{overhead.ms:.1f} ms; those draws become 0 ms (the provider is faster than the path, "
                            "or the overhead is overestimated)")
    parse_scenario(data)
    return warnings


def _utc(ns: int | None) -> str | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def header(data: Mapping[str, Any]) -> str:
    source = data["source"]
    lines = [f"# Fitted by `python -m loadtest fit` from {len(source['traces'])} trace file(s): "
             f"{source['requests']} requests of alias {source['alias']} over {source['span_s']:g} s of traffic",
             f"# ({source['first_request_utc']} to {source['last_request_utc']}; several files are joined end to end).",
             "# Per target, time to first token by Kaplan-Meier (cancelled losers as censored samples):"]
    for name, t in source["targets"].items():
        ttft = t["ttft_ms"]
        lines.append(f"#   {name} ({t['target']}): {t['attempts']} attempts, TTFT p50 {ttft['p50']:g} ms, "
                     f"p99 {ttft['p99']:g} ms ({t['ttft_observed']} observed, {t['ttft_censored']} censored; "
                     f"dropping the censored would say p99 {t['ttft_p99_ms_dropping_censored']:g} ms), "
                     f"errors {100 * t['error_rate']:.2f}%, {len(t['outages'])} outage(s)")
    overheads = {name: t for name, t in source["targets"].items() if "overhead" in t}
    if overheads:
        lines.append("# The measurement path's latency, subtracted from each TTFT table (the simulator waits the "
                     "rest):")
    for name, t in overheads.items():
        o, sim = t["overhead"], t["simulator_ttft_ms"]
        how = (f"calibrated: median over {o['samples']} attempts against a fixed {o['probe_ms']:g} ms TTFT at "
               f"{o['rate']:.1f} req/s for {o['seconds']:g} s, p10 {o['p10_ms']:g} ms, p90 {o['p90_ms']:g} ms"
               if o["method"] == "calibrated" else "given (--overhead-ms)")
        lines.append(f"#   {name}: {o['ms']:g} ms ({how}); simulator TTFT p50 {sim['p50']:g} ms, p99 {sim['p99']:g} ms")
    return "\n".join(lines) + "\n"


class _Dumper(yaml.SafeDumper):
    """Block YAML, with the small things on one line: a table is one `- [q, value]` line per point, a mapping of
    a few plain values (a price, a summary) is `{a: 1, b: 2}`."""


def _plain(value: object) -> bool:
    return not isinstance(value, (list, dict))


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=all(_plain(v) for v in data))


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    small = len(data) <= 6 and all(_plain(v) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=small)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)


def dump_scenario(data: Mapping[str, Any]) -> str:
    return header(data) + yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, width=116)


def write_scenario(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(dump_scenario(data), encoding="utf-8")


def _read_policies(path: str) -> tuple[dict[str, Any], str | None]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    policies = data.get("policies", data) if isinstance(data, dict) else None
    if not isinstance(policies, dict) or not policies:
        raise ScenarioError("--policies", f"{path}: expected a `policies:` mapping (a scenario works)")
    baseline = data.get("baseline") if isinstance(data, dict) and "policies" in data else None
    return policies, baseline if isinstance(baseline, str) else None


def _overhead_arg(text: str) -> str | float:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number of milliseconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fit_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest fit", description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="+", help="span files: the gateway's JSON lines, or OTLP JSON exports")
    parser.add_argument("-o", "--out", type=Path, required=True, help="scenario YAML to write")
    parser.add_argument("--alias", help="the alias to fit (default: the one with the most requests)")
    parser.add_argument("--name", help="scenario name (default: the output file's name)")
    parser.add_argument("--policies", help="take the policies (and baseline) from this YAML, e.g. a scenario")
    parser.add_argument("--config", help="the gateway config the traces came from: provider timeouts and breakers")
    parser.add_argument("--seed", type=int, default=1, help="the fitted scenario's seed (default 1)")
    parser.add_argument("--overhead-ms", type=_overhead_arg, default="auto", metavar="auto|MS",
                        help="the measurement path's latency to subtract from every TTFT: auto (default) measures "
                             "it with a short load test on loopback; a number gives it (0: keep the TTFT as recorded)")
    parser.add_argument("--calibration-s", type=float, default=CALIBRATION_S,
                        help=f"seconds of traffic per target for --overhead-ms auto (default {CALIBRATION_S:g})")
    parser.add_argument("--calibration-out", type=Path, help="keep the calibration's run (traces, report) here")
    parser.add_argument("--no-pin", action="store_true", help="calibrate without pinning processes to cores")
    args = parser.parse_args(argv)
    try:
        recording = load_recording(args.traces)
        policies, baseline = _read_policies(args.policies) if args.policies else (None, None)
        config = load_config(args.config) if args.config else None
        name = args.name or args.out.name.removesuffix(".yaml").removesuffix(".yml")
        data, warnings = fit_scenario(recording, alias=args.alias, name=name, policies=policies,
                                      baseline=baseline, config=config, seed=args.seed)
        if args.overhead_ms == "auto":
            print(f"calibrating the measurement path ({args.calibration_s:g} s per target on loopback)...",
                  file=sys.stderr)
            overheads = calibrate(data, seconds=args.calibration_s, out_dir=args.calibration_out,
                                  pin=not args.no_pin)
        else:
            overheads = {name: Overhead(float(args.overhead_ms), "given") for name in data["providers"]}
        warnings += apply_overhead(data, overheads)
    except RuntimeError as exc:  # the calibration's processes did not start
        print(f"calibration failed: {exc} (--overhead-ms 0 skips it)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except (ScenarioError, ConfigError, ValueError) as exc:
        print(f"fit error: {exc}", file=sys.stderr)
        return 2
    write_scenario(args.out, data)
    print(header(data).rstrip(), file=sys.stderr)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"scenario written to {args.out}", file=sys.stderr)
    return 0
