"""A steady phase: events produced at a fixed rate below capacity, and, optionally, reads.

A producer process sends the phase's events at ``rate`` (half of the measured 1-worker
capacity). After ``warmup_seconds`` the worker's and the learner's histograms are
scraped; at the end of the steady part again, and the difference gives:

* produce → profile written (``cdpulse_ingest_to_written_seconds``): Kafka CreateTime,
  stamped by the producer at ``produce()``, to the profile write acknowledged by Redis;
* produce → recommendation list (``cdpulse_ingest_to_recommendation_seconds``, the
  learner's): CreateTime of an item event to its list acknowledged by the broker.

Quantiles are interpolated inside buckets as Prometheus' ``histogram_quantile`` does.

With ``paths``, two load processes (``http_load``), one per endpoint, read the api at
``http_rate`` each, open loop, while the events flow: read latency is measured on a
worker that is ingesting, not on an idle one. Each load process reports how late it
sent its own requests and its CPU, so a starved generator is told apart from a slow api.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cdpulse.bench.offsets import Offsets
from cdpulse.bench.procstat import load_average, process_table, top_others
from cdpulse.bench.produce import Row, write_records
from cdpulse.bench.roles import RoleProcess, Scrape
from cdpulse.bench.sampler import Sampler, Watched, cores_between, lag_timeline, per_thousand
from cdpulse.bench.stats import histogram_delta, histogram_quantile
from cdpulse.bench.throughput import (
    APPLIED,
    BATCH_SIZE,
    ROUND_TRIPS,
    batch_figures,
    saved_figures,
    saved_of,
)

if TYPE_CHECKING:
    from cdpulse.bench.driver import BenchRun

WRITTEN = "cdpulse_ingest_to_written_seconds"
# Where produce -> written goes, per batch (the worker's cdpulse_batch_step_seconds).
STEPS = ("waited", "decided", "written")
STEP = "cdpulse_batch_step_seconds"
REFRESH = "cdpulse_model_refresh_seconds"
RECOMMENDED = "cdpulse_ingest_to_recommendation_seconds"
METHOD = (
    "produce → written: cdpulse_ingest_to_written_seconds, Kafka CreateTime (stamped by the "
    "producer process at produce()) to the profile write acknowledged by Redis; produce → "
    "recommendation: the learner's cdpulse_ingest_to_recommendation_seconds. Bucket counts "
    "scraped after the warm-up and at the end of the steady part; quantiles interpolated "
    "inside buckets as Prometheus' histogram_quantile does."
)
QUANTILES = ("p50", "p95", "p99")


def quantiles(buckets: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """p50/p95/p99 of a histogram delta, and how many observations it holds."""
    observed = buckets[-1][1] if buckets else 0
    out: dict[str, Any] = {"observed": observed}
    for q in QUANTILES:
        out[q] = histogram_quantile(float(q[1:]) / 100, buckets) if observed else None
    return out


def _delta(after: Scrape, before: Scrape, name: str) -> list[tuple[float, float]]:
    if name not in after.buckets:
        return []
    return histogram_delta(after.buckets[name], before.buckets.get(name) or [
        (bound, 0.0) for bound, _ in after.buckets[name]
    ])  # fmt: skip


@contextmanager
def sampled_every_second(sampler: Sampler, worker: RoleProcess) -> Iterator[list[dict[str, Any]]]:
    """Samples, and the worker's per-second produce → written quantiles, on a thread."""
    timeline: list[dict[str, Any]] = []
    stop = threading.Event()

    def every_second() -> None:
        previous = worker.scrape()
        while not stop.wait(1.0):
            try:
                sampler.take()
                current = worker.scrape()
            except Exception:  # a slow answer under load: this second is not sampled
                continue
            delta = _delta(current, previous, WRITTEN)
            previous = current
            point: dict[str, Any] = {"t": sampler.samples[-1].t, **quantiles(delta)}
            timeline.append(point)

    thread = threading.Thread(target=every_second, daemon=True)
    thread.start()
    try:
        yield timeline
    finally:
        stop.set()
        thread.join()


