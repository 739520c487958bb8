"""The pure parts of ``cdpulse bench``: its arithmetic, its /proc and /metrics parsing,
its report and its chart. Nothing here measures time."""

from __future__ import annotations

import asyncio
import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdpulse.bench.ceiling import summarize_progress
from cdpulse.bench.http_load import LoadResult, run_load, summarize_load
from cdpulse.bench.procstat import (
    CLOCK_TICKS,
    CpuSnapshot,
    cores_used,
    listening_inode,
    parse_comm_and_ticks,
    parse_stat,
    parse_status_kib,
    top_others,
)
from cdpulse.bench.produce import lag_summary, read_records, write_records
from cdpulse.bench.report import TARGETS, Target, figures, render_markdown, verdict
from cdpulse.bench.roles import parse_metrics
from cdpulse.bench.sampler import Sample, cores_between, per_thousand, role_of, summarize
from cdpulse.bench.stats import (
    add_histograms,
    crossing_time,
    histogram_delta,
    histogram_quantile,
    interpolate,
    percentile,
    percentiles,
    rates,
    share_at_most,
    typical_bucket,
    window_rate,
)
from cdpulse.bench.throughput import batch_figures, saved_figures, saved_of, scaling

INF = float("inf")

# --- percentiles ---------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(values, 0.0) == 10.0
    assert percentile(values, 0.5) == 30.0
    assert percentile(values, 1.0) == 50.0
    assert percentile(values, 0.9) == pytest.approx(46.0)  # rank 3.6


def test_percentile_does_not_care_about_order() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0}


def test_percentile_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        percentile([1.0], 1.5)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1), st.floats(0, 1), st.floats(0, 1))
def test_percentile_is_monotone_and_within_range(values: list[float], a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert min(values) <= percentile(values, low) <= percentile(values, high) <= max(values)


# --- histogram quantile --------------------------------------------------------------------


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(0.01, 10.0), (0.02, 30.0), (0.05, 40.0), (INF, 40.0)]
    # rank 20 of 40 lies halfway through the (0.01, 0.02] bucket, which holds 10..30
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.015)
    # rank 39.6: 9.6 of the 10 in (0.02, 0.05]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.02 + 0.03 * 0.96)


def test_histogram_quantile_first_bucket_starts_at_zero() -> None:
    assert histogram_quantile(0.5, [(0.004, 4.0), (INF, 4.0)]) == pytest.approx(0.002)


def test_histogram_quantile_in_the_inf_bucket_answers_the_highest_bound() -> None:
    assert histogram_quantile(0.99, [(0.1, 50.0), (1.0, 90.0), (INF, 100.0)]) == 1.0


def test_histogram_quantile_skips_empty_buckets() -> None:
    buckets = [(0.001, 0.0), (0.002, 0.0), (0.005, 10.0), (INF, 10.0)]
    assert histogram_quantile(0.0, buckets) == pytest.approx(0.002)
    assert histogram_quantile(1.0, buckets) == pytest.approx(0.005)


def test_histogram_quantile_of_an_empty_histogram_is_nan() -> None:
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]))


def test_histogram_quantile_needs_the_inf_bucket() -> None:
    with pytest.raises(ValueError, match=r"\+Inf"):
        histogram_quantile(0.5, [(0.1, 1.0)])


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=12), st.floats(0, 1))
def test_histogram_quantile_stays_inside_the_bucket_holding_its_rank(
    counts: list[int], q: float
) -> None:
    bounds = [0.001 * 2**i for i in range(len(counts))]
    cumulative, running = [], 0.0
    for bound, n in zip(bounds, counts, strict=True):
        running += n
        cumulative.append((bound, running))
    buckets = [*cumulative, (INF, running)]
    value = histogram_quantile(q, buckets)
    if running == 0:
        assert math.isnan(value)
        return
    assert 0 <= value <= bounds[-1]
    rank = q * running
    holder = next(i for i, (_, c) in enumerate(cumulative) if c >= rank and c > 0)
    lower = bounds[holder - 1] if holder else 0.0
    assert lower - 1e-12 <= value <= bounds[holder] + 1e-12


def test_histogram_delta_subtracts_two_scrapes() -> None:
    before = [(0.01, 5.0), (0.1, 8.0), (INF, 9.0)]
    after = [(0.01, 15.0), (0.1, 28.0), (INF, 30.0)]
    assert histogram_delta(after, before) == [(0.01, 10.0), (0.1, 20.0), (INF, 21.0)]


def test_histogram_delta_refuses_different_bounds() -> None:
    with pytest.raises(ValueError, match="bucket bounds"):
        histogram_delta([(0.1, 1.0), (INF, 1.0)], [(0.2, 1.0), (INF, 1.0)])


# --- progress over time --------------------------------------------------------------------

PROGRESS = [(0.0, 0.0), (1.0, 0.0), (2.0, 100.0), (3.0, 300.0), (4.0, 500.0), (5.0, 500.0)]


