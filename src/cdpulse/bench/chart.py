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

    for key, style in (("latency", "-"), ("latency_below_capacity", "--")):
        run = result.get(key)
        if not run:
            continue
        for colour, q in enumerate(("p50", "p95", "p99")):
            points = [(p["t"], p[q] * 1000) for p in run.get("timeline") or [] if p.get("count")]
            ax_lat.plot(
                [t for t, _ in points],
                [v for _, v in points],
                style,
                color=f"C{colour}",
                label=f"{q} at {run.get('rate', 0):,.0f}/s",
            )
    ax_lat.axhline(
        TARGETS["latency_p99"].value * 1000, color="red", linestyle=":", label="p99 target"
    )
    ax_lat.set_yscale("log")
    ax_lat.set(
        title="Produce → profile written, per second of the steady phase",
        xlabel="seconds",
        ylabel="ms (log)",
    )
    ax_lat.legend(fontsize=8)
    ax_lat.grid(alpha=0.3)

    groups: list[tuple[str, Mapping[str, Any]]] = []
    for key in ("latency", "latency_below_capacity"):
        run = result.get(key)
        if run:
            groups.append((f"produce → written at {run['rate']:,.0f}/s", run))
    http = result.get("http")
    if http:
        groups.append((f"GET profile at {http['rate']:,.0f}/s", http["latency"]))
    qs = ("p50", "p95", "p99")
    xs = range(len(qs))
    width = 0.8 / max(1, len(groups))
    for i, (label, values) in enumerate(groups):
        offset = (i - (len(groups) - 1) / 2) * width
        heights = [values.get(q, 0) * 1000 for q in qs]
        ax_pct.bar([x + offset for x in xs], heights, width, label=label, color=f"C{i}")
    ax_pct.axhline(
        TARGETS["latency_p99"].value * 1000, color="red", linestyle=":", label="p99 target, written"
    )
    ax_pct.axhline(
        TARGETS["http_p99"].value * 1000, color="purple", linestyle=":", label="p99 target, GET"
    )
    ax_pct.set_xticks(list(xs), qs)
    ax_pct.set_yscale("log")
    ax_pct.set(title="Latency percentiles", ylabel="ms (log)")
    ax_pct.legend(fontsize=8)
    ax_pct.grid(alpha=0.3, axis="y")

    stages = result.get("stages") or {}
    wall = stages.get("per_event_us") or {}
    cpu = stages.get("per_event_cpu_us") or {}
    names = [n for n in (stages.get("stages_seconds") or {}) if n in wall]
    ys = range(len(names))
    height = 0.4
    ax_stage.barh([y - height / 2 for y in ys], [wall[n] for n in names], height, label="wall")
    ax_stage.barh(
        [y + height / 2 for y in ys], [cpu.get(n, 0.0) for n in names], height, label="CPU"
    )
    ax_stage.set_yticks(list(ys), names)
    ax_stage.invert_yaxis()
    ax_stage.set(
        title=f"In-process batch processor, no faust: µs per event "
        f"({stages.get('events_per_second', 0):,.0f}/s)",
        xlabel="µs per event",
    )
    ax_stage.legend(fontsize=8)
    ax_stage.grid(alpha=0.3, axis="x")

    machine = result.get("machine") or {}
    load = (result.get("load_average") or {}).get("start")
    label = f"{result['label']} · " if result.get("label") else ""
    fig.suptitle(
        f"cdpulse bench · {label}{result.get('started_at', '')} · "
        f"{machine.get('cpu_model', '')}, {machine.get('cores', '?')} cores · "
        f"load at start {load}",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
