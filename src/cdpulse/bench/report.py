"""A benchmark result as Markdown: each figure against its target, what it cost, and how
contended the machine was. Ready to paste into BENCHMARKS.md.

Targets are reported, never asserted: a run on a busy laptop must still produce a
report, and the report says how far each figure is from its target.

>>> verdict(12_000, Target("throughput", 15_000, at_least=True, unit="events/s"))
'missed: 0.80x the target'
>>> verdict(0.004, Target("p99", 0.005, at_least=False, unit="s"))
'met'
>>> verdict(3, Target("round trips", 3, at_least=False, unit="", inclusive=True))
'met'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Target:
    """A figure's goal: at least ``value`` (throughput), or below it (latency); ``inclusive``
    makes an upper bound "at most" (round trips)."""

    name: str
    value: float
    at_least: bool
    unit: str
    inclusive: bool = False


TARGETS = {
    "throughput": Target(
        "sustained events/s per worker process, every per-event feature on",
        15_000,
        True,
        "events/s",
    ),
    "learner": Target(
        "learner (own process) caught up after the worker finished the backlog",
        5.0,
        False,
        "s",
    ),
    "latency_p99": Target("p99 produce → profile written at half capacity", 0.100, False, "s"),
    "http_p99": Target(
        "GET /v1/profiles/{id} p99 at 1,000 requests/s, ingesting at half capacity",
        0.005,
        False,
        "s",
    ),
    "reco_http_p99": Target(
        "GET /v1/profiles/{id}/recommendations p99 at 1,000 requests/s, ingesting at half capacity",
        0.005,
        False,
        "s",
    ),
    "round_trips": Target("Redis round trips for a typical batch", 3, False, "", inclusive=True),
    "redis_bytes": Target("Redis bytes per profile", 4096, False, "bytes", inclusive=True),
    "scaling": Target("two workers on two partitions / one", 1.6, True, "x"),
}

# Measured on this kind of machine (2 cores) in 2026-12, not by this run:
# what the ratios below compare with.
REFERENCES = (
    ("bare aiokafka consumer, decode only", "235,000"),
    (
        "hand-written: confluent-kafka + orjson + one pipelined Lua update per event",
        "65,000-80,000",
    ),
    ("Quix Streams, the same minimal profile in RocksDB", "74,000"),
    ("a do-nothing faust agent, as shipped / batch consumer path + uvloop", "17,000 / 40,000"),
)


# A load generator whose sends run this late (p99) is short of CPU itself: said beside the
# read latency, which then also holds the generator's own delay.
GENERATOR_LATE = 0.005
# The steady phases: result key, what a phase name adds, what a half-capacity row says.
STEADY = (
    ("steady", ""),
    ("steady_reads", " + reads"),
    ("steady_read_ceiling", " + reads from the read ceiling"),
)
HALF_CAPACITY = (
    ("steady", "ingest only"),
    ("steady_reads", "ingest + reads"),
    ("steady_read_ceiling", "ingest + reads from the read ceiling"),
)
READ_CEILING = (
    "The read ceiling (`bench/read_ceiling.py`) is the api's stack with nothing of "
    "cdpulse's read path: aiohttp on uvloop and redis-py with hiredis over the roles' pool, "
    "each read answered with one `HGET` of the profile's stored bytes (no alias, watermark, "
    "token, decoding, scoring or rendering), read at the same rate while the same worker "
    "ingests at the same rate. What it misses, this stack on this machine misses."
)


def verdict(value: float | None, target: Target) -> str:
    """``met``, or by how much it was missed (as a multiple of the target)."""
    if value is None or math.isnan(value):
        return "not measured"
    if target.at_least:
        met = value >= target.value
    else:
        met = value <= target.value if target.inclusive else value < target.value
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


def figures(result: Mapping[str, Any]) -> dict[str, float | None]:
    """The figures the targets are about."""
    one = throughput_of(result, 1) or {}
    return {
        "throughput": one.get("events_per_second_per_worker"),
        "learner": _get(one, "learner", "caught_up_after_seconds"),
        "latency_p99": _get(result, "steady", "written", "p99"),
        "http_p99": _get(result, "steady_reads", "reads", "profile", "latency", "p99"),
        "reco_http_p99": _get(result, "steady_reads", "reads", "recommendations", "latency", "p99"),
        "round_trips": _get(one, "round_trips", "typical"),
        "redis_bytes": _get(result, "redis", "bytes_per_profile"),
        "scaling": _get(result, "scaling", "ratio"),
    }


def ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _show(target: Target) -> Callable[[float | None], str]:
    if target.unit == "s" and target.value < 1:
        return ms
    if target.unit == "s":
        return lambda v: "-" if v is None else f"{v:.1f} s"
    if target.unit == "x":
        return lambda v: "-" if v is None else f"{v:.2f}x"
    return lambda v: "-" if v is None else f"{num(v)} {target.unit}".rstrip()


def _table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _targets(result: Mapping[str, Any]) -> list[str]:
    rows = []
    one = throughput_of(result, 1) or {}
    for key, value in figures(result).items():
        target = TARGETS[key]
        show = _show(target)
        bound = ("≥ " if target.at_least else "≤ " if target.inclusive else "< ") + show(
            target.value
        )
        shown, judged = show(value), verdict(value, target)
        learner = one.get("learner") or {}
        if key == "learner" and value is None and learner.get("lag_at_end"):
            shown = (
                f"not caught up: {learner['lag_at_end']:,} behind after "
                f"{learner['waited_seconds']} s"
            )
            judged = "missed"
        if key == "latency_p99" and _get(result, "steady", "kept_up") is False:
            shown += " (the worker did not keep up)"
        if key in ("http_p99", "reco_http_p99") and value is not None:
            name = "profile" if key == "http_p99" else "recommendations"
            read = _get(result, "steady_reads", "reads", name) or {}
            shown += f" (p50 {ms(_get(read, 'latency', 'p50'))})"
            late = _get(read, "send_lag", "p99")
            if late is not None and late > GENERATOR_LATE:
                shown += f"; the load generator itself sent p99 {ms(late)} late"
            floor = _get(result, "steady_read_ceiling", "reads", name, "latency", "p99")
            if floor is not None:
                shown += f"; the read ceiling: p99 {ms(floor)}"
        rows.append([target.name, shown, bound, judged])
    return _table(("measure", "result", "target", "verdict"), rows)


def _ceilings(result: Mapping[str, Any]) -> list[str]:
    rows: list[list[str]] = []
    ceilings = result.get("ceilings") or {}
    engine = _get(throughput_of(result, 1) or {}, "events_per_second")
    names = {
        "bare": "bare consumer: aiokafka + json.loads",
        "minimal": "hand-written minimal profile: confluent-kafka + orjson + one pipelined "
        "Lua update per event, commit per batch",
    }
    for kind, what in names.items():
        found = ceilings.get(kind) or {}
        rate = found.get("events_per_second")
        ratio = f"{engine / rate:.1%}" if engine and rate else "-"
        rows.append([what, num(rate), num(found.get("cpu_seconds_per_1000"), ".3f"), ratio])
    for workers in (1, 2):
        phase = throughput_of(result, workers) or {}
        if phase:
            rows.append(
                [
                    f"the engine, {workers} worker(s) (+ learner)",
                    num(phase.get("events_per_second")),
                    num(_get(phase, "cpu_seconds_per_1000", "worker"), ".3f"),
                    "",
                ]
            )
    lines = _table(
        ("pipeline (this run, same messages)", "events/s", "its CPU s per 1,000 events",
         "engine (1 worker) / this"),
        rows,
    )  # fmt: skip
    bare = _get(ceilings, "bare", "events_per_second")
    minimal = _get(ceilings, "minimal", "events_per_second")
    if bare and minimal:
        lines.append("")
        lines.append(f"Hand-written minimal profile / bare consumer: {minimal / bare:.1%}.")
    lines += ["", *_table(("for context, measured earlier on this machine", "events/s"),
                          [list(r) for r in REFERENCES])]  # fmt: skip
    return lines


def _phases(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The engine's phases by name: throughput with N workers, then the steady ones."""
    phases: list[tuple[str, Mapping[str, Any]]] = [
        (f"throughput, {p.get('workers')} worker(s)", p) for p in result.get("throughput") or []
    ]
    for key, what in STEADY:
        if result.get(key):
            phases.append((f"steady at {num(result[key].get('rate'))}/s{what}", result[key]))
    return phases