def test_crossing_time_interpolates_between_samples() -> None:
    assert crossing_time(PROGRESS, 200.0) == pytest.approx(2.5)
    assert crossing_time(PROGRESS, 500.0) == pytest.approx(4.0)
    assert crossing_time(PROGRESS, 501.0) is None
    assert crossing_time(PROGRESS, 0.0) == 0.0


def test_window_rate_leaves_out_startup_and_tail() -> None:
    found = window_rate(PROGRESS, total=500, start=0.2, end=0.8)
    assert found is not None
    rate, t0, t1 = found
    # 100 at t=2.0 (the first step at or past 20%), 300 at t=3.0 (the last at or before
    # 80%): 200 messages in 1 s
    assert t0 == pytest.approx(2.0)
    assert t1 == pytest.approx(3.0)
    assert rate == pytest.approx(200.0)


def test_window_rate_counts_whole_batches_between_their_commits() -> None:
    # Batches of 400 committed every 4 s, sampled every second, then a short last batch:
    # 400 per 4 s is 100/s, whatever fraction of a step the window's ends fall in.
    committed = [0.0] * 3 + [400.0] * 4 + [800.0] * 4 + [1200.0] * 4 + [1600.0] * 4 + [1700.0]
    samples = [(float(t), v) for t, v in enumerate(committed)]
    found = window_rate(samples, total=1700)
    assert found is not None
    rate, t0, t1 = found
    assert (t0, t1) == (3.0, 11.0)  # 400 and 1,200 (the last at or below 80%) first seen
    assert rate == pytest.approx(100.0)
    # Interpolating across the steps would have said otherwise.
    interpolated = 0.8 * 1700 / (crossing_time(samples, 1530) - crossing_time(samples, 170))
    assert interpolated != pytest.approx(100.0, rel=0.05)


def test_window_rate_is_none_before_progress_covers_the_window() -> None:
    assert window_rate([(0.0, 0.0), (1.0, 50.0)], total=100) is None


def test_interpolate_clamps_to_the_ends() -> None:
    series = [(1.0, 10.0), (3.0, 30.0)]
    assert interpolate(series, 0.0) == 10.0
    assert interpolate(series, 2.0) == 20.0
    assert interpolate(series, 9.0) == 30.0


def test_rates_is_the_slope_over_the_span() -> None:
    series = [(0.0, 0.0), (1.0, 100.0), (2.0, 300.0), (3.0, 600.0)]
    assert rates(series, span=1.0) == [(1.0, 100.0), (2.0, 200.0), (3.0, 300.0)]
    assert rates(series, span=2.0)[-1] == (3.0, 250.0)


# --- a phase summary -----------------------------------------------------------------------


