"""`loadtest.perf_scaling`: the process tree whose CPU is counted, and the figures it reports."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from loadtest.perf_scaling import process_tree, render_scaling, scaled


def test_the_tree_holds_the_process_and_its_descendants() -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                              "'import time; time.sleep(30)']); time.sleep(30)"])
    try:
        for _ in range(200):  # until the grandchild exists
            tree = process_tree(child.pid)
            if len(tree) == 2:
                break
            time.sleep(0.05)
        assert tree[0] == child.pid and len(tree) == 2
        assert os.getpid() not in tree
    finally:
        for pid in reversed(process_tree(child.pid)):
            os.kill(pid, 9)
        child.wait()


def test_scaling_is_n_processes_over_one_pinned_process_per_arm_and_mode() -> None:
    single = {"passthrough": {"json": {"requests_per_s": 1000.0}},
              "gateway_traced": {"json": {"requests_per_s": 400.0}}}
    multi = {"workers": 2, "connections": 64, "targets": {
        "passthrough": {"json": {"requests_per_s": 1800.0, "cpu_us_per_request": 200.0}},
        "gateway_traced": {"json": {"requests_per_s": 600.0, "cpu_us_per_request": 700.0}}},
        "ratios": {"json": {"throughput_ratio": 0.33, "cpu_ratio": 3.5}}}
    multi["scaled"] = scaled(single, multi)
    assert multi["scaled"] == {"passthrough": {"json": 1.8}, "gateway_traced": {"json": 1.5}}
    table = "\n".join(render_scaling(multi))
    assert "| gateway_traced | json | 600 | 700 | 1.50 | 0.33 |" in table