def _cpu(result: Mapping[str, Any]) -> list[str]:
    rows = []
    roles = ("worker", "learner", "api", "kafka", "redis")
    for name, phase in _phases(result):
        per = phase.get("cpu_seconds_per_1000") or {}
        cores = phase.get("cores") or {}
        rows.append(
            [name, *(num(per.get(r), ".3f") for r in roles), num(sum(per.values()), ".3f"),
             num(cores.get("machine"), ".2f"), num(cores.get("others"), ".2f")]
        )  # fmt: skip
    return _table(("phase", *roles, "all roles", "cores busy (machine)", "cores: others"), rows)


def _latency(result: Mapping[str, Any]) -> list[str]:
    rows = []
    for key, what in HALF_CAPACITY:
        phase = result.get(key)
        if not phase:
            continue
        written, reco = phase.get("written") or {}, phase.get("recommendation") or {}
        producer = phase.get("producer") or {}
        learner = phase.get("learner") or {}
        lag = producer.get("schedule_lag") or {}
        rows.append(
            [
                what,
                f"{num(phase.get('rate'))} / {num(producer.get('achieved_rate'))}",
                " / ".join(ms(written.get(q)) for q in ("p50", "p95", "p99")),
                " / ".join(ms(reco.get(q)) for q in ("p50", "p95", "p99"))
                + f" ({num(reco.get('observed'))} lists)",
                "yes"
                if phase.get("kept_up")
                else f"no (drained {phase.get('drained_seconds', 0):.0f} s late)",
                f"{num(learner.get('lag_max'))} / {num(learner.get('lag_at_end'))}",
                f"{ms(lag.get('p99'))} / {ms(lag.get('max'))}",
            ]
        )
    return _table(
        ("half capacity", "events/s asked / sent", "produce → written p50 / p95 / p99",
         "produce → recommendation p50 / p95 / p99", "worker kept up",
         "learner lag max / end (messages)", "producer behind schedule p99 / max"),
        rows,
    )  # fmt: skip


