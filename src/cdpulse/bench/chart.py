"""The chart of a benchmark result, drawn from its JSON alone (so it can be redrawn).

Four panels: throughput over time for each worker count (against the bare-consumer
ceiling), produce → written percentiles per second at the steady rate, the latency
percentiles of both paths against their targets, and the microseconds per event of
each batch-processor stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cdpulse.bench.report import TARGETS
from cdpulse.bench.stats import rates


def throughput_series(phase: Mapping[str, Any], span: float = 2.0) -> list[tuple[float, float]]:
    """Events/s over time of one throughput phase, from the workers' processed counters."""
    points = [(s["t"], float(sum(s["processed"]))) for s in phase.get("timeline", [])]
    return rates(points, span)


def draw(result: Mapping[str, Any], out: Path) -> None:
    """Write the chart of ``result`` to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    (ax_rate, ax_lat), (ax_pct, ax_stage) = axes

    highest = 0.0
    for phase in result.get("throughput", []):
        series = throughput_series(phase)
        if series:
            label = f"{phase['workers']} worker(s)"
            ax_rate.plot([t for t, _ in series], [r for _, r in series], label=label)
            highest = max(highest, *(r for _, r in series))
    target = TARGETS["throughput"].value
    ax_rate.axhline(target, color="red", linestyle=":", label="target per worker")
    title = "Throughput on a pre-produced backlog"
    ceiling = (result.get("ceiling") or {}).get("events_per_second")
    if ceiling and ceiling < 3 * max(highest, target):
        ax_rate.axhline(ceiling, color="grey", linestyle="--", label="bare consumer (ceiling)")
    elif ceiling:
        title += f"\n(bare-consumer ceiling {ceiling:,.0f} events/s, off the scale)"
    ax_rate.set(title=title, xlabel="seconds since the workers were started", ylabel="events/s")
    ax_rate.legend(fontsize=8)
    ax_rate.grid(alpha=0.3)

    latency = result.get("latency") or {}
    timeline = latency.get("timeline") or []
    for q in ("p50", "p95", "p99"):
        points = [(p["t"], p[q] * 1000) for p in timeline if p.get("count")]
        ax_lat.plot([t for t, _ in points], [v for _, v in points], label=q)
    ax_lat.axhline(
        TARGETS["latency_p99"].value * 1000, color="red", linestyle=":", label="p99 target"
    )
    ax_lat.set(
        title=f"Produce → profile written at {latency.get('rate', 0):,.0f} events/s (per second)",
        xlabel="seconds",
        ylabel="ms",
    )
    ax_lat.legend(fontsize=8)
    ax_lat.grid(alpha=0.3)

    http = (result.get("http") or {}).get("latency") or {}
    qs = ("p50", "p95", "p99")
    width = 0.38
    xs = range(len(qs))
    ax_pct.bar(
        [x - width / 2 for x in xs],
        [latency.get(q, 0) * 1000 for q in qs],
        width,
        label="produce → written",
    )
    ax_pct.bar(
        [x + width / 2 for x in xs],
        [http.get(q, 0) * 1000 for q in qs],
        width,
        label=f"GET profile at {(result.get('http') or {}).get('rate', 0):,.0f}/s",
    )
    ax_pct.axhline(
        TARGETS["latency_p99"].value * 1000, color="C0", linestyle=":", label="p99 target, written"
    )
    ax_pct.axhline(
        TARGETS["http_p99"].value * 1000, color="C1", linestyle=":", label="p99 target, GET"
    )
    ax_pct.set_xticks(list(xs), qs)
    ax_pct.set_yscale("log")
    ax_pct.set(title="Latency percentiles", ylabel="ms (log)")
    ax_pct.legend(fontsize=8)
    ax_pct.grid(alpha=0.3, axis="y")

    stages = result.get("stages") or {}
    per_event = stages.get("per_event_us") or {}
    names = [n for n in (stages.get("stages_seconds") or {}) if n in per_event]
    ax_stage.barh(names, [per_event[n] for n in names], color="C2")
    ax_stage.invert_yaxis()
    ax_stage.set(
        title=f"Batch processor in-process: µs per event "
        f"({stages.get('events_per_second', 0):,.0f} events/s)",
        xlabel="µs per event",
    )
    ax_stage.grid(alpha=0.3, axis="x")

    machine = result.get("machine") or {}
    load = (result.get("load_average") or {}).get("start")
    fig.suptitle(
        f"cdpulse bench {result.get('started_at', '')} · {machine.get('cpu_model', '')}, "
        f"{machine.get('cores', '?')} cores · load at start {load}",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
