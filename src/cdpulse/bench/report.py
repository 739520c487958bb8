"""A benchmark result as Markdown: each figure against its target, and what it cost.

Targets are reported, never asserted: a run on a busy laptop must still produce a
report, and the report says how far each figure is from its target.

>>> verdict(12_000, Target("throughput", 20_000, at_least=True, unit="events/s"))
'missed: 0.60x the target'
>>> verdict(0.004, Target("p99", 0.005, at_least=False, unit="s"))
'met'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Target:
    """A figure's goal: at least ``value`` (throughput, scaling) or below it (latency, bytes)."""

    name: str
    value: float
    at_least: bool
    unit: str


TARGETS = {
    "throughput": Target("sustained events/s per worker process", 20_000, True, "events/s"),
    "latency_p99": Target("p99 produce → profile written at a steady rate", 0.050, False, "s"),
    "http_p99": Target("GET /v1/profiles/{id} p99 at 500 requests/s", 0.005, False, "s"),
    "reco_http_p99": Target(
        "GET /v1/profiles/{id}/recommendations p99 at 500 requests/s", 0.005, False, "s"
    ),
    "redis_bytes": Target("Redis bytes per profile", 4096, False, "bytes"),
    "scaling": Target("two workers on two partitions / one", 1.6, True, "x"),
}


def verdict(value: float | None, target: Target) -> str:
    """``met``, or by how much it was missed (as a multiple of the target)."""
    if value is None or math.isnan(value):
        return "not measured"
    met = value >= target.value if target.at_least else value < target.value
    if met:
        return "met"
    return f"missed: {value / target.value:.2f}x the target"


def _get(result: Mapping[str, Any], *path: str | int) -> Any:
    node: Any = result
    for step in path:
        if isinstance(node, Mapping) and isinstance(step, str):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and -len(node) <= step < len(node):
            node = node[step]
        else:
            return None
        if node is None:
            return None
    return node


def throughput_of(result: Mapping[str, Any], workers: int) -> Mapping[str, Any] | None:
    for phase in result.get("throughput") or []:
        if phase.get("workers") == workers:
            found: Mapping[str, Any] = phase
            return found
    return None


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _format(target: Target) -> Callable[[float | None], str]:
    if target.unit == "s":
        return _ms
    if target.unit == "x":
        return lambda v: "-" if v is None else f"{v:.2f}x"
    return lambda v: "-" if v is None else f"{_num(v)} {target.unit}"


def _cores(cores: Mapping[str, float]) -> str:
    """``machine 1.93: workers 0.98, kafka 0.05, ..., others 0.60``."""
    parts = ", ".join(f"{k} {v:.2f}" for k, v in cores.items() if k != "machine")
    return f"machine {cores.get('machine', 0.0):.2f}: {parts}"


def figures(result: Mapping[str, Any]) -> dict[str, float | None]:
    """The figures the targets are about."""
    one = throughput_of(result, 1) or {}
    return {
        "throughput": one.get("events_per_second_per_worker"),
        "latency_p99": _get(result, "latency", "p99"),
        "http_p99": _get(result, "http", "latency", "p99"),
        "reco_http_p99": _get(result, "http_recommendations", "latency", "p99"),
        "redis_bytes": _get(result, "redis", "bytes_per_profile"),
        "scaling": _get(result, "scaling", "ratio"),
    }