def _sample(t: float, committed: int, cpu: float, lag: int = 0) -> Sample:
    return Sample(
        t=t,
        committed=committed,
        processed=[committed],
        batches=[committed // 100],
        redis_seconds=[t * 0.1],
        cpu_seconds={"worker0": cpu, "learner": t * 0.3, "kafka": t * 0.1, "bench": t * 0.02},
        runqueue_seconds={"worker0": t * 0.05},
        rss_bytes={"worker0": 100 * 2**20, "learner": 200 * 2**20},
        learner_lag={"x.training": lag, "x.reco-events": 0},
        machine_busy=int(t * 150),
        machine_total=int(t * 200),
        redis_cpu_seconds=t * 0.01,
    )


def test_summarize_measures_costs_inside_the_window_only() -> None:
    # 2 s of startup burning CPU, then 1000 events/s at 0.8 CPU seconds per second
    samples = [_sample(0, 0, 0), _sample(2, 0, 3.0)]
    samples += [_sample(2 + i, 1000 * i, 3.0 + 0.8 * i) for i in range(1, 11)]
    summary = summarize(samples, 10_000, 0.1, 0.9)
    assert summary["events_per_second"] == pytest.approx(1000)
    assert summary["worker_cpu_seconds_per_1000"] == [pytest.approx(0.8)]
    assert summary["worker_cpu_utilisation"] == [pytest.approx(0.8)]
    assert summary["worker_runqueue_share"] == [pytest.approx(0.05)]
    assert summary["worker_redis_share"] == [pytest.approx(0.1)]
    assert summary["machine_busy_share"] == pytest.approx(0.75)
    assert summary["mean_batch"] == pytest.approx(100)
    assert summary["wall_seconds"] == 12
    assert summary["first_commit_seconds"] == 3
    per = summary["cpu_seconds_per_1000"]
    assert per["worker"] == pytest.approx(0.8)
    assert per["learner"] == pytest.approx(0.3)
    assert per["kafka"] == pytest.approx(0.1)
    assert per["redis"] == pytest.approx(0.01)
    assert "api" not in per  # no api process in this phase: no figure rather than a zero
    cores = summary["cores"]
    assert cores["worker"] == pytest.approx(0.8)
    assert cores["bench"] == pytest.approx(0.02)
    assert cores["others"] == pytest.approx(cores["machine"] - (0.8 + 0.3 + 0.1 + 0.01 + 0.02))
    assert summary["rss_bytes_max"] == {"worker0": 100 * 2**20, "learner": 200 * 2**20}


def test_summarize_without_enough_progress_reports_no_rate() -> None:
    summary = summarize([_sample(0, 0, 0), _sample(1, 5, 1)], 100, 0.1, 0.9)
    assert "events_per_second" not in summary
    assert summary["wall_seconds"] is None


def test_cores_between_adds_workers_into_their_role() -> None:
    a, b = _sample(0, 0, 0.0), _sample(2, 100, 1.0)
    one = Sample(**{**a.as_dict(), "cpu_seconds": {**a.cpu_seconds, "worker1": 0.2}})
    two = Sample(**{**b.as_dict(), "cpu_seconds": {**b.cpu_seconds, "worker1": 0.8}})
    cores = cores_between([one, two], 0, 2)
    assert cores["worker0"] == pytest.approx(0.5)
    assert cores["worker1"] == pytest.approx(0.3)
    assert cores["worker"] == pytest.approx(0.8)
    # A process seen once (started at the last sample) has no span to measure: its start-up
    # is not counted as work of the phase.
    late = Sample(**{**b.as_dict(), "cpu_seconds": {**b.cpu_seconds, "load": 0.6}})
    assert cores_between([a, late], 0, 2)["load"] == 0.0
    assert cores_between([a, b], 1, 1) == {}


def test_per_thousand_and_role_names() -> None:
    assert per_thousand({"worker": 1.0, "api": 0.2}, 2000.0) == {"worker": 0.5, "api": 0.1}
    assert per_thousand({"worker": 1.0}, 0.0) == {}
    assert role_of("worker12") == "worker"
    assert role_of("load-profile") == "load-profile"


# --- ceilings, producer, load generator -----------------------------------------------------


def test_summarize_progress_uses_the_same_window_as_the_engine() -> None:
    # 1 s of slow start, then 100 events per 0.1 s at 0.05 CPU s per 0.1 s
    points = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.5)]
    points += [(1.0 + 0.1 * i, 100.0 * i, 0.5 + 0.05 * i) for i in range(1, 11)]
    found = summarize_progress(points, 1000, batches=10)
    assert found["events_per_second"] == pytest.approx(1000)
    assert found["cpu_seconds_per_1000"] == pytest.approx(0.5)
    assert found["cpu_utilisation"] == pytest.approx(0.5)
    assert found["mean_batch"] == 100
    assert summarize_progress([], 10, 0) == {"events": 0}


def test_producer_lag_counts_late_bursts() -> None:
    found = lag_summary([0.0, 0.001, 0.002, 0.05], 4)
    assert found["late"] == 1
    assert found["max"] == 0.05
    assert lag_summary([], 0) == {"bursts": 0, "late": 0}


def test_records_file_round_trips(tmp_path: Path) -> None:
    rows = [("t.clickstream", b"cust-1", b'{"a":1}'), ("t.customers", b"", b"\x00\xff")]
    write_records(tmp_path / "r.msgpack", rows)
    assert read_records(tmp_path / "r.msgpack") == rows


def test_load_summary_separates_the_generator_lag_from_the_latency() -> None:
    result = LoadResult(rate=100.0, seconds=2.0, cpu_seconds=0.5)
    result.latencies = [0.002] * 99 + [0.5]
    result.service = [0.001] * 99 + [0.01]
    result.send_lag = [0.0] * 98 + [0.01, 0.49]
    result.statuses.update({"200": 99, "TimeoutError": 1})
    found = summarize_load(result)
    assert found["achieved_rate"] == 50.0
    assert found["latency"]["max"] == 0.5
    assert found["service"]["max"] == 0.01
    assert found["send_lag"]["late"] == 2
    assert found["generator_cpu_utilisation"] == 0.25
    assert found["statuses"] == {"200": 99, "TimeoutError": 1}


# --- batches --------------------------------------------------------------------------------


def test_typical_round_trips_is_the_bucket_holding_the_median() -> None:
    buckets = [(1.0, 0.0), (2.0, 60.0), (3.0, 95.0), (4.0, 99.0), (6.0, 100.0), (INF, 100.0)]
    assert typical_bucket(buckets) == 2.0
    assert typical_bucket(buckets, 0.99) == 4.0
    assert share_at_most(buckets, 3.0) == 0.95
    assert typical_bucket([(1.0, 0.0), (INF, 0.0)]) is None
    with pytest.raises(ValueError, match="no bucket bound 5"):
        share_at_most(buckets, 5.0)


def test_add_histograms_adds_processes_bucket_by_bucket() -> None:
    assert add_histograms([[(1.0, 1.0), (INF, 2.0)], [], [(1.0, 3.0), (INF, 3.0)]]) == [
        (1.0, 4.0),
        (INF, 5.0),
    ]
    assert add_histograms([]) == []
    with pytest.raises(ValueError, match="bucket bounds"):
        add_histograms([[(1.0, 1.0), (INF, 1.0)], [(2.0, 1.0), (INF, 1.0)]])