def _steps(result: Mapping[str, Any]) -> list[str]:
    rows = []
    for key, what in HALF_CAPACITY:
        phase = result.get(key) or {}
        steps, refresh = phase.get("batch_steps"), phase.get("model_refresh") or {}
        if not steps:
            continue
        cells = [" / ".join(ms((steps.get(s) or {}).get(q)) for q in ("p50", "p99")) for s in
                 ("waited", "decided", "written")]  # fmt: skip
        count = num(refresh.get("observed"))
        rows.append(
            [what, *cells, f"{count}: " + " / ".join(ms(refresh.get(q)) for q in ("p50", "p99"))]
        )
    return _table(
        ("half capacity", "waited p50 / p99 (oldest event's append to its batch taken)",
         "decided p50 / p99", "written p50 / p99 (after the batch before)",
         "model refreshes that swapped: count: p50 / p99"),
        rows,
    )  # fmt: skip


def _reads(result: Mapping[str, Any]) -> list[str]:
    rows = []
    served = (("steady_reads", ""), ("steady_read_ceiling", " (read ceiling)"))
    for key, who in served:
        for name, read in ((result.get(key) or {}).get("reads") or {}).items():
            rows.append(_read_row(f"GET {name}{who}", read))
    lines = _table(
        ("endpoint", "requests/s asked / done", "latency from due p50 / p99 / max",
         "from sent p99", "statuses", "generator: sent behind schedule p99 / max, late (> 5 ms)",
         "generator cores"),
        rows,
    )  # fmt: skip
    for key, who in (("steady_reads", "api process"), ("steady_read_ceiling", "read ceiling")):
        used = (result.get(key) or {}).get("api_cpu_seconds_per_1000_requests")
        if used is not None:
            lines += ["", f"The {who} used {used:.3f} CPU s per 1,000 requests."]
    if result.get("steady_read_ceiling"):
        lines += ["", READ_CEILING]
    return lines


def _read_row(name: str, read: Mapping[str, Any]) -> list[str]:
    latency, service, lag = (read.get(k) or {} for k in ("latency", "service", "send_lag"))
    return [
        name,
        f"{num(read.get('rate'))} / {num(read.get('achieved_rate'))}",
        " / ".join(ms(latency.get(q)) for q in ("p50", "p99", "max")),
        ms(service.get("p99")),
        ", ".join(f"{k}: {v:,}" for k, v in sorted((read.get("statuses") or {}).items())),
        f"{ms(lag.get('p99'))} / {ms(lag.get('max'))}, {num(lag.get('late'))} late",
        num(read.get("generator_cores"), ".2f"),
    ]


