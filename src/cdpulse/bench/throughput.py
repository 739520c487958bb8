"""The throughput phases: the ceilings, and the engine on the backlog with N workers.

The engine's rate is the workers' group's committed offsets over the window in which
they went from 10% to 90% of the backlog (offsets are committed every second, so the
window leaves out the group join and the last commit); CPU is read from /proc at the
window's two ends for every process of every role, Kafka included, and from ``INFO cpu``
for Redis. When the worker is done, sampling goes on until the learner committed the
end of its topics (or ``learner_wait`` passed): the learner's lag at that moment and
how long it took to catch up say whether it keeps up with a worker at full speed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cdpulse.bench import redis_memory
from cdpulse.bench.offsets import Offsets
from cdpulse.bench.procstat import cores_used, cpu_snapshot, load_average, process_table, top_others
from cdpulse.bench.roles import RoleProcess
from cdpulse.bench.sampler import Sampler, Watched, lag_timeline, summarize
from cdpulse.bench.stats import add_histograms, share_at_most, typical_bucket
from cdpulse.ops.progress import Reporter

if TYPE_CHECKING:
    from cdpulse.bench.driver import BenchRun

WINDOW = (0.1, 0.9)  # the share of the messages over which throughput is measured
ROUND_TRIPS = "cdpulse_batch_round_trips"
BATCH_SIZE = "cdpulse_batch_size"
SAVED = "cdpulse_profiles_saved_total"
CAUSES = ("events", "due")  # ``metrics.PROFILES_SAVED``'s labels
APPLIED = "cdpulse_events_applied_total"


def _say(message: str) -> None:
    from cdpulse.bench.driver import say

    say(message)


def measure_ceilings(run: BenchRun) -> dict[str, Any]:
    """The bare consumer and the hand-written minimal-profile pipeline, one after the other."""
    o = run.options
    found: dict[str, Any] = {}
    for kind in ("bare", "minimal"):
        _say(f"ceiling: {kind}")
        out = run.work_dir / f"ceiling-{kind}.json"
        pids = {"kafka": run.kafka_pid, "redis": run.redis_pid}
        before = cpu_snapshot(pids)
        table = process_table()
        load = load_average()
        # The bare consumer is assigned the partitions; the minimal one joins a group.
        topics = (
            [f"{tp.topic}:{tp.partition}" for tp in run.backlog_ends]
            if kind == "bare"
            else list(run.topics.inputs)
        )
        process = run.helper(
            "ceiling", kind,
            "--bootstrap", run.base.kafka_bootstrap,
            "--topics", ",".join(topics),
            "--expected", str(o.events),
            "--redis-url", run.base.redis_url,
            "--prefix", f"{run.name}-minimal",
            "--group", f"cdpulse-{run.name}-minimal",
            "--batch", str(run.base.batch_size),
            "--out", str(out),
            log=run.work_dir / f"ceiling-{kind}.log",
        )  # fmt: skip
        run.helpers.append(process.pid)
        run.groups.append(f"cdpulse-{run.name}-minimal")
        try:
            process.wait(max(600.0, o.events / 1000))
            after = cpu_snapshot(pids)
            seconds = after.at - before.at
            top = top_others(table, process_table(), run.ours({}), seconds)
        finally:
            run.helpers.remove(process.pid)
        if not out.exists():
            raise RuntimeError(f"the {kind} ceiling wrote no result; see {out.with_suffix('.log')}")
        result: dict[str, Any] = json.loads(out.read_text())
        cores = cores_used(before, after)
        # The ceiling process is not in the snapshots (it did not exist before): its own
        # CPU, reported by itself, is taken out of what others used.
        others = cores.get("others", 0.0) - result.get("cpu_seconds_total", 0.0) / seconds
        # Kafka's and Redis' share over the process's whole life (start-up included).
        result["cpu_seconds_per_1000_whole_run"] = {
            k: cores[k] * seconds / o.events * 1000 for k in ("kafka", "redis") if k in cores
        }
        result["contention"] = {
            "load_average": {"start": load, "end": load_average()},
            "others_cores": others,
            "top_others": top,
        }
        rate = result.get("events_per_second") or 0.0
        _say(f"ceiling {kind}: {rate:,.0f} events/s")
        found[kind] = result
    return found


def histogram_of(scrapes: list[Any], name: str) -> list[tuple[float, float]]:
    """One histogram added up over several processes' scrapes."""
    return add_histograms([s.buckets.get(name, []) for s in scrapes])


def batch_figures(buckets_rt: list[tuple[float, float]], sizes: list[tuple[float, float]],
                  sums: Mapping[str, float]) -> dict[str, Any]:  # fmt: skip
    """Round trips per batch and batch sizes, from the workers' histograms over a phase."""
    batches = buckets_rt[-1][1] if buckets_rt else 0
    return {
        "batches": batches,
        "round_trips": {
            "typical": typical_bucket(buckets_rt, 0.5),
            "p99_bucket": typical_bucket(buckets_rt, 0.99),
            "mean": sums["round_trips"] / batches if batches else None,
            "share_at_most_3": share_at_most(buckets_rt, 3) if batches else None,
            "buckets": buckets_rt,
        },
        "batch_size": {
            "mean": sums["batch_size"] / sizes[-1][1] if sizes and sizes[-1][1] else None,
            "typical_bucket": typical_bucket(sizes, 0.5),
            "buckets": sizes,
        },
    }