def test_batch_figures_from_the_histograms_and_their_sums() -> None:
    trips = [(1.0, 0.0), (2.0, 8.0), (3.0, 9.0), (4.0, 10.0), (INF, 10.0)]
    sizes = [(250.0, 2.0), (500.0, 10.0), (INF, 10.0)]
    found = batch_figures(trips, sizes, {"round_trips": 23.0, "batch_size": 4600.0})
    assert found["batches"] == 10.0
    assert found["round_trips"]["typical"] == 2.0
    assert found["round_trips"]["mean"] == 2.3
    assert found["round_trips"]["share_at_most_3"] == 0.9
    assert found["batch_size"]["mean"] == 460.0
    empty = batch_figures([], [], {"round_trips": 0.0, "batch_size": 0.0})
    assert empty["round_trips"]["typical"] is None


def test_scaling_needs_both_phases() -> None:
    cpu = {"cpu_seconds_per_1000": {"worker": 0.08}}
    one = {"workers": 1, "events_per_second": 1000.0, **cpu}
    two = {"workers": 2, "events_per_second": 1500.0, **cpu}
    four = {"workers": 4, "events_per_second": 2000.0}
    per_worker = {"1": 0.08, "2": 0.08}
    assert scaling([one, two]) == {
        "one": 1000.0,
        "two": 1500.0,
        "ratio": 1.5,
        "worker_cpu_per_1000": per_worker,
    }
    assert scaling([one, two, four]) == {
        "one": 1000.0,
        "two": 1500.0,
        "ratio": 1.5,
        "four": 2000.0,
        "ratio_four": 2.0,
        "worker_cpu_per_1000": {**per_worker, "4": None},
    }
    assert scaling([one]) is None


# --- parsing /proc and /metrics ------------------------------------------------------------


def test_parse_stat_counts_fields_after_the_command_name() -> None:
    line = "4242 (cdpulse (worker) x) S 1 2 3 4 5 6 7 8 9 10 1234 567 0 0 20 0 9 0 1 2 3"
    assert parse_stat(line) == (1234, 567)


def test_parse_status_reads_kib_lines() -> None:
    text = "Name:\tpython3\nVmHWM:\t  250000 kB\nVmRSS:\t  200000 kB\n"
    assert parse_status_kib(text, "VmRSS") == 200000
    assert parse_status_kib(text, "VmHWM") == 250000
    with pytest.raises(ValueError, match="VmSwap"):
        parse_status_kib(text, "VmSwap")


def test_listening_inode_finds_the_listener_of_a_port() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode\n"
        "   0: 0100007F:9894 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "     0        0 111 1 0 100 0 0 10 0\n"
        "   1: 0100007F:9894 0100007F:C350 01 00000000:00000000 00:00000000 00000000"
        "     0        0 222 1 0 20 4 30 10 -1\n"
    )
    assert listening_inode(table, 0x9894) == "111"
    assert listening_inode(table, 9092) is None


def test_cores_used_splits_the_machine_between_named_processes_and_others() -> None:
    before = CpuSnapshot(10.0, 100.0, {"worker": 5.0, "kafka": 1.0})
    after = CpuSnapshot(12.0, 103.6, {"worker": 6.8, "kafka": 1.2, "redis": 0.1})
    cores = cores_used(before, after)
    assert cores["machine"] == pytest.approx(1.8)
    assert cores["worker"] == pytest.approx(0.9)
    assert cores["kafka"] == pytest.approx(0.1)
    assert "redis" not in cores  # not seen at the start: no figure rather than a wrong one
    assert cores["others"] == pytest.approx(0.8)


METRICS = """\
# HELP cdpulse_batch_size Messages per processed batch.
# TYPE cdpulse_batch_size histogram
cdpulse_batch_size_bucket{le="100.0"} 3.0
cdpulse_batch_size_bucket{le="500.0"} 10.0
cdpulse_batch_size_bucket{le="+Inf"} 10.0
cdpulse_batch_size_count 10.0
cdpulse_batch_size_sum 4000.0
# HELP cdpulse_redis_seconds Redis round trips, by operation.
# TYPE cdpulse_redis_seconds histogram
cdpulse_redis_seconds_bucket{le="0.001",op="load"} 4.0
cdpulse_redis_seconds_bucket{le="+Inf",op="load"} 5.0
cdpulse_redis_seconds_bucket{le="0.001",op="save"} 1.0
cdpulse_redis_seconds_bucket{le="+Inf",op="save"} 5.0
cdpulse_redis_seconds_count{op="load"} 5.0
cdpulse_redis_seconds_sum{op="load"} 0.004
cdpulse_redis_seconds_count{op="save"} 5.0
cdpulse_redis_seconds_sum{op="save"} 0.006
# HELP cdpulse_profiles_saved_total Profiles a worker saved, by why.
# TYPE cdpulse_profiles_saved_total counter
cdpulse_profiles_saved_total{cause="events"} 30.0
cdpulse_profiles_saved_total{cause="due"} 12.0
# HELP cdpulse_events_applied_total Events applied to a profile.
# TYPE cdpulse_events_applied_total counter
cdpulse_events_applied_total 60.0
"""