def _batches(result: Mapping[str, Any]) -> list[str]:
    rows = []
    phases = [
        (f"throughput, {p.get('workers')} worker(s)", p) for p in result.get("throughput") or []
    ]
    phases += [(k.replace("_", " + "), result[k]) for k, _ in STEADY if result.get(k)]
    for name, phase in phases:
        trips, sizes = phase.get("round_trips") or {}, phase.get("batch_size") or {}
        share = trips.get("share_at_most_3")
        saved = phase.get("profiles_saved") or {}
        per_1000 = [(saved.get(c) or {}).get("per_1000_events") for c in ("events", "due")]
        rows.append(
            [
                name,
                num(phase.get("batches")),
                num(trips.get("typical")),
                num(trips.get("mean"), ".2f"),
                "-" if share is None else f"{share:.1%}",
                num(trips.get("p99_bucket")),
                num(sizes.get("mean"), ",.1f"),
                "-" if None in per_1000 else " / ".join(num(v, ",.0f") for v in per_1000),
            ]
        )
    return _table(
        ("phase", "batches", "round trips: typical", "mean", "batches ≤ 3", "p99 (bucket)",
         "mean batch (events)", "profiles saved per 1,000 events: with events / due only"),
        rows,
    )  # fmt: skip


def _workers(result: Mapping[str, Any]) -> list[str]:
    rows = []

    def share(phase: Mapping[str, Any], key: str) -> str:
        return ", ".join(f"{v:.0%}" for v in phase.get(key) or [])

    for phase in result.get("throughput") or []:
        learner = phase.get("learner") or {}
        rss = phase.get("rss_bytes_max") or {}
        rows.append(
            [
                f"{phase.get('workers')} worker(s)",
                share(phase, "worker_cpu_utilisation"),
                share(phase, "worker_runqueue_share"),
                share(phase, "worker_redis_share"),
                ", ".join(f"{n} {v / 2**20:.0f}" for n, v in sorted(rss.items()) if n != "bench"),
                f"{num(learner.get('lag_when_worker_done'))} / "
                f"{num(learner.get('caught_up_after_seconds'), '.1f')} s",
            ]
        )
    return _table(
        ("throughput", "worker CPU use", "worker runnable, waiting for a CPU",
         "worker awaiting Redis", "peak RSS (MiB)",
         "learner lag when the worker was done / caught up after"),
        rows,
    )  # fmt: skip


def _redis(result: Mapping[str, Any]) -> list[str]:
    redis = result.get("redis")
    if not redis:
        return []
    usage, blob = redis.get("memory_usage") or {}, redis.get("msgpack_bytes") or {}
    return [
        f"Redis after the 1-worker backlog: {num(redis.get('profiles'))} profiles, "
        f"{num(redis.get('aliases'))} aliases, {num(redis.get('bytes_per_profile'))} bytes per "
        f"profile (used_memory growth); MEMORY USAGE per profile key mean / p99 "
        f"{num(usage.get('mean'))} / {num(usage.get('p99'))} bytes; MessagePack value mean "
        f"{num(blob.get('mean'))} bytes.",
        *_aof(result.get("redis_aof") or {}),
    ]


def _aof(aof: Mapping[str, Any]) -> list[str]:
    """The append-only file's rewrites during the phases (each forks Redis and writes
    the whole dataset: CPU and disk the roles did not get)."""
    start = aof.get("start")
    if not start:
        return []
    backlog, steady = aof.get("after_backlog") or start, aof.get("after_steady")
    during = backlog["aof_rewrites"] - start["aof_rewrites"]
    line = (
        f"Redis' append-only file at the start: {start['aof_bytes'] / 1e6:,.0f} MB; "
        f"rewrites during the backlog: {during}"
    )
    if steady:
        line += f", during the steady phases: {steady['aof_rewrites'] - backlog['aof_rewrites']}"
    return [line + "."]


