"""`gateway traces --plot`: cost per 1,000 requests against latency, one point per alias and per provider.

Each group is a vertical bar from its p50 to its p99 latency at its cost, so the trade-off reads at a glance:
down is faster, left is cheaper, a long bar is a fat tail. Uses matplotlib's object API on the Agg canvas
(no pyplot, no global backend switch), so it works headless and leaves the caller's matplotlib setup alone.
"""

from __future__ import annotations

from pathlib import Path

from gateway.telemetry.traces_report import TraceSummary, iter_groups

_STYLE = {"alias": ("tab:blue", "o"), "provider": ("tab:orange", "s")}


def plot_cost_latency(summary: TraceSummary, path: str | Path) -> int:
    """Write the plot to `path` (format from its suffix); returns how many points were drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    labelled: set[str] = set()
    for group, g in iter_groups(summary):
        cost = g.cost_per_1k_usd
        if g.latency_ms is None or cost is None:
            continue
        color, marker = _STYLE[group]
        ax.vlines(cost, g.latency_ms.p50, g.latency_ms.p99, colors=color, alpha=0.4, linewidth=3)
        ax.scatter([cost], [g.latency_ms.p50], color=color, marker=marker,
                   label=f"{group} p50" if group not in labelled else None)
        ax.scatter([cost], [g.latency_ms.p99], color=color, marker=marker, facecolors="none",
                   label=f"{group} p99" if group not in labelled else None)
        labelled.add(group)
        ax.annotate(f"{g.name} ({group})", (cost, g.latency_ms.p99), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
        drawn += 1
    ax.set_xlabel("cost per 1,000 requests (USD)")
    ax.set_ylabel("latency (ms): p50 filled, p99 hollow")
    ax.set_title("Cost against latency")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(loc="best", fontsize=8)
    fig.savefig(path, dpi=120)
    return drawn