def test_parse_metrics_sums_labels_and_collects_buckets() -> None:
    scrape = parse_metrics(METRICS)
    assert scrape.value("cdpulse_batch_size_sum") == 4000.0
    assert scrape.value("cdpulse_redis_seconds_sum") == pytest.approx(0.010)
    assert scrape.value("cdpulse_missing_total") == 0.0
    assert scrape.buckets["cdpulse_batch_size"] == [(100.0, 3.0), (500.0, 10.0), (INF, 10.0)]
    assert scrape.buckets["cdpulse_redis_seconds"] == [(0.001, 5.0), (INF, 10.0)]
    assert scrape.buckets["cdpulse_redis_seconds{op=load}"] == [(0.001, 4.0), (INF, 5.0)]
    assert scrape.buckets["cdpulse_redis_seconds{op=save}"] == [(0.001, 1.0), (INF, 5.0)]
    assert "cdpulse_batch_size{}" not in scrape.buckets
    # A labelled counter: summed under its name, and kept per series.
    assert scrape.value("cdpulse_profiles_saved_total") == 42.0
    assert scrape.value("cdpulse_profiles_saved_total{cause=due}") == 12.0


def test_profiles_saved_by_cause_per_thousand_events_applied() -> None:
    scrapes = [parse_metrics(METRICS), parse_metrics(METRICS)]  # two workers
    saved = saved_of(scrapes)
    assert saved == {"events": 60.0, "due": 24.0}
    found = saved_figures(saved, sum(s.value("cdpulse_events_applied_total") for s in scrapes))
    assert found["profiles_saved"]["events"] == {"profiles": 60.0, "per_1000_events": 500.0}
    assert found["profiles_saved"]["due"] == {"profiles": 24.0, "per_1000_events": 200.0}
    nothing = saved_figures({"events": 0.0, "due": 0.0}, 0.0)
    assert nothing["profiles_saved"]["due"]["per_1000_events"] is None


def test_parse_comm_and_ticks_keeps_odd_command_names() -> None:
    line = "7 (kworker/0:1-events) I 2 0 0 0 -1 1 0 0 0 0 12 30 0 0 20 0 1 0 5 0 0"
    assert parse_comm_and_ticks(line) == ("kworker/0:1-events", 42)


def test_top_others_adds_up_by_name_and_leaves_ours_out() -> None:
    ticks = CLOCK_TICKS
    before = {1: ("python", 0), 2: ("python", 10 * ticks), 3: ("java", 0), 9: ("redis", 0)}
    after = {
        1: ("python", 2 * ticks),
        2: ("python", 12 * ticks),
        3: ("java", 1 * ticks),
        4: ("pytest", 3 * ticks),  # started during the span: counted from zero
        9: ("redis", 5 * ticks),  # ours
        5: ("idle", 0),
    }
    assert top_others(before, after, {9}, seconds=2.0) == [
        ("python", 2.0),
        ("pytest", 1.5),
        ("java", 0.5),
    ]
    assert top_others(before, after, set(), seconds=2.0, count=1) == [("redis", 2.5)]
    assert top_others(before, after, set(), seconds=0.0) == []


# --- report and chart ----------------------------------------------------------------------


