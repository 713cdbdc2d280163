"""The measurement path's own share of a recorded time to first token, and taking it out of a fitted scenario.

An attempt's recorded TTFT (`gen_ai.response.time_to_first_chunk`) runs from the attempt's start in the gateway
to its first content token parsed: the provider's own time *plus* the path (the request written and sent, the
provider's server reading it, the first events sent back and parsed, the event loops on both ends). A fitted
simulator that waits the whole recorded TTFT, on loopback behind a gateway, gets that path added once more:
its runs come out slow by the path's latency (about 10 ms at the median on the 2-core test machine, visible at
p50). What the simulator must wait is the recorded TTFT minus the path the fitted scenario will run on.

That path is the machine's, not the traces': the traces give one sum per attempt and nothing that isolates the
provider's part. So it is measured (`calibrate`): the fitted scenario's own traffic (rate, door and streaming
mix, prompt sizes, output lengths, time between tokens) is run through a gateway on loopback, one target at a
time, against simulators whose time to first token is a *known fixed* probe delay, and the gateway's traces
give, per attempt, recorded TTFT minus the probe: a sample of the path's latency. The probe is the fitted
TTFT's mean, so the calibration holds as many requests in flight as a run of the fitted scenario without
hedging does (Little's law), and the path is measured under that load. The median of those samples is
subtracted from the target's fitted TTFT quantile table (a shift, clipped at 0): the fitted simulator's TTFT
plus the path then has the recorded median. The path's own spread (its p10-p90, a few ms) stays in the
recorded distribution and is added again; against the latencies' own spread that is negligible, and the
calibration's p10 and p90 are written to the scenario's `source` so it can be judged.

`--overhead-ms N` gives the value instead (e.g. measured once, or 0 to keep the recorded TTFT as it is: for a
scenario to be run somewhere else).
"""

from __future__ import annotations

import io
import itertools
import math
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.tuning.records import load_recording

CALIBRATION_S = 10.0  # seconds of traffic per target: ~400 samples at 40 requests/s
MIN_SAMPLES = 200  # a slower recording is calibrated at MIN_SAMPLES / seconds requests per second


@dataclass(frozen=True, slots=True)
class Overhead:
    """What is subtracted from one target's recorded TTFT, and where it came from."""

    ms: float
    method: str  # "calibrated" (measured by `calibrate`) or "given" (--overhead-ms)
    samples: int = 0
    p10_ms: float | None = None
    p90_ms: float | None = None
    probe_ms: float | None = None  # the calibration simulator's fixed TTFT
    rate: float | None = None  # the calibration's requests per second
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ms": round(self.ms, 2), "method": self.method}
        if self.method == "calibrated":
            out.update(samples=self.samples, p10_ms=_round(self.p10_ms), p90_ms=_round(self.p90_ms),
                       probe_ms=_round(self.probe_ms), rate=self.rate, seconds=self.seconds)
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2) + 0.0  # + 0.0: no "-0" for a tiny negative


def table_mean(table: Sequence[Sequence[float]]) -> float:
    """The mean of a piecewise-linear quantile function given as (q, value) points from q = 0 to 1."""
    return sum((q1 - q0) * (v0 + v1) / 2 for (q0, v0), (q1, v1) in itertools.pairwise(table))


def shift_table(table: Sequence[Sequence[float]], ms: float) -> tuple[list[list[float]], float]:
    """The table minus `ms`, clipped at 0, and the share of the distribution that was clipped (below `ms`)."""
    shifted = [[q, max(0.0, round(v - ms, 1))] for q, v in table]
    clipped = 0.0
    for (q0, v0), (q1, v1) in itertools.pairwise(table):
        if v1 <= ms:
            clipped = q1
        elif v0 < ms:  # the crossing lies inside this segment: interpolate, as the simulator samples it
            clipped = q0 + (q1 - q0) * (ms - v0) / (v1 - v0)
            break
        else:
            break
    return [[q, int(v) if float(v).is_integer() else v] for q, v in shifted], clipped


def calibration_scenario(data: Mapping[str, Any], *, seconds: float = CALIBRATION_S) -> dict[str, Any]:
    """A scenario measuring the path: the fitted traffic at its mean rate (at least MIN_SAMPLES / seconds) for
    `seconds`, each target alone (a policy routing only to it, no hedging) with a fixed TTFT of its fitted mean
    and no errors, stalls or outages."""
    providers: dict[str, Any] = {}
    for name, spec in data["providers"].items():
        profile = spec["profile"]
        probe = round(table_mean(profile["ttft"]["quantiles_ms"]), 1)
        providers[name] = {**spec, "profile": {"ttft": probe, "per_token": profile["per_token"],
                                               "output_tokens": profile["output_tokens"]}}
    traffic = {k: v for k, v in data["traffic"].items() if k != "rates"}
    traffic.update(duration_s=seconds, rate=round(max(float(traffic["rate"]), MIN_SAMPLES / seconds), 4))
    return {"name": f"{data['name']}-calibration",
            "description": "The measurement path's latency, against simulators with a fixed known TTFT.",
            "seed": data.get("seed", 1), "alias": data["alias"], "providers": providers, "traffic": traffic,
            "policies": {f"via-{name}": {"targets": [name], "hedge": "off"} for name in providers}}


def overhead_from_traces(traces: Path, provider: str, model: str, probe_ms: float) -> list[float]:
    """Per attempt of (provider, model) that produced a first token: its recorded TTFT minus the probe, ms."""
    recording = load_recording([traces])
    return [1000 * a.ttft_s - probe_ms for r in recording.requests for a in r.attempts
            if a.target == (provider, model) and a.ttft_s is not None and a.outcome == "won"]


def summarize(samples: Sequence[float], *, probe_ms: float | None = None, rate: float | None = None,
              seconds: float | None = None) -> Overhead:
    if not samples:
        raise ValueError("the calibration produced no first token")
    ordered = sorted(samples)
    tenth = ordered[max(0, math.ceil(0.1 * len(ordered)) - 1)]
    ninetieth = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return Overhead(ms=max(0.0, statistics.median(ordered)), method="calibrated", samples=len(ordered),
                    p10_ms=tenth, p90_ms=ninetieth, probe_ms=probe_ms, rate=rate, seconds=seconds)


def calibrate(data: Mapping[str, Any], *, seconds: float = CALIBRATION_S, out_dir: Path | None = None,
              pin: bool = True) -> dict[str, Overhead]:
    """Run `calibration_scenario(data)` (a short load test: gateway and simulators on loopback, pinned as the
    load test pins) and return each provider's overhead. Starts and ends its own event loop."""
    from loadtest.runner import run_scenario
    from loadtest.scenario import parse_scenario

    spec = calibration_scenario(data, seconds=seconds)
    scenario = parse_scenario(spec)
    with tempfile.TemporaryDirectory(prefix="fit-calibration-") as tmp:
        folder = out_dir if out_dir is not None else Path(tmp)
        run_scenario(scenario, folder, plot=False, pin=pin, progress_stream=sys.stderr, stdout=io.StringIO())
        out: dict[str, Overhead] = {}
        for name, provider in spec["providers"].items():
            probe = float(provider["profile"]["ttft"])
            samples = overhead_from_traces(folder / f"traces-via-{name}.jsonl", name, provider["model"], probe)
            out[name] = summarize(samples, probe_ms=probe, rate=spec["traffic"]["rate"], seconds=seconds)
    return out