def render_markdown(result: Mapping[str, Any]) -> str:
    """The figures vs the targets, then the costs behind them, as Markdown tables."""
    lines = ["| measure | result | target | verdict |", "| --- | --- | --- | --- |"]
    for key, value in figures(result).items():
        target = TARGETS[key]
        show = _format(target)
        bound = ("≥ " if target.at_least else "< ") + show(target.value)
        lines.append(f"| {target.name} | {show(value)} | {bound} | {verdict(value, target)} |")

    lines += ["", "| detail | value |", "| --- | --- |"]

    def row(name: str, value: str) -> None:
        lines.append(f"| {name} | {value} |")

    ceiling = _get(result, "ceiling", "events_per_second")
    for workers in (1, 2):
        phase = throughput_of(result, workers)
        if phase is None:
            continue
        rate = phase.get("events_per_second")
        row(f"{workers} worker(s): events/s, all workers", _num(rate))
        if rate and ceiling:
            row(f"{workers} worker(s): share of the bare-consumer ceiling", f"{rate / ceiling:.1%}")
        cpu = phase.get("cpu_seconds_per_1000") or []
        row(f"{workers} worker(s): CPU s per 1,000 events", ", ".join(f"{c:.3f}" for c in cpu))
        util = phase.get("worker_cpu_utilisation") or []
        row(f"{workers} worker(s): worker CPU use", ", ".join(f"{u:.0%}" for u in util))
        for key, what in (
            ("worker_runqueue_share", "time runnable, waiting for a CPU"),
            ("worker_redis_share", "time awaiting Redis load/save/retire pipelines"),
        ):
            if phase.get(key):
                row(f"{workers} worker(s): {what}", ", ".join(f"{v:.0%}" for v in phase[key]))
        row(f"{workers} worker(s): mean batch (events)", _num(phase.get("mean_batch"), ",.1f"))
        rss = phase.get("peak_rss_bytes") or []
        row(f"{workers} worker(s): peak RSS", ", ".join(f"{r / 2**20:.0f} MiB" for r in rss))
        if phase.get("cores"):
            row(f"{workers} worker(s): cores busy", _cores(phase["cores"]))
        for part in ("redis", "kafka"):
            cost = phase.get(f"{part}_cpu_seconds_per_1000")
            if cost is not None:
                row(f"{workers} worker(s): {part} CPU s per 1,000 events", f"{cost:.3f}")
    if ceiling:
        row("ceiling: bare aiokafka consumer + json.loads, events/s", _num(ceiling))
    for key in ("latency", "latency_below_capacity"):
        latency = result.get(key)
        if not latency:
            continue
        name = f"latency at {_num(latency['rate'])}/s"
        row(f"{name}: achieved produce rate", f"{_num(latency['achieved_rate'])} events/s")
        row(f"{name}: p50 / p95 / p99", " / ".join(_ms(latency[q]) for q in ("p50", "p95", "p99")))
        reco = latency.get("recommendation") or {}
        if reco.get("observed"):
            row(
                f"{name}: produce → recommendation list published, p50 / p95 / p99",
                " / ".join(_ms(reco[q]) for q in ("p50", "p95", "p99")),
            )
        kept_up = latency.get("kept_up")
        if kept_up is not None:
            drained = latency.get("drained_seconds") or 0.0
            row(
                f"{name}: worker kept up",
                "yes" if kept_up else f"no: drained {drained:.0f}s after the start (queueing)",
            )
        row(f"{name}: mean batch (events)", _num(latency.get("mean_batch"), ",.1f"))
        util = latency.get("worker_cpu_utilisation")
        row(f"{name}: worker CPU use", "-" if util is None else f"{util:.0%}")
        if latency.get("cores"):
            row(f"{name}: cores busy", _cores(latency["cores"]))
    for key, what in (("http", "reads"), ("http_recommendations", "recommendation reads")):
        http = result.get(key)
        if not http:
            continue
        lat = http["latency"]
        row(
            f"{what}: p50 / p95 / p99 / max",
            " / ".join(_ms(lat[q]) for q in ("p50", "p95", "p99", "max")),
        )
        row(
            f"{what}: achieved rate, statuses",
            f"{_num(http['achieved_rate'])}/s, {http['statuses']}",
        )
    redis = result.get("redis")
    if redis:
        row("redis: profiles, aliases", f"{_num(redis['profiles'])}, {_num(redis['aliases'])}")
        usage = redis.get("memory_usage") or {}
        row(
            "redis: MEMORY USAGE per profile key, mean / p99",
            f"{_num(usage.get('mean'))} / {_num(usage.get('p99'))} bytes",
        )
        blob = redis.get("msgpack_bytes") or {}
        row("redis: MessagePack value, mean", f"{_num(blob.get('mean'))} bytes")
    stages = result.get("stages")
    if stages:
        row("in-process batch processor, events/s (wall)", _num(stages["events_per_second"]))
        cpu = stages.get("per_event_cpu_us") or {}
        for name, micros in stages["per_event_us"].items():
            spent = f"{micros:.1f} wall"
            if name in cpu:
                spent += f", {cpu[name]:.1f} CPU"
            row(f"µs per event: {name}", spent)
    return "\n".join(lines)
