"""The chart of a benchmark result, drawn from its JSON alone (so it can be redrawn).

Six panels: throughput over time against both ceilings; produce → written per second of
the steady phases; the learner's lag over time; read latency against its target; CPU
seconds per 1,000 events by process role; the pipeline's stages in-process.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cdpulse.bench.report import TARGETS
from cdpulse.bench.stats import rates

ROLES = ("worker", "learner", "api", "kafka", "redis")


def throughput_series(phase: Mapping[str, Any], span: float = 2.0) -> list[tuple[float, float]]:
    """Events/s over time of one throughput phase, from the group's committed messages
    (read from Kafka every sample; the workers' own counters are read every few seconds)."""
    points = [(s["t"], float(s["committed"])) for s in phase.get("timeline", [])]
    return rates(points, span)


def draw(result: Mapping[str, Any], out: Path) -> None:
    """Write the chart of ``result`` to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(18, 9))
    (ax_rate, ax_lat, ax_lag), (ax_read, ax_cpu, ax_stage) = axes

    for phase in result.get("throughput", []):
        series = throughput_series(phase)
        if series:
            ax_rate.plot(
                [t for t, _ in series],
                [r for _, r in series],
                label=f"{phase['workers']} worker(s)",
            )
    ax_rate.axhline(TARGETS["throughput"].value, color="red", linestyle=":", label="target")
    for kind, style in (("minimal", "--"), ("bare", "-.")):
        rate = ((result.get("ceilings") or {}).get(kind) or {}).get("events_per_second")
        if rate:
            ax_rate.axhline(
                rate, color="grey", linestyle=style, label=f"{kind} ceiling {rate:,.0f}"
            )
    ax_rate.set_yscale("log")
    ax_rate.set(title="Throughput on the backlog", xlabel="seconds", ylabel="events/s (log)")
    ax_rate.legend(fontsize=7)
    ax_rate.grid(alpha=0.3)

    for key, style in (("steady", "-"), ("steady_reads", "--")):
        run = result.get(key)
        if not run:
            continue
        for colour, q in enumerate(("p50", "p99")):
            points = [(p["t"], p[q] * 1000) for p in run.get("per_second") or [] if p.get(q)]
            ax_lat.plot(
                [t for t, _ in points], [v for _, v in points], style, color=f"C{colour}",
                label=f"{q}, {key.replace('_', ' + ')}",
            )  # fmt: skip
    ax_lat.axhline(TARGETS["latency_p99"].value * 1000, color="red", linestyle=":", label="target")
    ax_lat.set_yscale("log")
    ax_lat.set(title="Produce → profile written, per second, half capacity", xlabel="seconds",
               ylabel="ms (log)")  # fmt: skip
    ax_lat.legend(fontsize=7)
    ax_lat.grid(alpha=0.3)

    lag_phases: list[tuple[str, Mapping[str, Any]]] = [
        (f"{p['workers']} worker(s)", p) for p in result.get("throughput", [])
    ]
    lag_phases += [(k.replace("_", " + "), result[k]) for k in ("steady", "steady_reads")
                   if result.get(k)]  # fmt: skip
    for label, phase in lag_phases:
        lags: list[dict[str, float]] = (phase.get("learner") or {}).get("timeline") or []
        ax_lag.plot([x["t"] for x in lags], [x["lag"] for x in lags], label=label)
    ax_lag.set(title="Learner lag (its three topics)", xlabel="seconds", ylabel="messages")
    ax_lag.legend(fontsize=7)
    ax_lag.grid(alpha=0.3)

    reads = dict((result.get("steady_reads") or {}).get("reads") or {})
    for name, read in ((result.get("steady_read_ceiling") or {}).get("reads") or {}).items():
        reads[f"{name} (read ceiling)"] = read
    qs = ("p50", "p99", "max")
    width = 0.8 / max(1, len(reads))
    for i, (name, read) in enumerate(reads.items()):
        latency: Mapping[str, float] = read.get("latency") or {}
        offset = (i - (len(reads) - 1) / 2) * width
        ax_read.bar([x + offset for x in range(len(qs))],
                    [latency.get(q, 0) * 1000 for q in qs], width, label=f"GET {name}")  # fmt: skip
    ax_read.axhline(
        TARGETS["http_p99"].value * 1000, color="red", linestyle=":", label="p99 target"
    )
    ax_read.set_xticks(list(range(len(qs))), qs)
    ax_read.set_yscale("log")
    ax_read.set(title="Reads while ingesting at half capacity", ylabel="ms (log)")
    ax_read.legend(fontsize=7)
    ax_read.grid(alpha=0.3, axis="y")

    phases = [(f"{p['workers']}w full", p) for p in result.get("throughput", [])]
    phases += [(k.replace("steady", "half").replace("_", "+"), result[k])
               for k in ("steady", "steady_reads") if result.get(k)]  # fmt: skip
    bottom = [0.0] * len(phases)
    for colour, role in enumerate(ROLES):
        heights = [(p.get("cpu_seconds_per_1000") or {}).get(role, 0.0) for _, p in phases]
        ax_cpu.bar([n for n, _ in phases], heights, bottom=bottom, label=role, color=f"C{colour}")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax_cpu.set(title="CPU seconds per 1,000 events, by role", ylabel="CPU s")
    ax_cpu.legend(fontsize=7)
    ax_cpu.grid(alpha=0.3, axis="y")

    stages = result.get("stages") or {}
    cpu = stages.get("per_event_cpu_us") or {}
    names = list(cpu)
    ax_stage.barh(range(len(names)), [cpu[n] for n in names])
    ax_stage.set_yticks(list(range(len(names))), names, fontsize=7)
    ax_stage.invert_yaxis()
    ax_stage.set(title=f"Pipeline stages in-process: CPU µs per event "
                 f"({stages.get('events_per_second', 0):,.0f}/s)", xlabel="µs")  # fmt: skip
    ax_stage.grid(alpha=0.3, axis="x")

    machine = result.get("machine") or {}
    load = (result.get("load_average") or {}).get("start")
    label = f"{result['label']} · " if result.get("label") else ""
    fig.suptitle(
        f"cdpulse bench · {label}{result.get('started_at', '')} · "
        f"{machine.get('cpu_model', '')}, {machine.get('cores', '?')} cores · load at start {load}",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