def _stages(result: Mapping[str, Any]) -> list[str]:
    stages = result.get("stages")
    if not stages:
        return []
    wall, cpu = stages.get("per_event_us") or {}, stages.get("per_event_cpu_us") or {}
    rows = [[name, f"{us:.1f}", num(cpu.get(name), ".1f")] for name, us in wall.items()]
    return [
        f"The pipeline in-process (no faust consumer) over {num(stages.get('events'))} of the "
        f"same events"
        + (
            f", after the backlog's {num(stages.get('warm_events'))} untimed (profiles as "
            "grown as in the steady phases)"
            if stages.get("warm_events")
            else ""
        )
        + f": {num(stages.get('events_per_second'))} events/s, "
        f"{num(stages.get('cpu_seconds_per_1000'), '.3f')} CPU s per 1,000 events"
        + (
            " (the compiled build: its native stages are timed whole)."
            if stages.get("compiled")
            else "."
        ),
        "",
        *_table(("stage, or a part of one (\"in ...\")", "µs wall per event",
                 "µs CPU per event"), rows),
    ]  # fmt: skip


def _contention(result: Mapping[str, Any]) -> list[str]:
    rows = []
    phases: list[tuple[str, Mapping[str, Any]]] = [
        (f"ceiling: {k}", v) for k, v in (result.get("ceilings") or {}).items()
    ]
    phases += [
        (f"throughput, {p.get('workers')} worker(s)", p) for p in result.get("throughput") or []
    ]
    phases += [(k.replace("_", " + "), result[k]) for k, _ in STEADY if result.get(k)]
    for name, phase in phases:
        c = phase.get("contention") or {}
        load = c.get("load_average") or {}
        start, end = load.get("start") or ["-"], load.get("end") or ["-"]
        top = ", ".join(f"{n} {v:.2f}" for n, v in c.get("top_others") or [])
        rows.append([name, f"{start[0]} → {end[0]}", num(c.get("others_cores"), ".2f"), top or "-"])
    return _table(
        ("phase", "load average (1 min)", "cores used by others",
         "busiest other processes (cores)"),
        rows,
    )  # fmt: skip


def _header(result: Mapping[str, Any]) -> list[str]:
    machine = result.get("machine") or {}
    source = result.get("source") or {}
    options = result.get("options") or {}
    load = result.get("load_average") or {}
    commit = (source.get("commit") or "?")[:7] + (" (dirty)" if source.get("dirty") else "")
    lines = [
        f"**Run:** {result.get('started_at', '?')} to {result.get('finished_at', '?')}, "
        f"commit `{commit}`{' · ' + result['label'] if result.get('label') else ''}.",
        f"**Machine:** {machine.get('cpu_model', '?')} ({machine.get('cores', '?')} cores), "
        f"{machine.get('memory_gib', '?')} GiB, Linux {machine.get('kernel', '?')}, "
        f"CPython {machine.get('python', '?')}; load average at the start "
        f"{(load.get('start') or ['?'])[0]}, at the end {(load.get('end') or ['?'])[0]}.",
        f"**Workload:** {num(options.get('events'))} events of "
        f"{num(options.get('customers'))} customers, {options.get('partitions', '?')} "
        f"partitions per input topic.",
    ]
    if result.get("command"):
        lines.append(f"**Command:** `{result['command']}`")
    if result.get("failed"):
        lines.append(f"**The run failed:** {result['failed']}")
    return lines


def render_markdown(result: Mapping[str, Any]) -> str:
    """The figures vs the targets, then the costs behind them, as Markdown."""
    sections: list[tuple[str, list[str]]] = [
        ("", _header(result)),
        ("Against the targets", _targets(result)),
        ("The engine against its ceilings", _ceilings(result)),
        ("CPU seconds per 1,000 events, by process role", _cpu(result)),
        ("Latency at half of the 1-worker capacity", _latency(result)),
        ("Where a batch's latency goes at half capacity", _steps(result)),
        ("Reads while ingesting at half capacity", _reads(result)),
        ("Redis round trips and batch sizes", _batches(result)),
        ("Workers and learner at full speed", _workers(result)),
        ("Memory", _redis(result)),
        ("Where a worker's time goes", _stages(result)),
        ("How contended the machine was", _contention(result)),
    ]
    lines: list[str] = []
    for title, body in sections:
        if not body:
            continue
        if title:
            lines += [f"### {title}", ""]
        lines += [*body, ""]
    return "\n".join(lines).rstrip() + "\n"
