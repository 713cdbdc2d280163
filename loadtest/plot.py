"""plot.png: tail latency against extra cost per policy (left), latency CDFs on a log axis (right)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def write_plot(path: Path, report: Mapping[str, Any], latencies_s: Mapping[str, Sequence[float]]) -> None:
    import matplotlib  # imported here: only runs that plot pay for it

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    policies: Mapping[str, Mapping[str, Any]] = report["policies"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    basis = next((p["extra_cost_basis"] for p in policies.values() if p["extra_cost_basis"]), "")

    for i, (name, p) in enumerate(policies.items()):
        color = colors[i % len(colors)]
        p99 = p["latency_ms"]["p99"]
        extra = p["extra_cost_pct"]
        if p99 is not None and extra is not None:
            left.scatter([extra], [p99], s=60, color=color, zorder=3)
            left.annotate(name, (extra, p99), textcoords="offset points", xytext=(6, 6), fontsize=9)
        values = sorted(1000 * v for v in latencies_s.get(name, ()))
        if values:
            n = len(values)
            right.step(values, [(k + 1) / n for k in range(n)], where="post", color=color, label=name)

    left.set_xlabel(f"extra cost % ({basis})")
    left.set_ylabel("p99 latency (ms)")
    left.set_title("Tail latency against cost")
    left.set_ylim(bottom=0)
    left.grid(True, alpha=0.3)
    right.set_xscale("log")
    right.set_xlabel("latency (ms, log scale)")
    right.set_ylabel("share of successful requests")
    right.set_title("Latency CDF")
    right.grid(True, which="both", alpha=0.3)
    right.legend(loc="lower right", fontsize=9)
    fig.suptitle(f"{report['scenario']}: {report['settings']['requests_planned']} requests per policy at "
                 f"{report['settings']['rate']:g} req/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
