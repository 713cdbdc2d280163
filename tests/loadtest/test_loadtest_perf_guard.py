"""The CPU regression guard: the gateway's CPU per request against a bare aiohttp pass-through, same run.

A ratio, not an absolute time, so it holds on a noisy machine; the bound is generous (measured: about 3x,
see the README's performance section) so only a real regression trips it.
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


def test_gateway_cpu_per_request_stays_within_bound_of_the_passthrough(tmp_path: Path) -> None:
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        message = "needs wrk and taskset (Debian packages wrk, util-linux; .ci/run installs wrk)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([sys.executable, "-m", "loadtest", "perf", "--guard", "--seconds", "2",
                             "--max-cpu-ratio", "6", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=180)
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    ratio = report["ratios"]["gateway_traced.json"]["cpu_ratio"]
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert 1.0 < ratio <= 6.0  # the gateway does more than a pass-through, but not 6x more
    assert report["targets"]["passthrough"]["json"]["requests_per_s"] > 0