def _result() -> dict[str, Any]:
    timeline = [
        _sample(t, min(int(t * 1000), 8000), t * 0.9, lag=100).as_dict()
        for t in (0, 1, 2, 4, 6, 8, 9)
    ]
    contention = {
        "load_average": {"start": [1.5, 1.0, 0.5], "end": [1.7, 1.1, 0.6]},
        "others_cores": 0.12,
        "top_others": [["pytest", 0.1], ["kworker/0:1", 0.01]],
    }
    batches = batch_figures(
        [(1.0, 0.0), (2.0, 30.0), (3.0, 39.0), (4.0, 40.0), (INF, 40.0)],
        [(250.0, 5.0), (500.0, 40.0), (INF, 40.0)],
        {"round_trips": 90.0, "batch_size": 19200.0},
    )
    return {
        "started_at": "2026-12-04T20:00:00+00:00",
        "finished_at": "2026-12-04T20:12:00+00:00",
        "machine": {"cpu_model": "Test CPU", "cores": 2},
        "load_average": {"start": [0.1, 0.2, 0.3], "end": [0.4, 0.2, 0.3]},
        "options": {"events": 300000, "customers": 10000, "partitions": 2},
        "source": {"commit": "0123456789abcdef", "dirty": False},
        "ceilings": {
            "bare": {"events_per_second": 150000.0, "cpu_seconds_per_1000": 0.006},
            "minimal": {
                "events_per_second": 60000.0,
                "cpu_seconds_per_1000": 0.012,
                "contention": contention,
            },
        },
        "throughput": [
            {
                "workers": 1,
                "events_per_second": 12000.0,
                "events_per_second_per_worker": 12000.0,
                "cpu_seconds_per_1000": {
                    "worker": 0.08,
                    "learner": 0.02,
                    "api": 0.001,
                    "kafka": 0.01,
                    "redis": 0.005,
                },
                "cores": {"machine": 1.9, "worker": 0.96, "others": 0.12},
                "worker_cpu_utilisation": [0.96],
                "worker_runqueue_share": [0.02],
                **saved_figures({"events": 9000.0, "due": 3000.0}, 12000.0),
                "worker_redis_share": [0.07],
                "rss_bytes_max": {"worker0": 150 * 2**20, "bench": 2**30},
                "learner": {
                    "lag_when_worker_done": 3000,
                    "caught_up_after_seconds": 2.5,
                    "lag_at_end": 0,
                    "waited_seconds": 2.5,
                    "timeline": [{"t": 0.0, "lag": 0}, {"t": 1.0, "lag": 3000}],
                },
                **batches,
                "contention": contention,
                "timeline": timeline,
            },
            {
                "workers": 2,
                "events_per_second": 18000.0,
                "events_per_second_per_worker": 9000.0,
                "cpu_seconds_per_1000": {"worker": 0.09},
                "learner": {
                    "lag_when_worker_done": 9000,
                    "caught_up_after_seconds": None,
                    "lag_at_end": 700,
                    "waited_seconds": 60.0,
                },
                "timeline": timeline,
            },
        ],
        "scaling": {"one": 12000.0, "two": 18000.0, "ratio": 1.5},
        "steady": {
            "rate": 6000.0,
            "producer": {"achieved_rate": 5990.0, "schedule_lag": {"p99": 0.002, "max": 0.01}},
            "written": {"observed": 180000, "p50": 0.03, "p95": 0.06, "p99": 0.08},
            "recommendation": {"observed": 900, "p50": 0.2, "p95": 0.5, "p99": 0.9},
            "batch_steps": {
                "waited": {"observed": 900, "p50": 0.012, "p95": 0.03, "p99": 0.04},
                "decided": {"observed": 900, "p50": 0.01, "p95": 0.02, "p99": 0.025},
                "written": {"observed": 900, "p50": 0.006, "p95": 0.01, "p99": 0.015},
            },
            "model_refresh": {"observed": 4, "p50": 0.05, "p95": 0.07, "p99": 0.08},
            "kept_up": True,
            "learner": {"lag_max": 800, "lag_at_end": 0, "timeline": [{"t": 1.0, "lag": 5}]},
            "per_second": [{"t": 1.0, "p50": 0.03, "p99": 0.08, "observed": 6000}],
            "cpu_seconds_per_1000": {"worker": 0.09, "learner": 0.03},
            "cores": {"machine": 1.2, "others": 0.1},
            **batches,
        },
        "steady_reads": {
            "rate": 6000.0,
            "producer": {"achieved_rate": 6000.0},
            "written": {"p50": 0.04, "p95": 0.09, "p99": 0.12},
            "recommendation": {},
            "kept_up": False,
            "drained_seconds": 7.2,
            "learner": {},
            "reads": {
                "profile": {
                    "rate": 1000.0,
                    "achieved_rate": 999.0,
                    "statuses": {"200": 20000},
                    "latency": {"p50": 0.0012, "p95": 0.0025, "p99": 0.004, "max": 0.02},
                    "service": {"p99": 0.0035},
                    "send_lag": {"p50": 0.0001, "p99": 0.001, "max": 0.004, "late": 0},
                    "generator_cores": 0.21,
                },
                "recommendations": {
                    "rate": 1000.0,
                    "achieved_rate": 998.0,
                    "statuses": {"200": 15000, "451": 5000},
                    "latency": {"p50": 0.002, "p95": 0.004, "p99": 0.007, "max": 0.03},
                },
            },
            "api_cpu_seconds_per_1000_requests": 0.25,
        },
        "redis": {
            "profiles": 10000,
            "aliases": 1500,
            "bytes_per_profile": 2500.0,
            "memory_usage": {"mean": 2100.0, "p99": 3900.0},
            "msgpack_bytes": {"mean": 1700.0},
        },
        "stages": {
            "events": 50000,
            "events_per_second": 20000.0,
            "cpu_seconds_per_1000": 0.05,
            "per_event_us": {"decode": 10.0, "state.read": 5.0},
            "per_event_cpu_us": {"decode": 9.5, "state.read": 2.0},
        },
    }


def test_verdict_says_met_or_by_how_much_it_missed() -> None:
    assert verdict(25_000, TARGETS["throughput"]) == "met"
    assert verdict(7_500, TARGETS["throughput"]) == "missed: 0.50x the target"
    assert verdict(0.2, TARGETS["latency_p99"]) == "missed: 2.00x the target"
    assert verdict(0.1, TARGETS["latency_p99"]) == "missed: 1.00x the target"  # not below
    assert verdict(3, TARGETS["round_trips"]) == "met"  # at most
    assert verdict(4, TARGETS["round_trips"]) == "missed: 1.33x the target"
    assert verdict(None, TARGETS["scaling"]) == "not measured"
    assert verdict(math.nan, TARGETS["http_p99"]) == "not measured"
    assert verdict(1.0, Target("x", 1.0, at_least=True, unit="x")) == "met"