def saved_figures(saved: Mapping[str, float], applied: float) -> dict[str, Any]:
    """Profiles saved (``cdpulse_profiles_saved_total`` by cause, over a phase) and per
    1,000 events applied: a profile saved only for what came due costs a load, a decision
    and a write of its own, one saved with events shares them with its events."""
    return {
        "profiles_saved": {
            cause: {
                "profiles": n,
                "per_1000_events": n / applied * 1000 if applied else None,
            }
            for cause, n in saved.items()
        }
    }


def saved_of(scrapes: Sequence[Any]) -> dict[str, float]:
    """``cdpulse_profiles_saved_total`` by cause, added up over ``scrapes``."""
    return {cause: sum(s.value(f"{SAVED}{{cause={cause}}}") for s in scrapes) for cause in CAUSES}


def measure_throughput(
    run: BenchRun, processes: Mapping[str, RoleProcess], phase: str, ends: Mapping[Any, int]
) -> dict[str, Any]:
    """The backlog (``ends``: its partitions' end offsets) through the phase's workers,
    with the learner beside them."""
    o = run.options
    workers = [p for n, p in processes.items() if n.startswith("worker")]
    used_before = redis_memory.used_memory(run.redis)
    load = load_average()
    table = process_table()
    total = sum(ends.values())
    _say(f"throughput: {len(workers)} worker(s) and a learner, {total:,} events")
    with Offsets(run.base.kafka_bootstrap) as offsets:
        watched = Watched(
            offsets,
            run.group(phase),
            run.learner_group(phase),
            run.learner_topics(phase),
            run.redis,
            run.kafka_pid,
        )
        sampler = Sampler(processes, watched)
        deadline = time.monotonic() + max(600.0, total / 200)
        with Reporter(f"throughput ({len(workers)} worker(s))", total) as progress:
            while True:
                sample = sampler.take(ends)
                progress.advance(sample.committed - progress.done)
                if sample.committed >= total:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"workers committed {sample.committed:,} of {total:,} messages "
                        f"before the deadline; logs in {run.work_dir / phase}"
                    )
                time.sleep(o.sample_every)
        done_at = sample.t
        lag_at_done = sum(sample.learner_lag.values())
        scrapes = [w.scrape() for w in workers]
        seconds = time.monotonic() - sampler.started
        top = top_others(table, process_table(), run.ours(processes), seconds)
        while sum(sample.learner_lag.values()) and sample.t - done_at < o.learner_wait:
            time.sleep(o.sample_every)
            sample = sampler.take(ends)
        lag_end = sum(sample.learner_lag.values())
    summary = summarize(sampler.samples, total, *WINDOW)
    summary["workers"] = len(workers)
    summary["phase"] = phase
    summary["used_memory_before"] = used_before
    summary["learner"] = {
        "lag_when_worker_done": lag_at_done,
        "caught_up_after_seconds": None if lag_end else round(sample.t - done_at, 2),
        "lag_at_end": lag_end,
        "waited_seconds": round(sample.t - done_at, 2),
        "timeline": lag_timeline(sampler.samples),
    }
    summary.update(
        batch_figures(
            histogram_of(scrapes, ROUND_TRIPS),
            histogram_of(scrapes, BATCH_SIZE),
            {
                "round_trips": sum(s.value(f"{ROUND_TRIPS}_sum") for s in scrapes),
                "batch_size": sum(s.value(f"{BATCH_SIZE}_sum") for s in scrapes),
            },
        )
    )
    summary.update(saved_figures(saved_of(scrapes), sum(s.value(APPLIED) for s in scrapes)))
    summary["contention"] = {
        "load_average": {"start": load, "end": load_average()},
        "others_cores": (summary.get("cores") or {}).get("others"),
        "top_others": top,
    }
    summary["timeline"] = [s.as_dict() for s in sampler.samples]
    rate = summary.get("events_per_second")
    learner = summary["learner"]
    _say(
        f"throughput: {rate or 0:,.0f} events/s with {len(workers)} worker(s); learner lag "
        f"{lag_at_done:,} when the worker was done, "
        + (
            f"caught up {learner['caught_up_after_seconds']}s later"
            if learner["caught_up_after_seconds"] is not None
            else f"{lag_end:,} still after {learner['waited_seconds']}s"
        )
    )
    return summary


def scaling(throughput: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Two (and four) workers' events/s over one worker's, when those phases ran; and each
    phase's worker CPU per 1,000 events, which scale-out must keep flat."""
    rate: dict[int, float] = {
        t["workers"]: t["events_per_second"] for t in throughput if t.get("events_per_second")
    }
    if 1 not in rate or 2 not in rate:
        return None
    out: dict[str, Any] = {"one": rate[1], "two": rate[2], "ratio": rate[2] / rate[1]}
    if 4 in rate:
        out.update(four=rate[4], ratio_four=rate[4] / rate[1])
    out["worker_cpu_per_1000"] = {
        str(t["workers"]): (t.get("cpu_seconds_per_1000") or {}).get("worker") for t in throughput
    }
    return out