def measure_steady(
    run: BenchRun,
    processes: Mapping[str, RoleProcess],
    rows: list[Row],
    rate: float,
    paths: Mapping[str, list[str]] | None,
    label: str | None = None,
) -> dict[str, Any]:
    """Produce ``rows`` at ``rate``; with ``paths``, read them from ``processes["api"]``
    meanwhile (the api, or the read ceiling in its place)."""
    from cdpulse.bench.driver import say, wait_for

    o = run.options
    label = label or ("steady-reads" if paths else "steady")
    worker, learner = processes["worker0"], processes["learner"]
    say(
        f"{label}: {len(rows):,} events at {rate:,.0f}/s"
        + (f", reads at {o.http_rate:,.0f}/s per endpoint" if paths else "")
    )
    records = run.work_dir / f"{label}.msgpack"
    write_records(records, rows)
    started_file = run.work_dir / f"{label}.started"
    produced = run.work_dir / f"{label}-produce.json"
    producer = run.start_producer(records, rate, produced, started_file)
    run.helpers.append(producer.pid)
    loads: dict[str, subprocess.Popen[bytes]] = {}
    load_out = {name: run.work_dir / f"{label}-load-{name}.json" for name in paths or {}}
    load = load_average()
    with Offsets(run.base.kafka_bootstrap) as offsets:
        watched = Watched(
            offsets,
            run.group("w1"),
            run.learner_group("w1"),
            run.learner_topics("w1"),
            run.redis,
            run.kafka_pid,
        )
        sampler = Sampler(processes, watched)
        sampler.extra = {"producer": producer.pid}
        sampler.take()
        try:
            wait_for(
                lambda: started_file.exists() or producer.poll() is not None,
                60,
                "the producer did not start",
            )
            with sampled_every_second(sampler, worker) as per_second:
                time.sleep(o.warmup_seconds)
                t0 = time.monotonic() - sampler.started
                table = process_table()
                before = {"worker": worker.scrape(), "learner": learner.scrape()}
                if paths:
                    for name, wanted in paths.items():
                        listed = run.work_dir / f"{label}-paths-{name}.json"
                        listed.write_text(json.dumps(wanted))
                        loads[name] = run.helper(
                            "http_load",
                            "--url", processes["api"].url,
                            "--paths", str(listed),
                            "--rate", str(o.http_rate),
                            "--seconds", str(o.http_seconds),
                            "--out", str(load_out[name]),
                            log=run.work_dir / f"{label}-load-{name}.log",
                        )  # fmt: skip
                        run.helpers.append(loads[name].pid)
                        sampler.extra = {**sampler.extra, f"load-{name}": loads[name].pid}
                    for process in loads.values():
                        process.wait(o.http_seconds + 120)
                else:
                    producer.wait(len(rows) / rate + 300)
                # The measured part ends with the reads (the producer runs a little longer,
                # so the api never serves an idle engine) or with the producer.
                t1 = time.monotonic() - sampler.started
                after = {"worker": worker.scrape(), "learner": learner.scrape()}
                top = top_others(table, process_table(), run.ours(processes), t1 - t0)
                producer.wait(len(rows) / rate + 300)
            sampler.extra = {}
            # Drained: the worker's group committed everything produced so far.
            drain_started = time.monotonic()
            ends = offsets.ends(offsets.partitions(list(run.topics.inputs)))
            wait_for(
                lambda: offsets.committed(run.group("w1"), ends) >= sum(ends.values()),
                300,
                f"{label}: the worker did not drain",
                every=0.25,
            )
            drained = time.monotonic() - drain_started
            lag_after = sampler.take().learner_lag
        finally:
            for process in (producer, *loads.values()):
                if process.poll() is None:
                    process.kill()
                    process.wait()
                run.helpers.remove(process.pid)
    produce: dict[str, Any] = json.loads(produced.read_text()) if produced.exists() else {}
    steady_samples = [s for s in sampler.samples if t0 <= s.t <= t1]
    cores = cores_between(sampler.samples, t0, t1)
    achieved = produce.get("achieved_rate") or rate
    written = _delta(after["worker"], before["worker"], WRITTEN)
    found: dict[str, Any] = {
        "method": METHOD,
        "rate": rate,
        "producer": produce,
        "written": quantiles(written),
        "written_buckets": written,
        "recommendation": quantiles(_delta(after["learner"], before["learner"], RECOMMENDED)),
        "batch_steps": {
            step: quantiles(_delta(after["worker"], before["worker"], f"{STEP}{{step={step}}}"))
            for step in STEPS
        },
        "model_refresh": quantiles(_delta(after["worker"], before["worker"], REFRESH)),
        "steady_seconds": t1 - t0,
        "drained_seconds": drained,
        # Offsets are committed every second, so a worker that kept up drains within ~2 s.
        "kept_up": drained < 3.0,
        "cores": cores,
        "cpu_seconds_per_1000": per_thousand(cores, achieved),
        "learner": {
            "lag_max": max((sum(s.learner_lag.values()) for s in steady_samples), default=None),
            "lag_at_end": sum(lag_after.values()),
            "timeline": lag_timeline(sampler.samples),
        },
        "per_second": per_second,
        "contention": {
            "load_average": {"start": load, "end": load_average()},
            "others_cores": cores.get("others"),
            "top_others": top,
        },
    }
    w0, w1 = before["worker"], after["worker"]
    found.update(
        batch_figures(
            _delta(w1, w0, ROUND_TRIPS),
            _delta(w1, w0, BATCH_SIZE),
            {
                "round_trips": w1.value(f"{ROUND_TRIPS}_sum") - w0.value(f"{ROUND_TRIPS}_sum"),
                "batch_size": w1.value(f"{BATCH_SIZE}_sum") - w0.value(f"{BATCH_SIZE}_sum"),
            },
        )
    )
    before_saved, after_saved = saved_of([w0]), saved_of([w1])
    found.update(
        saved_figures(
            {cause: after_saved[cause] - before_saved[cause] for cause in after_saved},
            w1.value(APPLIED) - w0.value(APPLIED),
        )
    )
    if paths:
        reads: dict[str, Any] = {}
        for name, out in load_out.items():
            reads[name] = json.loads(out.read_text()) if out.exists() else {"failed": True}
            reads[name]["generator_cores"] = cores.get(f"load-{name}")
        requests = sum(r.get("achieved_rate") or 0.0 for r in reads.values())
        found["reads"] = reads
        found["api_cpu_seconds_per_1000_requests"] = (
            cores["api"] / requests * 1000 if requests and "api" in cores else None
        )
    p99 = found["written"]["p99"]
    say(
        f"{label}: produce → written p50 {_ms(found['written']['p50'])}, p99 {_ms(p99)}"
        + ("" if found["kept_up"] else " (the worker did not keep up)")
    )
    for name, read in (found.get("reads") or {}).items():
        latency = read.get("latency") or {}
        say(f"{label}: GET {name} p50 {_ms(latency.get('p50'))}, p99 {_ms(latency.get('p99'))}")
    return found


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"