def test_figures_pick_the_target_figures() -> None:
    assert figures(_result()) == {
        "throughput": 12000.0,
        "learner": 2.5,
        "latency_p99": 0.08,
        "http_p99": 0.004,
        "reco_http_p99": 0.007,
        "round_trips": 2.0,
        "redis_bytes": 2500.0,
        "scaling": 1.5,
    }


def test_render_markdown_shows_figures_against_targets() -> None:
    lines = render_markdown(_result()).splitlines()
    assert "| measure | result | target | verdict |" in lines
    assert (
        "| sustained events/s per worker process, every per-event feature on | 12,000 events/s "
        "| ≥ 15,000 events/s | missed: 0.80x the target |" in lines
    )
    assert (
        "| p99 produce → profile written at half capacity | 80.0 ms | < 100.0 ms | met |" in lines
    )
    assert (
        "| GET /v1/profiles/{id} p99 at 1,000 requests/s, ingesting at half capacity "
        "| 4.0 ms (p50 1.2 ms) | < 5.0 ms | met |" in lines
    )
    assert "| Redis round trips for a typical batch | 2 | ≤ 3 | met |" in lines
    assert (
        "| learner (own process) caught up after the worker finished the backlog | 2.5 s "
        "| < 5.0 s | met |" in lines
    )


def test_render_markdown_reports_ratios_roles_reads_and_contention() -> None:
    text = render_markdown(_result())
    lines = text.splitlines()
    # engine / ceilings
    assert any(line.startswith("| bare consumer") and "| 8.0% |" in line for line in lines)
    assert any(line.startswith("| hand-written minimal") and "| 20.0% |" in line for line in lines)
    assert "Hand-written minimal profile / bare consumer: 40.0%." in lines
    # CPU per 1,000 events per role; a role a phase did not run shows "-"
    assert (
        "| throughput, 1 worker(s) | 0.080 | 0.020 | 0.001 | 0.010 | 0.005 | 0.116 | 1.90 | 0.12 |"
        in lines
    )
    assert any(line.startswith("| throughput, 2 worker(s) | 0.090 | - | - |") for line in lines)
    # the generator's own lag is shown beside the latency
    assert any(
        line.startswith("| GET profile | 1,000 / 999 | 1.2 ms / 4.0 ms / 20.0 ms | 3.5 ms")
        and "| 1.0 ms / 4.0 ms, 0 late | 0.21 |" in line
        for line in lines
    )
    assert "The api process used 0.250 CPU s per 1,000 requests." in lines
    assert any("| no (drained 7 s late) |" in line for line in lines)
    assert "| throughput, 1 worker(s) | 40 | 2 | 2.25 | 97.5% | 4 | 480.0 | 750 / 250 |" in lines
    assert "| steady | 40 | 2 | 2.25 | 97.5% | 4 | 480.0 | - |" in lines  # not measured
    assert "| ceiling: minimal | 1.5 → 1.7 | 0.12 | pytest 0.10, kworker/0:1 0.01 |" in lines
    assert "| 2 worker(s) |  |  |  |  | 9,000 / - s |" in lines
    # where a batch's latency goes
    assert (
        "| ingest only | 12.0 ms / 40.0 ms | 10.0 ms / 25.0 ms | 6.0 ms / 15.0 ms "
        "| 4: 50.0 ms / 80.0 ms |" in lines
    )


def test_render_markdown_says_when_the_load_generator_itself_ran_late() -> None:
    result = _result()
    result["steady_reads"]["reads"]["profile"]["send_lag"]["p99"] = 0.2
    line = next(
        x
        for x in render_markdown(result).splitlines()
        if x.startswith("| GET /v1/profiles/{id} p99")
    )
    assert "the load generator itself sent p99 200.0 ms late" in line


def test_render_markdown_shows_the_read_ceiling_beside_the_api() -> None:
    result = _result()
    ceiling = copy.deepcopy(result["steady_reads"])
    ceiling["reads"]["profile"]["latency"].update(p50=0.0004, p99=0.0021)
    ceiling["api_cpu_seconds_per_1000_requests"] = 0.11
    result["steady_read_ceiling"] = ceiling
    lines = render_markdown(result).splitlines()
    target = next(x for x in lines if x.startswith("| GET /v1/profiles/{id} p99"))
    assert "| 4.0 ms (p50 1.2 ms); the read ceiling: p99 2.1 ms |" in target
    assert any(
        x.startswith("| GET profile (read ceiling) | 1,000 / 999 | 0.4 ms / 2.1 ms / 20.0 ms")
        for x in lines
    )
    assert "The api process used 0.250 CPU s per 1,000 requests." in lines
    assert "The read ceiling used 0.110 CPU s per 1,000 requests." in lines
    assert any(x.startswith("| ingest + reads from the read ceiling |") for x in lines)
    assert any(x.startswith("| steady at 6,000/s + reads from the read ceiling |") for x in lines)


