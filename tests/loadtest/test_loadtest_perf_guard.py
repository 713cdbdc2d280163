"""The CPU regression guard: the gateway's CPU per request against a bare aiohttp pass-through, same run.

A ratio, not an absolute time, so it holds on a noisy machine, and the best of two interleaved rounds
(`loadtest.perf_guard`), so one disturbed measurement does not trip it. The bound, 4x: with every request
traced the guard measured 2.8x to 3.0x (five runs) on the 2-core development machine shared with other test
suites and benchmarks (load average above 2), where the same measurement of the code before the telemetry
changes gave about 3.6x and an idle machine 2.6x (the README's performance section). 4x leaves about 30% for a
busier CI machine, and a regression of a third of the gateway's own CPU per request trips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
BOUND = 4.0


def test_gateway_cpu_per_request_stays_within_bound_of_the_passthrough(tmp_path: Path) -> None:
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        message = "needs wrk and taskset (Debian packages wrk, util-linux; .ci/run installs wrk)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([sys.executable, "-m", "loadtest", "perf", "--guard", "--seconds", "2",
                             "--max-cpu-ratio", str(BOUND), "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=180)
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    ratio = report["ratios"]["gateway_traced.json"]["cpu_ratio"]
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert 1.0 < ratio <= BOUND  # the gateway does more than a pass-through, but not 4x more
    assert report["targets"]["passthrough"]["json"]["requests_per_s"] > 0