def test_render_markdown_of_a_learner_that_never_caught_up() -> None:
    result = _result()
    result["throughput"][0]["learner"].update(caught_up_after_seconds=None, lag_at_end=700)
    line = next(x for x in render_markdown(result).splitlines() if x.startswith("| learner"))
    assert "not caught up: 700 behind after 2.5 s" in line
    assert line.endswith("| missed |")


def test_render_markdown_of_a_partial_result_marks_what_is_missing() -> None:
    text = render_markdown({"throughput": [], "machine": {}, "failed": "TimeoutError: x"})
    assert text.count("not measured") == len(TARGETS)
    assert "**The run failed:** TimeoutError: x" in text


def test_chart_draws_a_png_from_the_json_alone(tmp_path: Path) -> None:
    from cdpulse.bench.chart import draw

    out = tmp_path / "chart.png"
    draw(_result(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Server:
    """An aiohttp server in a thread of its own: ``/ok`` answers at once, ``/slow`` after
    0.3 s; ``stop()`` closes it (and every connection) while a load runs."""

    def __init__(self) -> None:
        import threading

        from aiohttp import web

        async def ok(request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(0.3)
            return web.json_response({"slow": True})

        app = web.Application()
        app.router.add_get("/ok", ok)
        app.router.add_get("/slow", slow)
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_the_load_generator_counts_every_request_from_when_it_was_due() -> None:
    server = _Server()
    try:
        result = run_load(f"http://127.0.0.1:{server.port}", ["/ok", "/slow"], 200, 1.0, 4)
    finally:
        server.stop()
        server.close()
    assert result.statuses == {"200": 200}
    assert len(result.latencies) == len(result.service) == len(result.send_lag) == 200
    # 100 slow answers on 4 connections take ~7.5 s: the queue for a free connection is
    # in the latency (from due), not hidden by a client that waits before sending.
    assert max(result.latencies) > 5.0
    assert min(result.service) < 0.3 <= max(result.service) < 1.0
    assert result.seconds > 5.0


def test_the_load_generator_survives_a_server_that_goes_away() -> None:
    import threading

    server = _Server()
    try:
        threading.Timer(0.5, server.stop).start()
        result = run_load(f"http://127.0.0.1:{server.port}", ["/ok"], 200, 1.5, 4)
    finally:
        server.close()
    assert len(result.latencies) == 300  # every request answered or failed: none lost
    assert 50 <= result.statuses["200"] < 300
    assert set(result.statuses) - {"200"}  # the rest failed, with their reason


def test_summarize_reads_the_workers_figures_only_where_their_metrics_were_read() -> None:
    # /metrics is read every few samples; in between a sample repeats the last read,
    # which must not bend the figures interpolated from it (processed, batches, Redis).
    samples = []
    for i in range(13):
        read = i % 4 == 0
        t = float(i)
        s = _sample(t, 1000 * i, 0.8 * i)
        if not read:
            held = 1000 * (i - i % 4)
            s = Sample(
                **{
                    **s.as_dict(),
                    "processed": [held],
                    "batches": [held // 100],
                    "redis_seconds": [(i - i % 4) * 0.1],
                    "scraped": False,
                }
            )
        samples.append(s)
    summary = summarize(samples, 12_000, 0.1, 0.9)
    assert summary["processed_per_second"] == pytest.approx(1000)
    assert summary["mean_batch"] == pytest.approx(100)
    assert summary["worker_redis_share"] == [pytest.approx(0.1)]


def test_the_stage_split_knows_the_compiled_build() -> None:
    """The split swaps the stages' parts for timed stand-ins only when it can: not on the
    build mypyc compiled, whose native classes take no new attributes (``bench/stages.py``).
    ``make test`` runs this on the pure build, ``make test-compiled`` on the compiled one."""
    from cdpulse.bench.stages import compiled
    from cdpulse.pipeline.stages import Engine, Models, Stages
    from cdpulse.profile.rules import Rules

    stages = Stages(Engine(Rules(), Models()))
    assert compiled() == (not hasattr(stages, "__dict__"))


def test_the_report_counts_the_append_only_file_rewrites_of_each_phase() -> None:
    from cdpulse.bench.report import _aof

    aof = {
        "start": {"aof_bytes": 780_000_000, "aof_rewrites": 4},
        "after_backlog": {"aof_bytes": 900_000_000, "aof_rewrites": 5},
        "after_steady": {"aof_bytes": 400_000_000, "aof_rewrites": 7},
    }
    assert _aof(aof) == [
        "Redis' append-only file at the start: 780 MB; rewrites during the backlog: 1, "
        "during the steady phases: 2."
    ]
    assert _aof({"start": aof["start"]}) == [
        "Redis' append-only file at the start: 780 MB; rewrites during the backlog: 0."
    ]
    assert _aof({}) == []
